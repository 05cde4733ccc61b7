//! Opens authenticated connections: connect, TLS, token (or password), AUTH. Shared by the
//! one-connection-per-message path and the pool, so both authenticate the same way.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Auth, TransportConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::exchange::required_role;
use crate::graph::GraphClient;
use crate::hints::Hint;
use crate::log::Logger;
use crate::message::OutgoingMessage;
use crate::oauth::{AccessToken, TokenProvider, TokenReport, FIXED_TOKEN_HINT};
use crate::panic::{contained, panic_error, Panicked};
use crate::smtp::{Delivery, Login, SmtpConnection};

pub struct Connector {
    pub(crate) config: TransportConfig,
    /// Built once per transport, shared by every SMTP connection.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) logger: Logger,
    /// One per transport, shared by every send and connection (`None` without OAuth2).
    pub(crate) tokens: Option<Arc<TokenProvider>>,
    /// `api: 'graph'`: messages go to Microsoft Graph instead of an SMTP connection.
    pub(crate) graph: Option<GraphClient>,
}

/// The first retry waits about this long; each further one twice as long.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A server asking to wait longer than this (Graph's `Retry-After`) gets the error back at
/// once, with `retryAfter`, rather than a send (and `close()`) held for that long.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(120);

/// Whether a failed send should be tried again: transient failures (4xx replies, lost
/// connections, timeouts before the message was sent, Graph's 429/5xx), within
/// `max_retries` and [`MAX_RETRY_WAIT`]. Never an `EUNKNOWN_DELIVERY` (it may have been
/// delivered) nor a token endpoint error (the token provider has its own retries).
pub fn should_retry(err: &Error, attempt: u32, max_retries: u32) -> bool {
    attempt <= max_retries
        && err.is_transient()
        && err.kind() != ErrorKind::OAuth2
        && err.retry_after().is_none_or(|wait| wait <= MAX_RETRY_WAIT)
}

/// How long to wait before retry number `attempt` of a send that failed with `err`: what
/// the server asked for (Graph's `Retry-After`), else [`retry_delay`].
pub fn retry_wait(err: &Error, attempt: u32) -> Duration {
    err.retry_after().unwrap_or_else(|| retry_delay(attempt))
}

/// Jittered exponential backoff before retry number `attempt`.
pub fn retry_delay(attempt: u32) -> Duration {
    let backoff = FIRST_RETRY_DELAY * 2u32.pow(attempt.saturating_sub(1).min(6));
    backoff.mul_f64(0.5 + fastrand::f64() / 2.0)
}

