//! What Graph needs done to the MIME bytes our builder (or nodemailer) produced.
//!
//! Graph takes the recipients from the MIME headers, not from an envelope: a Bcc recipient
//! that SMTP names only in `RCPT TO` must appear in a `Bcc:` header, which Exchange reads
//! and removes before delivery. A message over Graph's request limit is sent as a draft
//! whose attachments are added one by one: [`split_attachments`] takes them out of the MIME.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use lettre::Address;

/// `mime` with a `Bcc:` header naming every envelope recipient that its To, Cc and Bcc
/// headers do not name.
pub fn with_bcc(mime: &[u8], envelope_to: &[Address]) -> Vec<u8> {
    let end = header_end(mime);
    let named: String = headers(&mime[..end])
        .into_iter()
        .filter(|(name, _)| matches!(name.as_str(), "to" | "cc" | "bcc"))
        .map(|(_, value)| value.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",");
    let hidden: Vec<String> = envelope_to
        .iter()
        .map(|address| address.to_string())
        .filter(|address| !mentions(&named, &address.to_ascii_lowercase()))
        .collect();
    if hidden.is_empty() {
        return mime.to_vec();
    }
    let mut out = Vec::with_capacity(mime.len() + 64 * hidden.len());
    out.extend_from_slice(format!("Bcc: {}\r\n", hidden.join(",\r\n ")).as_bytes());
    out.extend_from_slice(mime);
    out
}

/// Whether the address list `named` holds `address` as a whole address (not as the tail
/// of a longer one: `bob@x.org` is not in `jimbob@x.org`).
fn mentions(named: &str, address: &str) -> bool {
    named.match_indices(address).any(|(at, _)| {
        let before = named[..at].chars().next_back();
        let after = named[at + address.len()..].chars().next();
        let boundary =
            |c: Option<char>| c.is_none_or(|c| matches!(c, '<' | '>' | ',' | ' ' | '\t' | ':' | ';' | '"'));
        boundary(before) && boundary(after)
    })
}

/// An attachment taken out of the MIME, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    /// `Content-ID` without angle brackets (inline images referenced as `cid:`).
    pub content_id: Option<String>,
    pub inline: bool,
    pub content: Vec<u8>,
}

/// Takes the attachments (parts with `Content-Disposition: attachment`, or inline parts
/// with a file name) out of a top-level `multipart/mixed` message; the rest is kept byte
/// for byte. Parts in an encoding other than base64, 7bit, 8bit or binary stay in place.
pub fn split_attachments(mime: &[u8]) -> (Vec<u8>, Vec<Attachment>) {
    let end = header_end(mime);
    let top = headers(&mime[..end]);
    let content_type = header(&top, "content-type").unwrap_or_default();
    let boundary = match parameter(&content_type, "boundary") {
        Some(boundary) if content_type.to_ascii_lowercase().starts_with("multipart/mixed") => boundary,
        _ => return (mime.to_vec(), Vec::new()),
    };
    let delimiter = format!("--{boundary}");
    // Line starts of the delimiter lines, in order.
    let starts: Vec<usize> = line_starts(mime, end)
        .filter(|&at| mime[at..].starts_with(delimiter.as_bytes()))
        .collect();
    let mut kept = mime[..starts.first().copied().unwrap_or(mime.len())].to_vec();
    let mut attachments = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let next = starts.get(i + 1).copied().unwrap_or(mime.len());
        let part = &mime[start..next];
        let is_last_delimiter = part[delimiter.len()..].starts_with(b"--");
        match (!is_last_delimiter).then(|| attachment(part)).flatten() {
            Some(found) => attachments.push(found),
            None => kept.extend_from_slice(part),
        }
    }
    (kept, attachments)
}

/// The part from its delimiter line to the next one, as an attachment if it is one.
fn attachment(part: &[u8]) -> Option<Attachment> {
    let body_start = part.iter().position(|&b| b == b'\n')? + 1;
    let part = &part[body_start..];
    let end = header_end(part);
    let fields = headers(&part[..end]);
    let disposition = header(&fields, "content-disposition").unwrap_or_default();
    let content_type = header(&fields, "content-type").unwrap_or_else(|| "text/plain".to_string());
    let kind = disposition
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let name = parameter(&disposition, "filename").or_else(|| parameter(&content_type, "name"));
    let inline = match (kind.as_str(), &name) {
        ("attachment", _) => false,
        ("inline", Some(_)) => true,
        _ => return None,
    };
    let body = &part[body_start_of(part, end)..];
    // The CRLF before the next delimiter belongs to the delimiter.
    let body = body
        .strip_suffix(b"\r\n")
        .or_else(|| body.strip_suffix(b"\n"))
        .unwrap_or(body);
    let encoding = header(&fields, "content-transfer-encoding")
        .unwrap_or_else(|| "7bit".to_string())
        .to_ascii_lowercase();
    let content = match encoding.trim() {
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            STANDARD.decode(compact).ok()?
        }
        "7bit" | "8bit" | "binary" => body.to_vec(),
        _ => return None,
    };
    let bare_type = content_type.split(';').next().unwrap_or("").trim().to_string();
    Some(Attachment {
        name: name.unwrap_or_else(|| "attachment".to_string()),
        content_type: bare_type,
        content_id: header(&fields, "content-id").map(|id| {
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        }),
        inline,
        content,
    })
}

