//! The mediated mode's push policy: read a receive-pack request's command list before anything goes to
//! GitHub, allow only creations and updates (force pushes included: see docs/modes.md) of
//! `refs/heads/<prefix>…`, and answer a refusal in git's own protocol (`report-status` with
//! `ng <ref> <reason>`, plus a side-band message) so `git push` prints why.
//!
//! pkt-lines are read with `gix-packetline` (four hex digits, nothing else; at most 65520 bytes a line) and
//! the command list as `git receive-pack` reads it (`read_head_info`/`queue_command` in git's
//! `builtin/receive-pack.c`): one trailing newline dropped, capabilities after the first NUL, `shallow`
//! lines skipped. Where git would read the same bytes differently, the reader refuses them instead
//! (`fuzz/fuzz_targets/receive_pack_commands.rs` holds it to that).

use gix_packetline::PacketLineRef;
use gix_packetline::decode::{Stream, streaming};
use mint_api::policy::branch_refusal;

/// The command list (and any shallow lines) of a push is a few KiB at most; more is not a push.
pub const MAX_COMMANDS_BYTES: usize = 1024 * 1024;

/// One ref update a client asks for. Object ids are lowercase hex, as git prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: String,
    pub new: String,
    pub refname: String,
}

/// The parsed head of a receive-pack request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRequest {
    pub commands: Vec<Command>,
    pub capabilities: Vec<String>,
    /// Bytes of the request the command list took, through its flush packet.
    pub consumed: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a git pkt-line stream: {0}")]
    NotPktLine(String),
    #[error("the command list is over {MAX_COMMANDS_BYTES} bytes")]
    TooLarge,
    #[error("push certificates are not supported through mint")]
    PushCert,
    #[error("malformed ref update command")]
    BadCommand,
    #[error("a delimiter or response-end packet inside a push's command list: git's protocol v0 has none")]
    UnexpectedSpecial,
}

/// Reads a receive-pack command list as its bytes arrive, from where it stopped: each byte is parsed once,
/// however the request is cut into frames.
#[derive(Debug, Default)]
pub struct CommandReader {
    /// Where the next pkt-line starts in the request.
    pos: usize,
    commands: Vec<Command>,
    capabilities: Vec<String>,
    /// Length of the object ids of this push (40 for SHA-1, 64 for SHA-256), from its first command.
    hex_len: Option<usize>,
    /// A `shallow` line before the first command whose id is too short for that format: git, in a
    /// repository of that format, dies on it.
    shallow_rules_out_sha1: bool,
    shallow_rules_out_sha256: bool,
    /// Bytes looked at so far, over every call: the work done, for tests of the cost.
    examined: usize,
}

