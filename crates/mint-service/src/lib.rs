//! What mint's network services share: the "https, or http only to loopback" rule, where a browser may be
//! sent after signing in, secret files and the settings error. Small and dependency-light by default, so
//! the fuzz targets can build it alone; the `daemon` feature adds what a daemon's `main` needs (logging,
//! signals, hardening).

pub mod config;
#[cfg(feature = "daemon")]
pub mod daemon;
pub mod redirect;
pub mod secret_file;
#[cfg(feature = "daemon")]
pub mod throttle;
mod url_rule;

pub use url_rule::{UrlRuleError, is_loopback, require_https_or_loopback};
