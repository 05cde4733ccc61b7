//! The body tree, as nodemailer's mail composer shapes it: the alternatives (text,
//! watchHtml, amp, html, the calendar event, `alternatives`), inline parts related to the
//! html, and attachments mixed around it all.

use super::attachment::{
    attachment_node, checked_content_type, load_source, node_part, transfer_encoding, type_from_name,
    ContentNode, Source,
};
use super::headers::part_headers;
use super::mime::{Part, TransferEncoding};
use crate::content_access::ContentAccess;
use crate::error::Result;
use crate::input::{Field, Value};

/// The message's tree of parts.
pub(super) async fn body_part(root: &Field<'_>, access: &ContentAccess) -> Result<Part> {
    let text_transfer = text_transfer(root)?;
    let calendar = calendar_source(root, access).await?;
    let mut alternatives = alternatives(root, access, calendar.as_ref()).await?;
    let html_index = alternatives
        .iter()
        .rposition(|node| node.content_type.to_ascii_lowercase().starts_with("text/html"));
    let mut related = Vec::new();
    let mut attached = Vec::new();
    for (index, item) in root.child("attachments").items().into_iter().enumerate() {
        let node = attachment_node(&item, index, access).await?;
        match (&node.cid, html_index) {
            (Some(_), Some(_)) => related.push(node),
            _ => attached.push(node),
        }
    }
    if let Some(calendar) = calendar_attachment(root, calendar)? {
        attached.push(calendar);
    }

    let use_related = html_index.is_some() && !related.is_empty();
    let use_alternative = alternatives.len() > 1;
    let use_mixed = attached.len() > 1 || (!alternatives.is_empty() && attached.len() == 1);
    let part = |node: ContentNode| {
        let transfer = text_transfer.for_node(&node_type(&node));
        node_part(node, transfer)
    };

    let mut html = None;
    if use_related {
        if let Some(index) = html_index {
            html = Some(alternatives.remove(index));
        }
    }
    let related_part = |html: ContentNode, related: Vec<ContentNode>| -> Result<Part> {
        let mut children = vec![part(html)?];
        for node in related {
            children.push(part(node)?);
        }
        Ok(Part::Multi {
            subtype: "related",
            headers: Vec::new(),
            children,
        })
    };

    let content = if use_alternative {
        // The related part takes the html's place among the alternatives.
        let mut children = Vec::new();
        let mut related = Some((html, related));
        for (index, node) in alternatives.into_iter().enumerate() {
            if Some(index) == html_index {
                if let Some((Some(html), related)) = related.take() {
                    children.push(related_part(html, related)?);
                }
            }
            children.push(part(node)?);
        }
        if let Some((Some(html), related)) = related.take() {
            children.push(related_part(html, related)?);
        }
        Some(Part::Multi {
            subtype: "alternative",
            headers: Vec::new(),
            children,
        })
    } else if let Some(html) = html {
        Some(related_part(html, related)?)
    } else {
        match alternatives.is_empty() {
            true => None,
            false => Some(part(alternatives.remove(0))?),
        }
    };

    if use_mixed {
        let mut children: Vec<Part> = content.into_iter().collect();
        for node in attached {
            children.push(part(node)?);
        }
        return Ok(Part::Multi {
            subtype: "mixed",
            headers: Vec::new(),
            children,
        });
    }
    match (content, attached.pop()) {
        (Some(content), _) => Ok(content),
        (None, Some(only)) => part(only),
        (None, None) => part(ContentNode {
            content_type: "text/plain".into(),
            filename: None,
            disposition: None,
            cid: None,
            transfer: None,
            headers: Vec::new(),
            source: Source::Bytes(Vec::new().into()),
        }),
    }
}

fn node_type(node: &ContentNode) -> String {
    node.content_type.to_ascii_lowercase()
}

/// The message-level `encoding` (forced on text parts) and `textEncoding` (preferred for
/// text that 7bit cannot carry).
struct TextTransfer {
    forced: Option<TransferEncoding>,
    preferred: Option<TransferEncoding>,
}

impl TextTransfer {
    fn for_node(&self, content_type: &str) -> TransferEncoding {
        match content_type.starts_with("text/") {
            true => self.forced.or(self.preferred).unwrap_or(TransferEncoding::Text),
            false => TransferEncoding::Base64,
        }
    }
}

fn text_transfer(root: &Field) -> Result<TextTransfer> {
    let forced = match root.child("encoding").is_present() {
        true => Some(transfer_encoding(&root.child("encoding"))?),
        false => None,
    };
    let preferred = match root
        .child("textEncoding")
        .optional_string()?
        .map(str::to_ascii_lowercase)
    {
        None => None,
        Some(name) if name == "quoted-printable" || name == "q" => {
            Some(TransferEncoding::QuotedPrintableIfNeeded)
        }
        Some(name) if name == "base64" || name == "b" => Some(TransferEncoding::Base64IfNeeded),
        Some(_) => {
            return Err(root
                .child("textEncoding")
                .wrong_type("'quoted-printable' or 'base64'"))
        }
    };
    Ok(TextTransfer { forced, preferred })
}

