//! The MIME tree of a message and its serialisation into wire segments.
//!
//! lettre formats the message's own header fields (addresses, subject, dates); the body tree
//! is written here because nodemailer's parts need what lettre's part builder cannot give:
//! repeated and custom headers on a part, a part given whole (`raw`), a transfer encoding
//! chosen by the caller, and large base64 bodies left in the caller's buffer until sent.

use base64::Engine;
use lettre::message::header::{ContentTransferEncoding, HeaderName, HeaderValue};
use lettre::message::Body as EncodedBody;

use super::wire::{MessageBody, Segment, STREAM_THRESHOLD};
use crate::input::ByteBuf;

/// How a leaf's bytes go on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TransferEncoding {
    SevenBit,
    EightBit,
    QuotedPrintable,
    Base64,
    /// Text as nodemailer encodes it: 7bit when it is plain ASCII without long lines, else
    /// quoted-printable when Latin letters outnumber the others, else base64.
    Text,
    /// As `Text`, but quoted-printable whenever 7bit does not fit (`textEncoding`).
    QuotedPrintableIfNeeded,
    /// As `Text`, but base64 whenever 7bit does not fit (`textEncoding`).
    Base64IfNeeded,
    /// The bytes as given, and no Content-Transfer-Encoding header
    /// (nodemailer's `contentTransferEncoding: false`).
    AsIs,
}

/// One node of the tree.
pub(super) enum Part {
    Leaf {
        headers: Vec<HeaderValue>,
        content: ByteBuf,
        encoding: TransferEncoding,
    },
    Multi {
        /// `mixed`, `alternative`, `related`.
        subtype: &'static str,
        headers: Vec<HeaderValue>,
        children: Vec<Part>,
    },
    /// A part given whole, headers included (`raw`): written as it is.
    Raw(ByteBuf),
}

pub(super) fn header(name: &str, value: impl Into<String>) -> HeaderValue {
    text_header(
        HeaderName::new_from_ascii(name.to_string()).expect("a valid header name"),
        value.into(),
    )
}

/// A header of free text. lettre leaves a word that looks like an RFC 2047 encoded word
/// (`=?utf-8?q?x?=`) as it is, and a reader would then decode it: such a value is encoded
/// whole instead, as nodemailer does.
pub(super) fn text_header(name: HeaderName, value: String) -> HeaderValue {
    // nodemailer encodes only a value that has to be encoded anyway (non-ASCII, or a
    // double quote); lettre encodes words, and leaves the lookalike as it is.
    if !value.contains("=?") || (value.is_ascii() && !value.contains('"')) {
        return HeaderValue::new(name, value);
    }
    let encoded = encoded_words(&value).join("\r\n ");
    HeaderValue::dangerous_new_pre_encoded(name, value, encoded)
}

/// `text` as RFC 2047 base64 words of at most 42 bytes each (56 characters of base64, so
/// that a word and a header name fit in 78), split between characters.
pub(super) fn encoded_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > 42 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|word| {
            format!(
                "=?utf-8?b?{}?=",
                base64::engine::general_purpose::STANDARD.encode(word)
            )
        })
        .collect()
}

/// A header whose value is already encoded and folded by the caller (ASCII only).
pub(super) fn header_pre_encoded(name: &str, value: String) -> HeaderValue {
    HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii(name.to_string()).expect("a valid header name"),
        value.clone(),
        value,
    )
}

/// Appends `name: value\r\n` as lettre encoded it.
pub(super) fn write_header(out: &mut Vec<u8>, value: &HeaderValue) {
    let mut headers = lettre::message::header::Headers::new();
    headers.insert_raw(value.clone());
    out.extend_from_slice(headers.to_string().as_bytes());
}

/// Collects the wire segments: bytes, and large base64 bodies by reference.
pub(super) struct Writer {
    segments: Vec<Segment>,
    pending: Vec<u8>,
}

impl Writer {
    pub(super) fn new() -> Self {
        Writer {
            segments: Vec::new(),
            pending: Vec::new(),
        }
    }

