//! `attachDataUrls`: images embedded in the html as `data:` URLs become inline attachments
//! referenced by `cid:`, as nodemailer's `_convertDataImages` does (many mail clients do
//! not show data: images).

use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::attachment::extension_for;
use crate::input::Value;

/// nodemailer's own pattern: an `<img ... src=` followed by a data URL with a media type.
fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        Regex::new(
            r#"(?i)(<img\b[^<>]{0,1024} src\s{0,20}=[\s"']{0,20})(data:([^;"'<>\s]{1,255});[^"'>\s]+)"#,
        )
        .expect("the pattern is valid")
    })
}

/// Rewrites `html` and appends an attachment per data URL to `attachments` of `message`
/// (an object); does nothing unless `attachDataUrls` is true and `html` is a string.
pub(super) fn attach_data_urls(message: &mut Value) {
    let Value::Object(fields) = message else {
        return;
    };
    let enabled = fields
        .iter()
        .any(|(key, value)| key == "attachDataUrls" && *value == Value::Bool(true));
    let html = fields
        .iter()
        .find_map(|(key, value)| match (key.as_str(), value) {
            ("html", Value::String(html)) => Some(html.clone()),
            _ => None,
        });
    let (true, Some(html)) = (enabled, html) else {
        return;
    };
    let mut added = Vec::new();
    let rewritten = pattern().replace_all(&html, |captures: &Captures| {
        let cid = format!("{:016x}{:04x}@localhost", fastrand::u64(..), fastrand::u16(..));
        let filename = format!("image-{}.{}", added.len() + 1, extension_for(&captures[3]));
        added.push(Value::object([
            ("path", Value::str(&captures[2])),
            ("cid", Value::str(cid.clone())),
            ("filename", Value::str(filename)),
        ]));
        format!("{}cid:{cid}", &captures[1])
    });
    if added.is_empty() {
        return;
    }
    let rewritten = rewritten.into_owned();
    for (key, value) in fields.iter_mut() {
        if key == "html" {
            *value = Value::String(rewritten.clone());
        }
    }
    match fields.iter_mut().find(|(key, _)| key == "attachments") {
        Some((_, Value::Array(items))) => items.extend(added),
        Some((_, slot @ (Value::Null | Value::Undefined))) => *slot = Value::Array(added),
        Some((_, single)) => {
            let first = std::mem::replace(single, Value::Null);
            *single = Value::Array(std::iter::once(first).chain(added).collect());
        }
        None => fields.push(("attachments".to_string(), Value::Array(added))),
    }
}
