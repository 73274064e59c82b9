//! A real PostgreSQL for one test: `initdb` in a temp dir and `postgres` on a free loopback port, run as
//! the `postgres` user when the tests run as root (PostgreSQL refuses root). Stopped when dropped.
//! Debian's `postgresql` package provides the binaries; `scripts/test` installs it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    pub dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("mint-pg-").tempdir().expect("tempdir");
        let owner = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .expect("user lookup")
                .expect("running as root needs the postgres user from Debian's postgresql package");
            nix::unistd::chown(dir.path(), Some(user.uid), Some(user.gid)).expect("chown");
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "mint",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--no-instructions",
                "-D",
            ])
            .arg(&data);
        let output = as_owner(&mut initdb, owner).output().expect("initdb runs");
        assert!(
            output.status.success(),
            "initdb failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut pg = Self {
            child: None,
            bin,
            port: 0,
            owner,
            dir,
        };
        pg.boot();
        pg
    }

    /// Start (or restart) the server on a free port, and wait until it accepts connections.
    fn boot(&mut self) {
        let port = if self.port == 0 { free_port() } else { self.port };
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log");
        if let Some((uid, gid)) = self.owner {
            nix::unistd::chown(
                &self.dir.path().join("postgres.log"),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .expect("chown log");
        }
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.path().display()))
            .args(["-c", "max_connections=200", "-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        let child = as_owner(&mut command, self.owner).spawn().expect("postgres starts");
        self.child = Some(child);
        self.port = port;
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "mint", "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres did not start:\n{}",
                std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new, empty database in this cluster; returns its URL.
    pub fn database(&self, name: &str) -> String {
        let status = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mint", name])
            .status()
            .expect("createdb runs");
        assert!(status.success(), "createdb {name} failed");
        format!("postgres://mint@127.0.0.1:{}/{name}", self.port)
    }

    /// Everything in a database as SQL text, by the real `pg_dump`.
    pub fn dump(&self, name: &str) -> String {
        let output = Command::new(self.bin.join("pg_dump"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "mint", name])
            .output()
            .expect("pg_dump runs");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kill -9` the server (no shutdown at all), then start it again on the same data and port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.boot();
    }

    /// Stop the server as an operator's restart does (fast shutdown: open sessions are told
    /// "terminating connection due to administrator command"), and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let _ = child.wait();
        }
    }

    /// Start it again after [`Postgres::stop`], on the same data and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "postgres is already running");
        self.boot();
    }

    /// One value from `sql` in database `name`, by the real `psql`.
    pub fn query(&self, name: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "mint",
                "-d",
                name,
                "-tAc",
                sql,
            ])
            .output()
            .expect("psql runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM is PostgreSQL's "smart" shutdown; SIGKILL would leave its shared memory behind.
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
            let _ = child.wait();
        }
    }
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|d| Path::new(d).join("initdb").exists())
        .expect("PostgreSQL's server binaries (initdb, postgres) are needed: apt-get install postgresql")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
