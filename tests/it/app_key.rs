//! The App key kept in an HSM and rotated while sandboxes work. The HSM is Debian's `SoftHSM2` (a real
//! PKCS#11 implementation; `scripts/test` installs it) with its token in a temp dir and GitHub's PEM imported as
//! a non-extractable key, then removed: mintd and mint-server sign inside the token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fakehub::AppKeyPair;
use fakehub::softhsm::SoftHsm;

use crate::broker::{Server, write_private};
use crate::support::{APP_ID, INSTALLATION_ID, Limits, OWNER, REPO, World, app_key};

const PIN: &str = "user-pin-5c1e0b";

/// A world with no mintd yet and no PEM anywhere: the App key is only in a `SoftHSM2` token under the
/// world's directory. The token, and the PIN file (0600).
fn world_with_the_key_in_an_hsm() -> (World, SoftHsm, PathBuf) {
    let world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    std::fs::remove_file(&world.key_file).expect("no PEM beside mintd");
    let hsm = SoftHsm::new(&world.dir.path().join("hsm"), "mint", PIN).expect("SoftHSM2 token");
    hsm.import(app_key(), "github-app", "01").expect("import the App key");
    let pin_file = world.dir.path().join("pkcs11-pin");
    write_private(&pin_file, &format!("{PIN}\n"));
    (world, hsm, pin_file)
}

/// mintd in key mode with `private_key` (a PEM path or a `pkcs11:` URI) and the PIN file, `SOFTHSM2_CONF`
/// naming the token's configuration.
fn mintd_with_key(world: &World, private_key: &str, pin_file: Option<&Path>, hsm: Option<&SoftHsm>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mintd"));
    command
        .args(["--app-id", &APP_ID.to_string(), "--private-key", private_key])
        .args(["--installation-id", &INSTALLATION_ID.to_string()])
        .args(["--repo", &format!("{OWNER}/{REPO}")])
        .arg("--socket")
        .arg(&world.socket)
        .args(["--github-url", &world.url(), "--api-url", &world.url()])
        .env_clear()
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null());
    if let Some(pin_file) = pin_file {
        command.arg("--pkcs11-pin-file").arg(pin_file);
    }
    if let Some(hsm) = hsm {
        command.env("SOFTHSM2_CONF", hsm.conf());
    }
    command
}

/// The App key's fingerprint as GitHub (fakehub) shows it on the App's page.
fn fingerprint_at_github(world: &World, id: u64) -> String {
    world
        .hub
        .app_key_fingerprints()
        .into_iter()
        .find_map(|(key, fingerprint)| (key == id).then_some(fingerprint))
        .expect("the App has that key")
}

/// A line from the middle of the PEM: were the key written anywhere in the clear, this would be in it.
fn pem_body_line(key: &AppKeyPair) -> String {
    key.private_key_pem().lines().nth(5).expect("a long PEM").to_owned()
}

fn clone_commit_and_push(world: &World, branch: &str) {
    let work = world.dir.path().join(format!("work-{}", branch.replace('/', "-")));
    world.git_ok(None, &["clone", &world.repo_url(REPO), work.to_str().expect("utf8")]);
    std::fs::write(work.join("HSM.md"), "signed inside the token\n").expect("write");
    world.git_ok(Some(&work), &["switch", "-c", branch]);
    world.git_ok(Some(&work), &["add", "-A"]);
    world.git_ok(
        Some(&work),
        &["commit", "-qm", "pushed with a token an HSM-held key minted"],
    );
    world.git_ok(Some(&work), &["push", "origin", branch]);
    let remote = world.git_ok(None, &["ls-remote", &world.repo_url(REPO), branch]);
    assert!(!remote.stdout.is_empty(), "the branch is on GitHub");
}

