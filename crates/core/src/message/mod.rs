//! A nodemailer-style message object -> the MIME bytes and the SMTP envelope.
//!
//! Everything is checked before any connection is made: an invalid address, a header that
//! cannot be encoded or an unreadable attachment fails the send with `EMESSAGE` naming the
//! field, and nothing reaches the server.

mod attachment;
mod body;
mod data_urls;
mod fetch;
mod headers;
mod mime;
mod raw;
mod wire;

use lettre::address::{Address, Envelope};
use lettre::message::header;
use lettre::message::{Mailbox, Mailboxes};

use crate::address::{parse_mailboxes, parse_single_mailbox, with_ascii_domain};
use crate::content_access::ContentAccess;
use crate::dsn::{parse_dsn, Dsn};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{Field, Value};

use crate::input::ByteBuf;
use body::body_part;
use headers::{
    angle_bracketed, custom_headers, date_field, list_headers, priority_headers, string_list, text_field,
    value_name, x_mailer,
};
use mime::{header_pre_encoded, write_header, Writer};
use raw::header_value;
pub use raw::raw_message;
pub use wire::{encode_base64_lines, MessageBody, Segment, BASE64_LINE_INPUT};

/// The path message errors start with.
const MESSAGE_ROOT: &str = "message";

/// A message ready for the wire.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// The `Message-ID` header, angle brackets included.
    pub message_id: String,
    /// MAIL FROM (`None` for the null sender `<>`).
    pub envelope_from: Option<Address>,
    /// RCPT TO, in order, without duplicates.
    pub envelope_to: Vec<Address>,
    /// The whole RFC 5322 message, not yet dot-stuffed.
    pub body: MessageBody,
    /// `message.dsn`: the delivery status notifications asked for.
    pub dsn: Option<Dsn>,
}

