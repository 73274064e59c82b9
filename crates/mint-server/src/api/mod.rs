//! The JSON API: the orchestrator's routes (admin token) and the broker's (sandbox credential).

pub mod admin;
pub mod token;
