//! A nodemailer-style message object -> the MIME bytes and the SMTP envelope.
//!
//! Everything is checked before any connection is made: an invalid address, a header that
//! cannot be encoded or an unreadable attachment fails the send with `EMESSAGE` naming the
//! field, and nothing reaches the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use lettre::address::{Address, Envelope};
use lettre::message::header::{
    self, ContentDisposition, ContentTransferEncoding, ContentType, HeaderName, HeaderValue,
};
use lettre::message::{Attachment, Body as PartBody, Mailbox, Mailboxes, MultiPart, SinglePart};

use crate::address::{parse_mailboxes, parse_single_mailbox, with_ascii_domain};
use crate::content_access::ContentAccess;
use crate::dsn::{parse_dsn, Dsn};
use crate::error::{Error, ErrorKind, Result};
use crate::input::{ByteBuf, Field, Value};

/// The path message errors start with.
const MESSAGE_ROOT: &str = "message";

/// Attachments at least this large are not encoded in memory: their base64 is produced
/// while they are written to the socket, from the one copy taken at the call.
const STREAM_THRESHOLD: usize = 64 * 1024;
/// Input bytes per base64 line (76 characters), as MIME wants them.
pub const BASE64_LINE_INPUT: usize = 57;

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

/// The message's bytes, in order: what lettre formatted, with large attachment bodies left
/// in the caller's buffers and base64-encoded only as they are written. Peak memory for a
/// 25 MB attachment is then a few chunks, not three encoded copies.
#[derive(Debug, Clone, Default)]
pub struct MessageBody {
    segments: Vec<Segment>,
}

#[derive(Clone)]
pub enum Segment {
    /// Bytes as they go on the wire (before dot-stuffing).
    Bytes(ByteBuf),
    /// Raw bytes whose base64 lines (76 characters, CRLF between lines, none after the
    /// last) go on the wire.
    Base64(ByteBuf),
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segment::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Segment::Base64(bytes) => write!(f, "Base64({} bytes)", bytes.len()),
        }
    }
}

impl MessageBody {
    pub fn from_bytes(bytes: impl Into<ByteBuf>) -> Self {
        MessageBody {
            segments: vec![Segment::Bytes(bytes.into())],
        }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The size on the wire, before dot-stuffing (what SIZE limits).
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Bytes(bytes) => bytes.len(),
                Segment::Base64(bytes) => base64_lines_len(bytes.len()),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ascii(&self) -> bool {
        self.segments.iter().all(|segment| match segment {
            Segment::Bytes(bytes) => bytes.is_ascii(),
            Segment::Base64(_) => true,
        })
    }

    /// The whole message in one buffer (for tests and small messages).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for segment in &self.segments {
            match segment {
                Segment::Bytes(bytes) => out.extend_from_slice(bytes),
                Segment::Base64(bytes) => encode_base64_lines(bytes, &mut out),
            }
        }
        out
    }
}

/// Length of the base64 lines of `n` bytes: 76-character lines, CRLF between them.
fn base64_lines_len(n: usize) -> usize {
    let encoded = n.div_ceil(3) * 4;
    let lines = encoded.div_ceil(76);
    encoded + 2 * lines.saturating_sub(1)
}

