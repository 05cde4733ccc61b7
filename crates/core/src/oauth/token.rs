//! One client_credentials token request, and the parsing of Entra ID's answer.

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::config::{Grant, OAuth2Config};
use crate::error::{Error, ErrorKind, OAuthErrorBody, Result};
use crate::hints::oauth_hint;
use crate::oauth::credential::ClientCredential;
use crate::secret::Secret;

/// A token endpoint's answer is a few KB; anything far larger is not a token response.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// An access token and when it stops being valid.
#[derive(Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// Monotonic expiry, for cache decisions.
    pub expires_at: Instant,
    /// Wall-clock expiry, for users and logs.
    pub expires_at_wall: SystemTime,
    /// From here on the next token is fetched in the background; this one is still used.
    pub renew_at: Instant,
    /// From here on this token is not used any more: sends wait for a new one. Kept well
    /// before expiry (Exchange refuses tokens that "will expire soon").
    pub use_until: Instant,
}

/// What a successful token response says, before it is placed in time.
#[derive(Debug, PartialEq)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// Entra ID's optional hint for early renewal.
    pub refresh_in: Option<Duration>,
}

impl TokenGrant {
    /// Places the grant in time: renew (in the background) at `refresh_in`, or
    /// `renew_before` ahead of expiry, with the margin clamped to half the lifetime so that
    /// short-lived tokens are used; stop using it a quarter of that margin (at most a
    /// minute) before expiry.
    pub fn into_token(self, received: Instant, renew_before: Duration) -> AccessToken {
        let margin = renew_before.min(self.expires_in / 2);
        let mut renew_in = self.expires_in - margin;
        if let Some(refresh_in) = self.refresh_in {
            renew_in = renew_in.min(refresh_in);
        }
        let hard_margin = (margin / 4).min(Duration::from_secs(60));
        AccessToken {
            value: self.access_token,
            expires_at: received + self.expires_in,
            expires_at_wall: SystemTime::now() + self.expires_in,
            renew_at: received + renew_in,
            use_until: received + (self.expires_in - hard_margin).max(renew_in),
        }
    }
}

/// `expires_in` arrives as a number or as a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(f64),
    Text(String),
}

