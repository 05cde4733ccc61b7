//! One token request: the client_credentials or refresh_token grant, its retries
//! (backoff, `Retry-After` on 429), and the exchange itself (no redirect, a bounded body in
//! zeroed memory, the whole bounded by `oauth2.timeout`).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::config::{Grant, OAuth2Config};
use crate::error::{Error, ErrorKind, Result};
use crate::hints::{Hint, ASSERTION_CODES};
use crate::oauth::assertion::{AssertionClaims, JWT_BEARER};
use crate::oauth::credential::{CertificateCredential, ClientCredential};
use crate::oauth::managed_identity::ManagedIdentity;
use crate::oauth::response::parse_token_response_scrubbing;
use crate::oauth::token::{SentAt, TokenGrant};
use crate::secret::Secret;

/// A token endpoint's answer is a few KB; anything far larger is not a token response.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Attempts per token request when the endpoint fails transiently (5xx, network errors,
/// `temporarily_unavailable`); credential errors (4xx) are never retried.
const MAX_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// msal-node's bounds for a `Retry-After` on 429.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Asks for a token (the client_credentials or refresh_token grant, or a managed identity's endpoint),
/// retrying transient failures with jittered exponential backoff. A 429 is returned at once,
/// with its `Retry-After`. The grant comes with when its (successful) request was sent.
/// `grant` is `config.grant`, or the same with the refresh token the endpoint last rotated.
/// `last_assertion` receives the claims of each client assertion someone else made.
pub async fn request_token(
    http: &reqwest::Client,
    config: &OAuth2Config,
    grant: &Grant,
    last_assertion: &Mutex<Option<AssertionClaims>>,
) -> Result<(TokenGrant, SentAt)> {
    let credential = RequestCredential::prepare(config, last_assertion).await?;
    let mut attempt = 1;
    loop {
        match request_once(http, config, grant, &credential).await {
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

/// What one token request (with its retries) proves itself with.
enum RequestCredential<'a> {
    Secret(&'a Secret),
    /// Signed afresh for every attempt (each assertion has its own `jti`).
    Certificate(&'a CertificateCredential),
    /// From a federated token file or a callback: obtained once per token request (a
    /// missing file or a failing callback is not helped by asking again at once).
    External(Secret, AssertionClaims),
    ManagedIdentity(&'a ManagedIdentity),
}

impl<'a> RequestCredential<'a> {
    /// Reads the file or calls the callback; the assertion's claims go to `last_assertion`.
    async fn prepare(
        config: &'a OAuth2Config,
        last_assertion: &Mutex<Option<AssertionClaims>>,
    ) -> Result<Self> {
        let assertion = match &config.credential {
            ClientCredential::Secret(secret) => return Ok(RequestCredential::Secret(secret)),
            ClientCredential::Certificate(certificate) => {
                return Ok(RequestCredential::Certificate(certificate))
            }
            ClientCredential::ManagedIdentity(identity) => {
                return Ok(RequestCredential::ManagedIdentity(identity))
            }
            ClientCredential::AssertionFile(file) => file.assertion().await?,
            ClientCredential::AssertionCallback(callback) => {
                callback.assertion(config.assertion_timeout).await?
            }
            ClientCredential::NoRenewal => {
                return Err(Error::new(
                    ErrorKind::OAuth2,
                    "no token request without a credential (only auth.accessToken is configured)",
                ))
            }
        };
        let claims = AssertionClaims::of(assertion.expose()).unwrap_or_default();
        *last_assertion.lock().unwrap_or_else(|e| e.into_inner()) = Some(claims.clone());
        Ok(RequestCredential::External(assertion, claims))
    }
}

async fn request_once(
    http: &reqwest::Client,
    config: &OAuth2Config,
    grant: &Grant,
    credential: &RequestCredential<'_>,
) -> Result<(TokenGrant, SentAt)> {
    let url = &config.token_url;
    let (credential_field, credential_value) = match credential {
        RequestCredential::ManagedIdentity(identity) => return identity.request_once(http, config).await,
        RequestCredential::Secret(secret) => ("client_secret", (*secret).clone()),
        RequestCredential::Certificate(certificate) => (
            "client_assertion",
            certificate.assertion(&config.client_id, url.as_str())?,
        ),
        RequestCredential::External(assertion, _) => ("client_assertion", assertion.clone()),
    };
    let mut form = vec![
        ("client_id", config.client_id.as_str()),
        ("scope", config.scope.as_str()),
    ];
    let mut scrubbed = vec![&credential_value];
    match grant {
        Grant::ClientCredentials => form.insert(0, ("grant_type", "client_credentials")),
        Grant::RefreshToken(refresh_token) => {
            form.insert(0, ("grant_type", "refresh_token"));
            form.push(("refresh_token", refresh_token.expose()));
            scrubbed.push(refresh_token);
        }
    }
    if credential_field == "client_assertion" {
        form.push(("client_assertion_type", JWT_BEARER));
    }
    form.push((credential_field, credential_value.expose()));
    let request = http.post(url.clone()).form(&form);
    let outcome = exchange(request, config, &scrubbed).await;
    // Someone else's assertion: what it claims is what Entra ID matches against the app's
    // federated credentials, worth showing when it is refused.
    match credential {
        RequestCredential::External(_, claims) => outcome.map_err(|err| with_assertion_claims(err, claims)),
        _ => outcome,
    }
}

/// Sends one token request and reads its answer: no redirect followed, a bounded body kept
/// in zeroed memory, `Retry-After` on 429, the whole bounded by `oauth2.timeout`.
/// `scrubbed` (the credential sent, and the refresh token of the grant, if any) is removed
/// from any text that is kept.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    config: &OAuth2Config,
    scrubbed: &[&Secret],
) -> Result<(TokenGrant, SentAt)> {
    let url = &config.token_url;
    let sent = SentAt::now();
    let fetch = async {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        // The client follows no redirect: the secret goes to the configured URL only.
        if response.status().is_redirection() {
            return Ok(Err(redirect_refused(status, response.headers())));
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        // The body holds the access token: kept only in memory that is zeroed when freed.
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Ok(Err(Error::new(
                    ErrorKind::OAuth2,
                    format!("the token endpoint's answer exceeds {MAX_RESPONSE_BYTES} bytes"),
                )
                .with_http_status(status)));
            }
            append_zeroizing(&mut body, &chunk);
        }
        let mut outcome = parse_token_response_scrubbing(status, &body, scrubbed);
        if status == 429 {
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER);
            outcome = outcome.map_err(|err| err.with_retry_after(wait));
        }
        if config.secret_trimmed {
            outcome = outcome.map_err(note_trimmed_secret);
        }
        Ok::<_, reqwest::Error>(outcome.map(|grant| (grant, sent)))
    };
    match tokio::time::timeout(config.timeout, fetch).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => {
            let description = describe_http_error(&err);
            let mut failure = Error::new(
                ErrorKind::OAuth2,
                format!("the token request to {url} failed: {description}"),
            );
            if description.contains("certificate") {
                failure = failure.with_hint("The token endpoint's certificate is not trusted. If a TLS-inspecting proxy sits in between, add its CA with mail.smtp.oauth2.ca (or NODE_EXTRA_CA_CERTS); tls.ca and tls.rejectUnauthorized apply to SMTP only.");
            }
            Err(failure.with_source(err.without_url()))
        }
        Err(_) => Err(Error::new(
            ErrorKind::OAuth2,
            format!(
                "the token request to {url} timed out after {} ms",
                config.timeout.as_millis()
            ),
        )),
    }
}

/// Adds the refused assertion's claims (never the assertion) to the hint of a refusal
/// that is about the assertion: no matching federated credential, expired.
fn with_assertion_claims(err: Error, claims: &AssertionClaims) -> Error {
    let about_assertion = err.oauth_error().is_some_and(|body| {
        body.error_codes.iter().any(|code| ASSERTION_CODES.contains(code)) || body.error == "invalid_client"
    });
    if !about_assertion {
        return err;
    }
    let hint = err.hint_data().cloned().unwrap_or_else(|| Hint::from(""));
    let note = format!("The assertion sent: {}.", claims.describe(SystemTime::now()));
    let known = [("iss", &claims.iss), ("sub", &claims.sub), ("aud", &claims.aud)];
    let hint = known
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_deref()?)))
        .fold(hint.with_note(&note), |hint, (name, value)| {
            hint.with_param(name, value)
        });
    err.with_hint(hint)
}