/// Appends the base64 lines of `input` (see [`Segment::Base64`]); when `input` is a
/// multiple of [`BASE64_LINE_INPUT`] bytes, every line is complete, so a long input can
/// be encoded chunk by chunk with a CRLF between the chunks.
pub fn encode_base64_lines(input: &[u8], out: &mut Vec<u8>) {
    for (index, line) in input.chunks(BASE64_LINE_INPUT).enumerate() {
        if index > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let start = out.len();
        out.resize(start + line.len().div_ceil(3) * 4, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(line, &mut out[start..])
            .expect("the buffer was sized for the encoding");
        out.truncate(start + written);
    }
}

/// Large attachment bodies set aside while lettre formats the rest: each is replaced by a
/// marker that cannot occur elsewhere (a random prefix), found again after formatting.
struct StreamedBodies {
    prefix: String,
    bodies: Vec<ByteBuf>,
}

impl StreamedBodies {
    fn new() -> Self {
        StreamedBodies {
            prefix: format!(
                "smtp-oauth-transport-{:016x}{:016x}-",
                fastrand::u64(..),
                fastrand::u64(..)
            ),
            bodies: Vec::new(),
        }
    }

    fn marker(&self, index: usize) -> String {
        format!("{}{index:08}", self.prefix)
    }

    /// A pre-encoded placeholder body for `content`.
    fn placeholder(&mut self, content: ByteBuf) -> PartBody {
        let marker = self.marker(self.bodies.len());
        self.bodies.push(content);
        PartBody::dangerous_pre_encoded(marker.into_bytes(), ContentTransferEncoding::Base64)
    }

    /// Splits the formatted message at the markers.
    fn into_body(self, formatted: Vec<u8>) -> MessageBody {
        if self.bodies.is_empty() {
            return MessageBody::from_bytes(formatted);
        }
        let mut found: Vec<(usize, usize)> = (0..self.bodies.len())
            .filter_map(|index| {
                let marker = self.marker(index);
                find(&formatted, marker.as_bytes()).map(|at| (at, index))
            })
            .collect();
        found.sort_unstable();
        let marker_len = self.marker(0).len();
        let mut segments = Vec::new();
        let mut from = 0;
        for (at, index) in found {
            segments.push(Segment::Bytes(ByteBuf::from(formatted[from..at].to_vec())));
            segments.push(Segment::Base64(self.bodies[index].clone()));
            from = at + marker_len;
        }
        segments.push(Segment::Bytes(ByteBuf::from(formatted[from..].to_vec())));
        MessageBody { segments }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
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
    let merged = merge_defaults(message, defaults)?;
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
    let (envelope_from, envelope_to) = envelope(&root, &from, &sender, [&to, &cc, &bcc])?;

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
    if let Some(subject) = text_field(&root.child("subject"))? {
        root.child("subject").check_header_text(&subject)?;
        builder = builder.subject(subject);
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
    for header in priority_headers(&root.child("priority"))? {
        builder = builder.raw_header(header);
    }
    for header in custom_headers(&root.child("headers"))? {
        builder = builder.raw_header(header);
    }
    let envelope = Envelope::new(envelope_from.clone(), envelope_to.clone())
        .map_err(|err| Error::new(ErrorKind::Envelope, format!("invalid envelope: {err}")))?;
    builder = builder.envelope(envelope);

    let mut streamed = StreamedBodies::new();
    let built = match body_part(&root, &mut streamed, &access).await? {
        Body::Single(part) => builder.singlepart(part),
        Body::Multi(part) => builder.multipart(part),
    }
    .map_err(|err| Error::message_error(format!("the message cannot be built: {err}")))?;
    let message_id = built
        .headers()
        .get_raw("Message-ID")
        .unwrap_or_default()
        .trim()
        .to_string();
    Ok(OutgoingMessage {
        message_id,
        envelope_from,
        envelope_to,
        body: streamed.into_body(built.formatted()),
        dsn: parse_dsn(&root.child("dsn"))?,
    })
}

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
fn header_value(raw: &[u8], name: &str) -> Option<String> {
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

/// MAIL FROM and RCPT TO: `envelope` when given, else `sender` or `from`, and every
/// To, Cc and Bcc address once.
fn envelope(
    root: &Field,
    from: &Mailbox,
    sender: &Option<Mailbox>,
    lists: [&Vec<Mailbox>; 3],
) -> Result<(Option<Address>, Vec<Address>)> {
    let custom = root.child("envelope");
    custom.optional_object()?;
    let envelope_from = match parse_single_mailbox(&custom.child("from"))? {
        Some(mailbox) => mailbox.email,
        None => sender.as_ref().unwrap_or(from).email.clone(),
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

/// A header-ish text: a string (line breaks are encoded by lettre, never sent raw).
fn text_field(field: &Field) -> Result<Option<String>> {
    match field.value() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(field.wrong_type("a string")),
    }
}

/// A body: a string or a Buffer holding UTF-8.
fn body_text(field: &Field) -> Result<Option<String>> {
    match field.value() {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Bytes(bytes)) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| field.error("is a Buffer that is not valid UTF-8")),
        Some(_) => Err(field.wrong_type("a string or Buffer")),
    }
}

fn string_list(field: &Field) -> Result<Vec<String>> {
    let mut list = Vec::new();
    for item in field.items() {
        list.extend(item.string()?.split_whitespace().map(str::to_string));
    }
    Ok(list)
}

fn angle_bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

fn date_field(field: &Field) -> Result<Option<SystemTime>> {
    let millis = match field.value() {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Date(ms)) | Some(Value::Number(ms)) => *ms,
        Some(Value::String(text)) => {
            let parsed = httpdate::parse_http_date(text)
                .ok()
                .or_else(|| chrono_free_rfc2822(text));
            let parsed = parsed.ok_or_else(|| field.error(format!("is not a date: {text:?}")))?;
            parsed
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as f64)
                .unwrap_or(-1.0)
        }
        Some(_) => return Err(field.wrong_type("a Date")),
    };
    // RFC 5322 dates have four-digit years.
    const YEAR_10000_MS: f64 = 253_402_300_800_000.0;
    if !millis.is_finite() || !(0.0..YEAR_10000_MS).contains(&millis) {
        return Err(field.error("is not a date between 1970 and 9999"));
    }
    Ok(Some(UNIX_EPOCH + Duration::from_millis(millis as u64)))
}

/// Dates as strings are rare; accept the ISO 8601 form `Date#toISOString` gives.
fn chrono_free_rfc2822(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (date, time) = text.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let time = time.trim_end_matches('Z');
    let mut hms = time.splitn(3, ':');
    let hour: i64 = hms.next()?.parse().ok()?;
    let minute: i64 = hms.next()?.parse().ok()?;
    let second: f64 = hms.next().unwrap_or("0").parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60;
    if seconds < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs(seconds as u64) + Duration::from_secs_f64(second))
}