    pub(super) fn bytes(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn streamed_base64(&mut self, content: ByteBuf) {
        let pending = std::mem::take(&mut self.pending);
        self.segments.push(Segment::Bytes(ByteBuf::from(pending)));
        self.segments.push(Segment::Base64(content));
    }

    /// Ends the message with a line break, as nodemailer ends a single-part body.
    pub(super) fn end_line(&mut self) {
        if !self.pending.ends_with(b"\r\n") {
            self.pending.extend_from_slice(b"\r\n");
        }
    }

    pub(super) fn finish(mut self) -> MessageBody {
        let pending = std::mem::take(&mut self.pending);
        self.segments.push(Segment::Bytes(ByteBuf::from(pending)));
        self.segments
            .retain(|segment| !matches!(segment, Segment::Bytes(b) if b.is_empty()));
        MessageBody::from_segments(self.segments)
    }
}

impl Part {
    /// Writes the part: its headers, a blank line, its body.
    pub(super) fn write(self, out: &mut Writer) -> Result<(), String> {
        match self {
            Part::Raw(bytes) => {
                out.bytes().extend_from_slice(&bytes);
                Ok(())
            }
            Part::Multi {
                subtype,
                headers,
                children,
            } => {
                let boundary = format!(
                    "--_smtp-oauth-transport-{:016x}{:016x}",
                    fastrand::u64(..),
                    fastrand::u64(..)
                );
                let content_type = match subtype {
                    "related" => {
                        format!("multipart/related; type=\"text/html\";\r\n boundary=\"{boundary}\"")
                    }
                    other => format!("multipart/{other};\r\n boundary=\"{boundary}\""),
                };
                write_header(out.bytes(), &header_pre_encoded("Content-Type", content_type));
                for value in &headers {
                    write_header(out.bytes(), value);
                }
                out.bytes().extend_from_slice(b"\r\n");
                for child in children {
                    out.bytes()
                        .extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                    child.write(out)?;
                    out.bytes().extend_from_slice(b"\r\n");
                }
                out.bytes()
                    .extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                Ok(())
            }
            Part::Leaf {
                headers,
                content,
                encoding,
            } => {
                let (label, body) = encode(content, encoding)?;
                for value in &headers {
                    write_header(out.bytes(), value);
                }
                if let Some(label) = label {
                    write_header(
                        out.bytes(),
                        &header_pre_encoded("Content-Transfer-Encoding", label),
                    );
                }
                out.bytes().extend_from_slice(b"\r\n");
                match body {
                    Encoded::Bytes(bytes) => out.bytes().extend_from_slice(&bytes),
                    Encoded::StreamedBase64(content) => out.streamed_base64(content),
                }
                Ok(())
            }
        }
    }
}

enum Encoded {
    Bytes(Vec<u8>),
    StreamedBase64(ByteBuf),
}

/// The Content-Transfer-Encoding label and the encoded body; an error says why the
/// encoding asked for cannot carry these bytes.
fn encode(content: ByteBuf, encoding: TransferEncoding) -> Result<(Option<String>, Encoded), String> {
    let encoding = match encoding {
        TransferEncoding::Text
        | TransferEncoding::QuotedPrintableIfNeeded
        | TransferEncoding::Base64IfNeeded
            if is_plain_short_text(&content) =>
        {
            TransferEncoding::SevenBit
        }
        TransferEncoding::QuotedPrintableIfNeeded => TransferEncoding::QuotedPrintable,
        TransferEncoding::Base64IfNeeded => TransferEncoding::Base64,
        TransferEncoding::Text if mostly_latin(&content) => TransferEncoding::QuotedPrintable,
        TransferEncoding::Text => TransferEncoding::Base64,
        other => other,
    };
    let chosen = match encoding {
        TransferEncoding::AsIs => return Ok((None, Encoded::Bytes(content.to_vec()))),
        TransferEncoding::Base64 if content.len() >= STREAM_THRESHOLD => {
            return Ok((Some("base64".into()), Encoded::StreamedBase64(content)));
        }
        TransferEncoding::Base64 => {
            let mut out = Vec::new();
            super::wire::encode_base64_lines(&content, &mut out);
            return Ok((Some("base64".into()), Encoded::Bytes(out)));
        }
        TransferEncoding::SevenBit | TransferEncoding::EightBit => {
            let (label, fits) = match encoding {
                TransferEncoding::SevenBit => ("7bit", content.is_ascii()),
                _ => ("8bit", true),
            };
            let body = with_crlf(&content);
            let valid =
                fits && !body.contains(&0) && body.split(|&b| b == b'\n').all(|line| line.len() <= 999);
            if !valid {
                return Err(format!("cannot carry these bytes as {label}"));
            }
            return Ok((Some(label.to_string()), Encoded::Bytes(body)));
        }
        // The text choices were resolved to one of the others above.
        _ => ContentTransferEncoding::QuotedPrintable,
    };
    // Text goes to lettre as a String so that its line breaks become CRLF.
    let body = match String::from_utf8(content.to_vec()) {
        Ok(text) => EncodedBody::new_with_encoding(text, chosen),
        Err(bytes) => EncodedBody::new_with_encoding(bytes.into_bytes(), chosen),
    }
    .map_err(|_| format!("cannot carry these bytes as {}", label_of(chosen)))?;
    Ok((
        Some(label_of(chosen).to_string()),
        Encoded::Bytes(body.into_vec()),
    ))
}

/// Every line break as CRLF (a lone LF or CR included), as SMTP wants them.
fn with_crlf(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + content.len() / 32);
    let mut bytes = content.iter().peekable();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'\r' => {
                bytes.next_if_eq(&&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            other => out.push(other),
        }
    }
    out
}

