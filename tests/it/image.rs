//! The sandbox image's git configuration, without Docker: git configured only by
//! `sandbox-image/gitconfig` (as `/etc/gitconfig`), the helper, a temp socket, against fakehub.
//! `sandbox-image/test` runs the same flow in the built images.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::{OWNER, REPO, World};

const IMAGE_HELPER: &str = "/usr/local/bin/git-credential-mint";

/// The image's gitconfig with the two things that differ outside the image: the helper's install path,
/// and the host (fakehub's URL in place of `https://github.com`). Each must appear exactly once.
fn image_gitconfig(world: &World) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("sandbox-image/gitconfig");
    let text = std::fs::read_to_string(&file).expect("sandbox-image/gitconfig");
    for needle in [IMAGE_HELPER, "[credential \"https://github.com\"]"] {
        assert_eq!(text.matches(needle).count(), 1, "{needle} once in {}", file.display());
    }
    text.replace(IMAGE_HELPER, env!("CARGO_BIN_EXE_git-credential-mint"))
        .replace("https://github.com", &world.url())
}

/// git as the image runs it: the system config is the image's, nothing else; no helper on PATH.
fn image_git(world: &World, system_config: &Path, dir: Option<&Path>, args: &[&str]) -> Output {
    let home = world.dir.path().join("image-home");
    std::fs::create_dir_all(&home).expect("home");
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("GIT_CONFIG_SYSTEM", system_config)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("MINT_SOCKET", &world.socket)
        .args(["-c", "user.name=Image Agent", "-c", "user.email=agent@example.invalid"])
        .args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let out = command.output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}\nmintd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        world.mintd_log()
    );
    out
}

#[test]
fn git_configured_only_by_the_image_gitconfig_clones_commits_and_pushes_an_agent_branch() {
    let world = World::start();
    let config = world.dir.path().join("etc-gitconfig");
    std::fs::write(&config, image_gitconfig(&world)).expect("write");
    let dir = world.dir.path().join("work");
    let dir_arg = dir.to_str().expect("utf8");

    image_git(&world, &config, None, &["clone", "-q", &world.repo_url(REPO), dir_arg]);
    std::fs::write(dir.join("image.txt"), "from the image's config\n").expect("write");
    image_git(&world, &config, Some(&dir), &["add", "-A"]);
    image_git(&world, &config, Some(&dir), &["commit", "-q", "-m", "From the image"]);
    image_git(
        &world,
        &config,
        Some(&dir),
        &["push", "-q", "origin", "HEAD:adagent/image"],
    );

    let pushed = Command::new("git")
        .arg("--git-dir")
        .arg(world.hub.repo_path(OWNER, REPO))
        .args(["show", "adagent/image:image.txt"])
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&pushed.stdout), "from the image's config\n");
    assert_eq!(world.hub.mints().len(), 1, "one token served the clone and the push");
    let tokens = world.hub.tokens();
    let (files, found) = World::files_containing(&[world.dir.path()], &tokens[0].token);
    assert!(files > 5 && found.is_empty(), "token found in {found:?}");
}

#[test]
fn the_image_gitconfig_never_prompts_when_mintd_is_absent() {
    // A prompt is seen, not assumed away: GIT_TERMINAL_PROMPT is left unset (this test used to set it to 0
    // itself, so it passed whatever the gitconfig said), and GIT_ASKPASS, which git asks before the
    // terminal, is a script that leaves a mark and answers. Only the image's gitconfig
    // (credential.interactive=false) and the helper's quit=1 stand between git and that script.
    let world = World::start();
    let config = world.dir.path().join("etc-gitconfig");
    std::fs::write(&config, image_gitconfig(&world)).expect("write");
    let mark = world.dir.path().join("prompted");
    let askpass = world.dir.path().join("askpass");
    std::fs::write(
        &askpass,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\necho typed-by-nobody\n", mark.display()),
    )
    .expect("askpass");
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut command = Command::new("git");
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", world.dir.path())
        .env("GIT_CONFIG_SYSTEM", &config)
        .env("GIT_ASKPASS", &askpass)
        .env("MINT_SOCKET", world.dir.path().join("absent.sock"))
        .stdin(std::process::Stdio::null())
        .args(["ls-remote", &world.repo_url(REPO)]);
    let out = command.output().expect("git");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !mark.exists(),
        "git prompted for {:?}: {stderr}",
        std::fs::read_to_string(&mark).unwrap_or_default()
    );
    assert!(
        stderr.contains("no mintd is listening"),
        "the reason reaches the user: {stderr}"
    );
}

#[test]
fn mintd_ready_is_a_probe_for_images_without_a_shell() {
    let world = World::start();
    let ready = |socket: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mintd"))
            .arg("ready")
            .arg("--socket")
            .arg(socket)
            .env_clear()
            .output()
            .expect("mintd ready")
    };
    let up = ready(&world.socket);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let absent = ready(&world.dir.path().join("absent.sock"));
    assert_eq!(absent.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&absent.stderr).contains("mintd is not ready on"));
}
