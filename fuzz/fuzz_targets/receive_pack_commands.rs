//! The mediated proxy's push check reads a receive-pack command list as the sandbox sends it. It must read
//! the commands git (and so GitHub) will act on, and nothing else: whenever mint accepts a command list,
//! a reference reader written from git's grammar (gitprotocol-common's pkt-line, gitprotocol-pack's
//! update-requests, as `git receive-pack` reads them in `read_head_info`) reads the same commands from the
//! same bytes; whatever git reads cleanly, mint accepts; and however the bytes are cut into frames, the
//! incremental reader gives the one-shot answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mint_daemon::push_policy::{Command, CommandReader, MAX_COMMANDS_BYTES, ParseError, parse};

/// What `git receive-pack` makes of the start of a request body.
#[derive(Debug, PartialEq)]
enum GitReads {
    /// It waits for more bytes.
    Incomplete,
    /// It dies with a protocol error (nothing is updated).
    Dies,
    /// The command list ended; the commands, the bytes it took, and whether it holds anything mint
    /// refuses on purpose (a push certificate, capabilities after the first line, a delimiter, an empty
    /// ref name) though git reads it.
    Commands { commands: Vec<Command>, consumed: usize, refused_by_mint: bool },
}

fn hex_digit(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// git's reading, for object ids of `hex_len` hex digits.
fn git_reads(data: &[u8], hex_len: usize) -> GitReads {
    let mut pos = 0;
    let mut commands = Vec::new();
    let mut refused_by_mint = false;
    loop {
        let Some(prefix) = data.get(pos..pos + 4) else { return GitReads::Incomplete };
        // pkt-len: four hex digits, either case; nothing else.
        if !prefix.iter().copied().all(hex_digit) {
            return GitReads::Dies;
        }
        let len = usize::from_str_radix(std::str::from_utf8(prefix).expect("hex is ascii"), 16).expect("hex");
        match len {
            0 => {
                return GitReads::Commands { commands, consumed: pos + 4, refused_by_mint };
            }
            // Delimiter and response-end end the list as a flush would (protocol v2 packets).
            1 | 2 => {
                return GitReads::Commands { commands, consumed: pos + 4, refused_by_mint: true };
            }
            3 => return GitReads::Dies,
            // The documented maximum of a pkt-line, length included.
            n if n > 65520 => return GitReads::Dies,
            _ => {}
        }
        let Some(payload) = data.get(pos + 4..pos + len) else { return GitReads::Incomplete };
        pos += len;
        // PACKET_READ_CHOMP_NEWLINE: one trailing newline.
        let payload = payload.strip_suffix(b"\n").unwrap_or(payload);
        if payload.len() > 8 && payload.starts_with(b"shallow ") {
            match payload.get(8..8 + hex_len) {
                Some(id) if id.iter().copied().all(hex_digit) => continue,
                _ => return GitReads::Dies,
            }
        }
        // PACKET_READ_DIE_ON_ERR_PACKET.
        if payload.starts_with(b"ERR ") {
            return GitReads::Dies;
        }
        // The command is read up to the first NUL; capabilities follow it, on whichever line.
        let (line, has_caps) = match payload.iter().position(|&b| b == 0) {
            Some(nul) => (&payload[..nul], true),
            None => (payload, false),
        };
        if has_caps && !commands.is_empty() {
            refused_by_mint = true;
        }
        if line == b"push-cert" {
            return GitReads::Commands { commands, consumed: pos, refused_by_mint: true };
        }
        // queue_command: <old> SP <new> SP <refname>, or die.
        let ok = line.len() >= 2 * hex_len + 2
            && line[..hex_len].iter().copied().all(hex_digit)
            && line[hex_len] == b' '
            && line[hex_len + 1..2 * hex_len + 1].iter().copied().all(hex_digit)
            && line[2 * hex_len + 1] == b' ';
        if !ok {
            return GitReads::Dies;
        }
        let refname = &line[2 * hex_len + 2..];
        if refname.is_empty() {
            refused_by_mint = true;
        }
        let Ok(refname) = std::str::from_utf8(refname) else {
            // git takes any bytes; mint wants UTF-8 (git would refuse such a ref name later anyway).
            refused_by_mint = true;
            continue;
        };
        commands.push(Command {
            old: String::from_utf8_lossy(&line[..hex_len]).to_ascii_lowercase(),
            new: String::from_utf8_lossy(&line[hex_len + 1..2 * hex_len + 1]).to_ascii_lowercase(),
            refname: refname.to_owned(),
        });
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&frame, data)) = input.split_first() else { return };
    let whole = parse(data);

    // However the bytes arrive, the answer is the same.
    let step = usize::from(frame % 64) + 1;
    let mut reader = CommandReader::new();
    let mut trickled = Ok(None);
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        trickled = reader.read(&data[..end]);
        if !matches!(trickled, Ok(None)) {
            break;
        }
    }
    if !data.is_empty() {
        assert_eq!(trickled, whole, "trickled in frames of {step}");
    }

    match &whole {
        Ok(Some(request)) => {
            let hex_len = request.commands.first().map_or(40, |c| c.old.len());
            assert_eq!(
                git_reads(data, hex_len),
                GitReads::Commands { commands: request.commands.clone(), consumed: request.consumed, refused_by_mint: false },
                "mint accepted commands git reads otherwise"
            );
        }
        Ok(None) => {
            // mint reads SHA-1 and SHA-256 ids alike (it does not know the repository's format); git, for
            // one of the two, waits too.
            assert!(
                [40, 64].iter().any(|&hex_len| git_reads(data, hex_len) == GitReads::Incomplete),
                "mint waits where git does not: {:?} / {:?}",
                git_reads(data, 40),
                git_reads(data, 64)
            );
        }
        Err(error) => {
            for hex_len in [40, 64] {
                if let GitReads::Commands { consumed, refused_by_mint: false, commands } = git_reads(data, hex_len) {
                    // Refusing what git reads cleanly is allowed only past the size cap.
                    assert!(
                        matches!(error, ParseError::TooLarge) && consumed > MAX_COMMANDS_BYTES,
                        "mint refused ({error}) what git reads cleanly: {commands:?}"
                    );
                }
            }
        }
    }
});
