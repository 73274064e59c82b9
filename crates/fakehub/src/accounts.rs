//! Who is who: users, the organisations they belong to, and what each may do with an account's installation.

use crate::{FakeHub, OrgRole, UserConfig};

/// What a user may do on an account (their own, or an organisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Their own account, or an organisation they own: install, change, uninstall.
    Owner,
    /// A member: sees the installation; pushes only with `push`.
    Member { push: bool },
}

impl Access {
    pub(crate) fn is_owner(self) -> bool {
        self == Self::Owner
    }

    pub(crate) fn can_push(self) -> bool {
        matches!(self, Self::Owner | Self::Member { push: true })
    }
}

impl FakeHub {
    pub(crate) fn user(&self, login: &str) -> Option<&UserConfig> {
        self.config().users.iter().find(|u| u.login.eq_ignore_ascii_case(login))
    }

    /// A personal account (a configured user) rather than an organisation.
    pub(crate) fn is_user_account(&self, login: &str) -> bool {
        self.user(login).is_some()
    }

    /// GitHub's `type` of an account.
    pub(crate) fn account_type(&self, login: &str) -> &'static str {
        if self.is_user_account(login) {
            "User"
        } else {
            "Organization"
        }
    }

    /// Every account fakehub knows of, spelled as configured.
    pub(crate) fn accounts(&self) -> Vec<String> {
        let config = self.config();
        let mut all: Vec<String> = config.users.iter().map(|u| u.login.clone()).collect();
        let orgs = config
            .users
            .iter()
            .flat_map(|u| u.orgs.iter().map(|(org, _)| org.clone()));
        let others = config
            .restricted_orgs
            .iter()
            .cloned()
            .chain(config.repositories.keys().cloned())
            .chain(config.installations.iter().map(|i| i.account.clone()));
        for login in orgs.chain(others) {
            if !all.iter().any(|a| a.eq_ignore_ascii_case(&login)) {
                all.push(login);
            }
        }
        all
    }

    /// The account's login as configured, if fakehub knows it.
    pub(crate) fn account(&self, login: &str) -> Option<String> {
        self.accounts().into_iter().find(|a| a.eq_ignore_ascii_case(login))
    }

    /// The account's repositories: those configured for it, and those its static installations name.
    pub(crate) fn account_repositories(&self, account: &str) -> Vec<String> {
        let config = self.config();
        let mut names: Vec<String> = config
            .repositories
            .iter()
            .filter(|(owner, _)| owner.eq_ignore_ascii_case(account))
            .flat_map(|(_, names)| names.iter().cloned())
            .collect();
        for installation in config
            .installations
            .iter()
            .filter(|i| i.account.eq_ignore_ascii_case(account))
        {
            for name in &installation.repositories {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// What `user` may do on `account`; `None` if they have nothing to do with it.
    pub(crate) fn access(&self, user: &str, account: &str) -> Option<Access> {
        let user = self.user(user)?;
        if user.login.eq_ignore_ascii_case(account) {
            return Some(Access::Owner);
        }
        user.orgs
            .iter()
            .find(|(org, _)| org.eq_ignore_ascii_case(account))
            .map(|(_, role)| match role {
                OrgRole::Owner => Access::Owner,
                OrgRole::Member { push } => Access::Member { push: *push },
            })
    }

    /// The accounts `user` can install on or request for: their own, then their organisations.
    pub(crate) fn accounts_of(&self, user: &str) -> Vec<String> {
        let Some(user) = self.user(user) else {
            return Vec::new();
        };
        std::iter::once(user.login.clone())
            .chain(user.orgs.iter().map(|(org, _)| org.clone()))
            .collect()
    }

    /// Whether `user` must ask an owner instead of installing on `account`.
    pub(crate) fn must_request(&self, user: &str, account: &str) -> bool {
        let restricted = self
            .config()
            .restricted_orgs
            .iter()
            .any(|o| o.eq_ignore_ascii_case(account));
        restricted && self.access(user, account) != Some(Access::Owner)
    }

    /// Who GitHub would name as the sender when no signed-in user acted: the account itself if personal,
    /// else its first configured owner, else the account.
    pub(crate) fn default_sender(&self, account: &str) -> String {
        if let Some(user) = self.user(account) {
            return user.login.clone();
        }
        self.config()
            .users
            .iter()
            .find(|u| self.access(&u.login, account) == Some(Access::Owner))
            .map_or_else(|| account.to_owned(), |u| u.login.clone())
    }
}
