//! The product's Integrations page and the "GitHub (coding tasks)" card: sign-in and every binding through
//! GitHub's OAuth web flow, server-rendered HTML forms (no JavaScript), POST → 303 → GET, a CSRF token on
//! every state-changing form, and a strict Content-Security-Policy.
//!
//! The Setup URL's `installation_id` is a hint, never trusted: an installation is bound only after GitHub,
//! asked with the user's own token (held for that request only), lists it for this App and shows that the
//! user can push to the chosen repository.

#![allow(
    clippy::result_large_err,
    reason = "handlers return axum Responses as their error: one per request, never in a loop"
)]

use std::time::Duration;

pub mod oauth;
pub mod pages;
pub mod respond;
pub mod session;

pub use crate::site::{LOGIN_BURST, LOGIN_EVERY, Web};
pub use session::{Browser, WebForm};

/// A browser session lasts this long from sign-in.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// An OAuth `state`, and what a user was verified to be able to bind, live this long.
pub const FLOW_TTL: Duration = Duration::from_secs(10 * 60);
/// The browser's cookie: a signed-in session's id, or (before sign-in) a random value that OAuth states are
/// bound to, with no row anywhere. `__Host-`: only this exact origin can set it, over a secure channel.
pub const SESSION_COOKIE: &str = "__Host-mint_session";
/// The card lists open pull requests from these branches: what the product's coding tasks opened.
pub(crate) const AGENT_BRANCH_PREFIX: &str = crate::store::AGENT_BRANCH_PREFIX;
