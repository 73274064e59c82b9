//! A real HAProxy in front of mint-server replicas, as a platform runs it: `/readyz` health checks every
//! 250 ms (down after two failures, each given 2 s), and a request whose replica refused or dropped it
//! sent again to another (`retry-on` with `redispatch`). `haproxy -f` on a free loopback port with a
//! haproxy.cfg in a temp dir; stopped when dropped. Debian's `haproxy` package provides it; `scripts/test` installs it.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct HaProxy {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl HaProxy {
    /// In front of the replicas at these `http://ADDR:PORT` URLs; returns when it answers `/readyz` with 200.
    pub fn start(replicas: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mint-haproxy-")
            .tempdir()
            .expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut servers = String::new();
        for (i, url) in replicas.iter().enumerate() {
            let addr = url.trim_start_matches("http://");
            let _ = writeln!(servers, "    server replica{i} {addr} check inter 250ms fall 2 rise 1");
        }
        let config = format!(
            "global\n    maxconn 8000\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    timeout check 2s\n\
             \x20   retries 3\n    option redispatch 1\n\
             \x20   retry-on conn-failure empty-response junk-response response-timeout\n\
             frontend sandboxes\n    bind 127.0.0.1:{port}\n    default_backend mint\n\
             backend mint\n    balance roundrobin\n    option httpchk GET /readyz\n    http-check expect status 200\n\
             {servers}"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("haproxy.cfg");
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log");
        let child = Command::new(bin())
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let proxy = Self {
            child: Some(child),
            dir,
            port,
        };
        let started = Instant::now();
        while !proxy.ready() {
            let exited = proxy.child.as_ref().map(std::process::Child::id).is_some_and(|pid| {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
            });
            assert!(
                !exited,
                "haproxy exited:\n{}",
                std::fs::read_to_string(proxy.dir.path().join("haproxy.log")).unwrap_or_default()
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "haproxy did not come up:\n{}",
                std::fs::read_to_string(proxy.dir.path().join("haproxy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Does `GET /readyz` through HAProxy answer 200?
    fn ready(&self) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn bin() -> PathBuf {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("HAProxy is needed: apt-get install haproxy (scripts/test does)")
}
