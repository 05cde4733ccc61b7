//! The body tree: text, html, inline images and attachments.

use lettre::message::{MultiPart, SinglePart};

use super::attachment::attachment_part;
use super::wire::StreamedBodies;
use crate::error::Result;
use crate::input::{Field, Value};

/// A body: a string or a Buffer holding UTF-8.
pub(super) fn body_text(field: &Field) -> Result<Option<String>> {
    match field.value() {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Bytes(bytes)) => String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| field.error("is a Buffer that is not valid UTF-8")),
        Some(_) => Err(field.wrong_type("a string or Buffer")),
    }
}
/// A MIME body: one part, or a multipart tree.
pub(super) enum Body {
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
pub(super) async fn body_part(root: &Field<'_>, streamed: &mut StreamedBodies) -> Result<Body> {
    let text = body_text(&root.child("text"))?;
    let html = body_text(&root.child("html"))?;
    let mut inline = Vec::new();
    let mut attached = Vec::new();
    for item in root.child("attachments").items() {
        match attachment_part(&item, streamed).await? {
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
