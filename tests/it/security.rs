//! The sandbox boundary as a process sees it: who may connect, what the key file must be, what the
//! daemon's process allows.

use std::os::unix::fs::PermissionsExt;

use crate::support::{INSTALLATION_ID, OWNER, Options, REPO, World, password_of};

fn world_without_mintd() -> World {
    World::start_with(Options {
        start_mintd: false,
        ..Default::default()
    })
}

#[test]
fn a_connection_from_a_uid_not_allowed_is_refused_by_its_peer_credentials() {
    let mut world = world_without_mintd();
    let me = nix::unistd::getuid().as_raw();
    let someone_else = me.wrapping_add(4242);
    // The socket file would let us in (same uid); the SO_PEERCRED check must not.
    world.spawn_mintd_with(&["--allow-uid", &someone_else.to_string()]);
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    let out = world.helper(
        "get",
        format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\n").as_bytes(),
    );
    assert_eq!(password_of(&out), None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("uid {me}")) && stderr.contains("is not allowed"),
        "{stderr}"
    );
    assert!(
        mint_api::Client::new(&world.socket).status().is_err(),
        "status is refused too"
    );
    assert!(world.hub.mints().is_empty(), "nothing was minted for a refused peer");
    assert!(world.mintd_log().contains("refused a connection"));
}

#[test]
fn a_key_file_others_can_read_is_refused_with_the_way_out() {
    let world = world_without_mintd();
    std::fs::set_permissions(&world.key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = world.mintd_command(INSTALLATION_ID).output().expect("mintd");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mode 0644") && stderr.contains("chmod 600"), "{stderr}");
    assert!(!world.socket.exists());
    // The explicit escape hatch, for secrets mounted 0644 that cannot be changed.
    let mut world = world;
    world.spawn_mintd_with(&["--allow-readable-key"]);
    assert!(world.fill(REPO).is_some());
}

#[test]
fn the_daemon_cannot_dump_core() {
    let world = World::start();
    let pid = world.mintd.as_ref().expect("running").id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}
