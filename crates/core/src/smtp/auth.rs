//! AUTH: XOAUTH2 with a token, PLAIN or LOGIN with a password; only over TLS, and only a
//! 235 counts as authenticated (a 334 only where the mechanism continues).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

use super::reply::{refused, Step};
use super::session::SmtpConnection;
use super::xoauth2::{decode_challenge, xoauth2_command, xoauth2_initial_response};
use crate::error::{Error, ErrorKind, Result, SmtpReply};
use crate::hints::Hint;
use crate::secret::Secret;

/// The credentials a connection authenticates with, as they are at this moment.
pub enum Login<'a> {
    XOAuth2 { user: &'a str, token: &'a Secret },
    Password { user: &'a str, password: &'a Secret },
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpConnection<S> {
    /// AUTH with `login`. Refused credentials are `EAUTH` with the server's reply and a hint.
    pub async fn authenticate(&mut self, login: &Login<'_>) -> Result<()> {
        if !self.encrypted {
            return Err(Error::new(
                ErrorKind::Tls,
                "refusing to authenticate over an unencrypted connection",
            ));
        }
        let outcome = match login {
            Login::XOAuth2 { user, token } => self.auth_xoauth2(user, token).await,
            Login::Password { user, password } => self.auth_password(user, password).await,
        };
        self.sent_secrets.clear();
        outcome
    }

    async fn auth_xoauth2(&mut self, user: &str, token: &Secret) -> Result<()> {
        let step = Step::Auth("AUTH XOAUTH2");
        if !self.capabilities.offers_auth("XOAUTH2") {
            let offered = self.capabilities.auth.join(" ");
            return Err(Error::new(
                ErrorKind::Auth,
                format!("the server does not offer AUTH XOAUTH2 (it offers: {offered})"),
            )
            .with_command(step.command()));
        }
        let initial = xoauth2_initial_response(user, token.expose());
        self.sent_secrets = vec![initial.clone(), Zeroizing::new(token.expose().to_string())];
        let line = xoauth2_command(&initial);
        let reply = self
            .exchange(step, &line, Some("AUTH XOAUTH2 <redacted>"))
            .await?;
        if reply.code != 334 {
            self.judged(step, reply)?;
            return Ok(());
        }
        // A refused XOAUTH2 comes as a 334 challenge carrying a JSON error (Google's way);
        // the client answers with an empty line to receive the final refusal, which keeps
        // its class: a 454 there is as transient as anywhere.
        let details = self.scrub(decode_challenge(&reply.lines.join(" ")));
        let final_reply = self.exchange(step, "", None).await?.to_smtp_reply();
        let err = refused(
            step,
            SmtpReply {
                code: 535,
                ..final_reply.clone()
            },
        );
        let message = format!("authentication refused: {final_reply}; the server explained: {details}");
        let hint = err
            .hint_data()
            .cloned()
            .unwrap_or_else(|| Hint::render("smtp.token_refused", &Default::default()));
        if !final_reply.is_transient() && !final_reply.is_permanent() {
            // A success after a refusal challenge: the dialogue is out of step.
            self.usable = false;
        }
        Err(Error::new(ErrorKind::Auth, message)
            .with_reply(step.command(), final_reply)
            .with_hint(hint))
    }

    async fn auth_password(&mut self, user: &str, password: &Secret) -> Result<()> {
        if self.capabilities.offers_auth("PLAIN") {
            let step = Step::Auth("AUTH PLAIN");
            let credentials = Zeroizing::new(format!("\0{user}\0{}", password.expose()));
            let encoded = Zeroizing::new(STANDARD.encode(credentials.as_bytes()));
            self.sent_secrets = vec![encoded.clone(), Zeroizing::new(password.expose().to_string())];
            let line = Zeroizing::new(format!("AUTH PLAIN {}", encoded.as_str()));
            self.command(step, &line, Some("AUTH PLAIN <redacted>")).await?;
            return Ok(());
        }
        if self.capabilities.offers_auth("LOGIN") {
            let asks = Step::AuthContinue("AUTH LOGIN");
            self.command(asks, "AUTH LOGIN", None).await?;
            self.command(asks, &STANDARD.encode(user), Some("<username redacted>"))
                .await?;
            let encoded = Zeroizing::new(STANDARD.encode(password.expose()));
            self.sent_secrets = vec![encoded.clone(), Zeroizing::new(password.expose().to_string())];
            self.command(Step::Auth("AUTH LOGIN"), &encoded, Some("<password redacted>"))
                .await?;
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Auth,
            "the server offers neither AUTH PLAIN nor AUTH LOGIN",
        )
        .with_command("AUTH"))
    }
}
