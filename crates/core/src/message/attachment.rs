//! One attachment: its content (string, Buffer or file), name, type and disposition.

use base64::Engine;
use lettre::message::header::{ContentDisposition, ContentType};
use lettre::message::{Attachment, Body as PartBody, SinglePart};

use super::wire::{StreamedBodies, STREAM_THRESHOLD};
use crate::error::Result;
use crate::input::{ByteBuf, Field, Value};

/// One attachment; `true` when it is an inline part (it has a `cid`).
pub(super) async fn attachment_part(
    item: &Field<'_>,
    streamed: &mut StreamedBodies,
) -> Result<(SinglePart, bool)> {
    item.optional_object()?
        .ok_or_else(|| item.wrong_type("an attachment object"))?;
    let filename = item.child("filename").optional_string()?;
    let path = item.child("path").optional_string()?;
    let content: ByteBuf = match (item.child("content").value(), path) {
        (Some(Value::Bytes(bytes)), _) => bytes.clone(),
        (Some(Value::String(text)), _) => decode_content(text, &item.child("encoding"))?.into(),
        (Some(Value::Null) | None, Some(path)) => read_attachment(&item.child("path"), path).await?.into(),
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

pub(super) fn decode_content(text: &str, encoding_field: &Field) -> Result<Vec<u8>> {
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

pub(super) async fn read_attachment(field: &Field<'_>, path: &str) -> Result<Vec<u8>> {
    if path.starts_with("http://") || path.starts_with("https://") {
        return Err(field.error(format!(
            "is a URL ({path:?}): only local files are supported; fetch it and pass content"
        )));
    }
    tokio::fs::read(path)
        .await
        .map_err(|err| field.error(format!("cannot be read: {path:?}: {err}")))
}

pub(super) fn guess_content_type(filename: Option<&str>) -> &'static str {
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