/// Appends `chunk` without leaving a copy in freed memory: when `buffer` must grow, its
/// content moves to a larger buffer and the old one is zeroed (a plain `Vec` would free it
/// as it is).
fn append_zeroizing(buffer: &mut Zeroizing<Vec<u8>>, chunk: &[u8]) {
    let needed = buffer.len() + chunk.len();
    if needed > buffer.capacity() {
        let mut larger = Zeroizing::new(Vec::with_capacity(needed.max(buffer.capacity() * 2)));
        larger.extend_from_slice(buffer);
        *buffer = larger;
    }
    buffer.extend_from_slice(chunk);
}

/// A 3xx from the token endpoint: named with where it pointed, and not followed.
fn redirect_refused(status: u16, headers: &reqwest::header::HeaderMap) -> Error {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|location| reqwest::Url::parse(location).ok())
        .and_then(|url| url.host_str().map(|host| format!(" to {host}")))
        .unwrap_or_default();
    Error::new(
        ErrorKind::OAuth2,
        format!("the token endpoint answered HTTP {status} (a redirect{target}): not followed, the credentials go only to the configured token URL"),
    )
    .with_http_status(status)
    .with_hint("Set mail.smtp.oauth2.host (or tenantId and cloud) to the real token endpoint, https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token; a proxy that redirects token requests is not supported.")
}

