//! The transport: a validated config, the shared token provider, and the send path
//! `message -> token -> connection -> delivery` that the N-API layer exposes.

use std::sync::Arc;

use crate::config::{Auth, TransportConfig};
use crate::error::{Error, ErrorKind, RejectedRecipient, Result};
use crate::input::Value;
use crate::log::{LogSink, Logger};
use crate::message::build_message;
use crate::oauth::{AccessToken, TokenListener, TokenProvider, TokenReport};
use crate::smtp::{Login, SmtpConnection};

/// What `sendMail` resolves with (nodemailer's `info`).
#[derive(Debug, Clone)]
pub struct SentInfo {
    pub message_id: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Vec<String>,
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    pub response: String,
}

/// What the embedding environment gives a transport besides its config.
#[derive(Default)]
pub struct Environment {
    /// The content of the file named by `NODE_EXTRA_CA_CERTS`, if any.
    pub extra_ca_file: Option<Vec<u8>>,
    /// Told the expiry of every new token.
    pub on_token: Option<TokenListener>,
    /// Where log lines go (the user's `logger`); `debug: true` adds the SMTP transcript.
    pub log: Option<LogSink>,
}

pub struct Transport {
    config: TransportConfig,
    logger: Logger,
    /// Message fields used when a message lacks them (the 2nd argument of `createTransport`).
    defaults: Option<Value>,
    /// One per transport, shared by every send and connection (`None` without OAuth2).
    tokens: Option<Arc<TokenProvider>>,
}

impl Transport {
    /// Validates the config (`ECONFIG` naming the field) and prepares the token provider.
    /// Makes no network call.
    pub fn new(config: &Value, defaults: Option<Value>, environment: Environment) -> Result<Self> {
        let config = TransportConfig::from_value(config, environment.extra_ca_file.as_deref())?;
        let logger = match environment.log {
            Some(sink) => Logger::new(sink, config.debug),
            None => Logger::default(),
        };
        if !config.tls.verify_certificates {
            logger.warn(|| {
                "tls.rejectUnauthorized is false: certificates are not verified, so anyone on the network path can read the credentials".to_string()
            });
        }
        let tokens = match &config.auth {
            Auth::OAuth2 { user, oauth2 } => {
                let on_token = environment.on_token;
                let token_logger = logger.clone();
                let user = user.clone();
                let listener: TokenListener = Box::new(move |expires_at| {
                    token_logger.info(|| {
                        format!(
                            "new access token for {user}, valid until {}",
                            httpdate::fmt_http_date(expires_at)
                        )
                    });
                    if let Some(on_token) = &on_token {
                        on_token(expires_at);
                    }
                });
                Some(Arc::new(TokenProvider::new(
                    (**oauth2).clone(),
                    &config.tls,
                    Some(listener),
                )?))
            }
            _ => None,
        };
        Ok(Transport {
            config,
            logger,
            defaults,
            tokens,
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// Connects, sets up TLS, authenticates and quits: proves the whole chain works.
    pub async fn verify(&self) -> Result<()> {
        let connection = self.open_connection().await?;
        connection.quit().await;
        Ok(())
    }

    /// Builds `message` (failing before any connection if it is invalid), then delivers it
    /// over a connection of its own.
    pub async fn send(&self, message: &Value) -> Result<SentInfo> {
        let outgoing = build_message(message, self.defaults.as_ref(), self.config.auth.user()).await?;
        let mut connection = self.open_connection().await?;
        let delivery = connection.send(&outgoing).await;
        connection.quit().await;
        let delivery = delivery?;
        Ok(SentInfo {
            message_id: outgoing.message_id,
            envelope_from: outgoing.envelope_from.map(|a| a.to_string()),
            envelope_to: outgoing.envelope_to.iter().map(|a| a.to_string()).collect(),
            accepted: delivery.accepted,
            rejected: delivery.rejected,
            response: delivery.response,
        })
    }

    /// A connected, encrypted and authenticated connection. The token is taken (from the
    /// cache, or fetched) only once TLS is up, right before AUTH. If the server refuses a
    /// token, it is dropped and AUTH is tried once more, on a new connection, with a fresh
    /// one; a second refusal is final (never a loop).
    pub async fn open_connection(&self) -> Result<SmtpConnection> {
        let (user, tokens) = match (&self.config.auth, &self.tokens) {
            (Auth::OAuth2 { user, .. }, Some(tokens)) => (user, tokens),
            (Auth::Password { user, password }, _) => {
                let mut connection = SmtpConnection::connect(&self.config, &self.logger).await?;
                return match connection.authenticate(&Login::Password { user, password }).await {
                    Ok(()) => Ok(connection),
                    Err(err) => {
                        connection.quit().await;
                        Err(err)
                    }
                };
            }
            _ => return SmtpConnection::connect(&self.config, &self.logger).await,
        };
        match self.connect_with_token(user, tokens).await {
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
        let mut connection = SmtpConnection::connect(&self.config, &self.logger)
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
        let report = tokens.inspect(token);
        if report.problems.is_empty() {
            return err;
        }
        let findings: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        let hint = match err.hint() {
            Some(hint) => format!("The token shows: {}. {hint}", findings.join("; ")),
            None => format!("The token shows: {}.", findings.join("; ")),
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
        Ok(tokens.inspect(&token))
    }
}

/// A refusal that a fresh token may cure: 535 (or the 334 challenge, reported as 535).
fn is_token_refusal(err: &Error) -> bool {
    err.kind() == ErrorKind::Auth && err.reply().is_some_and(|reply| reply.code == 535)
}
