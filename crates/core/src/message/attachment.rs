//! Attachments (and every other content node: alternatives, the calendar event): where the
//! bytes come from (`content`, `path`, `href`, `raw`), the name, type, disposition and
//! transfer encoding, as nodemailer's mail composer decides them.

use lettre::message::header::{ContentDisposition, Header, HeaderValue};

use super::fetch::fetch_url;
use super::headers::part_headers;
use super::mime::{decode_base64, encoded_words, header, header_pre_encoded, Part, TransferEncoding};
use crate::content_access::{is_url, ContentAccess};
use crate::error::Result;
use crate::input::{ByteBuf, Field, Value};

/// The bytes of a content node, or the whole part (`raw`).
#[derive(Clone)]
pub(super) enum Source {
    Bytes(ByteBuf),
    Raw(ByteBuf),
}

/// A content node before it becomes a part.
pub(super) struct ContentNode {
    pub content_type: String,
    pub filename: Option<String>,
    pub disposition: Option<String>,
    pub cid: Option<String>,
    /// `None`: the default for the node's kind.
    pub transfer: Option<TransferEncoding>,
    pub headers: Vec<HeaderValue>,
    pub source: Source,
}

/// What a `data:` URI holds.
struct DataUri {
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// `data:[<type>][;base64],<data>`; `None` when `text` is not a data URI.
fn parse_data_uri(field: &Field, text: &str) -> Result<Option<DataUri>> {
    let Some(rest) = text
        .get(..5)
        .filter(|s| s.eq_ignore_ascii_case("data:"))
        .map(|_| &text[5..])
    else {
        return Ok(None);
    };
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| field.error("is a data: URI without a comma before its data"))?;
    let mut params = meta.split(';').map(str::trim);
    // Only a type that parses as one: it goes into a header as it is.
    let content_type = params
        .next()
        .filter(|t| t.contains('/') && lettre::message::header::ContentType::parse(t).is_ok())
        .map(str::to_string);
    let is_base64 = meta.split(';').any(|p| p.trim().eq_ignore_ascii_case("base64"));
    let bytes = if is_base64 {
        decode_base64(&percent_decode(data))
            .ok_or_else(|| field.error("is a data: URI whose base64 is not valid"))?
    } else {
        percent_decode(data).into_bytes()
    };
    Ok(Some(DataUri { content_type, bytes }))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name nodemailer derives from a path or URL: its last segment, without a query.
fn name_from_location(location: &str) -> Option<String> {
    if location.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("data:")) {
        return None;
    }
    let last = location.rsplit(['/', '\\']).next()?;
    let name = last.split('?').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

/// The content type for a file name, from the maintained MIME table.
pub(super) fn type_from_name(name: &str, fallback: &str) -> String {
    let extension = std::path::Path::new(name.split('?').next().unwrap_or(name)).extension();
    extension
        .and_then(|ext| mime_guess::from_ext(&ext.to_string_lossy()).first_raw())
        .unwrap_or(fallback)
        .to_string()
}

/// The file extension for a content type, as nodemailer names unnamed attachments.
pub(super) fn extension_for(content_type: &str) -> String {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let subtype = essence.split('/').nth(1).unwrap_or("");
    if essence == "application/octet-stream" {
        return "bin".into();
    }
    let Some(extensions) = mime_guess::get_mime_extensions_str(&essence) else {
        return "bin".into();
    };
    let preferred = [subtype, subtype.split('+').next().unwrap_or(""), "txt"];
    preferred
        .iter()
        .find(|want| !want.is_empty() && extensions.contains(want))
        .or(extensions.first())
        .map(|ext| ext.to_string())
        .unwrap_or_else(|| "bin".into())
}

/// The bytes of `content`, `path`, `href` or `raw` of `item`, and the type a `data:` URI
/// names. Absent content is empty, as in nodemailer.
pub(super) async fn load_source(
    item: &Field<'_>,
    access: &ContentAccess,
) -> Result<(Source, Option<String>)> {
    if let Some(raw) = item
        .child("raw")
        .value()
        .filter(|_| item.child("raw").is_present())
    {
        return match raw {
            Value::Bytes(bytes) => Ok((Source::Raw(bytes.clone()), None)),
            Value::String(text) => Ok((Source::Raw(ByteBuf::from(text.clone().into_bytes())), None)),
            _ => Err(item
                .child("raw")
                .wrong_type("a string or Buffer (the whole part, headers included)")),
        };
    }
    let content_field = item.child("content");
    if content_field.is_present() {
        let bytes: ByteBuf = match content_field.value() {
            Some(Value::Bytes(bytes)) => bytes.clone(),
            Some(Value::String(text)) => decode_content(text, &item.child("encoding"))?.into(),
            Some(Value::Other(kind)) if kind == "a stream" => {
                return Err(content_field.error("is a stream that was not read before sending"))
            }
            _ => return Err(content_field.wrong_type("a string, Buffer or Readable stream")),
        };
        return Ok((Source::Bytes(bytes), None));
    }
    for key in ["path", "href"] {
        let field = item.child(key);
        let Some(location) = field.optional_string()? else {
            continue;
        };
        if let Some(data) = parse_data_uri(&field, location)? {
            return Ok((Source::Bytes(data.bytes.into()), data.content_type));
        }
        if is_url(location) {
            let bytes = fetch_url(&field, location, &item.child("httpHeaders"), access).await?;
            return Ok((Source::Bytes(bytes.into()), None));
        }
        if key == "href" {
            return Err(field.error(format!("is not an http(s) or data: URL: {location:?}")));
        }
        return Ok((
            Source::Bytes(access.read_path(&field, location).await?.into()),
            None,
        ));
    }
    Ok((Source::Bytes(ByteBuf::from(Vec::new())), None))
}

/// `attachments[index]` as nodemailer's `getAttachments` describes it.
pub(super) async fn attachment_node(
    item: &Field<'_>,
    index: usize,
    access: &ContentAccess,
) -> Result<ContentNode> {
    item.optional_object()?
        .ok_or_else(|| item.wrong_type("an attachment object"))?;
    let location = match item.child("path").optional_string()? {
        Some(path) => Some(path),
        None => item.child("href").optional_string()?,
    };
    let (source, data_type) = load_source(item, access).await?;
    let content_type = match item.child("contentType").optional_string()? {
        Some(text) => checked_content_type(&item.child("contentType"), text)?,
        None => match (data_type, item.child("filename").optional_string()?, location) {
            (Some(data_type), _, _) => data_type,
            (None, Some(name), _) => type_from_name(name, "application/octet-stream"),
            (None, None, Some(location)) if name_from_location(location).is_some() => {
                type_from_name(location, "application/octet-stream")
            }
            _ => "application/octet-stream".to_string(),
        },
    };
    let is_message = content_type.to_ascii_lowercase().starts_with("message/");
    let is_image = content_type.to_ascii_lowercase().starts_with("image/");
    let cid = match item.child("cid").optional_string()? {
        Some(cid) => {
            item.child("cid").check_header_text(cid)?;
            Some(cid.replace(['<', '>'], "").trim().to_string())
        }
        None => None,
    };
    let disposition = match item.child("contentDisposition").optional_string()? {
        Some(value @ ("inline" | "attachment")) => value.to_string(),
        Some(_) => {
            return Err(item
                .child("contentDisposition")
                .wrong_type("'attachment' or 'inline'"))
        }
        None if is_message || (is_image && cid.is_some()) => "inline".to_string(),
        None => "attachment".to_string(),
    };
    let filename = match item.child("filename").value() {
        Some(Value::Bool(false)) => None,
        _ => match item.child("filename").optional_string()? {
            Some(name) => {
                item.child("filename").check_header_text(name)?;
                Some(name.to_string())
            }
            None if is_message => None,
            None => {
                let name = location
                    .and_then(name_from_location)
                    .unwrap_or_else(|| format!("attachment-{}", index + 1));
                Some(match name.contains('.') {
                    true => name,
                    false => format!("{name}.{}", extension_for(&content_type)),
                })
            }
        },
    };
    let transfer = match item.child("contentTransferEncoding").value() {
        Some(_) if item.child("contentTransferEncoding").is_present() => {
            Some(transfer_encoding(&item.child("contentTransferEncoding"))?)
        }
        // A message/* part cannot be encoded (RFC 2046 5.2.1).
        _ if is_message => Some(match &source {
            Source::Bytes(bytes) if fits_seven_bit(bytes) && !item.child("encoding").is_present() => {
                TransferEncoding::SevenBit
            }
            _ => TransferEncoding::EightBit,
        }),
        // Attachments keep their bytes exactly: base64, whatever they hold.
        _ => Some(TransferEncoding::Base64),
    };
    Ok(ContentNode {
        content_type,
        filename,
        disposition: Some(disposition),
        cid,
        transfer,
        headers: part_headers(&item.child("headers"))?,
        source,
    })
}

pub(super) fn checked_content_type(field: &Field, text: &str) -> Result<String> {
    field.check_header_text(text)?;
    lettre::message::header::ContentType::parse(text)
        .map_err(|_| field.error(format!("is not a MIME type: {text:?}")))?;
    Ok(text.to_string())
}

/// nodemailer's `contentTransferEncoding`: a name, or `false` for the bytes as they are.
pub(super) fn transfer_encoding(field: &Field) -> Result<TransferEncoding> {
    let expected = "'base64', 'quoted-printable', '7bit', '8bit' or false";
    match field.value() {
        Some(Value::Bool(false)) => Ok(TransferEncoding::AsIs),
        Some(Value::String(name)) => match name.trim().to_ascii_lowercase().as_str() {
            "base64" => Ok(TransferEncoding::Base64),
            "quoted-printable" => Ok(TransferEncoding::QuotedPrintable),
            "7bit" => Ok(TransferEncoding::SevenBit),
            "8bit" => Ok(TransferEncoding::EightBit),
            _ => Err(field.wrong_type(expected)),
        },
        _ => Err(field.wrong_type(expected)),
    }
}

/// ASCII without NUL, no line over 998 octets.
pub(super) fn fits_seven_bit(bytes: &[u8]) -> bool {
    !bytes.iter().any(|&b| b == 0 || b > 0x7f)
        && bytes
            .split(|&b| b == b'\n' || b == b'\r')
            .all(|line| line.len() <= 998)
}

/// Content-Type, with the file's name as nodemailer adds it there too (older readers look
/// there): quoted, and in RFC 2047 words when it is not printable ASCII.
fn content_type_header(content_type: &str, filename: Option<&str>) -> HeaderValue {
    let Some(name) = filename.filter(|_| !content_type.to_ascii_lowercase().contains("name=")) else {
        return header("Content-Type", content_type.to_string());
    };
    // A control character (a line break above all) cannot stand in a quoted string.
    let quoted = match name.is_ascii() && !name.chars().any(|c| c.is_ascii_control()) {
        true => name.replace('\\', "\\\\").replace('"', "\\\""),
        false => encoded_words(name).join("\r\n "),
    };
    let name_param = format!("name=\"{quoted}\"");
    // ASCII throughout: written as it is, folded before the name when the line would be long.
    let separator = match content_type.len() + name_param.len() > 60 {
        true => ";\r\n ",
        false => "; ",
    };
    header_pre_encoded("Content-Type", format!("{content_type}{separator}{name_param}"))
}

/// The part of a content node: its headers (custom ones first, as nodemailer adds them
/// before its own), then the body.
pub(super) fn node_part(node: ContentNode, default_transfer: TransferEncoding) -> Result<Part> {
    let content = match node.source {
        Source::Raw(bytes) => return Ok(Part::Raw(bytes)),
        Source::Bytes(bytes) => bytes,
    };
    let mut headers = vec![content_type_header(&node.content_type, node.filename.as_deref())];
    headers.extend(node.headers);
    if let Some(cid) = &node.cid {
        headers.push(header("Content-ID", format!("<{cid}>")));
    }
    let is_text = node.content_type.to_ascii_lowercase().starts_with("text/");
    let disposition = match (&node.disposition, is_text) {
        (Some(kind), _) => Some(kind.clone()),
        (None, false) => Some("attachment".to_string()),
        (None, true) => None,
    };
    if let Some(kind) = disposition {
        headers.push(match &node.filename {
            Some(name) if kind == "inline" => ContentDisposition::inline_with_name(name).display(),
            Some(name) => ContentDisposition::attachment(name).display(),
            None => header("Content-Disposition", kind),
        });
    }
    Ok(Part::Leaf {
        headers,
        content,
        encoding: node.transfer.unwrap_or(default_transfer),
    })
}

fn decode_content(text: &str, encoding_field: &Field) -> Result<Vec<u8>> {
    let encoding = encoding_field
        .optional_string()?
        .map(|e| e.to_ascii_lowercase().replace(['-', '_', ' '], ""));
    match encoding.as_deref() {
        None | Some("utf8" | "ascii" | "usascii") => Ok(text.as_bytes().to_vec()),
        Some("base64") => decode_base64(text)
            .ok_or_else(|| encoding_field.error("is base64 but the content is not valid base64")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn extensions_follow_nodemailer_names() {
        for (content_type, extension) in [
            ("application/pdf", "pdf"),
            ("text/plain", "txt"),
            ("image/jpeg", "jpeg"),
            ("image/png", "png"),
            ("image/svg+xml", "svg"),
            ("text/calendar; method=REQUEST", "ics"),
            ("application/octet-stream", "bin"),
            ("x-unknown/thing", "bin"),
        ] {
            assert_eq!(extension_for(content_type), extension, "{content_type}");
        }
    }

    #[test]
    fn data_uris_decode_and_keep_only_a_valid_type() {
        let value = Value::Null;
        let field = Field::root("message.attachments[0].path", &value, ErrorKind::Message);
        let plain = parse_data_uri(&field, "data:text/plain;charset=utf-8,caf%C3%A9%20x")
            .unwrap()
            .unwrap();
        assert_eq!(
            (plain.content_type.as_deref(), plain.bytes.as_slice()),
            (Some("text/plain"), "café x".as_bytes())
        );
        let png = parse_data_uri(&field, "DATA:image/png;base64,iVBO Rw==")
            .unwrap()
            .unwrap();
        assert_eq!(png.bytes, [0x89, 0x50, 0x4e, 0x47]);
        let injected = parse_data_uri(&field, "data:text/plain\r\nX-Evil: 1;base64,eA==")
            .unwrap()
            .unwrap();
        assert_eq!(injected.content_type, None);
        assert!(parse_data_uri(&field, "/tmp/data:x").unwrap().is_none());
        assert!(parse_data_uri(&field, "data:no-comma").is_err());
    }

    #[test]
    fn a_file_name_with_a_line_break_is_encoded_in_content_type() {
        let header = content_type_header("text/plain", Some("a\r\nX-Evil: 1.txt"));
        let mut headers = lettre::message::header::Headers::new();
        headers.insert_raw(header);
        let line = headers.to_string();
        assert!(!line.contains("\r\nX-Evil"), "{line}");
        assert!(line.contains("name=\"=?utf-8?b?"), "{line}");
    }
}
