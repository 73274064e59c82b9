//! git-credential-mint: the git credential helper that forwards git's requests to mintd and prints its answer.
//!
//! The daemon decides; this program only forwards. It is spawned by git for every network command, so it
//! does the least possible: no async runtime, no argument-parsing framework, one request over the socket.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use mint_api::{Client, MAX_REQUEST_BODY, route};

const USAGE: &str = "\
git-credential-mint: git credential helper backed by mintd

Usage: git-credential-mint [--socket PATH] <get|store|erase>

git runs this for you; configure it with:
    [credential \"https://github.com\"]
        helper = mint
        useHttpPath = true

  get     print a token for the configured repository (nothing for anything else)
  store   accepted and ignored: mintd keeps no credential that git offers
  erase   tell mintd the token failed, so the next get mints a new one

Options:
  --socket PATH   mintd's socket [env: MINT_SOCKET] [default: /run/mint/mint.sock]
  -h, --help      print this help
  -V, --version   print the version
";

enum Action {
    Get,
    Store,
    Erase,
    /// git may add operations; a helper must ignore the ones it does not know.
    Other,
}

/// Run with git's arguments (without the program name) and streams; returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    stdin: &mut impl Read,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> ExitCode {
    let mut socket: Option<PathBuf> = None;
    let mut action = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-h" | "--help" => {
                let _ = stdout.write_all(USAGE.as_bytes());
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                let _ = writeln!(stdout, "git-credential-mint {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--socket" => match args.next() {
                Some(path) => socket = Some(PathBuf::from(path)),
                None => return usage_error(stdout, stderr, "--socket needs a PATH"),
            },
            _ if text.starts_with("--socket=") => {
                socket = Some(PathBuf::from(&text["--socket=".len()..]));
            }
            _ if text.starts_with('-') => return usage_error(stdout, stderr, &format!("unknown option {text}")),
            "get" => action = Some(Action::Get),
            "store" => action = Some(Action::Store),
            "erase" => action = Some(Action::Erase),
            _ => action = Some(Action::Other),
        }
        if action.is_some() {
            // Options come before the action; git appends nothing else, so stop here.
            break;
        }
    }
    let Some(action) = action else {
        return usage_error(stdout, stderr, "missing action (get, store or erase)");
    };
    let request = match read_request(stdin) {
        Ok(r) => r,
        Err(message) => return fail(stdout, stderr, &message),
    };
    let route = match action {
        Action::Get => route::CREDENTIAL_GET,
        Action::Erase => route::CREDENTIAL_ERASE,
        // Nothing to forward: mintd would ignore it anyway, and git need not wait on a round trip.
        Action::Store | Action::Other => return ExitCode::SUCCESS,
    };
    let client = Client::new(mint_api::socket_path(socket));
    match client.request("POST", route, &request) {
        Ok(response) => answer(&response, stdout, stderr),
        Err(e) => fail(stdout, stderr, &e.to_string()),
    }
}

/// Every failure this helper prints ends git's search for a credential: `quit=1` tells git to stop here
/// rather than ask another helper or prompt for a password nobody in a sandbox can type. git reads it
/// whatever the exit code.
fn fail(stdout: &mut impl Write, stderr: &mut impl Write, message: &str) -> ExitCode {
    let _ = writeln!(stderr, "git-credential-mint: {message}");
    let _ = stdout.write_all(b"quit=1\n").and_then(|()| stdout.flush());
    ExitCode::FAILURE
}