impl Seconds {
    fn to_duration(&self) -> Option<Duration> {
        let seconds = match self {
            Seconds::Number(n) => *n,
            Seconds::Text(text) => text.trim().parse().ok()?,
        };
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
    refresh_in: Option<Seconds>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u64>,
}

/// Parses the token endpoint's answer. `secret` is scrubbed from any text that is kept,
/// in case a server echoes what it was sent.
pub fn parse_token_response(status: u16, body: &[u8], secret: &Secret) -> Result<TokenGrant> {
    parse_token_response_scrubbing(status, body, &[secret])
}

/// [`parse_token_response`], scrubbing each of `secrets` (a client secret and a refresh token).
fn parse_token_response_scrubbing(status: u16, body: &[u8], secrets: &[&Secret]) -> Result<TokenGrant> {
    let scrub = |text: &str| {
        secrets.iter().fold(text.to_string(), |text, secret| {
            scrub_secret(&text, secret.expose())
        })
    };
    if (200..300).contains(&status) {
        let parsed: SuccessBody = serde_json::from_slice(body).map_err(|err| {
            Error::new(
                ErrorKind::OAuth2,
                format!(
                    "the token endpoint answered {status} with a body that is not a token response ({err})"
                ),
            )
            .with_http_status(status)
        })?;
        let access_token = parsed.access_token.filter(|t| !t.is_empty()).ok_or_else(|| {
            Error::new(
                ErrorKind::OAuth2,
                format!("the token endpoint answered {status} without an access_token"),
            )
            .with_http_status(status)
        })?;
        // Without a lifetime the token is used once and never cached: guessing one could
        // send an expired token.
        let expires_in = parsed
            .expires_in
            .and_then(|s| s.to_duration())
            .unwrap_or_default();
        let refresh_in = parsed
            .refresh_in
            .and_then(|s| s.to_duration())
            .filter(|d| !d.is_zero());
        return Ok(TokenGrant {
            access_token: Secret::new(access_token),
            expires_in,
            refresh_in,
        });
    }

    let body_text = String::from_utf8_lossy(body);
    let Ok(ErrorBody {
        error: Some(error),
        error_description,
        error_codes,
    }) = serde_json::from_slice::<ErrorBody>(body)
    else {
        let excerpt: String = scrub(body_text.trim()).chars().take(200).collect();
        let mut message = format!("the token endpoint answered HTTP {status}");
        if !excerpt.is_empty() {
            message.push_str(&format!(": {excerpt}"));
        }
        return Err(Error::new(ErrorKind::OAuth2, message).with_http_status(status));
    };
    let description = error_description.map(|d| scrub(&d));
    // The first sentence carries the AADSTS code and meaning; the rest is trace ids.
    let summary = description.as_deref().map(|d| {
        d.split(". ")
            .next()
            .unwrap_or(d)
            .trim_end_matches('.')
            .to_string()
    });
    let message = match &summary {
        Some(summary) => format!("the token endpoint refused the request ({status} {error}): {summary}"),
        None => format!("the token endpoint refused the request ({status} {error})"),
    };
    let hint = oauth_hint(&error, &error_codes);
    let mut err = Error::new(ErrorKind::OAuth2, message)
        .with_http_status(status)
        .with_oauth_error(OAuthErrorBody {
            error,
            error_codes,
            description,
        });
    if let Some(hint) = hint {
        err = err.with_hint(hint);
    }
    Err(err)
}

/// Attempts per token request when the endpoint fails transiently (5xx, network errors,
/// `temporarily_unavailable`); credential errors (4xx) are never retried.
const MAX_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// msal-node's bounds for a `Retry-After` on 429.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Removes `secret` from `text` in every form a server may echo it: as sent in the form
/// body (percent-encoded, either hex case), JSON-escaped, or as is.
pub fn scrub_secret(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"');
    let mut forms = vec![
        secret.to_string(),
        form.clone(),
        form.to_lowercase(),
        json.to_string(),
    ];
    // Longest first, so that a form containing another is removed whole.
    forms.sort_by_key(|form| std::cmp::Reverse(form.len()));
    forms.dedup();
    let mut scrubbed = text.to_string();
    for form in forms.iter().filter(|form| !form.is_empty()) {
        scrubbed = replace_ignoring_hex_case(&scrubbed, form);
    }
    scrubbed
}

/// `text` with `needle` replaced by `<redacted>`; percent-escapes match in either case.
fn replace_ignoring_hex_case(text: &str, needle: &str) -> String {
    if !needle.contains('%') {
        return text.replace(needle, "<redacted>");
    }
    let lower_text = text.to_ascii_lowercase();
    let lower_needle = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    while let Some(found) = lower_text[from..].find(&lower_needle) {
        out.push_str(&text[from..from + found]);
        out.push_str("<redacted>");
        from += found + lower_needle.len();
    }
    out.push_str(&text[from..]);
    out
}

/// Asks for a token with the client_credentials grant, retrying transient failures with
/// jittered exponential backoff. A 429 is returned at once, with its `Retry-After`.
pub async fn request_token(http: &reqwest::Client, config: &OAuth2Config) -> Result<TokenGrant> {
    let mut attempt = 1;
    loop {
        match request_once(http, config).await {
            Err(err) if attempt < MAX_ATTEMPTS && err.is_transient() && err.http_status() != Some(429) => {
                let backoff = FIRST_BACKOFF * 2u32.pow(attempt - 1);
                // Full jitter between half and all of the backoff: many transports started
                // together (a cron fleet) do not retry in lockstep.
                let jittered = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
                tokio::time::sleep(jittered).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn request_once(http: &reqwest::Client, config: &OAuth2Config) -> Result<TokenGrant> {
    let url = &config.token_url;
    let (credential_field, credential_value, scrubbed) = match &config.credential {
        ClientCredential::Secret(secret) => ("client_secret", secret.clone(), secret.clone()),
        ClientCredential::Certificate(certificate) => {
            let assertion = certificate.assertion(&config.client_id, url.as_str())?;
            ("client_assertion", assertion.clone(), assertion)
        }
    };
    let mut form = vec![
        ("client_id", config.client_id.as_str()),
        ("scope", config.scope.as_str()),
    ];
    let mut scrubbed_too = Vec::new();
    match &config.grant {
        Grant::ClientCredentials => form.insert(0, ("grant_type", "client_credentials")),
        Grant::RefreshToken(refresh_token) => {
            form.insert(0, ("grant_type", "refresh_token"));
            form.push(("refresh_token", refresh_token.expose()));
            scrubbed_too.push(refresh_token);
        }
    }
    if credential_field == "client_assertion" {
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    form.push((credential_field, credential_value.expose()));
    let fetch = async {
        let mut response = http.post(url.clone()).form(&form).send().await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Ok(Err(Error::new(
                    ErrorKind::OAuth2,
                    format!("the token endpoint's answer exceeds {MAX_RESPONSE_BYTES} bytes"),
                )
                .with_http_status(status)));
            }
        }
        let secrets: Vec<&Secret> = std::iter::once(&scrubbed)
            .chain(scrubbed_too.iter().copied())
            .collect();
        let mut outcome = parse_token_response_scrubbing(status, &body, &secrets);
        if status == 429 {
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER);
            outcome = outcome.map_err(|err| err.with_retry_after(wait));
        }
        Ok::<_, reqwest::Error>(outcome)
    };
    match tokio::time::timeout(config.timeout, fetch).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(Error::new(
            ErrorKind::OAuth2,
            format!("the token request to {url} failed: {}", describe_http_error(&err)),
        )
        .with_source(err.without_url())),
        Err(_) => Err(Error::new(
            ErrorKind::OAuth2,
            format!(
                "the token request to {url} timed out after {} ms",
                config.timeout.as_millis()
            ),
        )),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

/// reqwest's own message is "error sending request"; the cause chain says why.
fn describe_http_error(err: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("canary-secret")
    }

    #[test]
    fn entra_success_with_number_or_string_lifetime() {
        let body =
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0"}"#;
        let grant = parse_token_response(200, body, &secret()).unwrap();
        assert_eq!(grant.access_token.expose(), "eyJ0");
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        let body = br#"{"token_type":"Bearer","expires_in":"3599","refresh_in":"1800","access_token":"t"}"#;
        let grant = parse_token_response(200, body, &secret()).unwrap();
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        assert_eq!(grant.refresh_in, Some(Duration::from_secs(1800)));
    }

    #[test]
    fn missing_token_or_bad_json_is_eoauth2() {
        let err = parse_token_response(200, br#"{"expires_in":3599}"#, &secret()).unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                "EOAUTH2",
                "the token endpoint answered 200 without an access_token"
            )
        );
        let err = parse_token_response(200, b"<html>", &secret()).unwrap_err();
        assert!(err.message().contains("not a token response"));
        let err = parse_token_response(502, b"Bad Gateway", &secret()).unwrap_err();
        assert_eq!(err.message(), "the token endpoint answered HTTP 502: Bad Gateway");
        assert!(err.is_transient());
    }

    #[test]
    fn entra_error_keeps_fields_and_hint() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'x'. Trace ID: 1 Correlation ID: 2 Timestamp: 2026-01-01","error_codes":[7000215],"trace_id":"1"}"#;
        let err = parse_token_response(401, body, &secret()).unwrap_err();
        assert_eq!(err.code(), "EOAUTH2");
        assert_eq!(
            err.message(),
            "the token endpoint refused the request (401 invalid_client): AADSTS7000215: Invalid client secret provided"
        );
        let oauth = err.oauth_error().unwrap();
        assert_eq!(
            (oauth.error.as_str(), oauth.error_codes.as_slice()),
            ("invalid_client", &[7000215][..])
        );
        assert!(oauth.description.as_deref().unwrap().contains("Trace ID"));
        assert!(err.hint().unwrap().contains("Value"));
        assert!(err.is_permanent());
    }

    #[test]
    fn an_echoed_secret_is_scrubbed_in_every_form() {
        let secret = Secret::new("CANARY-secret~Zq9.x_7");
        let body = br#"{"error":"invalid_request","error_description":"got client_secret=CANARY-secret%7EZq9.x_7 and CANARY-secret%7eZq9.x_7"}"#;
        let err = parse_token_response(400, body, &secret).unwrap_err();
        let shown = format!("{err:?}");
        assert!(!shown.contains("Zq9"), "{shown}");
    }

    #[test]
    fn an_echoed_secret_is_scrubbed() {
        let body = br#"{"error":"invalid_request","error_description":"bad client_secret=canary-secret"}"#;
        let err = parse_token_response(400, body, &secret()).unwrap_err();
        assert!(!format!("{err:?}").contains("canary-secret"));
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(90));
        let wait = parse_retry_after(&later).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn renewal_margin_is_clamped_for_short_tokens() {
        let now = Instant::now();
        let grant = |secs| TokenGrant {
            access_token: secret(),
            expires_in: Duration::from_secs(secs),
            refresh_in: None,
        };
        let long = grant(3599).into_token(now, Duration::from_secs(300));
        assert_eq!(long.renew_at - now, Duration::from_secs(3299));
        assert_eq!(long.use_until - now, Duration::from_secs(3599 - 60));
        let short = grant(2).into_token(now, Duration::from_secs(300));
        assert_eq!(short.renew_at - now, Duration::from_secs(1));
        let hinted = TokenGrant {
            refresh_in: Some(Duration::from_secs(600)),
            ..grant(3599)
        };
        assert_eq!(
            hinted.into_token(now, Duration::from_secs(300)).renew_at - now,
            Duration::from_secs(600)
        );
    }
}
