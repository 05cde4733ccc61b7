//! What the doctor checks on the Graph path, before any message: the token (audience
//! Graph, role `Mail.Send`), then `GET /users/{user}`, which needs `User.Read.All` besides
//! `Mail.Send`: an app without it is told so, and the check goes on.

use reqwest::Method;

use super::GraphClient;
use crate::error::{Error, Result};
use crate::oauth::TokenReport;

/// What [`GraphClient::probe`] found.
#[derive(Debug, Clone)]
pub struct GraphProbe {
    /// The token's claims and their problems (wrong audience, no `Mail.Send` role).
    pub token: TokenReport,
    pub mailbox: MailboxCheck,
}

#[derive(Debug, Clone)]
pub enum MailboxCheck {
    /// `GET /users/{user}` answered: the mailbox's user exists. Holds the status line.
    Found(String),
    /// Graph refused the lookup (403): the app lacks `User.Read.All`, which sending does
    /// not need. Holds the message to show.
    NeedsUserReadAll(String),
    /// Another failure (no such user: 404, outage, ...), as the send would report it.
    Failed(Error),
}

impl GraphClient {
    /// Gets a token (an `EOAUTH2` error if the endpoint refuses), reads its claims, then
    /// looks the mailbox up.
    pub async fn probe(&self) -> Result<GraphProbe> {
        let token = self.tokens.token().await?;
        let report = self.tokens.inspect(&token, None);
        let call = self.call("getUser", Method::GET, &[], "application/json", Vec::new(), false);
        let mailbox = match self.execute(call).await {
            Ok(line) => MailboxCheck::Found(line),
            Err(err) if err.http_status() == Some(403) => MailboxCheck::NeedsUserReadAll(format!(
                "Microsoft Graph refused GET /users/{} (403): the app has no User.Read.All permission, which sending does not need; the mailbox could not be checked before sending",
                self.user
            )),
            Err(err) => MailboxCheck::Failed(err),
        };
        Ok(GraphProbe {
            token: report,
            mailbox,
        })
    }
}
