//! Graph's answers turned into the transport's errors, with the same codes as over SMTP:
//! `EAUTH` for 401/403 (with what to fix), `EENVELOPE` for refused recipients, `EMESSAGE`
//! for content and size refusals, `ECONNECTION` (transient, with `Retry-After`) for
//! throttling and outages.

use std::time::Duration;

use crate::error::{Error, ErrorKind, GraphErrorBody};
use crate::hints::{Hint, HintContext};

/// The error for a non-2xx answer of `step` (`sendMail`, `createMessage`, ...).
pub fn graph_error(
    step: &'static str,
    status: u16,
    reason: &str,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Error {
    let parsed = parse_body(body);
    let code = parsed.as_ref().map(|(code, _)| code.as_str()).unwrap_or("");
    let (kind, hint) = classify(status, code);
    let detail = match &parsed {
        Some((code, message)) if !message.is_empty() => format!("{code}: {message}"),
        Some((code, _)) => code.clone(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string(),
    };
    let what = match kind {
        ErrorKind::Connection if status == 429 => "Microsoft Graph is throttling this app and mailbox",
        ErrorKind::Connection => "Microsoft Graph is unavailable",
        ErrorKind::Auth => "Microsoft Graph refused the app",
        ErrorKind::Envelope => "Microsoft Graph refused the recipients",
        ErrorKind::Protocol => "Microsoft Graph answered with a redirect, which is not followed",
        _ => "Microsoft Graph refused the message",
    };
    let mut err = Error::new(
        kind,
        format!(
            "{what} ({step}: HTTP {status} {reason}{}{detail})",
            if detail.is_empty() { "" } else { ", " }
        ),
    )
    .with_http_status(status)
    .with_command(step)
    .with_graph_error(GraphErrorBody {
        code: parsed.as_ref().map(|(code, _)| code.clone()).unwrap_or_default(),
        message: parsed.map(|(_, message)| message).unwrap_or_default(),
        request_id,
    });
    if let Some(hint) = hint {
        err = err.with_hint(Hint::render(hint, &HintContext::default()));
    }
    if let Some(wait) = retry_after.filter(|_| kind == ErrorKind::Connection) {
        err = err.with_retry_after(wait);
    }
    err
}

fn classify(status: u16, code: &str) -> (ErrorKind, Option<&'static str>) {
    match (status, code) {
        (401, _) => (ErrorKind::Auth, Some("graph.unauthorized")),
        (403, _) => (ErrorKind::Auth, Some("graph.access_denied")),
        (404, _) => (ErrorKind::Auth, Some("graph.mailbox_not_found")),
        (_, "ErrorInvalidRecipients") => (ErrorKind::Envelope, None),
        (_, "ErrorMessageSizeExceeded") | (413, _) => (ErrorKind::Message, Some("graph.too_large")),
        (408 | 429, _) | (500..=599, _) => (ErrorKind::Connection, None),
        // Never followed: the next request would carry the token to wherever it points.
        (300..=399, _) => (ErrorKind::Protocol, None),
        _ => (ErrorKind::Message, None),
    }
}

/// `{ "error": { "code", "message" } }` -> (code, message).
fn parse_body(body: &[u8]) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = json.get("error")?;
    let code = error.get("code")?.as_str()?.to_string();
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str) -> Vec<u8> {
        format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#).into_bytes()
    }

    #[test]
    fn documented_answers_have_smtps_codes() {
        let cases = [
            (401, "InvalidAuthenticationToken", "EAUTH"),
            (403, "ErrorAccessDenied", "EAUTH"),
            (400, "ErrorInvalidRecipients", "EENVELOPE"),
            (400, "ErrorMimeContentInvalidBase64String", "EMESSAGE"),
            (400, "ErrorMessageSizeExceeded", "EMESSAGE"),
            (413, "RequestBodyTooLarge", "EMESSAGE"),
            (429, "ApplicationThrottled", "ECONNECTION"),
            (503, "ServiceUnavailable", "ECONNECTION"),
            (307, "", "EPROTOCOL"),
        ];
        for (status, code, expected) in cases {
            let err = graph_error(
                "sendMail",
                status,
                "x",
                Some("rid".into()),
                Some(Duration::from_secs(2)),
                &body(code),
            );
            assert_eq!(err.code(), expected, "{status} {code}");
            assert_eq!(err.graph_error().unwrap().code, code);
            assert_eq!(err.is_transient(), expected == "ECONNECTION", "{status}");
            assert_eq!(err.retry_after().is_some(), expected == "ECONNECTION");
        }
        let denied = graph_error(
            "sendMail",
            403,
            "Forbidden",
            None,
            None,
            &body("ErrorAccessDenied"),
        );
        assert!(denied.hint().unwrap().contains("Mail.Send"));
        assert!(denied.hint().unwrap().contains("New-ApplicationAccessPolicy"));
    }
}