impl CommandReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes looked at so far, over every call to [`CommandReader::read`].
    pub fn examined(&self) -> usize {
        self.examined
    }

    /// Continue parsing `buf`, the request from its first byte (only what follows the last call is read).
    /// `Ok(None)`: more bytes needed.
    pub fn read(&mut self, buf: &[u8]) -> Result<Option<PushRequest>, ParseError> {
        loop {
            if self.pos > MAX_COMMANDS_BYTES {
                return Err(ParseError::TooLarge);
            }
            let rest = buf.get(self.pos..).unwrap_or_default();
            // git reads the length as four hex digits and nothing else: checked here, not left to the
            // decoder's hex parser.
            if let Some(prefix) = rest.get(..4)
                && !prefix.iter().all(u8::is_ascii_hexdigit)
            {
                return Err(ParseError::NotPktLine(format!(
                    "the length {:?} is not four hex digits",
                    String::from_utf8_lossy(prefix)
                )));
            }
            let (line, consumed) = match streaming(rest) {
                Ok(Stream::Complete { line, bytes_consumed }) => (line, bytes_consumed),
                Ok(Stream::Incomplete { .. }) => {
                    // The length prefix, at most, was looked at.
                    self.examined += rest.len().min(4);
                    return Ok(None);
                }
                Err(e) => return Err(ParseError::NotPktLine(e.to_string())),
            };
            self.examined += consumed;
            self.pos += consumed;
            let payload = match line {
                PacketLineRef::Flush => {
                    return Ok(Some(PushRequest {
                        commands: std::mem::take(&mut self.commands),
                        capabilities: std::mem::take(&mut self.capabilities),
                        consumed: self.pos,
                    }));
                }
                PacketLineRef::Delimiter | PacketLineRef::ResponseEnd => {
                    return Err(ParseError::UnexpectedSpecial);
                }
                PacketLineRef::Data(payload) => payload,
            };
            self.take_line(payload)?;
        }
    }

    fn take_line(&mut self, payload: &[u8]) -> Result<(), ParseError> {
        // git chomps one newline from the whole packet, then reads the command up to the first NUL.
        let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        if let Some(oid) = payload.strip_prefix(b"shallow ") {
            // git reads an id of its repository's format and ignores anything after it; too few hex digits
            // make it die. Every id of one push is of one format.
            let hex = oid.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            match self.hex_len {
                Some(len) if hex < len => return Err(ParseError::BadCommand),
                Some(_) => {}
                None => {
                    self.shallow_rules_out_sha1 |= hex < 40;
                    self.shallow_rules_out_sha256 |= hex < 64;
                    if self.shallow_rules_out_sha1 {
                        return Err(ParseError::BadCommand);
                    }
                }
            }
            return Ok(());
        }
        if payload.starts_with(b"push-cert") {
            return Err(ParseError::PushCert);
        }
        let (line, caps) = match payload.iter().position(|&b| b == 0) {
            Some(nul) => (&payload[..nul], Some(&payload[nul + 1..])),
            None => (payload, None),
        };
        if let Some(caps) = caps {
            // git takes capabilities from whichever line carries them; git itself sends them on the first.
            if !self.commands.is_empty() {
                return Err(ParseError::BadCommand);
            }
            self.capabilities = String::from_utf8_lossy(caps).split(' ').map(str::to_owned).collect();
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::BadCommand)?;
        let hex_len = *self.hex_len.get_or_insert(line.find(' ').unwrap_or(0));
        let is_oid = |s: &str| s.len() == hex_len && s.bytes().all(|b| b.is_ascii_hexdigit());
        let (old, rest) = line.split_at_checked(hex_len).ok_or(ParseError::BadCommand)?;
        let rest = rest.strip_prefix(' ').ok_or(ParseError::BadCommand)?;
        let (new, rest) = rest.split_at_checked(hex_len).ok_or(ParseError::BadCommand)?;
        let refname = rest.strip_prefix(' ').ok_or(ParseError::BadCommand)?;
        let ruled_out = match hex_len {
            40 => self.shallow_rules_out_sha1,
            64 => self.shallow_rules_out_sha256,
            _ => true,
        };
        if ruled_out || !is_oid(old) || !is_oid(new) || refname.is_empty() {
            return Err(ParseError::BadCommand);
        }
        self.commands.push(Command {
            old: old.to_ascii_lowercase(),
            new: new.to_ascii_lowercase(),
            refname: refname.to_owned(),
        });
        Ok(())
    }
}

/// Parse the command list from the start of a receive-pack request body. `Ok(None)`: more bytes needed.
pub fn parse(buf: &[u8]) -> Result<Option<PushRequest>, ParseError> {
    CommandReader::new().read(buf)
}

/// Why one ref update is refused; `None` when it is allowed.
pub fn judge(command: &Command, prefix: &str) -> Option<&'static str> {
    let is_zero = |s: &str| s.bytes().all(|b| b == b'0');
    if command.refname.starts_with("refs/tags/") {
        Some("tags cannot be pushed through mint")
    } else if !command.refname.starts_with("refs/heads/") {
        Some("only branches can be pushed through mint")
    } else if let Some(reason) = branch_refusal(&command.refname["refs/heads/".len()..], prefix) {
        Some(reason)
    } else if is_zero(&command.new) {
        Some("deleting branches is not allowed through mint")
    } else {
        None
    }
}

/// Judge a whole push: if any ref is refused, every ref is (nothing of it reaches GitHub).
/// Returns the `(ref, reason)` of each command, or `None` when all are allowed.
pub fn refusals(commands: &[Command], prefix: &str) -> Option<Vec<(String, String)>> {
    let reasons: Vec<Option<&str>> = commands.iter().map(|c| judge(c, prefix)).collect();
    let first_refused = commands
        .iter()
        .zip(&reasons)
        .find_map(|(c, r)| r.map(|_| c.refname.clone()))?;
    Some(
        commands
            .iter()
            .zip(reasons)
            .map(|(c, reason)| {
                let reason = match reason {
                    Some(r) => format!("{r}: only refs/heads/{prefix}* may be created or updated"),
                    None => format!("not pushed: {first_refused} in the same push was refused"),
                };
                (c.refname.clone(), reason)
            })
            .collect(),
    )
}

/// One pkt-line; `payload` is ours and always within the limit.
fn pkt(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    gix_packetline::blocking_io::encode::data_to_write(payload, &mut out)
        .expect("writing a line under 65516 bytes to memory cannot fail");
    out
}

