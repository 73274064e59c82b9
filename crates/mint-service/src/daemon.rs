//! What mintd's and mint-server's `main` share: logs on stderr, stopping on SIGTERM or SIGINT, and a process
//! whose memory (the App key, tokens) other processes of its uid cannot read.

use std::process::ExitCode;

use crate::config::ConfigError;

/// Exit code for a configuration that cannot work (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// The flags, parsed: help and version are printed and exit 0; every real usage error is printed and
/// exits [`EXIT_CONFIG`], like a bad setting.
pub fn parse_args<A: clap::Parser>() -> Result<A, ExitCode> {
    A::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// The settings `program` loaded, or "`program`: invalid configuration: …" on stderr and [`EXIT_CONFIG`].
pub fn loaded<C>(program: &str, config: Result<C, ConfigError>) -> Result<C, ExitCode> {
    config.map_err(|e| {
        eprintln!("{program}: invalid configuration: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

/// How a daemon writes its logs (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). Never a secret: secrets are redacting types.
pub fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves on SIGTERM (how containers are stopped) or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// No core dumps and no ptrace-style access from same-uid processes, so the App key and tokens in memory
/// cannot be read out of the daemon by the code it serves. A failure is logged: the daemon still runs.
pub fn harden() {
    if let Err(e) = try_harden() {
        tracing::warn!(error = %e, "could not make the process non-dumpable; its memory may be readable by its uid");
    }
}

fn try_harden() -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("PR_SET_DUMPABLE: {e}"))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    Ok(())
}

/// The listen backlog mint's servers ask for; the kernel caps it at `net.core.somaxconn` (4096 on current
/// Linux). A fleet of sandboxes connecting at once waits in the kernel's queue: tokio's default, std's 128,
/// dropped the rest of a burst, and each dropped client waited for TCP's one-second SYN retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] (inside a tokio runtime).
///
/// # Errors
/// The address cannot be bound (in use, not this host's, a privileged port).
pub fn listen_tcp(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Lift the open-file limit to what the system allows: for a server whose every client is a connection.
pub fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn leaves_the_process_non_dumpable_without_core_files() {
        super::try_harden().expect("hardens");
        assert!(!nix::sys::prctl::get_dumpable().expect("prctl"));
        let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).expect("rlimit");
        assert_eq!((soft, hard), (0, 0));
    }
}
