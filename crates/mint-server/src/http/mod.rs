//! What every handler shares, below the handlers (`api`, `web`, `webhook`) and above the store and GitHub:
//! the error every failure leaves through, and the extractors.

pub mod error;
pub mod extract;

pub use error::{ApiError, body_error, github_failure, json, not_now, sandbox_refused};
pub use extract::{Admin, Id, Input, MAX_BODY, MetricsReader, Nothing, credential_hash, declared_length};