/// Builds `message`, taking absent fields from `defaults` (the 2nd argument of
/// `createTransport`) and `from` finally from `auth_user`.
/// `access` is the transport's policy for local files and URLs, which the message and the
/// defaults may tighten.
pub async fn build_message(
    message: &Value,
    defaults: Option<&Value>,
    auth_user: Option<&str>,
    access: &ContentAccess,
) -> Result<OutgoingMessage> {
    let mut merged = merge_defaults(message, defaults)?;
    data_urls::attach_data_urls(&mut merged);
    let root = Field::root(MESSAGE_ROOT, &merged, ErrorKind::Message);
    let access = access.for_message(&Field::root(MESSAGE_ROOT, message, ErrorKind::Message), defaults)?;
    let from = match parse_single_mailbox(&root.child("from"))? {
        Some(from) => from,
        None => match auth_user {
            Some(user) => user.parse().map_err(|_| {
                root.child("from").error(format!(
                    "is missing, and auth.user {user:?} is not an address to fall back to"
                ))
            })?,
            None => return Err(root.child("from").missing()),
        },
    };
    let sender = parse_single_mailbox(&root.child("sender"))?;
    let to = parse_mailboxes(&root.child("to"))?;
    let cc = parse_mailboxes(&root.child("cc"))?;
    let bcc = parse_mailboxes(&root.child("bcc"))?;
    let reply_to = parse_mailboxes(&root.child("replyTo"))?;
    let (envelope_from, envelope_to) = envelope(&root, &from, [&to, &cc, &bcc])?;

    let dsn = parse_dsn(&root.child("dsn"))?;

    let mut builder = lettre::Message::builder().from(with_ascii_domain(from));
    if let Some(sender) = sender {
        builder = builder.sender(with_ascii_domain(sender));
    }
    // Each list set at once: lettre's one-at-a-time `to()` re-parses the whole header on
    // every call, which takes seconds for a thousand recipients.
    let list = |mailboxes: Vec<Mailbox>| {
        mailboxes
            .into_iter()
            .map(with_ascii_domain)
            .collect::<Mailboxes>()
    };
    if !to.is_empty() {
        builder = builder.header(header::To::from(list(to)));
    }
    if !cc.is_empty() {
        builder = builder.header(header::Cc::from(list(cc)));
    }
    if !bcc.is_empty() {
        builder = builder.header(header::Bcc::from(list(bcc)));
    }
    if !reply_to.is_empty() {
        builder = builder.header(header::ReplyTo::from(list(reply_to)));
    }
    let subject = text_field(&root.child("subject"))?;
    if let Some(subject) = &subject {
        root.child("subject").check_header_text(subject)?;
    }
    let message_id = root.child("messageId").optional_string()?;
    if let Some(id) = message_id {
        root.child("messageId").check_header_text(id)?;
    }
    builder = builder.message_id(message_id.map(angle_bracketed));
    if let Some(date) = date_field(&root.child("date"))? {
        builder = builder.date(date);
    }
    if let Some(in_reply_to) = root.child("inReplyTo").optional_string()? {
        root.child("inReplyTo").check_header_text(in_reply_to)?;
        builder = builder.in_reply_to(angle_bracketed(in_reply_to));
    }
    let references = string_list(&root.child("references"))?;
    for reference in &references {
        root.child("references").check_header_text(reference)?;
    }
    if !references.is_empty() {
        let ids: Vec<String> = references.iter().map(|r| angle_bracketed(r)).collect();
        builder = builder.references(ids.join(" "));
    }
    let envelope = Envelope::new(envelope_from.clone(), envelope_to.clone())
        .map_err(|err| Error::new(ErrorKind::Envelope, format!("invalid envelope: {err}")))?;
    builder = builder.envelope(envelope);

    // `raw`: the whole message as given; the fields above only make its envelope.
    if root.child("raw").is_present() {
        let bytes = match root.child("raw").value() {
            Some(Value::Bytes(bytes)) => bytes.clone(),
            Some(Value::String(text)) => ByteBuf::from(text.clone().into_bytes()),
            _ => {
                return Err(root
                    .child("raw")
                    .wrong_type("a string or Buffer (the whole message)"))
            }
        };
        return Ok(OutgoingMessage {
            message_id: header_value(&bytes, "message-id").unwrap_or_default(),
            envelope_from,
            envelope_to,
            body: MessageBody::from_bytes(bytes),
            dsn,
        });
    }

    let mut extra = priority_headers(&root.child("priority"))?;
    extra.extend(list_headers(&root.child("list"))?);
    extra.extend(x_mailer(&root.child("xMailer"))?);
    let custom = custom_headers(&root.child("headers"))?;
    let part = body_part(&root, &access).await?;
    let built = builder
        .body(Vec::new())
        .map_err(|err| Error::message_error(format!("the message cannot be built: {err}")))?;
    let mut headers = built.headers().clone();
    headers.remove::<lettre::message::header::ContentTransferEncoding>();
    if let Some(subject) = subject {
        headers.insert_raw(mime::header("Subject", subject));
    }
    // A custom header replaces one the fields made unless that field was given itself.
    let mut custom_lines = Vec::new();
    for value in custom {
        let name = value_name(&value);
        let lower = name.to_ascii_lowercase();
        if ["content-type", "content-transfer-encoding", "mime-version"].contains(&lower.as_str()) {
            return Err(root
                .child("headers")
                .error(format!("sets {name}, which the message's structure decides")));
        }
        if headers.get_raw(&name).is_some() {
            if field_of_header(&lower).is_some_and(|key| root.child(key).is_present()) {
                continue;
            }
            headers.remove_raw(&name);
        }
        custom_lines.push(value);
    }
    // The Message-ID sent: the field's or lettre's, or a custom header's that replaced it.
    let mut sent_headers = headers.clone();
    for value in custom_lines
        .iter()
        .filter(|value| value_name(value).eq_ignore_ascii_case("message-id"))
    {
        sent_headers.insert_raw(value.clone());
    }
    let message_id = sent_headers
        .get_raw("Message-ID")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut writer = Writer::new();
    writer.bytes().extend_from_slice(headers.to_string().as_bytes());
    for value in extra.iter().chain(&custom_lines) {
        write_header(writer.bytes(), value);
    }
    write_header(writer.bytes(), &header_pre_encoded("MIME-Version", "1.0".into()));
    part.write(&mut writer)
        .map_err(|problem| Error::message_error(format!("a part of the message {problem}")))?;
    writer.end_line();
    Ok(OutgoingMessage {
        message_id,
        envelope_from,
        envelope_to,
        body: writer.finish(),
        dsn,
    })
}

/// The message field that sets header `name` (lowercase), if any.
fn field_of_header(name: &str) -> Option<&'static str> {
    Some(match name {
        "from" => "from",
        "sender" => "sender",
        "to" => "to",
        "cc" => "cc",
        "reply-to" => "replyTo",
        "subject" => "subject",
        "message-id" => "messageId",
        "date" => "date",
        "in-reply-to" => "inReplyTo",
        "references" => "references",
        _ => return None,
    })
}

/// nodemailer's rule: a field of the message wins over the same field of the defaults.
fn merge_defaults(message: &Value, defaults: Option<&Value>) -> Result<Value> {
    let Value::Object(fields) = message else {
        return Err(Field::root(MESSAGE_ROOT, message, ErrorKind::Message).wrong_type("an object"));
    };
    let mut merged: Vec<(String, Value)> = match defaults {
        Some(Value::Object(defaults)) => defaults.clone(),
        Some(Value::Undefined | Value::Null) | None => Vec::new(),
        Some(other) => return Err(Field::root("defaults", other, ErrorKind::Config).wrong_type("an object")),
    };
    for (key, value) in fields {
        if matches!(value, Value::Undefined) {
            continue;
        }
        match merged.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => merged.push((key.clone(), value.clone())),
        }
    }
    Ok(Value::Object(merged))
}

