//! The error a daemon's settings fail with: the flag, its environment variable and why (exit 64).

/// A setting that cannot work, named with its flag and environment variable.
#[derive(Debug, thiserror::Error)]
#[error("--{flag} (or {env}): {reason}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub env: &'static str,
    pub reason: String,
}

/// `--flag` (or `ENV`) cannot work, because of `reason`.
pub fn invalid(flag: &'static str, env: &'static str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        flag,
        env,
        reason: reason.to_string(),
    }
}