/// text, watchHtml, amp, html, the calendar event, then `alternatives`, in nodemailer's order.
async fn alternatives(
    root: &Field<'_>,
    access: &ContentAccess,
    calendar: Option<&(Source, Option<String>)>,
) -> Result<Vec<ContentNode>> {
    let mut nodes = Vec::new();
    for (key, content_type) in [
        ("text", "text/plain; charset=utf-8"),
        ("watchHtml", "text/watch-html; charset=utf-8"),
        ("amp", "text/x-amp-html; charset=utf-8"),
        ("html", "text/html; charset=utf-8"),
    ] {
        let field = root.child(key);
        if let Some(source) = body_source(&field, access).await? {
            nodes.push(text_node(content_type.to_string(), source));
        }
        if key == "html" {
            if let Some((source, method)) = calendar {
                let method = method.as_deref().unwrap_or("PUBLISH");
                let content_type = format!("text/calendar; charset=utf-8; method={method}");
                nodes.push(text_node(content_type, source.clone()));
            }
        }
    }
    for item in root.child("alternatives").items() {
        item.optional_object()?
            .ok_or_else(|| item.wrong_type("an object such as { contentType, content }"))?;
        let (source, data_type) = load_source(&item, access).await?;
        let filename = item.child("filename").optional_string()?.map(str::to_string);
        if let Some(name) = &filename {
            item.child("filename").check_header_text(name)?;
        }
        let content_type = match item.child("contentType").optional_string()? {
            Some(text) => checked_content_type(&item.child("contentType"), text)?,
            None => data_type.unwrap_or_else(|| {
                let location = filename
                    .clone()
                    .or(item
                        .child("path")
                        .optional_string()
                        .ok()
                        .flatten()
                        .map(str::to_string))
                    .unwrap_or_else(|| "x.txt".to_string());
                type_from_name(&location, "application/octet-stream")
            }),
        };
        let transfer = match item.child("contentTransferEncoding").is_present() {
            true => Some(transfer_encoding(&item.child("contentTransferEncoding"))?),
            false => None,
        };
        nodes.push(ContentNode {
            content_type,
            filename,
            disposition: None,
            cid: None,
            transfer,
            headers: part_headers(&item.child("headers"))?,
            source,
        });
    }
    Ok(nodes)
}

fn text_node(content_type: String, source: Source) -> ContentNode {
    ContentNode {
        content_type,
        filename: None,
        disposition: None,
        cid: None,
        transfer: None,
        headers: Vec::new(),
        source,
    }
}

/// A body field: a string, a Buffer, or a content object `{ content | path | href }`.
async fn body_source(field: &Field<'_>, access: &ContentAccess) -> Result<Option<Source>> {
    match field.value() {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(Source::Bytes(text.clone().into_bytes().into()))),
        Some(Value::Bytes(bytes)) if bytes.is_empty() => Ok(None),
        Some(Value::Bytes(bytes)) => Ok(Some(Source::Bytes(bytes.clone()))),
        Some(Value::Object(_))
            if ["content", "path", "href", "raw"]
                .iter()
                .any(|key| field.child(key).is_present()) =>
        {
            Ok(Some(load_source(field, access).await?.0))
        }
        Some(_) => Err(field.wrong_type("a string, Buffer or { content | path | href }")),
    }
}

/// `icalEvent`: a string or Buffer of iCalendar text, or `{ method, filename, content |
/// path | href, encoding }`.
async fn calendar_source(
    root: &Field<'_>,
    access: &ContentAccess,
) -> Result<Option<(Source, Option<String>)>> {
    let field = root.child("icalEvent");
    match field.value() {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) => Ok(Some((Source::Bytes(text.clone().into_bytes().into()), None))),
        Some(Value::Bytes(bytes)) => Ok(Some((Source::Bytes(bytes.clone()), None))),
        Some(Value::Object(_)) => {
            let method = field
                .child("method")
                .optional_string()?
                .map(|m| m.trim().to_ascii_uppercase());
            if let Some(method) = &method {
                if !method.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                    return Err(field
                        .child("method")
                        .wrong_type("an iTIP method such as 'REQUEST'"));
                }
            }
            if !["content", "path", "href", "raw"]
                .iter()
                .any(|key| field.child(key).is_present())
            {
                return Err(field.error("needs content, path or href"));
            }
            Ok(Some((load_source(&field, access).await?.0, method)))
        }
        Some(_) => Err(field.wrong_type("a string, Buffer or { method, filename, content | path | href }")),
    }
}

/// The calendar again as an `invite.ics` attachment (nodemailer sends both).
fn calendar_attachment(
    root: &Field,
    calendar: Option<(Source, Option<String>)>,
) -> Result<Option<ContentNode>> {
    let Some((source, _)) = calendar else {
        return Ok(None);
    };
    let field = root.child("icalEvent");
    let filename = match field.child("filename").optional_string()? {
        Some(name) => {
            field.child("filename").check_header_text(name)?;
            name.to_string()
        }
        None => "invite.ics".to_string(),
    };
    Ok(Some(ContentNode {
        content_type: "application/ics".into(),
        filename: Some(filename),
        disposition: Some("attachment".into()),
        cid: None,
        transfer: Some(TransferEncoding::Base64),
        headers: Vec::new(),
        source,
    }))
}
