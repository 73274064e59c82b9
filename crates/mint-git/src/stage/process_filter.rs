//! The clean side of git's long-running filter protocol (`filter.<driver>.process`, gitattributes(5)), for
//! the drivers that need nothing else from the pipeline: Git LFS's `git-lfs filter-process` above all.
//!
//! gix's client sends a file in 8 KiB packets of two writes each (std's copy buffer through its pkt-line
//! writer), where git sends 65,516-byte packets in one write. For a change of ten 50 MB LFS files that is
//! 122,000 writes instead of 7,600, each waking the filter, and it made `mint publish` stage them 10–20%
//! slower than `git add`. Here each packet is one write of git's size, read straight from the file.
//!
//! Only a path whose attributes leave nothing else to do is cleaned here: `filter=<driver>` with the driver's
//! `process` command and `required = true` (what `git lfs install` configures), `-text` (so no end-of-line
//! conversion, whatever `core.autocrlf` says), no `ident` and no `working-tree-encoding`. For such a path
//! gix's pipeline would hand the driver's output through unchanged too; every other path goes to gix.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use bstr::{BStr, ByteSlice};
use gix::attrs::StateRef;
use gix::protocol::transport::packetline::{self, PacketLineRef, blocking_io::StreamingPeekableIter};

/// The largest pkt-line: four hex digits of length, then at most 65,516 bytes (git's `LARGE_PACKET_MAX`).
const MAX_PACKET: usize = 65_520;
const HEADER: usize = 4;

/// The drivers configured with a `process` command, their running processes, and the attributes that
/// choose them.
pub(super) struct ProcessFilters<'repo> {
    attributes: gix::AttributeStack<'repo>,
    matches: gix::attrs::search::Outcome,
    /// Driver name → its `process` command, for the drivers with `required = true`.
    commands: HashMap<String, String>,
    running: HashMap<String, FilterProcess>,
    context: gix::command::Context,
    workdir: std::path::PathBuf,
}

impl<'repo> ProcessFilters<'repo> {
    /// `None` when no required driver has a `process` command: then nothing is cleaned here.
    pub(super) fn new(repo: &'repo gix::Repository, index: &gix::index::State) -> gix::Result<Option<Self>> {
        let config = repo.config_snapshot();
        let names: std::collections::BTreeSet<String> = config
            .plumbing()
            .sections_by_name("filter")
            .into_iter()
            .flatten()
            .filter_map(|section| {
                section
                    .header()
                    .subsection_name()
                    .map(|n| n.to_str_lossy().into_owned())
            })
            .collect();
        let mut commands = HashMap::new();
        for name in names {
            // The resolved values, as git reads them: the last one wins, a bare `required` is true.
            let process = config.string(format!("filter.{name}.process").as_str());
            let required = config.boolean(format!("filter.{name}.required").as_str()) == Some(true);
            if let (Some(process), true) = (process, required) {
                commands.insert(name, process.to_str_lossy().into_owned());
            }
        }
        if commands.is_empty() {
            return Ok(None);
        }
        let attributes = repo.attributes_only(
            index,
            gix::worktree::stack::state::attributes::Source::WorktreeThenIdMapping,
        )?;
        let matches = attributes.selected_attribute_matches(["filter", "text", "ident", "working-tree-encoding"]);
        Ok(Some(Self {
            attributes,
            matches,
            commands,
            running: HashMap::new(),
            context: repo.command_context()?,
            workdir: repo.workdir().map(Path::to_owned).unwrap_or_default(),
        }))
    }

    /// The driver that cleans `rela` here, if its attributes leave nothing else to do (see the module).
    pub(super) fn driver_for(&mut self, rela: &BStr, mode: gix::index::entry::Mode) -> gix::Result<Option<String>> {
        self.matches.reset();
        self.attributes
            .at_entry(rela, Some(mode))?
            .matching_attributes(&mut self.matches);
        let mut driver = None;
        let mut text_unset = false;
        for m in self.matches.iter_selected() {
            match (m.assignment.name.as_str(), m.assignment.state) {
                ("filter", StateRef::Value(name)) => driver = Some(name.as_bstr().to_str_lossy().into_owned()),
                ("text", StateRef::Unset) => text_unset = true,
                ("ident", StateRef::Set) | ("working-tree-encoding", StateRef::Value(_)) => return Ok(None),
                _ => {}
            }
        }
        Ok(driver.filter(|d| text_unset && self.commands.contains_key(d)))
    }

    /// Clean `content` (the file at `rela`) through `driver`'s process, started on first use.
    pub(super) fn clean(&mut self, driver: &str, rela: &BStr, content: &mut dyn Read) -> Result<Vec<u8>, String> {
        let process = match self.running.entry(driver.to_owned()) {
            Entry::Occupied(running) => running.into_mut(),
            Entry::Vacant(slot) => {
                let command = &self.commands[driver];
                let process = FilterProcess::start(command, &self.context, &self.workdir)
                    .map_err(|e| format!("starting `{command}` (filter.{driver}.process) failed: {e}"))?;
                slot.insert(process)
            }
        };
        let cleaned = process.clean(rela, content);
        if cleaned.is_err() {
            // Its state is unknown after a failure: the next path gets a new process.
            self.running.remove(driver);
        }
        cleaned
    }
}

