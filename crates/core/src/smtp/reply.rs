//! lettre's errors -> ours, by the step that failed.

use std::error::Error as _;

use lettre::transport::smtp::Error as LettreError;

use crate::error::{Error, ErrorKind, SmtpReply};
use crate::hints::smtp_hint;

/// The step of the SMTP dialogue, which decides the error kind of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    StartTls,
    /// AUTH, with the command as sent (`AUTH XOAUTH2`, `AUTH PLAIN`, ...).
    Auth(&'static str),
    MailFrom,
    RcptTo,
    Data,
    Message,
}

impl Step {
    /// The command as `err.command` reports it (nodemailer's names).
    pub fn command(self) -> &'static str {
        match self {
            Step::Greeting => "CONN",
            Step::StartTls => "STARTTLS",
            Step::Auth(command) => command,
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "DATA",
        }
    }

    /// The kind of a negative reply at this step.
    fn refusal_kind(self) -> ErrorKind {
        match self {
            Step::Greeting => ErrorKind::Connection,
            Step::StartTls => ErrorKind::Tls,
            Step::Auth(_) => ErrorKind::Auth,
            Step::MailFrom | Step::RcptTo => ErrorKind::Envelope,
            Step::Data | Step::Message => ErrorKind::Message,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Step::Greeting => "the greeting",
            Step::StartTls => "STARTTLS",
            Step::Auth(_) => "authentication",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::Message => "the message",
        }
    }
}

/// The server's reply inside a lettre error, if the error is one.
pub fn reply_of(err: &LettreError) -> Option<SmtpReply> {
    let code = err.status()?.to_string().parse().ok()?;
    let text = err.source().map(|source| source.to_string()).unwrap_or_default();
    Some(SmtpReply { code, text })
}

/// Maps a lettre error at `step` to ours, with the reply, the command and a hint.
pub fn from_lettre(err: LettreError, step: Step) -> Error {
    if let Some(reply) = reply_of(&err) {
        return refused(step, reply);
    }
    let detail = source_chain(&err);
    let kind = if step == Step::StartTls || err.is_tls() {
        ErrorKind::Tls
    } else if err.is_timeout() {
        ErrorKind::Timeout
    } else if err.is_response() || err.is_client() {
        ErrorKind::Protocol
    } else {
        ErrorKind::Connection
    };
    let message = match kind {
        ErrorKind::Tls => format!("TLS failed during {}: {detail}", step.describe()),
        _ => format!("connection failed during {}: {detail}", step.describe()),
    };
    Error::new(kind, message)
        .with_command(step.command())
        .with_source(err)
}

/// A negative reply at `step`.
pub fn refused(step: Step, reply: SmtpReply) -> Error {
    let message = format!("{} refused: {reply}", step.describe());
    let hint = smtp_hint(reply.code, &reply.text);
    let mut err = Error::new(step.refusal_kind(), message).with_reply(step.command(), reply);
    if let Some(hint) = hint {
        err = err.with_hint(hint);
    }
    err
}

/// lettre's Display is "network error: ..."; the sources say what happened.
fn source_chain(err: &LettreError) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_take_the_kind_of_their_step() {
        let reply = SmtpReply {
            code: 535,
            text: "5.7.3 Authentication unsuccessful".into(),
        };
        let err = refused(Step::Auth("AUTH XOAUTH2"), reply);
        assert_eq!(err.code(), "EAUTH");
        assert_eq!(err.command(), Some("AUTH XOAUTH2"));
        assert_eq!(
            err.message(),
            "authentication refused: 535 5.7.3 Authentication unsuccessful"
        );
        assert!(err.hint().unwrap().contains("Add-MailboxPermission"));
        let rcpt = refused(
            Step::RcptTo,
            SmtpReply {
                code: 550,
                text: "5.1.1 unknown".into(),
            },
        );
        assert_eq!(rcpt.code(), "EENVELOPE");
        let data = refused(
            Step::Message,
            SmtpReply {
                code: 552,
                text: "5.3.4 too big".into(),
            },
        );
        assert_eq!(data.code(), "EMESSAGE");
    }
}
