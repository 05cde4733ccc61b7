//! The parsing of a token endpoint's answer (Entra ID's, or a managed identity endpoint's),
//! with any secret the server echoes scrubbed from the text that is kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::error::{Error, ErrorKind, OAuthErrorBody, Result};
use crate::hints::oauth_hint;
use crate::oauth::token::{TokenGrant, MAX_LIFETIME_SECS};
use crate::secret::Secret;

/// `expires_in` arrives as a number or as a numeric string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(f64),
    Text(String),
}

impl Seconds {
    fn value(&self) -> Option<f64> {
        let seconds = match self {
            Seconds::Number(n) => *n,
            Seconds::Text(text) => text.trim().parse().ok()?,
        };
        (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
    }

    fn to_duration(&self) -> Option<Duration> {
        Some(Duration::from_secs_f64(self.value()?.min(MAX_LIFETIME_SECS)))
    }

    /// As a moment: seconds since the epoch. The lifetime from now is then bounded like
    /// `expires_in`.
    fn to_lifetime_from_now(&self) -> Option<Duration> {
        let expiry = UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(self.value()?).ok()?)?;
        let lifetime = expiry.duration_since(SystemTime::now()).unwrap_or_default();
        Some(lifetime.min(Duration::from_secs_f64(MAX_LIFETIME_SECS)))
    }
}

#[derive(Deserialize)]
struct SuccessBody {
    access_token: Option<String>,
    expires_in: Option<Seconds>,
    /// Managed identity endpoints: the expiry in seconds since the epoch (App Service sends
    /// only this; IMDS both, as strings).
    expires_on: Option<Seconds>,
    refresh_in: Option<Seconds>,
    refresh_token: Option<String>,
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
pub(super) fn parse_token_response_scrubbing(
    status: u16,
    body: &[u8],
    secrets: &[&Secret],
) -> Result<TokenGrant> {
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
            .as_ref()
            .and_then(|s| s.to_duration())
            .or_else(|| parsed.expires_on.as_ref()?.to_lifetime_from_now())
            .unwrap_or_default();
        let refresh_in = parsed
            .refresh_in
            .and_then(|s| s.to_duration())
            .filter(|d| !d.is_zero());
        return Ok(TokenGrant {
            access_token: Secret::new(access_token),
            expires_in,
            refresh_in,
            refresh_token: parsed.refresh_token.filter(|t| !t.is_empty()).map(Secret::new),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::request::parse_retry_after;
    use crate::oauth::test_support::secret;
    use crate::oauth::token::SentAt;

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
    fn managed_identity_answers_with_string_lifetimes_or_only_an_expiry_date() {
        // IMDS: both, as strings.
        let on = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 3000;
        let body = format!(
            r#"{{"access_token":"t","expires_in":"3599","expires_on":"{on}","resource":"https://outlook.office365.com","token_type":"Bearer"}}"#
        );
        let grant = parse_token_response(200, body.as_bytes(), &secret()).unwrap();
        assert_eq!(grant.expires_in, Duration::from_secs(3599));
        // App Service (2019-08-01): only expires_on, seconds since the epoch.
        let body = format!(r#"{{"access_token":"t","expires_on":"{on}","token_type":"Bearer"}}"#);
        let grant = parse_token_response(200, body.as_bytes(), &secret()).unwrap();
        assert!(
            grant.expires_in > Duration::from_secs(2990) && grant.expires_in <= Duration::from_secs(3000),
            "{:?}",
            grant.expires_in
        );
        let past = br#"{"access_token":"t","expires_on":"1000"}"#;
        assert!(parse_token_response(200, past, &secret())
            .unwrap()
            .expires_in
            .is_zero());
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
    fn absurd_lifetimes_are_bounded_not_a_panic() {
        for body in [
            &br#"{"access_token":"t","expires_in":1e300,"refresh_in":1e300}"#[..],
            br#"{"access_token":"t","expires_in":"1e999","refresh_in":"NaN"}"#,
            br#"{"access_token":"t","expires_in":-5,"refresh_in":"-inf"}"#,
            br#"{"access_token":"t","expires_in":18446744073709551615}"#,
            br#"{"access_token":"t","expires_on":"1e300"}"#,
            br#"{"access_token":"t","expires_on":1e18}"#,
        ] {
            let grant = parse_token_response(200, body, &secret()).unwrap();
            assert!(grant.expires_in <= Duration::from_secs(1_000_000_000));
            let token = grant.into_token(SentAt::now(), Duration::from_secs(300));
            assert!(token.renew_at <= token.use_until);
        }
        assert_eq!(
            parse_retry_after("99999999999999999999999999"),
            None,
            "a number beyond u64 is no Retry-After (the default wait applies)"
        );
        assert_eq!(
            parse_retry_after(&u64::MAX.to_string()),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