/// MAIL FROM and RCPT TO: `envelope` when given, else `from`, and every
/// To, Cc and Bcc address once.
fn envelope(
    root: &Field,
    from: &Mailbox,
    lists: [&Vec<Mailbox>; 3],
) -> Result<(Option<Address>, Vec<Address>)> {
    let custom = root.child("envelope");
    custom.optional_object()?;
    let envelope_from = match parse_single_mailbox(&custom.child("from"))? {
        Some(mailbox) => mailbox.email,
        // nodemailer's getEnvelope: the From address, not Sender.
        None => from.email.clone(),
    };
    let mut recipients: Vec<Address> = match custom.child("to").is_present() {
        true => parse_mailboxes(&custom.child("to"))?
            .into_iter()
            .map(|m| m.email)
            .collect(),
        false => lists.into_iter().flatten().map(|m| m.email.clone()).collect(),
    };
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|address| seen.insert(address.to_string().to_lowercase()));
    if recipients.is_empty() {
        return Err(Error::new(
            ErrorKind::Envelope,
            "no recipients defined: set message.to, cc or bcc",
        ));
    }
    Ok((Some(envelope_from), recipients))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::ByteBuf;
    use base64::Engine;
    use headers::chrono_free_rfc2822;
    use std::time::UNIX_EPOCH;

    fn build(message: Value) -> Result<OutgoingMessage> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(build_message(
                &message,
                None,
                Some("tas@contoso.com"),
                &ContentAccess::default(),
            ))
    }

    fn text(message: &OutgoingMessage) -> String {
        String::from_utf8_lossy(&message.body.to_vec()).into_owned()
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let message = build(Value::object([
            ("to", Value::str("a@example.com")),
            ("bcc", Value::str("hidden@example.com")),
            ("subject", Value::str("hi")),
            ("text", Value::str("body")),
        ]))
        .unwrap();
        assert_eq!(
            message.envelope_from.as_ref().unwrap().to_string(),
            "tas@contoso.com"
        );
        let to: Vec<_> = message.envelope_to.iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["a@example.com", "hidden@example.com"]);
        assert!(!text(&message).contains("hidden@example.com"));
        assert!(message.message_id.starts_with('<') && message.message_id.ends_with('>'));
    }

    #[test]
    fn line_breaks_cannot_inject_headers() {
        let message = build(Value::object([
            ("to", Value::str("a@example.com")),
            ("subject", Value::str("hi\r\nBcc: evil@example.com")),
            (
                "headers",
                Value::object([("X-Test", Value::str("v\r\nX-Evil: 1"))]),
            ),
        ]))
        .unwrap();
        let raw = text(&message);
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
        assert!(!raw.contains("\r\nX-Evil:"), "{raw}");
    }

    #[test]
    fn missing_recipients_and_bad_fields() {
        let err = build(Value::object([("subject", Value::str("x"))])).unwrap_err();
        assert_eq!(err.code(), "EENVELOPE");
        let err = build(Value::object([
            ("to", Value::str("a@b.c")),
            ("subject", Value::Bool(true)),
        ]))
        .unwrap_err();
        assert_eq!(err.message(), "message.subject must be a string, got true");
        let err = build(Value::object([
            ("to", Value::str("a@b.c")),
            (
                "attachments",
                Value::Array(vec![Value::object([(
                    "path",
                    Value::str("/nonexistent/file.pdf"),
                )])]),
            ),
        ]))
        .unwrap_err();
        assert!(
            err.message()
                .starts_with(r#"message.attachments[0].path cannot be read: "/nonexistent/file.pdf""#),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_custom_message_id_header_is_the_message_id() {
        let message = build(Value::object([
            ("to", Value::str("a@example.com")),
            (
                "headers",
                Value::object([("Message-ID", Value::str("<custom-1@example.com>"))]),
            ),
        ]))
        .unwrap();
        assert_eq!(message.message_id, "<custom-1@example.com>");
        assert_eq!(text(&message).matches("Message-ID:").count(), 1);
    }

    #[test]
    fn envelope_override_and_dedup() {
        let message = build(Value::object([
            ("to", Value::str("a@example.com, A@example.com")),
            (
                "envelope",
                Value::object([
                    ("from", Value::str("bounce@example.com")),
                    ("to", Value::str("x@example.com")),
                ]),
            ),
        ]))
        .unwrap();
        assert_eq!(message.envelope_from.unwrap().to_string(), "bounce@example.com");
        assert_eq!(message.envelope_to.len(), 1);
    }

    #[test]
    fn unicode_everywhere_is_still_seven_bit_with_punycode_header_domains() {
        let message = build(Value::object([
            ("from", Value::str("Jürgen Groß <juergen@bücher.example>")),
            (
                "to",
                Value::Array(vec![
                    Value::str("Zoë <zoe@bücher.example>"),
                    Value::str("b@example.com"),
                ]),
            ),
            ("cc", Value::str("c@münchen.example")),
            ("subject", Value::str("Grüße – 你好 ✓")),
            (
                "text",
                Value::str("Grüße aus München, 你好\n".repeat(20).as_str()),
            ),
            ("html", Value::str("<p>Grüße ✓</p>")),
            (
                "icalEvent",
                Value::str("BEGIN:VCALENDAR\nSUMMARY:Besprechung über Ä\nEND:VCALENDAR"),
            ),
            (
                "attachments",
                Value::Array(vec![Value::object([
                    ("filename", Value::str("Übersicht ✓.txt")),
                    ("content", Value::str("Inhalt: äöü")),
                ])]),
            ),
            ("dsn", Value::object([("notify", Value::str("failure"))])),
        ]))
        .unwrap();
        assert!(message.body.is_ascii(), "{}", text(&message));
        let raw = text(&message);
        assert!(raw.contains("<juergen@xn--bcher-kva.example>"), "{raw}");
        assert!(raw.contains("c@xn--mnchen-3ya.example"), "{raw}");
        assert!(message.dsn.is_some());
    }

    #[test]
    fn raw_messages_keep_their_bytes_and_id() {
        let raw = Value::str("Message-ID:\r\n <abc@example.com>\r\nSubject: x\r\n\r\nbody\r\n");
        let envelope = Value::object([
            ("from", Value::str("a@example.com")),
            ("to", Value::Array(vec![Value::str("b@example.com")])),
        ]);
        let message = raw_message(&raw, &envelope).unwrap();
        assert_eq!(message.message_id, "<abc@example.com>");
        assert!(message.body.to_vec().ends_with(b"body\r\n"));
        let no_rcpt = Value::object([("from", Value::str("a@example.com"))]);
        assert_eq!(raw_message(&raw, &no_rcpt).unwrap_err().code(), "EENVELOPE");
    }

    #[test]
    fn large_attachments_are_streamed_as_base64_lines() {
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let message = build(Value::object([
            ("to", Value::str("a@example.com")),
            ("text", Value::str("see attached")),
            (
                "attachments",
                Value::Array(vec![Value::object([
                    ("filename", Value::str("data.bin")),
                    ("content", Value::Bytes(ByteBuf::from(content.clone()))),
                ])]),
            ),
        ]))
        .unwrap();
        assert!(message
            .body
            .segments()
            .iter()
            .any(|s| matches!(s, Segment::Base64(_))));
        let wire = message.body.to_vec();
        assert_eq!(wire.len(), message.body.len());
        let raw = String::from_utf8(wire).unwrap();
        let start = raw
            .find("\r\n\r\n")
            .map(|_| raw.rfind("Content-Transfer-Encoding: base64\r\n\r\n").unwrap())
            .unwrap();
        let encoded: String = raw[start..]
            .split("\r\n\r\n")
            .nth(1)
            .unwrap()
            .split("\r\n--")
            .next()
            .unwrap()
            .to_string();
        assert!(encoded.split("\r\n").all(|line| line.len() <= 76));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.replace("\r\n", ""))
            .unwrap();
        assert_eq!(decoded, content);
    }

    #[test]
    fn header_lines_stay_within_998_bytes() {
        let long = "x".repeat(1500);
        for (field, value) in [
            ("subject", Value::str(long.clone())),
            ("messageId", Value::str(long.clone())),
            ("headers", Value::object([("X-Long", Value::str(long.clone()))])),
            (
                "from",
                Value::object([
                    ("name", Value::str(long.clone())),
                    ("address", Value::str("a@example.com")),
                ]),
            ),
        ] {
            let err = build(Value::object([
                ("to", Value::str("a@example.com")),
                (field, value),
            ]))
            .unwrap_err();
            assert_eq!(err.code(), "EMESSAGE");
            assert!(err.message().contains("998"), "{}", err.message());
        }
        let date = build(Value::object([
            ("to", Value::str("a@example.com")),
            ("date", Value::Date(253_402_300_800_000.0)),
        ]));
        assert_eq!(
            date.unwrap_err().message(),
            "message.date is not a date between 1970 and 9999"
        );
    }

    #[test]
    fn iso_dates() {
        let date = chrono_free_rfc2822("2026-01-02T03:04:05.000Z").unwrap();
        assert_eq!(date.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_767_323_045);
    }
}