/// Where the body starts after a header block that ends at `end`.
fn body_start_of(part: &[u8], end: usize) -> usize {
    if part[end..].starts_with(b"\r\n\r\n") {
        end + 4
    } else if part[end..].starts_with(b"\n\n") {
        end + 2
    } else {
        part.len()
    }
}

/// The offset of the blank line that ends the header block (or the end).
fn header_end(bytes: &[u8]) -> usize {
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = bytes.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => bytes.len(),
    }
}

/// Offsets of the lines that start after `from`.
fn line_starts(bytes: &[u8], from: usize) -> impl Iterator<Item = usize> + '_ {
    bytes[from..]
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .map(move |(i, _)| from + i + 1)
}

/// Unfolded header fields, names lowercased.
fn headers(block: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(block);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n').map(|line| line.trim_end_matches('\r')) {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    fields
}

fn header(fields: &[(String, String)], name: &str) -> Option<String> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// A parameter of a structured header (`filename="a.pdf"`, RFC 2231 `filename*=utf-8''a%20b`).
fn parameter(value: &str, name: &str) -> Option<String> {
    for item in value.split(';').skip(1) {
        let Some((key, raw)) = item.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let raw = raw.trim();
        if key == name {
            return Some(raw.trim_matches('"').to_string());
        }
        if key == format!("{name}*") {
            let encoded = raw.splitn(3, '\'').nth(2).unwrap_or(raw);
            return percent_encoding::percent_decode_str(encoded)
                .decode_utf8()
                .ok()
                .map(|text| text.into_owned());
        }
    }
    None
}

/// The length of `len` bytes in base64, padding included.
pub fn base64_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

/// `bytes` as one base64 string (Graph's MIME body).
pub fn base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> Address {
        text.parse().unwrap()
    }

    #[test]
    fn envelope_only_recipients_become_a_bcc_header() {
        let mime = b"From: a@x.org\r\nTo: Bob <bob@x.org>\r\nCc: c@x.org\r\nSubject: s\r\n\r\nhi\r\n";
        let out = with_bcc(
            mime,
            &[address("bob@x.org"), address("c@x.org"), address("hidden@y.org")],
        );
        assert!(
            out.starts_with(b"Bcc: hidden@y.org\r\nFrom: a@x.org"),
            "{}",
            String::from_utf8_lossy(&out)
        );
        assert_eq!(with_bcc(mime, &[address("bob@x.org")]), mime.to_vec());
        // A longer address that ends the same is another address.
        let out = with_bcc(b"To: jimbob@x.org\r\n\r\nx", &[address("bob@x.org")]);
        assert!(out.starts_with(b"Bcc: bob@x.org\r\n"));
    }

    #[test]
    fn attachments_leave_the_mime_and_the_rest_stays_byte_for_byte() {
        let mime = concat!(
            "From: a@x.org\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
            "--b1\r\nContent-Type: text/plain\r\n\r\nbody\r\n",
            "--b1\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Transfer-Encoding: base64\r\n",
            "Content-Disposition: attachment; filename*=utf-8''r%C3%A9.pdf\r\n\r\naGVs\r\nbG8=\r\n",
            "--b1\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Disposition: inline; filename=\"l.png\"\r\n\r\nPNG\r\n",
            "--b1--\r\n"
        );
        let (kept, attachments) = split_attachments(mime.as_bytes());
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "From: a@x.org\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b1--\r\n"
        );
        assert_eq!(attachments.len(), 2);
        assert_eq!(
            (
                attachments[0].name.as_str(),
                attachments[0].content_type.as_str(),
                attachments[0].content.as_slice(),
                attachments[0].inline
            ),
            ("ré.pdf", "application/pdf", &b"hello"[..], false)
        );
        assert_eq!(
            (
                attachments[1].content_id.as_deref(),
                attachments[1].inline,
                attachments[1].content.as_slice()
            ),
            (Some("logo"), true, &b"PNG"[..])
        );
    }

    #[test]
    fn base64_len_is_the_encoded_length() {
        for len in [0, 1, 2, 3, 4, 5, 6, 1000, 4 * 1024 * 1024] {
            assert_eq!(base64_len(len), base64(&vec![0; len]).len(), "{len}");
        }
    }

    #[test]
    fn a_message_without_multipart_mixed_is_left_alone() {
        let mime = b"Content-Type: text/plain\r\n\r\nhello";
        assert_eq!(split_attachments(mime), (mime.to_vec(), Vec::new()));
    }
}
