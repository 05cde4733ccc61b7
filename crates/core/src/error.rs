//! The one error type of the core.
//!
//! Every failure has a [`ErrorKind`] that callers branch on (the N-API layer maps it to
//! nodemailer's `err.code`), a message written for the person reading the log, and the
//! details that explain it: the SMTP reply and command, the token endpoint's error, a hint
//! for the administrator. No field ever holds a secret.

use std::fmt;

use crate::hints::{Hint, HintContext};

/// What went wrong, in nodemailer's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The transport configuration is incomplete or malformed (`ECONFIG`).
    Config,
    /// The OAuth2 token endpoint refused or could not be reached (`EOAUTH2`).
    OAuth2,
    /// The SMTP server could not be reached, or the connection broke (`ECONNECTION`).
    Connection,
    /// A connect, greeting or socket timeout expired (`ETIMEDOUT`).
    Timeout,
    /// TLS could not be established, or the server offers no STARTTLS (`ETLS`).
    Tls,
    /// The SMTP server refused the credentials (`EAUTH`).
    Auth,
    /// The sender or every recipient was refused, or an address is invalid (`EENVELOPE`).
    Envelope,
    /// The message is malformed, or the server refused its content (`EMESSAGE`).
    Message,
    /// The server sent a reply the client cannot understand (`EPROTOCOL`).
    Protocol,
    /// The message was sent but the connection failed before the server confirmed it: it
    /// may or may not have been delivered, and it is not resent (`EUNKNOWN_DELIVERY`).
    UnknownDelivery,
    /// A bug in this package (a panic) stopped the operation; nothing is retried
    /// (`EINTERNAL`).
    Internal,
}

impl ErrorKind {
    /// nodemailer's `err.code` for this kind.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Config => "ECONFIG",
            ErrorKind::OAuth2 => "EOAUTH2",
            ErrorKind::Connection => "ECONNECTION",
            ErrorKind::Timeout => "ETIMEDOUT",
            ErrorKind::Tls => "ETLS",
            ErrorKind::Auth => "EAUTH",
            ErrorKind::Envelope => "EENVELOPE",
            ErrorKind::Message => "EMESSAGE",
            ErrorKind::Protocol => "EPROTOCOL",
            ErrorKind::UnknownDelivery => "EUNKNOWN_DELIVERY",
            ErrorKind::Internal => "EINTERNAL",
        }
    }
}

/// A reply of the SMTP server: its code and its text, lines joined with a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub text: String,
}

impl SmtpReply {
    /// `true` for 4xx replies: trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// `true` for 5xx replies: trying again will not help.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// The token endpoint's error body, as Entra ID sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthErrorBody {
    /// The `error` field (`invalid_client`, ...): the one to branch on.
    pub error: String,
    /// The `error_codes` field (AADSTS numbers), used only for hints.
    pub error_codes: Vec<u64>,
    /// The `error_description` field.
    pub description: Option<String>,
}

/// Microsoft Graph's error body (`{ "error": { "code", "message", "innerError": { "request-id" } } }`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphErrorBody {
    /// `ErrorAccessDenied`, `ErrorInvalidRecipients`, ...: the one to branch on.
    pub code: String,
    pub message: String,
    /// The `request-id` header (or `innerError.request-id`), which Microsoft support asks for.
    pub request_id: Option<String>,
}

/// A refused recipient, reported in `info.rejectedErrors` or in an `EENVELOPE` error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecipient {
    pub recipient: String,
    pub reply: SmtpReply,
}

/// The error of every fallible operation in this crate. Cloneable, so that callers who
/// waited for one shared token request all receive its failure.
/// The details live behind a `Box`, keeping `Result<T>` small on the happy path.
#[derive(Debug, Clone)]
pub struct Error(Box<Details>);

