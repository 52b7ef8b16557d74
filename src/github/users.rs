//! Users: the bot's own user, whose id makes the noreply address GitHub attributes the bot's
//! commits by (`<id>+<slug>[bot]@users.noreply.github.com`; the bot user's id is not the app's
//! id). It is asked of `GET /users/{login}` once per process and then remembered: a user's id
//! never changes.

use serde::Deserialize;

use super::app::GithubApp;
use super::repo::RepoClient;
use super::GithubError;

/// A GitHub account: its login and id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Account {
    pub login: String,
    pub id: u64,
}

impl Account {
    /// The address GitHub links commits to this account by.
    pub fn noreply_email(&self) -> String {
        noreply_email(Some(self.id), &self.login)
    }
}

/// `<id>+<login>@users.noreply.github.com`, or without the id when it is not known.
pub fn noreply_email(id: Option<u64>, login: &str) -> String {
    match id {
        Some(id) => format!("{id}+{login}@users.noreply.github.com"),
        None => format!("{login}@users.noreply.github.com"),
    }
}

impl RepoClient {
    /// `GET /users/{login}`.
    pub async fn user(&self, login: &str) -> Result<Account, GithubError> {
        let url = self.app().inner.transport.url(&["users", login])?;
        self.get(url).await
    }
}

impl GithubApp {
    /// The bot user, `<slug>[bot]`, with its id (asked once, through `via`, then remembered).
    pub async fn bot_user(&self, via: &RepoClient) -> Result<Account, GithubError> {
        self.inner
            .bot_user
            .get_or_try_init(|| async {
                let login = self.bot_login().await?;
                via.user(&login).await
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noreply_address_carries_the_user_id() {
        let bot = Account {
            login: "backspace[bot]".into(),
            id: 41_898_282,
        };
        assert_eq!(
            bot.noreply_email(),
            "41898282+backspace[bot]@users.noreply.github.com"
        );
        assert_eq!(
            noreply_email(None, "alice"),
            "alice@users.noreply.github.com"
        );
    }
}
