//! Installations changing at run time — installed, narrowed or widened, suspended, uninstalled, requested and
//! approved — each change sending the webhook GitHub sends for it.

use serde_json::{Value, json};

use crate::server::{account_json_typed, installation_json, repo_id};
use crate::state::{Installation, InstallationInfo, InstallationRequest, Suspension};
use crate::{FakeHub, InstallationConfig, RepositorySelection};

impl FakeHub {
    /// Every installation, deleted ones included, in creation order.
    pub fn installations(&self) -> Vec<InstallationInfo> {
        let state = self.state();
        state
            .installations
            .iter()
            .map(|i| InstallationInfo {
                id: i.config.id,
                account: i.config.account.clone(),
                repository_selection: i.selection,
                repositories: i.config.repositories.clone(),
                permissions: i.config.permissions.clone(),
                dynamic: i.dynamic,
                suspended: state.suspended.contains_key(&i.config.id),
                deleted: state.uninstalled.contains(&i.config.id),
            })
            .collect()
    }

    /// Install the App on `account` (as its owner would on the install page) and send `installation`
    /// `created`. `repositories` is used for [`RepositorySelection::Selected`] only; the bare repositories are
    /// created if missing.
    pub fn install(&self, account: &str, selection: RepositorySelection, repositories: &[&str]) -> anyhow::Result<u64> {
        let repositories: Vec<String> = repositories.iter().map(|r| (*r).to_owned()).collect();
        let sender = self.default_sender(account);
        self.create_installation(account, selection, &repositories, &sender, None)
    }

    /// Change which repositories an installation reaches; sends `installation_repositories` `added` and/or
    /// `removed`.
    pub fn set_selection(
        &self,
        installation_id: u64,
        selection: RepositorySelection,
        repositories: &[&str],
    ) -> anyhow::Result<()> {
        let repositories: Vec<String> = repositories.iter().map(|r| (*r).to_owned()).collect();
        self.set_selection_by(installation_id, selection, &repositories, None)
    }

    /// Lift a suspension; sends `installation` `unsuspend`.
    pub fn unsuspend(&self, installation_id: u64) {
        self.unsuspend_by(installation_id, None);
    }

    /// `requester` (a member of `account`) asks its owners to install the App. Pending requests from the same
    /// person for the same account are replaced, as on GitHub.
    pub fn request_installation(
        &self,
        account: &str,
        requester: &str,
        selection: RepositorySelection,
        repositories: &[&str],
    ) -> anyhow::Result<u64> {
        let repositories: Vec<String> = repositories.iter().map(|r| (*r).to_owned()).collect();
        self.record_request(account, requester, selection, &repositories)
    }

    /// An owner approves a request: the installation is created with the requested repositories and
    /// `installation` `created` names the `requester`. `approver` defaults to the account's first owner.
    pub fn approve_installation_request(&self, request_id: u64, approver: Option<&str>) -> anyhow::Result<u64> {
        let request = self
            .state()
            .install_requests
            .iter()
            .find(|r| r.id == request_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("installation request {request_id} not found"))?;
        if let Some(id) = request.approved_installation {
            anyhow::bail!("installation request {request_id} was already approved (installation {id})");
        }
        let approver = match approver {
            Some(login)
                if self
                    .access(login, &request.account)
                    .is_some_and(crate::accounts::Access::is_owner) =>
            {
                login.to_owned()
            }
            Some(login) => anyhow::bail!(
                "{login} cannot approve installation requests for {}: only its owners can",
                request.account
            ),
            None => self.default_sender(&request.account),
        };
        let id = self.create_installation(
            &request.account,
            request.repository_selection,
            &request.repositories,
            &approver,
            Some(&request.requester),
        )?;
        if let Some(r) = self.state().install_requests.iter_mut().find(|r| r.id == request_id) {
            r.approved_installation = Some(id);
        }
        Ok(id)
    }

    /// Every installation request, approved ones included.
    pub fn installation_requests(&self) -> Vec<InstallationRequest> {
        self.state().install_requests.clone()
    }

    /// A live (not deleted) installation on `account`.
    pub(crate) fn installation_on(&self, account: &str) -> Option<u64> {
        let state = self.state();
        state
            .installations
            .iter()
            .find(|i| i.config.account.eq_ignore_ascii_case(account) && !state.uninstalled.contains(&i.config.id))
            .map(|i| i.config.id)
    }