#[derive(Debug, Clone)]
struct Details {
    kind: ErrorKind,
    message: String,
    reply: Option<SmtpReply>,
    command: Option<&'static str>,
    http_status: Option<u16>,
    oauth: Option<OAuthErrorBody>,
    graph: Option<GraphErrorBody>,
    rejected: Vec<RejectedRecipient>,
    hint: Option<Hint>,
    retry_after: Option<std::time::Duration>,
    /// How many times the operation was tried (set by the send path).
    attempts: u32,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error(Box::new(Details {
            kind,
            message: message.into(),
            reply: None,
            command: None,
            http_status: None,
            oauth: None,
            graph: None,
            rejected: Vec::new(),
            hint: None,
            retry_after: None,
            attempts: 0,
            source: None,
        }))
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    pub fn message_error(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Message, message)
    }

    /// The SMTP reply that caused this error, and the command it answered.
    pub fn with_reply(mut self, command: &'static str, reply: SmtpReply) -> Self {
        self.0.command = Some(command);
        self.0.reply = Some(reply);
        self
    }

    /// The SMTP command during which the failure happened, when there is no reply.
    pub fn with_command(mut self, command: &'static str) -> Self {
        self.0.command = Some(command);
        self
    }

    pub fn with_http_status(mut self, status: u16) -> Self {
        self.0.http_status = Some(status);
        self
    }

    pub fn with_oauth_error(mut self, body: OAuthErrorBody) -> Self {
        self.0.oauth = Some(body);
        self
    }

    pub fn with_graph_error(mut self, body: GraphErrorBody) -> Self {
        self.0.graph = Some(body);
        self
    }

    pub fn with_rejected(mut self, rejected: Vec<RejectedRecipient>) -> Self {
        self.0.rejected = rejected;
        self
    }

    pub fn with_hint(mut self, hint: impl Into<Hint>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    /// The hint rendered again with what the transport knows (mailbox, sender, client id).
    pub fn in_context(mut self, context: &HintContext) -> Self {
        self.0.hint = self.0.hint.take().map(|hint| hint.in_context(context));
        self
    }

    /// How long the server asked us to wait (HTTP `Retry-After`).
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.0.retry_after = Some(wait);
        self
    }

    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(std::sync::Arc::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// nodemailer's `err.code`.
    pub fn code(&self) -> &'static str {
        self.0.kind.code()
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn reply(&self) -> Option<&SmtpReply> {
        self.0.reply.as_ref()
    }

    pub fn command(&self) -> Option<&'static str> {
        self.0.command
    }

    pub fn http_status(&self) -> Option<u16> {
        self.0.http_status
    }

    pub fn oauth_error(&self) -> Option<&OAuthErrorBody> {
        self.0.oauth.as_ref()
    }

    pub fn graph_error(&self) -> Option<&GraphErrorBody> {
        self.0.graph.as_ref()
    }

    pub fn rejected(&self) -> &[RejectedRecipient] {
        &self.0.rejected
    }

    /// The hint's text.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_ref().map(|hint| hint.text.as_str())
    }

    /// The hint as data: id, parameters, text.
    pub fn hint_data(&self) -> Option<&Hint> {
        self.0.hint.as_ref()
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.0.retry_after
    }

    /// How many times the send was tried (0 when it never got that far).
    pub fn attempts(&self) -> u32 {
        self.0.attempts
    }

    /// `true` when the same operation may succeed later: 4xx replies, network failures,
    /// timeouts, and token endpoint outages (5xx, `temporarily_unavailable`).
    pub fn is_transient(&self) -> bool {
        if let Some(reply) = &self.0.reply {
            return reply.is_transient();
        }
        match self.0.kind {
            ErrorKind::Connection | ErrorKind::Timeout => true,
            ErrorKind::OAuth2 => {
                self.0
                    .http_status
                    .is_none_or(|status| status >= 500 || status == 429)
                    || self
                        .0
                        .oauth
                        .as_ref()
                        .is_some_and(|body| body.error == "temporarily_unavailable")
            }
            _ => false,
        }
    }

    /// `true` when retrying cannot help: 5xx replies and bad input or credentials.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_nodemailers() {
        let codes: Vec<_> = [
            ErrorKind::Config,
            ErrorKind::OAuth2,
            ErrorKind::Connection,
            ErrorKind::Timeout,
            ErrorKind::Tls,
            ErrorKind::Auth,
            ErrorKind::Envelope,
            ErrorKind::Message,
        ]
        .iter()
        .map(|kind| kind.code())
        .collect();
        assert_eq!(
            codes,
            [
                "ECONFIG",
                "EOAUTH2",
                "ECONNECTION",
                "ETIMEDOUT",
                "ETLS",
                "EAUTH",
                "EENVELOPE",
                "EMESSAGE"
            ]
        );
    }

    #[test]
    fn transience_follows_the_reply_class() {
        let reply = |code| SmtpReply {
            code,
            text: String::new(),
        };
        let transient = Error::new(ErrorKind::Auth, "x").with_reply("AUTH XOAUTH2", reply(454));
        let permanent = Error::new(ErrorKind::Auth, "x").with_reply("AUTH XOAUTH2", reply(535));
        assert!(transient.is_transient());
        assert!(permanent.is_permanent());
        assert!(Error::new(ErrorKind::Timeout, "x").is_transient());
        assert!(Error::config("x").is_permanent());
    }

    #[test]
    fn oauth_transience_follows_status_and_error() {
        let body = |error: &str| OAuthErrorBody {
            error: error.into(),
            ..Default::default()
        };
        let bad_secret = Error::new(ErrorKind::OAuth2, "x")
            .with_http_status(401)
            .with_oauth_error(body("invalid_client"));
        let outage = Error::new(ErrorKind::OAuth2, "x").with_http_status(503);
        let busy = Error::new(ErrorKind::OAuth2, "x")
            .with_http_status(400)
            .with_oauth_error(body("temporarily_unavailable"));
        assert!(bad_secret.is_permanent());
        assert!(outage.is_transient());
        assert!(busy.is_transient());
    }
}