fn answer(response: &mint_api::Response, stdout: &mut impl Write, stderr: &mut impl Write) -> ExitCode {
    let reason = response.reason.as_deref().unwrap_or("no reason given");
    match response.status {
        200 => {
            if stdout.write_all(&response.body).and_then(|()| stdout.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        // Not this daemon's repository or host: say nothing, so git asks its next helper.
        204 => ExitCode::SUCCESS,
        400..=499 => fail(stdout, stderr, &format!("mintd refused the request: {reason}")),
        _ => {
            // The request was for our repository but no token could be had: tell the person why. The body
            // holds the reason whole (a broker's words may not be ASCII); the header only its ASCII form.
            let whole = std::str::from_utf8(&response.body)
                .ok()
                .map(str::trim)
                .filter(|body| !body.is_empty() && !body.chars().any(char::is_control));
            fail(stdout, stderr, whole.unwrap_or(reason))
        }
    }
}

/// Read git's request, refusing to ship more than mintd would accept.
fn read_request(stdin: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut request = Vec::with_capacity(512);
    let limit = u64::try_from(MAX_REQUEST_BODY).unwrap_or(u64::MAX) + 1;
    stdin
        .take(limit)
        .read_to_end(&mut request)
        .map_err(|e| format!("reading the request from git failed: {e}"))?;
    if request.len() > MAX_REQUEST_BODY {
        return Err(format!(
            "credential request over {MAX_REQUEST_BODY} bytes refused: git's requests are a few hundred bytes"
        ));
    }
    Ok(request)
}

fn usage_error(stdout: &mut impl Write, stderr: &mut impl Write, message: &str) -> ExitCode {
    let _ = writeln!(
        stderr,
        "git-credential-mint: {message}\nUsage: git-credential-mint [--socket PATH] <get|store|erase>"
    );
    // A misconfigured helper line in a gitconfig must not let git fall through to a prompt either.
    let _ = stdout.write_all(b"quit=1\n").and_then(|()| stdout.flush());
    ExitCode::from(2)
}

/// The binary's entry point.
pub fn main() -> ExitCode {
    run(
        std::env::args_os().skip(1),
        &mut std::io::stdin().lock(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with(args: &[&str], stdin: &[u8]) -> (ExitCode, String, String) {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = run(args.iter().map(OsString::from), &mut &stdin[..], &mut out, &mut err);
        (
            code,
            String::from_utf8_lossy(&out).into(),
            String::from_utf8_lossy(&err).into(),
        )
    }

    #[test]
    fn no_daemon_fails_fast_naming_the_socket() {
        let dir = std::env::temp_dir().join(format!("mint-helper-test-{}", std::process::id()));
        let socket = dir.join("nobody.sock");
        let started = std::time::Instant::now();
        let (code, out, err) = run_with(
            &["--socket", socket.to_str().expect("utf8"), "get"],
            b"protocol=https\nhost=github.com\n",
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(out, "quit=1\n", "git must not fall through to a prompt");
        assert!(err.contains(socket.to_str().expect("utf8")), "{err}");
        assert!(err.contains("mintd is not running there"), "{err}");
    }

    #[test]
    fn store_and_unknown_actions_succeed_silently_without_a_daemon() {
        for action in ["store", "capability"] {
            let (code, out, err) = run_with(&["--socket", "/nonexistent/mint.sock", action], b"password=x\n");
            assert_eq!(code, ExitCode::SUCCESS, "{action}: {err}");
            assert!(out.is_empty() && err.is_empty());
        }
    }

    #[test]
    fn oversized_requests_are_refused_before_sending() {
        let big = vec![b'a'; 8 * 1024 * 1024];
        let (code, out, err) = run_with(&["--socket", "/nonexistent/mint.sock", "get"], &big);
        assert_eq!(code, ExitCode::FAILURE);
        assert_eq!(out, "quit=1\n");
        assert!(err.contains("over 65536 bytes"), "{err}");
    }

    #[test]
    fn a_failure_is_shown_in_full_from_the_body() {
        let failure = |body: &[u8]| {
            let response = mint_api::Response {
                status: 502,
                link: None,
                reason: Some("installation 42 was uninstalled ? reconnect".into()),
                body: body.to_vec(),
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(answer(&response, &mut out, &mut err), ExitCode::FAILURE);
            assert_eq!(out, b"quit=1\n");
            String::from_utf8(err).expect("utf8")
        };
        assert_eq!(
            failure("installation 42 was uninstalled — reconnect\n".as_bytes()),
            "git-credential-mint: installation 42 was uninstalled — reconnect\n"
        );
        // No body, or one a terminal should not get: the header's words instead.
        for body in [&b""[..], b"\xff", b"a\x1b[31mb\n"] {
            assert_eq!(
                failure(body),
                "git-credential-mint: installation 42 was uninstalled ? reconnect\n"
            );
        }
    }

    #[test]
    fn every_failure_it_prints_tells_git_to_quit() {
        // Regression: a refusal (4xx), an unreachable mintd and an unreadable request were printed without
        // quit=1, so git went on to its next helper or a password prompt.
        for status in [400, 403, 404, 500, 502, 503] {
            let response = mint_api::Response {
                status,
                reason: Some("why".into()),
                link: None,
                body: Vec::new(),
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(answer(&response, &mut out, &mut err), ExitCode::FAILURE);
            assert_eq!(out, b"quit=1\n", "{status}");
            assert!(String::from_utf8_lossy(&err).contains("why"), "{status}");
        }
        for (status, body) in [(200, &b"username=x\npassword=y\n"[..]), (204, b"")] {
            let response = mint_api::Response {
                status,
                reason: None,
                link: None,
                body: body.to_vec(),
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(answer(&response, &mut out, &mut err), ExitCode::SUCCESS);
            assert_eq!(out, body, "{status}");
            assert!(err.is_empty());
        }
    }

    #[test]
    fn usage_errors() {
        for args in [&[][..], &["--socket"], &["--bogus", "get"]] {
            let (code, out, err) = run_with(args, b"");
            assert_eq!(code, ExitCode::from(2), "{args:?}");
            assert_eq!(out, "quit=1\n", "{args:?}");
            assert!(err.contains("Usage:"), "{args:?}: {err}");
        }
        let (code, out, _) = run_with(&["--help"], b"");
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(out.contains("helper = mint"));
    }
}