/// nodemailer's `priority`: the headers Outlook and others read.
fn priority_headers(field: &Field) -> Result<Vec<HeaderValue>> {
    let (x_priority, importance) = match field.optional_string()? {
        None | Some("normal") => return Ok(Vec::new()),
        Some("high") => ("1 (Highest)", "High"),
        Some("low") => ("5 (Lowest)", "Low"),
        Some(_) => return Err(field.wrong_type("'high', 'normal' or 'low'")),
    };
    Ok(vec![
        header("X-Priority", x_priority),
        header("X-MSMail-Priority", importance),
        header("Importance", importance),
    ])
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
}

/// `headers`: `{ 'X-Name': 'value' | ['v1', 'v2'] }` or `[{ key, value }]`.
fn custom_headers(field: &Field) -> Result<Vec<HeaderValue>> {
    let mut pairs: Vec<(String, Field)> = Vec::new();
    match field.value() {
        None | Some(Value::Null) => {}
        Some(Value::Object(entries)) => {
            for (key, _) in entries {
                pairs.push((key.clone(), field.child(key)));
            }
        }
        Some(Value::Array(_)) => {
            for item in field.items() {
                pairs.push((item.child("key").string()?.to_string(), item.child("value")));
            }
        }
        Some(_) => return Err(field.wrong_type("an object of header names and values")),
    }
    let mut headers = Vec::new();
    for (name, value_field) in pairs {
        let valid_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !valid_name {
            return Err(field.error(format!("has an invalid header name: {name:?}")));
        }
        let header_name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| field.error(format!("has an invalid header name: {name:?}")))?;
        for value in value_field.items() {
            let text = match value.value() {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Object(_)) if value.child("value").is_present() => {
                    value.child("value").string()?.to_string()
                }
                _ => return Err(value.wrong_type("a string")),
            };
            // HeaderValue::new encodes line breaks (RFC 2047), so a value cannot start a new header.
            value.check_header_text(&text)?;
            headers.push(HeaderValue::new(header_name.clone(), text));
        }
    }
    Ok(headers)
}

/// A MIME body: one part, or a multipart tree.
enum Body {
    Single(SinglePart),
    Multi(MultiPart),
}

impl Body {
    fn add_to(self, parent: MultiPart) -> MultiPart {
        match self {
            Body::Single(part) => parent.singlepart(part),
            Body::Multi(part) => parent.multipart(part),
        }
    }
}

/// text / html / both, inline images related to the html, attachments mixed around it all.
async fn body_part(root: &Field<'_>, streamed: &mut StreamedBodies, access: &ContentAccess) -> Result<Body> {
    let text = body_text(&root.child("text"))?;
    let html = body_text(&root.child("html"))?;
    let mut inline = Vec::new();
    let mut attached = Vec::new();
    for item in root.child("attachments").items() {
        match attachment_part(&item, streamed, access).await? {
            (part, true) => inline.push(part),
            (part, false) => attached.push(part),
        }
    }

    let html = html.map(|html| match inline.is_empty() {
        true => Body::Single(SinglePart::html(html)),
        false => Body::Multi(inline.drain(..).fold(
            MultiPart::related().singlepart(SinglePart::html(html)),
            MultiPart::singlepart,
        )),
    });
    let content = match (text, html) {
        (Some(text), Some(html)) => {
            Body::Multi(html.add_to(MultiPart::alternative().singlepart(SinglePart::plain(text))))
        }
        (None, Some(html)) => html,
        (text, None) => Body::Single(SinglePart::plain(text.unwrap_or_default())),
    };
    // Inline parts without html have nothing to be related to: attach them.
    attached.append(&mut inline);
    if attached.is_empty() {
        return Ok(content);
    }
    Ok(Body::Multi(attached.into_iter().fold(
        content.add_to(MultiPart::mixed().build()),
        MultiPart::singlepart,
    )))
}

