//! The transport: a validated config, the shared token provider, and the send path
//! `message -> token -> connection -> delivery` that the N-API layer exposes.

use std::sync::Arc;

use crate::config::{Auth, TransportConfig};
use crate::error::{RejectedRecipient, Result};
use crate::input::Value;
use crate::message::build_message;
use crate::oauth::TokenProvider;
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

pub struct Transport {
    config: TransportConfig,
    /// Message fields used when a message lacks them (the 2nd argument of `createTransport`).
    defaults: Option<Value>,
    /// One per transport, shared by every send and connection (`None` without OAuth2).
    tokens: Option<Arc<TokenProvider>>,
}

impl Transport {
    /// Validates the config (`ECONFIG` naming the field) and prepares the token provider.
    /// Makes no network call.
    pub fn new(config: &Value, defaults: Option<Value>, extra_ca_file: Option<&[u8]>) -> Result<Self> {
        let config = TransportConfig::from_value(config, extra_ca_file)?;
        let tokens = match &config.auth {
            Auth::OAuth2 { oauth2, .. } => Some(Arc::new(TokenProvider::new(oauth2.clone(), &config.tls)?)),
            _ => None,
        };
        Ok(Transport {
            config,
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

    /// A connected, encrypted and authenticated connection. The token is fetched (or taken
    /// from the cache) only once TLS is up, right before AUTH, so a connection never
    /// authenticates with a token that expired while it was connecting.
    pub async fn open_connection(&self) -> Result<SmtpConnection> {
        let mut connection = SmtpConnection::connect(&self.config).await?;
        let outcome = match (&self.config.auth, &self.tokens) {
            (Auth::OAuth2 { user, .. }, Some(tokens)) => match tokens.token().await {
                Ok(token) => {
                    connection
                        .authenticate(&Login::XOAuth2 {
                            user,
                            token: &token.value,
                        })
                        .await
                }
                Err(err) => Err(err),
            },
            (Auth::Password { user, password }, _) => {
                connection.authenticate(&Login::Password { user, password }).await
            }
            _ => Ok(()),
        };
        match outcome {
            Ok(()) => Ok(connection),
            Err(err) => {
                connection.quit().await;
                Err(err)
            }
        }
    }
}
