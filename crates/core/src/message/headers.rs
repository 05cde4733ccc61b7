//! Header fields of the message: texts, dates, ids, priority and custom headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{HeaderName, HeaderValue};

use super::mime::{header, text_header};
use crate::error::Result;
use crate::input::{Field, Value};

/// A header-ish text: a string (line breaks are encoded by lettre, never sent raw).
pub(super) fn text_field(field: &Field) -> Result<Option<String>> {
    match field.value() {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(field.wrong_type("a string")),
    }
}
pub(super) fn string_list(field: &Field) -> Result<Vec<String>> {
    let mut list = Vec::new();
    for item in field.items() {
        list.extend(item.string()?.split_whitespace().map(str::to_string));
    }
    Ok(list)
}

pub(super) fn angle_bracketed(id: &str) -> String {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    format!("<{id}>")
}

pub(super) fn date_field(field: &Field) -> Result<Option<SystemTime>> {
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
pub(super) fn chrono_free_rfc2822(text: &str) -> Option<SystemTime> {
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
pub(super) fn priority_headers(field: &Field) -> Result<Vec<HeaderValue>> {
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

/// `headers`: `{ 'X-Name': 'value' | ['v1', 'v2'] }` or `[{ key, value }]`.
pub(super) fn custom_headers(field: &Field) -> Result<Vec<HeaderValue>> {
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
            headers.push(text_header(header_name.clone(), text));
        }
    }
    Ok(headers)
}

/// `headers` of a part (attachment, alternative): as the message's `headers`.
pub(super) fn part_headers(field: &Field) -> Result<Vec<HeaderValue>> {
    let headers = custom_headers(field)?;
    for value in &headers {
        if ["content-type", "content-transfer-encoding"]
            .contains(&value_name(value).to_ascii_lowercase().as_str())
        {
            return Err(field.error(format!(
                "sets {}: use contentType / contentTransferEncoding instead",
                value_name(value)
            )));
        }
    }
    Ok(headers)
}

/// The name of a header, as given.
pub(super) fn value_name(value: &HeaderValue) -> String {
    let mut headers = lettre::message::header::Headers::new();
    headers.insert_raw(value.clone());
    let line = headers.to_string();
    line.split(':').next().unwrap_or_default().to_string()
}

/// `xMailer`: a string sets `X-Mailer`; `false` (or absent) sends none, as nodemailer.
pub(super) fn x_mailer(field: &Field) -> Result<Option<HeaderValue>> {
    match field.value() {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => {
            field.check_header_text(text)?;
            Ok(Some(header("X-Mailer", text)))
        }
        Some(_) => Err(field.wrong_type("a string or false")),
    }
}

/// `list`: `{ help, unsubscribe, subscribe, post, owner, archive, id, ... }`, each a URL,
/// `{ url, comment }`, or an array of those (an inner array is one header with several
/// URLs), as nodemailer writes List-* headers. `unsubscribePost` (or `unsubscribe-post`)
/// gives `List-Unsubscribe-Post` with its value as it is (one-click unsubscribe, RFC 8058),
/// where nodemailer would format that value as a URL.
pub(super) fn list_headers(field: &Field) -> Result<Vec<HeaderValue>> {
    let Some(Value::Object(entries)) = field.optional_object()? else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for (key, _) in entries {
        let entry = field.child(key);
        if ["unsubscribepost", "unsubscribe-post"].contains(&key.trim().to_ascii_lowercase().as_str()) {
            // One-click unsubscribe (RFC 8058) takes a fixed value, not a URL.
            let value = entry.string()?;
            entry.check_header_text(value)?;
            headers.push(header("List-Unsubscribe-Post", value));
            continue;
        }
        let name = list_header_name(key);
        if name.len() > 76 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(entry.error("is not a usable List-* header name"));
        }
        for value in entry.items() {
            let mut urls = Vec::new();
            for item in value.items() {
                if let Some(formatted) = list_value(&item, key.trim().eq_ignore_ascii_case("id"))? {
                    urls.push(formatted);
                }
            }
            if !urls.is_empty() {
                let text = urls.join(", ");
                value.check_header_text(&text)?;
                headers.push(header(&name, text));
            }
        }
    }
    Ok(headers)
}