/// One attachment; `true` when it is an inline part (it has a `cid`).
async fn attachment_part(
    item: &Field<'_>,
    streamed: &mut StreamedBodies,
    access: &ContentAccess,
) -> Result<(SinglePart, bool)> {
    item.optional_object()?
        .ok_or_else(|| item.wrong_type("an attachment object"))?;
    let filename = item.child("filename").optional_string()?;
    let path = item.child("path").optional_string()?;
    let href = item.child("href").optional_string()?;
    let content: ByteBuf = match (item.child("content").value(), path) {
        (Some(Value::Bytes(bytes)), _) => bytes.clone(),
        (Some(Value::String(text)), _) => decode_content(text, &item.child("encoding"))?.into(),
        (Some(Value::Null) | None, _) if href.is_some() => return Err(access.refuse_url(&item.child("href"))),
        (Some(Value::Null) | None, Some(path)) => access.read_path(&item.child("path"), path).await?.into(),
        (Some(Value::Null) | None, None) => return Err(item.error("needs content or path")),
        (Some(_), _) => return Err(item.child("content").wrong_type("a string or Buffer")),
    };
    if let Some(name) = filename {
        item.child("filename").check_header_text(name)?;
    }
    let filename = filename.map(str::to_string).or_else(|| {
        path.and_then(|p| std::path::Path::new(p).file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    let content_type_field = item.child("contentType");
    let content_type = match content_type_field.optional_string()? {
        Some(text) => {
            content_type_field.check_header_text(text)?;
            ContentType::parse(text)
                .map_err(|_| content_type_field.error(format!("is not a MIME type: {text:?}")))?
        }
        None => ContentType::parse(guess_content_type(filename.as_deref())).expect("known MIME types parse"),
    };
    let disposition_field = item.child("contentDisposition");
    let disposition = disposition_field.optional_string()?;
    if !matches!(disposition, None | Some("inline") | Some("attachment")) {
        return Err(disposition_field.wrong_type("'attachment' or 'inline'"));
    }
    let content = if content.len() >= STREAM_THRESHOLD {
        streamed.placeholder(content)
    } else {
        PartBody::new(content.to_vec())
    };
    if let Some(cid) = item.child("cid").optional_string()? {
        item.child("cid").check_header_text(cid)?;
        let cid = cid
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let attachment = match filename {
            Some(name) => Attachment::new_inline_with_name(cid, name),
            None => Attachment::new_inline(cid),
        };
        return Ok((attachment.body(content, content_type), true));
    }
    let name = filename.unwrap_or_else(|| "attachment".to_string());
    let part = if disposition == Some("inline") {
        SinglePart::builder()
            .header(content_type)
            .header(ContentDisposition::inline_with_name(&name))
            .body(content)
    } else {
        Attachment::new(name).body(content, content_type)
    };
    Ok((part, false))
}

fn decode_content(text: &str, encoding_field: &Field) -> Result<Vec<u8>> {
    match encoding_field
        .optional_string()?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("utf8" | "utf-8") => Ok(text.as_bytes().to_vec()),
        Some("base64") => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(
                    compact.trim_end_matches('=').to_string()
                        + &"=".repeat((4 - compact.trim_end_matches('=').len() % 4) % 4),
                )
                .map_err(|err| {
                    encoding_field.error(format!("is base64 but the content is not valid base64 ({err})"))
                })
        }
        Some("hex") => (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| encoding_field.error("is hex but the content is not valid hex")),
        Some("binary" | "latin1") => Ok(text.chars().map(|c| c as u32 as u8).collect()),
        Some(other) => {
            Err(encoding_field.wrong_type(&format!("'base64', 'hex', 'binary' or 'utf8' (not {other:?})")))
        }
    }
}

fn guess_content_type(filename: Option<&str>) -> &'static str {
    let extension = filename
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "ics" => "text/calendar",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "xml" => "application/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
