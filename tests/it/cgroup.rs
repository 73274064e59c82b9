//! A memory cgroup for one process under test: the kernel holds it to the shipped pod's limit
//! (sandbox-image/k8s/pod.yaml, `memory: 64Mi`) and OOM-kills it past that, as the kubelet's cgroup would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The memory limit of the shipped pod.
pub(crate) const POD_MEMORY: u64 = 64 * 1024 * 1024;

/// Where the memory controller is mounted: cgroup v1's own hierarchy, or a unified (v2) one.
const V1_ROOT: &str = "/sys/fs/cgroup/memory";
const V2_ROOT: &str = "/sys/fs/cgroup";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// A uniquely named memory cgroup with a limit, removed on drop (once what ran in it is gone).
pub(crate) struct MemoryCgroup {
    dir: PathBuf,
    version: Version,
    limit: u64,
}

impl MemoryCgroup {
    /// A new cgroup at `limit` bytes, without swap to spill into. Panics, naming what it needs, where no
    /// memory cgroup can be made: a test that runs mintd in one must not pass without it.
    pub(crate) fn create(limit: u64) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "mint-it-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (version, root) = if Path::new(V1_ROOT).join("memory.limit_in_bytes").exists() {
            (Version::V1, Path::new(V1_ROOT))
        } else if std::fs::read_to_string(Path::new(V2_ROOT).join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            (Version::V2, Path::new(V2_ROOT))
        } else {
            panic!(
                "no memory cgroup controller: neither cgroup v1's {V1_ROOT} nor a cgroup2 {V2_ROOT} with the \
                 memory controller is mounted. These tests hold mintd to the pod's memory limit in a cgroup: \
                 run them as root on a host (or a privileged container) with the memory controller mounted \
                 read-write"
            )
        };
        let needs = "run the tests as root with the memory controller mounted read-write";
        if version == Version::V2 {
            // A v2 child has the controller only if its parent hands it down.
            let control = root.join("cgroup.subtree_control");
            let handed_down =
                std::fs::read_to_string(&control).is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            if !handed_down && let Err(e) = std::fs::write(&control, "+memory") {
                panic!(
                    "cannot enable the memory controller in {}: {e}; {needs}",
                    control.display()
                );
            }
        }
        let dir = root.join(name);
        if let Err(e) = std::fs::create_dir(&dir) {
            panic!("cannot create the memory cgroup {}: {e}; {needs}", dir.display());
        }
        let cgroup = Self { dir, version, limit };
        let writes: &[(&str, String)] = match version {
            // Swap first: the kernel refuses a memsw limit below the memory limit, and there may be no swap
            // accounting at all (then the file is missing, and there is nothing to spill into either).
            Version::V1 => &[
                ("memory.limit_in_bytes", limit.to_string()),
                ("memory.memsw.limit_in_bytes", limit.to_string()),
            ],
            Version::V2 => &[("memory.max", limit.to_string()), ("memory.swap.max", "0".into())],
        };
        for (file, value) in writes {
            let path = cgroup.dir.join(file);
            if file.contains("sw") && !path.exists() {
                continue;
            }
            if let Err(e) = std::fs::write(&path, value) {
                panic!("cannot set {} to {value}: {e}; {needs}", path.display());
            }
        }
        cgroup
    }

    /// `command` started inside this cgroup: `sh` moves itself in, then execs the program, so the process
    /// (same pid) and everything it starts is charged here from its first byte. Its environment is kept.
    pub(crate) fn wrap(&self, command: &Command) -> Command {
        let procs = self.dir.join("cgroup.procs");
        let script = format!(
            "echo $$ > '{}' && exec \"$@\"",
            procs.to_str().expect("a cgroup path is UTF-8")
        );
        rewrap(command, "/bin/sh", &["-c".as_ref(), script.as_ref(), "sh".as_ref()])
    }

    /// Whether `pid` runs in this cgroup.
    pub(crate) fn holds(&self, pid: u32) -> bool {
        self.read("cgroup.procs").lines().any(|l| l.trim() == pid.to_string())
    }

    /// How many processes the kernel OOM-killed in this cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        let text = self.read(file);
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{key}` line in {file} (kernel 4.13 or later has it):\n{text}"))
    }

    /// The highest memory charged to this cgroup so far, in bytes (page cache included, as the limit
    /// counts it).
    pub(crate) fn peak(&self) -> u64 {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        let text = self.read(file);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{file} holds {text:?}, not a number"))
    }

    /// Peak, limit and OOM kills, for assertion messages.
    pub(crate) fn summary(&self) -> String {
        format!(
            "cgroup peak {} KiB of {} KiB, {} OOM kill(s)",
            self.peak() >> 10,
            self.limit >> 10,
            self.oom_kills()
        )
    }

    fn read(&self, file: &str) -> String {
        let path = self.dir.join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // The kernel removes a cgroup only once its last process is reaped: give a killed one a moment.
        let started = Instant::now();
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if started.elapsed() > Duration::from_secs(5) => {
                    eprintln!(
                        "left the memory cgroup {} behind: {e} (a process still runs in it: {:?})",
                        self.dir.display(),
                        std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default()
                    );
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// `command` run as `program leading… <command's program> <command's args…>`, its environment kept (and
/// nothing else inherited that it did not set), stdin closed.
pub(crate) fn rewrap(command: &Command, program: &str, leading: &[&std::ffi::OsStr]) -> Command {
    let mut wrapped = Command::new(program);
    wrapped
        .args(leading)
        .arg(command.get_program())
        .args(command.get_args());
    wrapped.env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.stdin(std::process::Stdio::null());
    wrapped
}

/// `command` run under `prlimit` with `limits` (e.g. `--nofile=1024:1024`), its environment kept.
pub(crate) fn under_prlimit(command: &Command, limits: &[&str]) -> Command {
    let mut leading: Vec<&std::ffi::OsStr> = limits.iter().map(AsRef::as_ref).collect();
    leading.push("--".as_ref());
    rewrap(command, "prlimit", &leading)
}
