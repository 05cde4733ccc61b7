//! Steps 5 and 6: AUTH with the transport's own connect path (`verify()`: token retry and all),
//! then, if asked, one real message through its send path.

use serde_json::{json, Value as Json};

use super::{Outcome, ProbeOptions};
use crate::config::Auth;
use crate::error::Error;
use crate::exchange::hint_context;
use crate::hints::Hint;
use crate::input::Value;
use crate::transport::Transport;

pub(super) async fn check_auth(transport: &Transport) -> Outcome {
    let config = transport.config();
    let (user, mechanism) = match &config.auth {
        Auth::OAuth2 { user, .. } => (user, "XOAUTH2"),
        Auth::Password { user, .. } => (user, "with the password"),
        Auth::None => return Outcome::not_applicable("no credentials configured (mail.smtp.auth): no AUTH"),
    };
    match transport.verify().await {
        Ok(()) => Outcome::pass(
            format!("{} accepted AUTH {mechanism} for {user}", config.host),
            Json::Null,
        ),
        Err(err) => failure(transport, &err, None),
    }
}

pub(super) async fn check_send(transport: &Transport, options: &ProbeOptions) -> Outcome {
    let Some(to) = &options.send_to else {
        return Outcome::not_applicable(
            "no test message (sendTo not given; the CLI's --send-to ADDRESS sends one)",
        );
    };
    let config = transport.config();
    let Some(from) = options.from.as_deref().or(config.auth.user()) else {
        return Outcome::not_applicable("no test message: no sender (mail.from) and no mailbox (auth.user)");
    };
    let machine = hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default();
    let now = httpdate::fmt_http_date(std::time::SystemTime::now());
    let message = Value::object([
        ("from", Value::str(from)),
        ("to", Value::str(to)),
        ("subject", Value::str("smtp-oauth-transport doctor test")),
        (
            "text",
            Value::str(format!("This message was sent by \"smtp-oauth-transport doctor\" on {machine} at {now} to check that {from} can send mail.")),
        ),
    ]);
    match transport.send(&message).await {
        Ok(info) => {
            let details = json!({
                "messageId": info.message_id,
                "accepted": info.accepted,
                "rejected": info.rejected.iter().map(|r| r.recipient.clone()).collect::<Vec<_>>(),
                "response": info.response,
            });
            if !info.rejected.is_empty() {
                let refused: Vec<String> = info
                    .rejected
                    .iter()
                    .map(|r| format!("{} ({})", r.recipient, r.reply))
                    .collect();
                return Outcome::fail(
                    format!("refused recipients: {}", refused.join("; ")),
                    None,
                    details,
                );
            }
            Outcome::pass(
                format!(
                    "sent from {from} to {}: {}",
                    info.accepted.join(", "),
                    info.response
                ),
                details,
            )
        }
        Err(err) => failure(transport, &err, Some(from)),
    }
}

/// A failed AUTH or send: the error's own message, headed by what its hint says it is.
fn failure(transport: &Transport, err: &Error, from: Option<&str>) -> Outcome {
    let details = json!({
        "code": err.code(),
        "responseCode": err.reply().map(|r| r.code),
        "response": err.reply().map(|r| r.to_string()),
        "command": err.command(),
    });
    let hint: Option<Hint> = err
        .hint_data()
        .cloned()
        .map(|h| h.in_context(&hint_context(transport.config(), from)));
    let reply = err
        .reply()
        .map(|r| r.to_string())
        .unwrap_or_else(|| err.message().to_string());
    let finding = match hint.as_ref().map(|h| h.id) {
        Some("smtp.auth_disabled") => format!("SMTP AUTH is disabled: {reply}"),
        Some("smtp.token_refused") => format!("the token was refused: {reply}"),
        Some("smtp.send_as_denied") => format!(
            "the server refused to send as {}: {reply}",
            from.unwrap_or("this sender")
        ),
        Some("smtp.basic_auth_retired") => {
            format!("basic authentication is retired for this tenant: {reply}")
        }
        _ => format!("{}: {}", err.code(), err.message()),
    };
    Outcome::fail(finding, hint, details)
}