/// The body of a receive-pack answer refusing every command, shaped by what the client asked for.
pub fn refusal_body(request: &PushRequest, refused: &[(String, String)]) -> Vec<u8> {
    let has = |cap: &str| request.capabilities.iter().any(|c| c == cap);
    let mut report = Vec::new();
    if has("report-status") || has("report-status-v2") {
        report.extend(pkt(b"unpack ok\n"));
        for (refname, reason) in refused {
            report.extend(pkt(format!("ng {refname} {reason}\n").as_bytes()));
        }
        report.extend_from_slice(b"0000");
    }
    if !(has("side-band-64k") || has("side-band")) {
        return report;
    }
    let mut out = Vec::new();
    let message = format!(
        "mint: push refused; nothing was sent to GitHub. {}\n",
        refused
            .first()
            .map(|(r, why)| format!("{r}: {why}"))
            .unwrap_or_default()
    );
    let mut band = |number: u8, data: &[u8]| {
        // 1000 bytes a packet stays within both side-band (1000) and side-band-64k limits.
        for chunk in data.chunks(995) {
            let mut payload = vec![number];
            payload.extend_from_slice(chunk);
            out.extend(pkt(&payload));
        }
    };
    band(2, message.as_bytes());
    band(1, &report);
    out.extend_from_slice(b"0000");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shallow_id_fixes_the_format_the_commands_must_share() {
        // From the fuzz target: a 40-digit shallow id, then 64-digit command ids. git dies on it in a SHA-1
        // repository (the command) and in a SHA-256 one (the shallow line); mint refuses it too.
        let shallow = format!("shallow {}\n", "1".repeat(40));
        let command = format!(
            "{} {} refs/heads/adagent/z\0report-status\n",
            "0".repeat(64),
            "a".repeat(64)
        );
        let body = format!(
            "{:04x}{shallow}{:04x}{command}0000",
            shallow.len() + 4,
            command.len() + 4
        );
        assert!(matches!(parse(body.as_bytes()), Err(ParseError::BadCommand)));
        let command = format!(
            "{} {} refs/heads/adagent/z\0report-status\n",
            "0".repeat(40),
            "a".repeat(40)
        );
        let body = format!(
            "{:04x}{shallow}{:04x}{command}0000",
            shallow.len() + 4,
            command.len() + 4
        );
        assert!(matches!(parse(body.as_bytes()), Ok(Some(_))));
    }

    #[test]
    fn a_length_that_is_not_four_hex_digits_is_refused_as_git_refuses_it() {
        for prefix in [" 00b", "+00a", "00 a", "0x1a"] {
            let body = format!("{prefix}{}", "0".repeat(200));
            assert!(
                matches!(
                    CommandReader::new().read(body.as_bytes()),
                    Err(ParseError::NotPktLine(_))
                ),
                "{prefix:?}"
            );
        }
    }

    use super::*;

    const ZERO: &str = "0000000000000000000000000000000000000000";
    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";

    fn request(commands: &[(&str, &str, &str)], caps: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (old, new, refname)) in commands.iter().enumerate() {
            let line = if i == 0 {
                format!("{old} {new} {refname}\0{caps}\n")
            } else {
                format!("{old} {new} {refname}\n")
            };
            out.extend(pkt(line.as_bytes()));
        }
        out.extend_from_slice(b"0000PACK...");
        out
    }

    #[test]
    fn parses_commands_and_capabilities_and_waits_for_more_bytes() {
        let body = request(
            &[(ZERO, A, "refs/heads/adagent/x"), (A, B, "refs/heads/adagent/y")],
            "report-status side-band-64k",
        );
        let parsed = parse(&body).expect("parses").expect("complete");
        assert_eq!(parsed.commands.len(), 2);
        assert_eq!(parsed.commands[1].refname, "refs/heads/adagent/y");
        assert_eq!(parsed.capabilities, ["report-status", "side-band-64k"]);
        assert_eq!(&body[parsed.consumed..], b"PACK...");
        for cut in 0..parsed.consumed {
            assert_eq!(parse(&body[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(matches!(parse(b"zzzz"), Err(ParseError::NotPktLine(_))));
        assert_eq!(parse(&pkt(b"not a command\n")), Err(ParseError::BadCommand));
    }

    #[test]
    fn allows_only_creations_and_updates_under_the_prefix() {
        let cmd = |old: &str, new: &str, r: &str| Command {
            old: old.into(),
            new: new.into(),
            refname: r.into(),
        };
        assert_eq!(judge(&cmd(ZERO, A, "refs/heads/adagent/fix-1"), "adagent/"), None);
        assert_eq!(judge(&cmd(A, B, "refs/heads/adagent/fix-1"), "adagent/"), None);
        for (c, why) in [
            (cmd(A, B, "refs/heads/main"), "outside"),
            (cmd(ZERO, A, "refs/heads/adagent/"), "outside"),
            (cmd(ZERO, A, "refs/heads/adagentx"), "outside"),
            (cmd(ZERO, A, "refs/tags/v1"), "tags"),
            (cmd(ZERO, A, "refs/notes/commits"), "only branches"),
            (cmd(A, ZERO, "refs/heads/adagent/x"), "deleting"),
            (cmd(ZERO, A, "refs/heads/adagent/a..b"), "valid"),
            (cmd(ZERO, A, "refs/heads/adagent/x.lock"), "valid"),
        ] {
            let reason = judge(&c, "adagent/").expect("refused");
            assert!(reason.contains(why), "{c:?}: {reason}");
        }
    }

    #[test]
    fn one_refused_ref_refuses_the_whole_push_with_a_report_git_understands() {
        let body = request(
            &[(ZERO, A, "refs/heads/adagent/ok"), (A, B, "refs/heads/main")],
            "report-status side-band-64k",
        );
        let parsed = parse(&body).expect("parses").expect("complete");
        let refused = refusals(&parsed.commands, "adagent/").expect("refused");
        assert!(refused[0].1.contains("refs/heads/main in the same push was refused"));
        assert!(refused[1].1.starts_with("outside the agent's branches"));
        let answer = refusal_body(&parsed, &refused);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("\u{2}mint: push refused"), "{text}");
        assert!(text.contains("ng refs/heads/main outside"), "{text}");
        assert!(text.ends_with("0000"));
        assert_eq!(refusals(&parsed.commands[..1], "adagent/"), None);
    }

    #[test]
    fn a_plus_in_a_length_or_a_line_over_65520_bytes_is_refused_as_git_refuses_it() {
        let command = format!("{ZERO} {A} refs/heads/adagent/x\0report-status\n");
        let plus = format!("+{:03x}{command}0000", command.len() + 4);
        assert!(
            matches!(parse(plus.as_bytes()), Err(ParseError::NotPktLine(_))),
            "{plus}"
        );
        // A valid command in a line of 65521 bytes: one over the limit.
        let head = format!("{ZERO} {A} refs/heads/adagent/");
        let line = format!("{head}{}\n", "x".repeat(65521 - 4 - head.len() - 1));
        let mut long = format!("{:04x}", line.len() + 4).into_bytes();
        long.extend_from_slice(line.as_bytes());
        long.extend_from_slice(b"0000");
        assert_eq!(&long[..4], b"fff1");
        assert!(matches!(parse(&long), Err(ParseError::NotPktLine(_))));
        // Uppercase hex is what git's own reader accepts too; ids come out lowercase.
        let upper = format!("{ZERO} {} refs/heads/adagent/x\n", "ABCDEF0123".repeat(4));
        let parsed = parse(&[pkt(upper.as_bytes()), b"0000".to_vec()].concat())
            .expect("parses")
            .expect("complete");
        assert_eq!(parsed.commands[0].new, "abcdef0123".repeat(4));
        for special in [&b"0001"[..], b"0002"] {
            assert_eq!(parse(special), Err(ParseError::UnexpectedSpecial));
        }
        assert!(
            matches!(parse(b"0004"), Err(ParseError::NotPktLine(_))),
            "an empty line"
        );
    }

    /// Issue 17 item 5: 1 MiB of `shallow` lines trickled in small frames cost 6 s of CPU when every frame
    /// re-parsed the whole buffer. Each byte is now looked at once, plus a length prefix per frame.
    #[test]
    fn a_trickled_mebibyte_of_shallow_lines_is_parsed_once() {
        let shallow = pkt(format!("shallow {A}\n").as_bytes());
        let mut body = Vec::new();
        while body.len() + shallow.len() < MAX_COMMANDS_BYTES - 1024 {
            body.extend_from_slice(&shallow);
        }
        let lines = body.len() / shallow.len();
        body.extend(request(&[(ZERO, A, "refs/heads/adagent/x")], "report-status"));
        let total = body.len();
        let mut reader = CommandReader::new();
        let mut frames = 0;
        let mut parsed = None;
        for end in (7..total).step_by(7).chain([total]) {
            frames += 1;
            if let Some(done) = reader.read(&body[..end]).expect("parses") {
                parsed = Some(done);
                break;
            }
        }
        let parsed = parsed.expect("complete");
        assert!(lines > 19_000, "{lines} shallow lines");
        assert_eq!(parsed.commands.len(), 1);
        assert_eq!(&body[parsed.consumed..], b"PACK...");
        let examined = reader.examined();
        assert!(
            examined <= parsed.consumed + 4 * frames,
            "{examined} bytes examined for {} bytes in {frames} frames",
            parsed.consumed
        );
    }

    #[test]
    fn more_than_a_mebibyte_of_command_list_is_refused() {
        let shallow = pkt(format!("shallow {A}\n").as_bytes());
        let body = shallow.repeat(MAX_COMMANDS_BYTES / shallow.len() + 2);
        assert_eq!(parse(&body), Err(ParseError::TooLarge));
    }
}