/// nodemailer's test for 7bit text: ASCII without control characters (but tab and line
/// breaks), and no line longer than 76 characters.
fn is_plain_short_text(content: &[u8]) -> bool {
    let plain = content
        .iter()
        .all(|&b| b < 0x80 && (b >= 0x20 || b == b'\t' || b == b'\r' || b == b'\n'));
    plain
        && content
            .split(|&b| b == b'\n')
            .all(|line| line.strip_suffix(b"\r").unwrap_or(line).len() <= 76)
}

/// nodemailer's choice between quoted-printable and base64: Latin letters outnumber control
/// and non-ASCII characters (counted in UTF-16 units, as JavaScript counts them).
fn mostly_latin(content: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content);
    let (mut latin, mut other) = (0usize, 0usize);
    for unit in text.encode_utf16() {
        match unit {
            0x41..=0x5a | 0x61..=0x7a => latin += 1,
            0x00..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f => other += 1,
            0x80.. => other += 1,
            _ => {}
        }
    }
    other < latin
}

fn label_of(encoding: ContentTransferEncoding) -> &'static str {
    match encoding {
        ContentTransferEncoding::SevenBit => "7bit",
        ContentTransferEncoding::EightBit => "8bit",
        ContentTransferEncoding::QuotedPrintable => "quoted-printable",
        ContentTransferEncoding::Base64 => "base64",
        ContentTransferEncoding::Binary => "binary",
    }
}

/// Decodes standard base64, tolerating line breaks, spaces and missing padding.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let unpadded = compact.trim_end_matches('=');
    let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
    base64::engine::general_purpose::STANDARD.decode(padded).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(value: HeaderValue) -> String {
        let mut out = Vec::new();
        write_header(&mut out, &value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_encoded_word_lookalike_is_encoded_when_the_value_needs_encoding() {
        assert_eq!(
            line(header("Subject", "plain =?utf-8?q?x?=")),
            "Subject: plain =?utf-8?q?x?=\r\n"
        );
        let encoded = line(header("Subject", "café =?utf-8?q?x?="));
        assert!(encoded.starts_with("Subject: =?utf-8?b?"), "{encoded}");
        assert!(!encoded.contains("q?x?="), "{encoded}");
    }

    #[test]
    fn text_encodings_follow_nodemailer() {
        let label = |text: &str| {
            encode(ByteBuf::from(text.as_bytes().to_vec()), TransferEncoding::Text)
                .unwrap()
                .0
        };
        assert_eq!(label(&"x".repeat(76)).as_deref(), Some("7bit"));
        assert_eq!(label(&"x".repeat(77)).as_deref(), Some("quoted-printable"));
        assert_eq!(label("naïve café résumé").as_deref(), Some("quoted-printable"));
        assert_eq!(label("日本語のテキスト").as_deref(), Some("base64"));
        let (_, body) = encode(ByteBuf::from(b"a\nb\rc".to_vec()), TransferEncoding::SevenBit).unwrap();
        assert!(matches!(body, Encoded::Bytes(bytes) if bytes == b"a\r\nb\r\nc"));
        assert!(encode(ByteBuf::from("é".as_bytes().to_vec()), TransferEncoding::SevenBit).is_err());
    }
}
