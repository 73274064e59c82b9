//! The OAuth web flow for the App's user authorization: sign-in, authorize, code, user access token.

use crate::FakeHub;

impl FakeHub {
    /// The signed-in user a `ghu_` token stands for.
    pub(crate) fn user_of_token(&self, token: &str) -> Option<String> {
        self.state()
            .user_tokens
            .iter()
            .find(|t| t.token == token)
            .map(|t| t.login.clone())
    }
}
