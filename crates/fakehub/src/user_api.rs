//! The REST API a user access token reaches: `/user`, `/user/installations`, and the App's list of installations.