/// One running `filter.<driver>.process` command, past the handshake.
struct FilterProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The filter's answers, read through gix-packetline up to each flush.
    stdout: StreamingPeekableIter<BufReader<ChildStdout>>,
    /// One content packet: its header, then what is read from the file.
    packet: Vec<u8>,
}

impl FilterProcess {
    /// Start `command` as gix starts a filter driver (through the shell when it is one, with the repository's
    /// environment, in the work tree) and agree on version 2 and `clean`.
    fn start(command: &str, context: &gix::command::Context, workdir: &Path) -> io::Result<Self> {
        let mut cmd: std::process::Command = gix::command::prepare(command)
            .command_may_be_shell_script()
            .with_context(context.clone())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .try_into()
            .map_err(io::Error::other)?;
        if !workdir.as_os_str().is_empty() {
            cmd.current_dir(workdir);
        }
        let mut child = cmd.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other("the filter's stdin and stdout were not piped"));
        };
        let mut process = Self {
            child,
            stdin: Some(stdin),
            stdout: StreamingPeekableIter::new(
                BufReader::with_capacity(MAX_PACKET, stdout),
                &[PacketLineRef::Flush],
                false,
            ),
            packet: Vec::with_capacity(MAX_PACKET),
        };
        process.handshake()?;
        Ok(process)
    }

    fn handshake(&mut self) -> io::Result<()> {
        self.send_lines(&["git-filter-client\n", "version=2\n"])?;
        let welcome = self.read_lines()?;
        if welcome.first().map(String::as_str) != Some("git-filter-server") || !welcome.iter().any(|l| l == "version=2")
        {
            return Err(io::Error::other(format!(
                "it does not speak version 2 of git's filter protocol (it said {welcome:?})"
            )));
        }
        // What git offers (less `delay`, which mint never asks for): git-lfs refuses a client without smudge.
        self.send_lines(&["capability=clean\n", "capability=smudge\n"])?;
        let capabilities = self.read_lines()?;
        if !capabilities.iter().any(|l| l == "capability=clean") {
            return Err(io::Error::other("it does not offer `clean`"));
        }
        Ok(())
    }

    fn clean(&mut self, rela: &BStr, content: &mut dyn Read) -> Result<Vec<u8>, String> {
        let io = |e: io::Error| format!("talking to the filter process failed: {e}");
        let pathname = format!("pathname={}\n", rela.to_str_lossy());
        self.send_lines(&["command=clean\n", &pathname]).map_err(io)?;
        self.send_content(content).map_err(io)?;
        let status = self.read_lines().map_err(io)?;
        if !status.iter().any(|l| l == "status=success") {
            return Err(format!("the filter answered {}", describe(&status)));
        }
        let mut cleaned = Vec::new();
        self.read_until_flush(&mut |data| cleaned.extend_from_slice(data))
            .map_err(io)?;
        // A second status list may change its mind after the content ("status=error"); an empty one keeps it.
        let after = self.read_lines().map_err(io)?;
        if after.iter().any(|l| l.starts_with("status=") && l != "status=success") {
            return Err(format!("the filter answered {} after its output", describe(&after)));
        }
        Ok(cleaned)
    }

    /// The content in packets as large as git's, each written whole, then a flush.
    fn send_content(&mut self, content: &mut dyn Read) -> io::Result<()> {
        let stdin = self.stdin.as_mut().expect("open until drop");
        loop {
            self.packet.clear();
            self.packet.resize(MAX_PACKET, 0);
            let mut filled = HEADER;
            while filled < MAX_PACKET {
                match content.read(&mut self.packet[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if filled == HEADER {
                break;
            }
            self.packet[..HEADER].copy_from_slice(&length(filled));
            stdin.write_all(&self.packet[..filled])?;
            if filled < MAX_PACKET {
                break;
            }
        }
        packetline::blocking_io::encode::flush_to_write(&mut *stdin)?;
        stdin.flush()
    }

    /// Text lines (each with its newline) in one write, then a flush.
    fn send_lines(&mut self, lines: &[&str]) -> io::Result<()> {
        let mut out = Vec::new();
        for line in lines {
            packetline::blocking_io::encode::data_to_write(line.as_bytes(), &mut out)?;
        }
        packetline::blocking_io::encode::flush_to_write(&mut out)?;
        let stdin = self.stdin.as_mut().expect("open until drop");
        stdin.write_all(&out)?;
        stdin.flush()
    }

    /// Text lines up to a flush, without their newlines.
    fn read_lines(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        self.read_until_flush(&mut |data| {
            lines.push(String::from_utf8_lossy(data.strip_suffix(b"\n").unwrap_or(data)).into_owned());
        })?;
        Ok(lines)
    }

    /// Hand each packet's payload to `each` until a flush; the end of the output before one is an error.
    fn read_until_flush(&mut self, each: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while let Some(line) = self.stdout.read_line() {
            match line?.map_err(io::Error::other)? {
                PacketLineRef::Data(data) => each(data),
                other => return Err(io::Error::other(format!("unexpected pkt-line {other:?}"))),
            }
        }
        // Stopped at the flush: the next read goes on past it.
        self.stdout.reset();
        Ok(())
    }
}

impl Drop for FilterProcess {
    /// Closing its input tells the process to exit, as git does at the end of a command.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn length(len: usize) -> [u8; HEADER] {
    let hex = format!("{len:04x}");
    let mut out = [0u8; HEADER];
    out.copy_from_slice(hex.as_bytes());
    out
}

fn describe(status: &[String]) -> String {
    match status.iter().rev().find(|l| l.starts_with("status=")) {
        Some(line) => format!("`{line}`"),
        None => "no status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_four_hex_digits() {
        assert_eq!(&length(4), b"0004");
        assert_eq!(&length(MAX_PACKET), b"fff0");
    }

    /// A long-running filter as git documents it (gitattributes(5), "Long Running Filter Process"): it
    /// upper-cases what it cleans, checks that no packet is over the limit, and refuses paths starting with
    /// `bad` with `status=error`.
    const UPPER: &str = r#"
import sys
i, o = sys.stdin.buffer, sys.stdout.buffer
def read():
    head = i.read(4)
    if len(head) < 4: sys.exit(0)
    n = int(head, 16)
    if n == 0: return None
    assert n <= 65520, n
    return i.read(n - 4)
def lines():
    out = []
    while (l := read()) is not None: out.append(l.decode().rstrip("\n"))
    return out
def send(*packets):
    for p in packets: o.write(b"%04x" % (len(p) + 4) + p)
    o.write(b"0000"); o.flush()
assert lines() == ["git-filter-client", "version=2"]
send(b"git-filter-server\n", b"version=2\n")
assert "capability=clean" in lines()
send(b"capability=clean\n")
while True:
    meta = dict(l.split("=", 1) for l in lines())
    data = b""
    while (p := read()) is not None: data += p
    if meta["pathname"].startswith("bad"):
        send(b"status=error\n"); continue
    send(b"status=success\n")
    out = data.upper()
    for k in range(0, len(out), 65516): o.write(b"%04x" % (len(out[k:k + 65516]) + 4) + out[k:k + 65516])
    o.write(b"0000"); o.flush()
    send()
"#;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    }

    /// A repository whose `upper` driver is the filter above, required, for `*.dat` (`-text`).
    fn repository(tmp: &Path) -> std::path::PathBuf {
        let script = tmp.join("upper.py");
        std::fs::write(&script, UPPER).expect("script");
        let repo = tmp.join("repo");
        std::fs::create_dir(&repo).expect("dir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(
            &repo,
            &[
                "config",
                "filter.upper.process",
                &format!("python3 {}", script.display()),
            ],
        );
        git(&repo, &["config", "filter.upper.required", "true"]);
        std::fs::write(repo.join(".gitattributes"), "*.dat filter=upper -text\n").expect("attributes");
        repo
    }

    #[test]
    fn a_custom_long_running_filter_cleans_as_it_does_under_git_add() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = repository(tmp.path());
        let text: Vec<u8> = b"abcdefghij".iter().copied().cycle().take(65_516 * 2 + 7).collect();
        std::fs::write(repo.join("big.dat"), &text).expect("write");
        std::fs::write(repo.join("empty.dat"), b"").expect("write");
        std::fs::write(repo.join("plain.txt"), b"left alone\n").expect("write");
        let opened = crate::open_worktree(&repo).expect("open");
        let staged = super::super::stage_all(&opened).expect("staged");
        git(&repo, &["add", "-A"]);
        assert_eq!(staged.tree.to_string(), git(&repo, &["write-tree"]));
        assert_eq!(
            git(&repo, &["cat-file", "-p", &format!("{}:big.dat", staged.tree)]).len(),
            text.len(),
            "the whole content went through"
        );
    }

    #[test]
    fn a_filter_that_answers_error_fails_the_staging_naming_the_path() {
        let tmp = tempfile::tempdir().expect("tmp");
        let repo = repository(tmp.path());
        std::fs::write(repo.join("bad.dat"), b"x").expect("write");
        let opened = crate::open_worktree(&repo).expect("open");
        let err = super::super::stage_all(&opened).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("bad.dat") && text.contains("status=error"), "{text}");
        // git says no too: a required filter that fails stops `git add`.
        let out = std::process::Command::new("git")
            .env("HOME", &repo)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .current_dir(&repo)
            .args(["add", "-A"])
            .output()
            .expect("git");
        assert!(!out.status.success());
    }
}
