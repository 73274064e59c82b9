//! fakehub's web pages: install, installation settings, installation requests, pull requests.

use crate::FakeHub;

impl FakeHub {
    /// `http://127.0.0.1:PORT` once serving.
    pub(crate) fn base_url(&self) -> String {
        self.state()
            .base_url
            .clone()
            .unwrap_or_else(|| "http://fakehub.invalid".to_owned())
    }

    /// The installation's settings page on fakehub.
    pub(crate) fn installation_page_url(&self, account: &str, id: u64) -> String {
        format!("{}{}", self.base_url(), self.installation_page_path(account, id))
    }

    pub(crate) fn installation_page_path(&self, account: &str, id: u64) -> String {
        if self.is_user_account(account) {
            format!("/settings/installations/{id}")
        } else {
            format!("/organizations/{account}/settings/installations/{id}")
        }
    }
}