impl Connector {
    /// Sends over a connection of its own (nodemailer without `pool`), or to Microsoft
    /// Graph, retrying transient failures (on a new connection).
    pub async fn send_unpooled(&self, message: &OutgoingMessage) -> Result<Delivery> {
        let mut attempt = 1;
        loop {
            let outcome = match &self.graph {
                Some(graph) => match contained(graph.send(message)).await {
                    Ok(outcome) => outcome,
                    // A bug: whether the request left is unknown.
                    Err(Panicked) => Err(panic_error(true)),
                },
                None => self.send_over_smtp(message).await,
            };
            match outcome {
                Err(err) if should_retry(&err, attempt, self.config.max_retries) => {
                    self.logger
                        .warn(|| format!("attempt {attempt} failed, retrying: {}", err.message()));
                    tokio::time::sleep(retry_wait(&err, attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome.map_err(|err| err.with_attempts(attempt)),
            }
        }
    }

    /// One attempt over a new SMTP connection.
    async fn send_over_smtp(&self, message: &OutgoingMessage) -> Result<Delivery> {
        let mut connection = self.open_connection().await?;
        match contained(connection.send(message)).await {
            Ok(outcome) => {
                // The send is settled by the reply to the message: QUIT need not be
                // waited for.
                tokio::spawn(connection.quit());
                outcome
            }
            // A bug: the connection's state is unknown, so it is dropped, not reused.
            Err(Panicked) => Err(panic_error(connection.message_may_have_left())),
        }
    }

    /// A connected, encrypted and authenticated connection. The token is taken (from the
    /// cache, or fetched) only once TLS is up, right before AUTH. If the server refuses a
    /// token, it is dropped and AUTH is tried once more, on a new connection, with a fresh
    /// one; a second refusal is final (never a loop).
    pub async fn open_connection(&self) -> Result<SmtpConnection> {
        let (user, tokens) = match (&self.config.auth, &self.tokens) {
            (Auth::OAuth2 { user, .. }, Some(tokens)) => (user, tokens),
            (Auth::Password { user, password }, _) => {
                let mut connection = SmtpConnection::connect(&self.config, &self.tls, &self.logger).await?;
                return match connection.authenticate(&Login::Password { user, password }).await {
                    Ok(()) => Ok(connection),
                    Err(err) => {
                        connection.quit().await;
                        Err(err)
                    }
                };
            }
            _ => return SmtpConnection::connect(&self.config, &self.tls, &self.logger).await,
        };
        match self.connect_with_token(user, tokens).await {
            Err((err, Some(rejected))) if is_token_refusal(&err) && !tokens.renewable() => {
                // A fixed auth.accessToken: no other token to try.
                tokens.invalidate(&rejected);
                let hint = match err.hint() {
                    Some(hint) => format!("{FIXED_TOKEN_HINT} {hint}"),
                    None => FIXED_TOKEN_HINT.to_string(),
                };
                Err(err.with_hint(hint))
            }
            Err((err, Some(rejected))) if is_token_refusal(&err) => {
                tokens.invalidate(&rejected);
                match self.connect_with_token(user, tokens).await {
                    Ok(connection) => Ok(connection),
                    Err((err, Some(token))) if is_token_refusal(&err) => {
                        Err(self.explain_refusal(err, &token))
                    }
                    Err((err, _)) => Err(err),
                }
            }
            Err((err, _)) => Err(err),
            Ok(connection) => Ok(connection),
        }
    }

    /// Connect, TLS, token, AUTH; on failure also returns the token AUTH was tried with.
    async fn connect_with_token(
        &self,
        user: &str,
        tokens: &Arc<TokenProvider>,
    ) -> std::result::Result<SmtpConnection, (Error, Option<Arc<AccessToken>>)> {
        // No connection that could not authenticate: the endpoint just refused or throttled.
        tokens.fail_fast().map_err(|err| (err, None))?;
        let mut connection = SmtpConnection::connect(&self.config, &self.tls, &self.logger)
            .await
            .map_err(|err| (err, None))?;
        let token = match tokens.token().await {
            Ok(token) => token,
            Err(err) => {
                connection.quit().await;
                return Err((err, None));
            }
        };
        match connection
            .authenticate(&Login::XOAuth2 {
                user,
                token: &token.value,
            })
            .await
        {
            Ok(()) => Ok(connection),
            Err(err) => {
                connection.quit().await;
                Err((err, Some(token)))
            }
        }
    }

    /// Adds what the token's claims say (wrong audience, missing role, other tenant) to the
    /// hint of a final AUTH refusal.
    fn explain_refusal(&self, err: Error, token: &AccessToken) -> Error {
        let Some(tokens) = &self.tokens else {
            return err;
        };
        let report = tokens.inspect(token, required_role(&self.config));
        if report.problems.is_empty() {
            return err;
        }
        let findings: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        let preface = format!("The token shows: {}.", findings.join("; "));
        let hint = match err.hint_data() {
            Some(hint) => hint.clone().with_preface(preface),
            None => Hint::from(preface),
        };
        err.with_hint(hint)
    }

    /// The current access token (cached, or fetched now), for callers that also use it
    /// elsewhere (e.g. Microsoft Graph).
    pub async fn access_token(&self) -> Result<Arc<AccessToken>> {
        match &self.tokens {
            Some(tokens) => tokens.token().await,
            None => Err(Error::config(
                "mail.smtp.type is not 'oauth2': this transport has no access token",
            )),
        }
    }

    /// The current token's claims that matter for SMTP, and the problems they show.
    pub async fn inspect_token(&self) -> Result<TokenReport> {
        let token = self.access_token().await?;
        let tokens = self
            .tokens
            .as_ref()
            .expect("access_token() succeeded, so there is a provider");
        Ok(tokens.inspect(&token, required_role(&self.config)))
    }
}

/// A refusal that a fresh token may cure: 535 (or the 334 challenge, reported as 535).
fn is_token_refusal(err: &Error) -> bool {
    err.kind() == ErrorKind::Auth && err.reply().is_some_and(|reply| reply.code == 535)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_is_waited_unless_it_is_too_long() {
        let throttled = |seconds| {
            Error::new(ErrorKind::Connection, "429")
                .with_http_status(429)
                .with_retry_after(Duration::from_secs(seconds))
        };
        assert!(should_retry(&throttled(3), 1, 3));
        assert_eq!(retry_wait(&throttled(3), 1), Duration::from_secs(3));
        assert!(
            !should_retry(&throttled(3600), 1, 3),
            "an hour is the caller's to wait"
        );
        assert!(!should_retry(&throttled(3), 4, 3), "maxRetries bounds it");
        let lost = Error::new(ErrorKind::Connection, "reset");
        assert!(retry_wait(&lost, 1) <= FIRST_RETRY_DELAY);
    }
}
