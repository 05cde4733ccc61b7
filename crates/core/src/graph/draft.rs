//! The draft way (learn.microsoft.com: "Attach large files to Outlook messages or events",
//! `attachment: createUploadSession`, `message: send`): create a draft from the MIME, add
//! the attachments (under 3 MB in one request each, larger ones through an upload session
//! in chunks of a multiple of 320 KiB), then send it. Used for messages over the 4 MB
//! request limit and when the message must not be saved to Sent Items. A draft left by a
//! failed step is deleted (best effort), so a retry starts clean.

use reqwest::Method;
use serde_json::json;

use super::mime::{base64, base64_len, split_attachments, Attachment};
use super::{GraphClient, MAX_REQUEST_BYTES};
use crate::error::{Error, ErrorKind, Result};

/// Attachments from this size on go through an upload session.
const UPLOAD_SESSION_FROM: usize = 3 * 1024 * 1024;
/// Upload chunks: a multiple of 320 KiB, under the 4 MB per request.
pub const UPLOAD_CHUNK_BYTES: usize = 12 * 320 * 1024;

/// Sends `mime` through a draft; returns the status line of the final `send`.
pub async fn send(client: &GraphClient, mime: Vec<u8>) -> Result<String> {
    let (mime, attachments) = match base64_len(mime.len()) > MAX_REQUEST_BYTES {
        true => split_attachments(&mime),
        false => (mime, Vec::new()),
    };
    let encoded = base64(&mime);
    if encoded.len() > MAX_REQUEST_BYTES {
        return Err(Error::new(
            ErrorKind::Message,
            format!(
                "the message is {} bytes of MIME without its attachments: Microsoft Graph takes at most 4 MB per request (move large inline content into attachments)",
                mime.len()
            ),
        ));
    }
    let call = client.call(
        "createMessage",
        Method::POST,
        &["messages"],
        "text/plain",
        encoded.into_bytes(),
        false,
    );
    let (_, body) = client.execute_with_body(call).await?;
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|draft| draft.get("id").and_then(|id| id.as_str()).map(str::to_string))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                "Microsoft Graph created the draft but named no id",
            )
        })?;
    match complete(client, &id, attachments).await {
        Ok(()) => {}
        Err(err) => {
            let delete = client.call(
                "deleteDraft",
                Method::DELETE,
                &["messages", &id],
                "application/json",
                Vec::new(),
                false,
            );
            let _ = client.execute(delete).await;
            return Err(err);
        }
    }
    let send = client.call(
        "send",
        Method::POST,
        &["messages", &id, "send"],
        "application/json",
        Vec::new(),
        true,
    );
    client.execute(send).await
}

/// Adds the attachments and, without Sent Items, marks the draft to be deleted once sent.
async fn complete(client: &GraphClient, id: &str, attachments: Vec<Attachment>) -> Result<()> {
    for attachment in attachments {
        if attachment.content.len() < UPLOAD_SESSION_FROM {
            let body = json!({
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": attachment.name,
                "contentType": attachment.content_type,
                "contentBytes": base64(&attachment.content),
                "isInline": attachment.inline,
                "contentId": attachment.content_id,
            });
            let call = client.call(
                "addAttachment",
                Method::POST,
                &["messages", id, "attachments"],
                "application/json",
                body.to_string().into_bytes(),
                false,
            );
            client.execute(call).await?;
        } else {
            upload(client, id, attachment).await?;
        }
    }
    if !client.options.save_to_sent_items {
        // PidTagDeleteAfterSubmit: Exchange deletes the sent message instead of keeping it
        // in Sent Items (sendMail's saveToSentItems exists only in its JSON form).
        let body = json!({
            "singleValueExtendedProperties": [{ "id": "Boolean 0x0E01", "value": "true" }]
        });
        let call = client.call(
            "updateDraft",
            Method::PATCH,
            &["messages", id],
            "application/json",
            body.to_string().into_bytes(),
            false,
        );
        client.execute(call).await?;
    }
    Ok(())
}

async fn upload(client: &GraphClient, id: &str, attachment: Attachment) -> Result<()> {
    let total = attachment.content.len();
    let body = json!({
        "AttachmentItem": {
            "attachmentType": "file",
            "name": attachment.name,
            "size": total,
            "contentType": attachment.content_type,
            "isInline": attachment.inline,
            "contentId": attachment.content_id,
        }
    });
    let call = client.call(
        "createUploadSession",
        Method::POST,
        &["messages", id, "attachments", "createUploadSession"],
        "application/json",
        body.to_string().into_bytes(),
        false,
    );
    let (_, answer) = client.execute_with_body(call).await?;
    let url = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|session| {
            session
                .get("uploadUrl")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                "Microsoft Graph's upload session has no uploadUrl",
            )
        })?;
    let url = upload_url(client, &url)?;
    for (index, chunk) in attachment.content.chunks(UPLOAD_CHUNK_BYTES).enumerate() {
        let start = index * UPLOAD_CHUNK_BYTES;
        let range = format!("bytes {start}-{}/{total}", start + chunk.len() - 1);
        client.upload(&url, range, chunk.to_vec()).await?;
    }
    Ok(())
}

/// The upload URL must be https, like the API root (http only on loopback, in tests).
fn upload_url(client: &GraphClient, text: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text)
        .map_err(|_| Error::new(ErrorKind::Protocol, "Microsoft Graph's uploadUrl is not a URL"))?;
    let loopback_root = client.base_url().scheme() == "http";
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback_root && loopback => Ok(url),
        _ => Err(Error::new(
            ErrorKind::Protocol,
            "Microsoft Graph's uploadUrl is not https: the attachment was not uploaded",
        )),
    }
}
