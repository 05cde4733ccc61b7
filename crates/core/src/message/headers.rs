//! Header fields of the message: texts, dates, ids, priority and custom headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lettre::message::header::{HeaderName, HeaderValue};

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

pub(super) fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
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
            headers.push(HeaderValue::new(header_name.clone(), text));
        }
    }
    Ok(headers)
}