    pub(crate) fn selection_of(&self, installation_id: u64) -> RepositorySelection {
        self.state()
            .installations
            .iter()
            .find(|i| i.config.id == installation_id)
            .map_or(RepositorySelection::Selected, |i| i.selection)
    }

    /// The repositories a selection names on `account`, spelled as configured; all of them for `All`.
    pub(crate) fn resolve_selection(
        &self,
        account: &str,
        selection: RepositorySelection,
        asked: &[String],
    ) -> anyhow::Result<Vec<String>> {
        let available = self.account_repositories(account);
        if selection == RepositorySelection::All {
            return Ok(available);
        }
        let mut chosen = Vec::new();
        for name in asked {
            let found = available
                .iter()
                .find(|r| r.eq_ignore_ascii_case(name))
                .ok_or_else(|| anyhow::anyhow!("{account} has no repository {name:?}"))?;
            if !chosen.contains(found) {
                chosen.push(found.clone());
            }
        }
        anyhow::ensure!(
            !chosen.is_empty(),
            "choose at least one repository of {account}, or all of them"
        );
        Ok(chosen)
    }

    fn ensure_repos(&self, account: &str, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            if !self.repo_path(account, name).exists() {
                self.create_repo(account, name)?;
            }
        }
        Ok(())
    }

    pub(crate) fn create_installation(
        &self,
        account: &str,
        selection: RepositorySelection,
        asked: &[String],
        sender: &str,
        requester: Option<&str>,
    ) -> anyhow::Result<u64> {
        let account = self.account(account).ok_or_else(|| {
            anyhow::anyhow!(
                "account {account:?} is not known to fakehub: add a user, an org or its repositories to the Config"
            )
        })?;
        let repositories = self.resolve_selection(&account, selection, asked)?;
        self.ensure_repos(&account, &repositories)?;
        if let Some(existing) = self.installation_on(&account) {
            anyhow::bail!("the App is already installed on {account} (installation {existing})");
        }
        let now = self.now();
        let mut state = self.state();
        let id = state.next_installation_id;
        state.next_installation_id += 1;
        state.installations.push(Installation {
            config: InstallationConfig {
                id,
                account: account.clone(),
                repositories: repositories.clone(),
                permissions: self.config().app_permissions.clone(),
            },
            selection,
            dynamic: true,
            created_at: now,
        });
        drop(state);
        tracing::info!(installation = id, %account, selection = selection.as_str(), "installed");
        let mut payload = json!({
            "action": "created",
            "installation": self.installation_payload(id),
            "repositories": repository_stubs(&account, &repositories),
            "sender": self.user_json(sender),
        });
        if let Some(requester) = requester {
            payload["requester"] = self.user_json(requester);
        }
        self.send_webhook("installation", Some(id), &payload);
        Ok(id)
    }

    pub(crate) fn record_request(
        &self,
        account: &str,
        requester: &str,
        selection: RepositorySelection,
        asked: &[String],
    ) -> anyhow::Result<u64> {
        let account = self
            .account(account)
            .ok_or_else(|| anyhow::anyhow!("account {account:?} is not known to fakehub"))?;
        let requester = self
            .user(requester)
            .ok_or_else(|| anyhow::anyhow!("{requester:?} is not a fakehub user"))?
            .login
            .clone();
        anyhow::ensure!(
            self.access(&requester, &account).is_some(),
            "{requester} is not a member of {account}"
        );
        let repositories = self.resolve_selection(&account, selection, asked)?;
        let now = self.now();
        let mut state = self.state();
        state
            .install_requests
            .retain(|r| r.approved_installation.is_some() || !(r.account == account && r.requester == requester));
        let id = state.install_requests.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        state.install_requests.push(InstallationRequest {
            id,
            account,
            requester,
            repository_selection: selection,
            repositories,
            created_at: now,
            approved_installation: None,
        });
        Ok(id)
    }

    pub(crate) fn set_selection_by(
        &self,
        installation_id: u64,
        selection: RepositorySelection,
        asked: &[String],
        by: Option<&str>,
    ) -> anyhow::Result<()> {
        let installation = self
            .installation(installation_id)
            .ok_or_else(|| anyhow::anyhow!("installation {installation_id} not found (or uninstalled)"))?;
        let account = installation.account.clone();
        let repositories = self.resolve_selection(&account, selection, asked)?;
        self.ensure_repos(&account, &repositories)?;
        let old = &installation.repositories;
        let added: Vec<String> = repositories.iter().filter(|r| !old.contains(r)).cloned().collect();
        let removed: Vec<String> = old.iter().filter(|r| !repositories.contains(r)).cloned().collect();
        if let Some(i) = self
            .state()
            .installations
            .iter_mut()
            .find(|i| i.config.id == installation_id)
        {
            i.selection = selection;
            i.config.repositories.clone_from(&repositories);
        }
        let sender = by.map_or_else(|| self.default_sender(&account), ToOwned::to_owned);
        for (action, changed) in [("added", &added), ("removed", &removed)] {
            if changed.is_empty() {
                continue;
            }
            let (repositories_added, repositories_removed) = if action == "added" {
                (repository_stubs(&account, changed), json!([]))
            } else {
                (json!([]), repository_stubs(&account, changed))
            };
            let payload = json!({
                "action": action,
                "installation": self.installation_payload(installation_id),
                "repository_selection": selection.as_str(),
                "repositories_added": repositories_added,
                "repositories_removed": repositories_removed,
                "requester": null,
                "sender": self.user_json(&sender),
            });
            self.send_webhook("installation_repositories", Some(installation_id), &payload);
        }
        Ok(())
    }

    pub(crate) fn suspend_by(&self, installation_id: u64, by: Option<&str>) {
        let Some(installation) = self.installation(installation_id) else {
            // Unknown ids were accepted before installations could change; keep accepting them.
            let now = self.now();
            self.state().suspended.entry(installation_id).or_insert(Suspension {
                by: String::new(),
                at: now,
            });
            return;
        };
        let by = by.map_or_else(|| self.default_sender(&installation.account), ToOwned::to_owned);
        let now = self.now();
        let newly = {
            let mut state = self.state();
            let newly = !state.suspended.contains_key(&installation_id);
            state.suspended.entry(installation_id).or_insert(Suspension {
                by: by.clone(),
                at: now,
            });
            newly
        };
        if newly {
            let payload = json!({
                "action": "suspend",
                "installation": self.installation_payload(installation_id),
                "sender": self.user_json(&by),
            });
            self.send_webhook("installation", Some(installation_id), &payload);
        }
    }

    pub(crate) fn unsuspend_by(&self, installation_id: u64, by: Option<&str>) {
        let lifted = self.state().suspended.remove(&installation_id).is_some();
        let Some(installation) = self.installation(installation_id) else {
            return;
        };
        if lifted {
            let by = by.map_or_else(|| self.default_sender(&installation.account), ToOwned::to_owned);
            let payload = json!({
                "action": "unsuspend",
                "installation": self.installation_payload(installation_id),
                "sender": self.user_json(&by),
            });
            self.send_webhook("installation", Some(installation_id), &payload);
        }
    }

    pub(crate) fn uninstall_by(&self, installation_id: u64, by: Option<&str>) {
        let installation = self.installation(installation_id);
        let payload = installation.as_ref().map(|i| {
            let by = by.map_or_else(|| self.default_sender(&i.account), ToOwned::to_owned);
            json!({
                "action": "deleted",
                "installation": self.installation_payload(installation_id),
                "repositories": repository_stubs(&i.account, &i.repositories),
                "sender": self.user_json(&by),
            })
        });
        self.state().uninstalled.insert(installation_id);
        if let Some(payload) = payload {
            tracing::info!(installation = installation_id, "uninstalled");
            self.send_webhook("installation", Some(installation_id), &payload);
        }
    }

    /// The installation as a webhook carries it (the REST shape).
    fn installation_payload(&self, installation_id: u64) -> Value {
        let config = self
            .state()
            .installations
            .iter()
            .find(|i| i.config.id == installation_id)
            .map(|i| i.config.clone());
        config.map_or(Value::Null, |c| installation_json(self, &c))
    }

    /// A person, as `sender` and `requester` carry them.
    pub(crate) fn user_json(&self, login: &str) -> Value {
        let login = self.user(login).map_or(login, |u| u.login.as_str());
        account_json_typed(login, "User")
    }
}

/// The short repository objects in installation webhooks.
fn repository_stubs(owner: &str, names: &[String]) -> Value {
    use base64::Engine;
    names
        .iter()
        .map(|name| {
            let id = repo_id(owner, name);
            json!({
                "id": id,
                "node_id": format!("R_{}", base64::engine::general_purpose::STANDARD.encode(id.to_string())),
                "name": name,
                "full_name": format!("{owner}/{name}"),
                "private": true,
            })
        })
        .collect()
}