/// Adds to an "invalid client secret" error that the configured secret had surrounding
/// whitespace (which was removed, so the rest of the value is wrong too).
fn note_trimmed_secret(err: Error) -> Error {
    let wrong_secret = err
        .oauth_error()
        .is_some_and(|body| body.error_codes.contains(&7000215));
    if !wrong_secret {
        return err;
    }
    let note = "Note: the configured clientSecret had leading or trailing whitespace (a newline from a file or an environment variable?), which was found and removed before sending; the value without it was refused too.";
    let hint = err.hint_data().cloned().unwrap_or_else(|| Hint::from(""));
    err.with_hint(hint.with_note(note))
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
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
    use crate::oauth::response::parse_token_response;
    use crate::oauth::test_support::secret;

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
    fn a_redirect_names_its_status_and_target_host() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LOCATION,
            "https://evil.example.net/steal?x=1".parse().unwrap(),
        );
        let err = redirect_refused(307, &headers);
        assert_eq!(err.code(), "EOAUTH2");
        assert_eq!(err.http_status(), Some(307));
        assert!(
            err.message()
                .contains("HTTP 307 (a redirect to evil.example.net)"),
            "{}",
            err.message()
        );
        assert!(!err.message().contains("steal"));
        assert!(err.is_permanent());
    }

    #[test]
    fn a_trimmed_secret_is_mentioned_in_the_wrong_secret_hint() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
        let err = note_trimmed_secret(parse_token_response(401, body, &secret()).unwrap_err());
        let hint = err.hint().unwrap();
        assert!(hint.contains("Value") && hint.contains("whitespace"), "{hint}");
        let other = br#"{"error":"invalid_scope","error_description":"AADSTS70011: bad scope.","error_codes":[70011]}"#;
        let err = note_trimmed_secret(parse_token_response(400, other, &secret()).unwrap_err());
        assert!(!err.hint().unwrap().contains("whitespace"));
    }

    #[test]
    fn the_response_buffer_grows_without_losing_bytes() {
        let mut buffer = Zeroizing::new(Vec::new());
        for chunk in [&b"ab"[..], b"cdefgh", b"", b"ijklmnopqrstuvwxyz"] {
            append_zeroizing(&mut buffer, chunk);
        }
        assert_eq!(buffer.as_slice(), b"abcdefghijklmnopqrstuvwxyz");
    }
}