#[test]
fn mintd_mints_with_the_key_in_an_hsm_and_git_clone_and_push_work() {
    let (mut world, hsm, pin_file) = world_with_the_key_in_an_hsm();
    let uri = hsm.uri("github-app");
    let command = mintd_with_key(&world, &uri, Some(&pin_file), Some(&hsm));
    world.spawn_limited(command, Limits::default());
    clone_commit_and_push(&world, "adagent/hsm-mintd");

    let log = world.mintd_log();
    assert!(
        log.contains(&fingerprint_at_github(&world, 1)) && log.contains(&uri),
        "mintd logs which key signs, by GitHub's fingerprint:\n{log}"
    );
    assert!(!log.contains(PIN), "{log}");
    assert!(
        !log.contains("extractable"),
        "the imported key is not extractable:\n{log}"
    );
    // The process never read the PEM: none is left on this machine's disk to read.
    let (files, found) = World::files_containing(&[world.dir.path()], &pem_body_line(app_key()));
    assert!(files > 0 && found.is_empty(), "the App key in the clear in {found:?}");
}

#[test]
fn mint_server_mints_with_the_key_in_an_hsm_for_a_broker_sandbox() {
    let (mut world, hsm, pin_file) = world_with_the_key_in_an_hsm();
    let uri = hsm.uri("github-app");
    let server = Server::start_with_key(
        &world,
        None,
        Vec::new(),
        vec![
            "--private-key".into(),
            uri.clone(),
            "--pkcs11-pin-file".into(),
            pin_file.display().to_string(),
        ],
        vec![("SOFTHSM2_CONF".into(), hsm.conf().display().to_string())],
    );
    let product = server.product(REPO);
    let (_, credential) = server.sandbox(&world, &product);
    world.spawn_mintd_broker(&server.url, &credential, &[]);
    clone_commit_and_push(&world, "adagent/hsm-server");
    let log = server.log();
    assert!(log.contains(&fingerprint_at_github(&world, 1)), "{log}");
    assert!(!log.contains(PIN), "{log}");
}

#[test]
fn a_wrong_pin_exits_64_naming_the_uri_and_not_the_pin() {
    let (world, hsm, _) = world_with_the_key_in_an_hsm();
    let wrong = world.dir.path().join("wrong-pin");
    write_private(&wrong, "not-the-pin-31337\n");
    let uri = hsm.uri("github-app");
    let mintd = mintd_with_key(&world, &uri, Some(&wrong), Some(&hsm))
        .output()
        .expect("mintd runs");
    let server = Command::new(env!("CARGO_BIN_EXE_mint-server"))
        .args(["--app-id", &APP_ID.to_string(), "--private-key", &uri])
        .arg("--pkcs11-pin-file")
        .arg(&wrong)
        .arg("--admin-token-file")
        .arg(&wrong)
        .env_clear()
        .env("SOFTHSM2_CONF", hsm.conf())
        .output()
        .expect("mint-server runs");
    for (name, out, flag) in [
        ("mintd", mintd, "--private-key (or MINT_PRIVATE_KEY_FILE)"),
        ("mint-server", server, "--private-key (or MINT_SERVER_PRIVATE_KEY)"),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{name}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(&uri) && stderr.contains("refused the PIN"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("not-the-pin-31337"), "{name}: {stderr}");
    }
}

/// mintd in key mode: the key file is replaced and SIGHUP sent; the new key signs (the old one is deleted
/// at GitHub before mintd's first mint), and a garbage key file afterwards is refused with the reason while
/// the key in use keeps signing.
#[test]
fn mintd_reloads_its_key_on_sighup_and_keeps_it_when_the_new_file_is_garbage() {
    let mut world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    let key_file = world.key_file.display().to_string();
    world.spawn_limited(mintd_with_key(&world, &key_file, None, None), Limits::default());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(world.mintd.as_ref().expect("mintd").id()).expect("pid"));

    let second = AppKeyPair::generate().expect("keygen");
    let second_id = world
        .hub
        .add_app_key(&second.public_key_pem())
        .expect("add a key on GitHub");
    std::fs::write(&world.key_file, second.private_key_pem()).expect("replace the key file");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
    let new_fingerprint = fingerprint_at_github(&world, second_id);
    wait_for_log(|| world.mintd_log(), &new_fingerprint, "a new App key signs");
    world.hub.delete_app_key(1).expect("delete the old key on GitHub");
    assert!(
        world.fill(REPO).is_some(),
        "mintd mints with the new key:\n{}",
        world.mintd_log()
    );

    std::fs::write(
        &world.key_file,
        "-----BEGIN RSA PRIVATE KEY-----\nnot base64 at all\n-----END RSA PRIVATE KEY-----\n",
    )
    .expect("garbage");
    wait_for_log(|| world.mintd_log(), "base64 is damaged", "the new App key was refused");
    assert!(world.mintd_alive(), "mintd keeps serving");
    // A fresh mint proves the key in use still signs: drop the token (as git does after a 401), ask again.
    std::thread::sleep(Duration::from_secs(5)); // mintd re-mints after an erase at most once per 5 s
    let token = world.fill(REPO).expect("a token");
    let url = world.url();
    let (protocol, host) = url.split_once("://").expect("url");
    world.helper(
        "erase",
        format!("protocol={protocol}\nhost={host}\npath={OWNER}/{REPO}.git\npassword={token}\n\n").as_bytes(),
    );
    let again = world.fill(REPO).expect("minted again with the key in use");
    assert_ne!(again, token, "a new token:\n{}", world.mintd_log());
}

