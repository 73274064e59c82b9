//! The mediated mode's push policy: read a receive-pack request's command list before anything goes to
//! GitHub, allow only creations and fast updates of `refs/heads/<prefix>…`, and answer a refusal in git's
//! own protocol (`report-status` with `ng <ref> <reason>`, plus a side-band message) so `git push` prints why.

use mint_api::policy::branch_refusal;

/// The command list (and any shallow lines) of a push is a few KiB at most; more is not a push.
pub const MAX_COMMANDS_BYTES: usize = 1024 * 1024;

/// One ref update a client asks for.
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
    #[error("not a git pkt-line stream")]
    NotPktLine,
    #[error("the command list is over {MAX_COMMANDS_BYTES} bytes")]
    TooLarge,
    #[error("push certificates are not supported through mint")]
    PushCert,
    #[error("malformed ref update command")]
    BadCommand,
}

/// Parse the command list from the start of a receive-pack request body. `Ok(None)`: more bytes needed.
pub fn parse(buf: &[u8]) -> Result<Option<PushRequest>, ParseError> {
    let mut pos = 0;
    let mut commands = Vec::new();
    let mut capabilities = Vec::new();
    loop {
        if pos > MAX_COMMANDS_BYTES {
            return Err(ParseError::TooLarge);
        }
        let Some(header) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        let len = std::str::from_utf8(header)
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or(ParseError::NotPktLine)?;
        if len == 0 {
            return Ok(Some(PushRequest {
                commands,
                capabilities,
                consumed: pos + 4,
            }));
        }
        if len < 4 {
            return Err(ParseError::NotPktLine);
        }
        let Some(payload) = buf.get(pos + 4..pos + len) else {
            return Ok(None);
        };
        pos += len;
        let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        if payload.starts_with(b"shallow ") {
            continue;
        }
        if payload.starts_with(b"push-cert") {
            return Err(ParseError::PushCert);
        }
        let (line, caps) = match payload.iter().position(|&b| b == 0) {
            Some(nul) => (&payload[..nul], Some(&payload[nul + 1..])),
            None => (payload, None),
        };
        if let Some(caps) = caps
            && commands.is_empty()
        {
            capabilities = String::from_utf8_lossy(caps).split(' ').map(str::to_owned).collect();
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::BadCommand)?;
        let mut parts = line.splitn(3, ' ');
        let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ParseError::BadCommand);
        };
        let is_oid = |s: &str| matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_oid(old) || !is_oid(new) || refname.is_empty() {
            return Err(ParseError::BadCommand);
        }
        commands.push(Command {
            old: old.to_owned(),
            new: new.to_owned(),
            refname: refname.to_owned(),
        });
    }
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

fn pkt(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{:04x}", payload.len() + 4).into_bytes();
    out.extend_from_slice(payload);
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
        assert_eq!(parse(b"zzzz"), Err(ParseError::NotPktLine));
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
}
