use secrecy::{ExposeSecret, SecretString};

/// A username and token for one HTTP transport. `Debug` never shows the token.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    /// gix's `Account` holds the password in a plain `String`, and its derived `Debug` prints it; gix's
    /// transport takes nothing else. So build one only to hand it straight to gix (as its identity), and
    /// never keep, log or `{:?}` one: the token's own home is `password`, a `SecretString`.
    pub(crate) fn to_account(&self) -> gix::sec::identity::Account {
        gix::sec::identity::Account {
            username: self.username.clone(),
            password: self.password.expose_secret().to_owned(),
            oauth_refresh_token: None,
        }
    }
}

/// Where credentials come from. `get(false)` may return a cached token; `get(true)` is asked after the
/// remote refused the previous one, and must return a fresh one (mint tells mintd to erase the old token).
pub trait CredentialSource {
    fn get(&mut self, refused_previous: bool) -> Result<Credentials, String>;
}

impl<F: FnMut(bool) -> Result<Credentials, String>> CredentialSource for F {
    fn get(&mut self, refused_previous: bool) -> Result<Credentials, String> {
        self(refused_previous)
    }
}

/// The `authenticate` function gix's handshake calls after a 401: hands out a fresh token once.
pub(crate) fn authenticate_fn<'a>(
    source: &'a mut (dyn CredentialSource + 'a),
    refused_previous: bool,
) -> impl FnMut(gix::credentials::helper::Action) -> gix::Result<Option<gix::credentials::protocol::Outcome>> + 'a {
    let mut refused = refused_previous;
    move |action| match action {
        gix::credentials::helper::Action::Get(context) => {
            let credentials = source
                .get(refused)
                .map_err(|e| gix::Error::from_error(std::io::Error::other(e)))?;
            refused = true;
            Ok(Some(gix::credentials::protocol::Outcome {
                identity: credentials.to_account(),
                next: context.into(),
            }))
        }
        // mintd owns the token's lifetime: nothing to store, and a refused token is replaced on the next get.
        gix::credentials::helper::Action::Store(_) | gix::credentials::helper::Action::Erase(_) => Ok(None),
    }
}