/// Wait until the log holds a line with both `needle` and `message`.
fn wait_for_log(log: impl Fn() -> String, needle: &str, message: &str) {
    let started = Instant::now();
    loop {
        let text = log();
        if text.lines().any(|l| l.contains(needle) && l.contains(message)) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no line with {needle:?} and {message:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sandboxes fetching through the broker.
const SANDBOXES: usize = 8;

/// The key file a Kubernetes Secret volume shows: `app.pem -> ..data/app.pem`, `..data -> ..VERSION`, and an
/// update writes a new version directory and renames a new `..data` link over the old one.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: PathBuf, pem: &str) -> Self {
        std::fs::create_dir_all(&dir).expect("secret dir");
        let mut volume = Self { dir, version: 0 };
        volume.update(pem);
        std::os::unix::fs::symlink("..data/app.pem", volume.path()).expect("app.pem link");
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.join("app.pem")
    }

    fn update(&mut self, pem: &str) {
        self.version += 1;
        let version = format!("..v{}", self.version);
        std::fs::create_dir(self.dir.join(&version)).expect("version dir");
        write_private(&self.dir.join(&version).join("app.pem"), pem);
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("link");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }
}

/// GitHub's rotation, as docs/security.md tells it: add a key on GitHub, update the Secret, watch the new
/// fingerprint in the log, delete the old key on GitHub. Meanwhile sandboxes keep fetching through the
/// broker, their tokens living 20 s so that each mintd asks mint-server for another every 10 s, before,
/// during and after the rotation: not one git command fails. A garbage Secret afterwards is refused with
/// the reason, and the key in use keeps signing.
#[test]
fn rotating_the_key_while_sandboxes_fetch_through_the_broker_fails_no_git_command() {
    let _heavy = crate::support::one_heavy_test_at_a_time();
    let world = World::start_with(crate::support::Options {
        start_mintd: false,
        ..Default::default()
    });
    world.hub.set_token_lifetime(Duration::from_secs(20));
    let mut secret = SecretVolume::new(world.dir.path().join("secret"), &app_key().private_key_pem());
    let server = Server::start_with_key(
        &world,
        None,
        Vec::new(),
        vec!["--private-key".into(), secret.path().display().to_string()],
        Vec::new(),
    );
    let product = server.product(REPO);
    let mut sandboxes: Vec<Sandbox> = (0..SANDBOXES)
        .map(|i| Sandbox::start(&world, &server, &product, i))
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let fetched = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = sandboxes
        .iter()
        .map(|sandbox| {
            let (git, work, stop, fetched) = (sandbox.git(&world), sandbox.work.clone(), stop.clone(), fetched.clone());
            let url = world.repo_url(REPO);
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let cloned = git(&["clone", "-q", &url, work.to_str().expect("utf8")], None);
                if !cloned.status.success() {
                    failures.push(String::from_utf8_lossy(&cloned.stderr).into_owned());
                }
                while !stop.load(Ordering::Relaxed) {
                    let out = git(&["fetch", "-q", "origin"], Some(&work));
                    if out.status.success() {
                        fetched.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                    std::thread::sleep(Duration::from_millis(400));
                }
                failures
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(4));
    // 1. Add a key on GitHub; 2. update the Secret.
    let second = AppKeyPair::generate().expect("keygen");
    let second_id = world.hub.add_app_key(&second.public_key_pem()).expect("add");
    secret.update(&second.private_key_pem());
    // 3. Watch the new key's fingerprint in the log; 4. delete the old key on GitHub.
    let new_fingerprint = fingerprint_at_github(&world, second_id);
    wait_for_log(|| server.log(), &new_fingerprint, "a new App key signs");
    world.hub.delete_app_key(1).expect("delete the old key");
    let mints_before = ok_mints(&world);
    std::thread::sleep(Duration::from_secs(6));
    // A broken Secret (a bad copy-paste) is refused, and the key in use goes on signing.
    secret.update("-----BEGIN RSA PRIVATE KEY-----\nthis is not a key\n-----END RSA PRIVATE KEY-----\n");
    wait_for_log(|| server.log(), "the new App key was refused", "base64 is damaged");
    std::thread::sleep(Duration::from_secs(8));
    stop.store(true, Ordering::Relaxed);

    let failures: Vec<String> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    let mints_after = ok_mints(&world) - mints_before;
    let log = server.log();
    for sandbox in &mut sandboxes {
        sandbox.stop();
    }
    assert!(
        failures.is_empty(),
        "{} git commands failed: {failures:?}\n{log}",
        failures.len()
    );
    assert!(
        fetched.load(Ordering::Relaxed) >= SANDBOXES * 20,
        "only {} fetches",
        fetched.load(Ordering::Relaxed)
    );
    assert!(
        mints_after >= SANDBOXES,
        "every sandbox got tokens minted with the new key after the old one was deleted ({mints_after} mints)"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("the new App key was refused") && l.contains(&new_fingerprint)),
        "the refusal names the key still in use:\n{log}"
    );
}

fn ok_mints(world: &World) -> usize {
    world.hub.mints().iter().filter(|m| m.status == 201).count()
}

/// One sandbox: its mintd in broker mode on its own socket, and its work tree.
struct Sandbox {
    mintd: Child,
    socket: PathBuf,
    work: PathBuf,
}

impl Sandbox {
    fn start(world: &World, server: &Server, product: &str, i: usize) -> Self {
        let (_, shared_file) = server.sandbox(world, product);
        let dir = world.dir.path().join(format!("sandbox-{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let credential = dir.join("credential");
        std::fs::rename(&shared_file, &credential).expect("own credential file");
        let socket = dir.join("mint.sock");
        let log = std::fs::File::create(dir.join("mintd.log")).expect("log");
        let mintd = Command::new(env!("CARGO_BIN_EXE_mintd"))
            .args(["--broker", &server.url])
            .arg("--sandbox-credential-file")
            .arg(&credential)
            .arg("--socket")
            .arg(&socket)
            .args(["--github-url", &world.url(), "--api-url", &world.url()])
            .env_clear()
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mintd starts");
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mintd {i} is not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
        Self {
            mintd,
            socket,
            work: dir.join("work"),
        }
    }

    /// Runs git as the sandbox does: the world's HOME (whose config names the helper), this sandbox's socket.
    fn git(&self, world: &World) -> impl Fn(&[&str], Option<&Path>) -> std::process::Output + Send + 'static {
        let helper_dir = Path::new(env!("CARGO_BIN_EXE_git-credential-mint"))
            .parent()
            .expect("a directory")
            .to_path_buf();
        let mut paths = vec![helper_dir];
        paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let path = std::env::join_paths(paths).expect("PATH");
        let (home, socket) = (world.home.clone(), self.socket.clone());
        move |args, dir| {
            let mut command = Command::new("git");
            command
                .args(args)
                .env_clear()
                .env("PATH", &path)
                .env("HOME", &home)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_TERMINAL_PROMPT", "0")
                .env("MINT_SOCKET", &socket)
                .stdin(Stdio::null());
            if let Some(dir) = dir {
                command.current_dir(dir);
            }
            command.output().expect("git runs")
        }
    }

    fn stop(&mut self) {
        let _ = self.mintd.kill();
        let _ = self.mintd.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}
