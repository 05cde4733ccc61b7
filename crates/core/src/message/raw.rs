//! A message already built elsewhere (nodemailer's plugin API): its bytes as they are.

use lettre::address::Address;

use super::{MessageBody, OutgoingMessage, MESSAGE_ROOT};
use crate::address::{parse_mailboxes, parse_single_mailbox};
use crate::dsn::parse_dsn;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{ByteBuf, Field, Value};

/// A message nodemailer (or anyone) already built: `raw` is the whole RFC 5322 message,
/// `envelope` its `{ from, to }` (nodemailer's `mail.message.getEnvelope()`).
pub fn raw_message(raw: &Value, envelope: &Value) -> Result<OutgoingMessage> {
    let root = Field::root(MESSAGE_ROOT, envelope, ErrorKind::Message);
    let bytes = match raw {
        Value::Bytes(bytes) => bytes.clone(),
        Value::String(text) => ByteBuf::from(text.as_bytes().to_vec()),
        other => return Err(Field::root("raw", other, ErrorKind::Message).wrong_type("a Buffer or string")),
    };
    let envelope_from = parse_single_mailbox(&root.child("from"))?.map(|mailbox| mailbox.email);
    let mut seen = std::collections::HashSet::new();
    let envelope_to: Vec<Address> = parse_mailboxes(&root.child("to"))?
        .into_iter()
        .map(|mailbox| mailbox.email)
        .filter(|address| seen.insert(address.to_string().to_lowercase()))
        .collect();
    if envelope_to.is_empty() {
        return Err(Error::new(
            ErrorKind::Envelope,
            "no recipients defined: the envelope has no 'to'",
        ));
    }
    Ok(OutgoingMessage {
        message_id: header_value(&bytes, "message-id").unwrap_or_default(),
        body: MessageBody::from_bytes(bytes),
        envelope_from,
        envelope_to,
        dsn: parse_dsn(&root.child("dsn"))?,
    })
}

/// The (unfolded) value of the first header `name` in the header block of `raw`.
pub(super) fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len().min(64 * 1024));
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value.trim().to_string());
        }
    }
    None
}