/// `List-` + the key, cased as nodemailer's header names (`help` -> `List-Help`, `id` -> `List-ID`).
fn list_header_name(key: &str) -> String {
    let words: Vec<String> = format!("list-{}", key.trim().to_ascii_lowercase())
        .split('-')
        .map(|word| match word {
            "id" | "spf" | "fbl" | "md5" => word.to_ascii_uppercase(),
            _ => {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            }
        })
        .collect();
    words.join("-")
}

/// One URL of a List-* header: `<url>` or `<url> (comment)`; List-ID: `"comment" <id>`.
fn list_value(item: &Field, is_id: bool) -> Result<Option<String>> {
    let (url, comment) = match item.value() {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(url)) => (url.clone(), None),
        Some(Value::Object(_)) => {
            let url = item.child("url").optional_string()?.map(str::to_string);
            let comment = item.child("comment").optional_string()?.map(str::to_string);
            match url {
                Some(url) => (url, comment),
                None => return Ok(None),
            }
        }
        Some(_) => return Err(item.wrong_type("a URL string or { url, comment }")),
    };
    let url = format_list_url(&url);
    let comment = comment.map(|c| c.replace(['\r', '\n'], " "));
    Ok(Some(match (is_id, comment) {
        (true, comment) => {
            let id = match url.find(':') {
                Some(at) => format!("<{}", url[at + 1..].trim_start_matches('/')),
                None => url,
            };
            match comment {
                Some(comment) => format!("\"{}\" {id}", comment.replace('\\', "\\\\").replace('"', "\\\"")),
                None => id,
            }
        }
        (false, Some(comment)) => {
            let escaped: String = comment
                .chars()
                .flat_map(|c| match c {
                    '(' | ')' | '\\' => vec!['\\', c],
                    _ => vec![c],
                })
                .collect();
            format!("{url} ({escaped})")
        }
        (false, None) => url,
    }))
}

/// nodemailer's `_formatListUrl`: `<scheme:...>`, `mailto:` for an address, `http://` else.
fn format_list_url(url: &str) -> String {
    let url: String = url
        .chars()
        .filter(|c| !c.is_control() && !c.is_whitespace() && *c != '<' && *c != '>')
        .collect();
    let lower = url.to_ascii_lowercase();
    if ["http:", "https:", "mailto:", "ftp:"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        return format!("<{url}>");
    }
    if url.matches('@').count() == 1 && !url.starts_with('@') && !url.ends_with('@') {
        return format!("<mailto:{url}>");
    }
    format!("<http://{url}>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn list(value: Value) -> Vec<String> {
        let message = Value::object([("list", value)]);
        let root = Field::root("message", &message, ErrorKind::Message);
        list_headers(&root.child("list"))
            .unwrap()
            .iter()
            .map(|header| {
                let mut headers = lettre::message::header::Headers::new();
                headers.insert_raw(header.clone());
                headers.to_string().trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn list_headers_have_nodemailer_forms() {
        let headers = list(Value::object([
            ("help", Value::str("admin@example.com?subject=help")),
            (
                "unsubscribe",
                Value::Array(vec![
                    Value::object([
                        ("url", Value::str("https://example.com/u")),
                        ("comment", Value::str("Say (bye)")),
                    ]),
                    Value::Array(vec![Value::str("a@example.com"), Value::str("example.com/u2")]),
                ]),
            ),
            (
                "id",
                Value::object([
                    ("url", Value::str("list.example.com")),
                    ("comment", Value::str("A \"list\"")),
                ]),
            ),
            ("unsubscribePost", Value::str("List-Unsubscribe=One-Click")),
        ]));
        assert_eq!(
            headers,
            [
                "List-Help: <mailto:admin@example.com?subject=help>",
                "List-Unsubscribe: <https://example.com/u> (Say \\(bye\\))",
                "List-Unsubscribe: <mailto:a@example.com>, <http://example.com/u2>",
                "List-ID: \"A \\\"list\\\"\" <list.example.com>",
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            ]
        );
    }
}
