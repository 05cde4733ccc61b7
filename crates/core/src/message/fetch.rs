//! Content given by URL (`href`, or `path` as an http(s) URL): fetched once per send, over
//! https (plain http only to a loopback address), without following a redirect to another
//! host, bounded in size and time; refused when `disableUrlAccess` is on (see
//! `content_access`).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::TlsOptions;
use crate::content_access::ContentAccess;
use crate::error::Result;
use crate::input::{Field, Value};
use crate::tls::rustls_client_config;

/// The largest content fetched (nodemailer's own default has none; a mail server refuses
/// far less than this anyway).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// The whole request, connection to last byte.
const TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

/// The bytes at `url`, with the request headers of `headers_field` (`httpHeaders`).
pub(super) async fn fetch_url(
    field: &Field<'_>,
    url: &str,
    headers_field: &Field<'_>,
    access: &ContentAccess,
) -> Result<Vec<u8>> {
    access.check_url(field)?;
    let parsed =
        reqwest::Url::parse(url).map_err(|err| field.error(format!("is not a valid URL ({err})")))?;
    // Errors name the URL without its user name and password.
    let url = &without_credentials(&parsed);
    if parsed.scheme() == "http" && !is_loopback(&parsed) {
        return Err(field.error(format!(
            "is a plain http URL ({url:?}): only https is fetched (plain http only from a loopback address)"
        )));
    }
    let tls = TlsOptions {
        extra_ca: Vec::new(),
        verify_certificates: true,
        servername: None,
        tls13_only: false,
        client_identity: None,
    };
    let host = parsed.host_str().unwrap_or_default().to_string();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(rustls_client_config(&tls)?)
        .timeout(TIMEOUT)
        .http1_only()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let same_host = attempt.url().host_str() == Some(host.as_str());
            let downgrade = attempt.url().scheme() == "http" && attempt.previous()[0].scheme() == "https";
            if same_host && !downgrade && attempt.previous().len() <= MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .map_err(|err| field.error(format!("cannot be fetched: {err}")))?;
    let mut request = client.get(parsed);
    for (name, value) in http_headers(headers_field)? {
        request = request.header(name, value);
    }
    let mut response = request
        .send()
        .await
        .map_err(|err| field.error(format!("cannot be fetched: {url:?}: {}", describe(err))))?;
    if !response.status().is_success() {
        let status = response.status();
        let note = match status.is_redirection() {
            true => " (a redirect to another host or to plain http is not followed)",
            false => "",
        };
        return Err(field.error(format!("cannot be fetched: {url:?} answered {status}{note}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| field.error(format!("cannot be fetched: {url:?}: {}", describe(err))))?
    {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err(field.error(format!(
                "cannot be fetched: {url:?} is larger than {MAX_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn without_credentials(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    // Both fail only for a URL without a host, which has no credentials to remove.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `httpHeaders`: `{ name: value }`.
fn http_headers(field: &Field) -> Result<Vec<(String, String)>> {
    let Some(Value::Object(entries)) = field.optional_object()? else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::new();
    for (name, _) in entries {
        let value = field.child(name);
        let text = match value.value() {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(value.wrong_type("a string")),
        };
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(&text).is_ok();
        if !valid {
            return Err(value.error("is not a valid HTTP header"));
        }
        headers.push((name.clone(), text));
    }
    Ok(headers)
}

/// `err` without its URL, which the caller names without credentials.
fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        return format!("no answer within {} s", TIMEOUT.as_secs());
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
