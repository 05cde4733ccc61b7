//! One client_credentials token request, and the parsing of Entra ID's answer.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::{Grant, OAuth2Config};
use crate::error::{Error, ErrorKind, OAuthErrorBody, Result};
use crate::hints::{oauth_hint, Hint, ASSERTION_CODES};
use crate::oauth::assertion::{AssertionClaims, JWT_BEARER};
use crate::oauth::claims::token_expiry;
use crate::oauth::credential::{CertificateCredential, ClientCredential};
use crate::oauth::managed_identity::ManagedIdentity;
use crate::secret::Secret;

/// A token endpoint's answer is a few KB; anything far larger is not a token response.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// An access token and when it stops being valid. Each moment is kept on both clocks: the
/// monotonic one is immune to clock changes, but stops while the machine is suspended; the
/// wall clock keeps running then. A token is only as fresh as both say.
#[derive(Debug)]
pub struct AccessToken {
    pub value: Secret,
    /// Monotonic expiry.
    pub expires_at: Instant,
    /// Wall-clock expiry, also for users and logs.
    pub expires_at_wall: SystemTime,
    /// From here on the next token is fetched in the background; this one is still used.
    pub renew_at: Instant,
    pub renew_at_wall: SystemTime,
    /// From here on this token is not used any more: sends wait for a new one. Kept well
    /// before expiry (Exchange refuses tokens that "will expire soon").
    pub use_until: Instant,
    pub use_until_wall: SystemTime,
}

/// What a cached token is good for at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    /// Still usable, and its successor should be fetched.
    DueForRenewal,
    /// Not to be used any more.
    Stale,
}

impl AccessToken {
    /// The token's state at `now` on the monotonic clock and `now_wall` on the wall clock.
    pub fn freshness(&self, now: Instant, now_wall: SystemTime) -> Freshness {
        if now < self.renew_at && now_wall < self.renew_at_wall {
            Freshness::Fresh
        } else if now < self.use_until && now_wall < self.use_until_wall {
            Freshness::DueForRenewal
        } else {
            Freshness::Stale
        }
    }
}

/// When a token request was sent, on both clocks: a token's lifetime counts from here (the
/// endpoint may have issued it any time after), not from when the answer arrived.
#[derive(Debug, Clone, Copy)]
pub struct SentAt {
    pub instant: Instant,
    pub wall: SystemTime,
}

impl SentAt {
    pub fn now() -> Self {
        SentAt {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What a successful token response says, before it is placed in time.
#[derive(Debug, PartialEq)]
pub struct TokenGrant {
    pub access_token: Secret,
    pub expires_in: Duration,
    /// Entra ID's optional hint for early renewal.
    pub refresh_in: Option<Duration>,
    /// A new refresh token (rotation), to be used instead of the one sent.
    pub refresh_token: Option<Secret>,
}

impl TokenGrant {
    /// Places the grant in time, counting from when the request was `sent`. The lifetime is
    /// `expires_in`, cut to the token's own `exp` claim if it is a JWT that expires
    /// earlier. Renew (in the background) at `refresh_in`, or `renew_before` ahead of
    /// expiry, with the margin clamped to half the lifetime so that short-lived tokens are
    /// used; stop using it a quarter of that margin (at most a minute) before expiry.
    pub fn into_token(self, sent: SentAt, renew_before: Duration) -> AccessToken {
        let mut lifetime = self.expires_in;
        if let Some(exp) = token_expiry(self.access_token.expose()) {
            lifetime = lifetime.min(exp.duration_since(sent.wall).unwrap_or_default());
        }
        let margin = renew_before.min(lifetime / 2);
        let mut renew_in = lifetime - margin;
        if let Some(refresh_in) = self.refresh_in {
            renew_in = renew_in.min(refresh_in);
        }
        let hard_margin = (margin / 4).min(Duration::from_secs(60));
        let use_for = (lifetime - hard_margin).max(renew_in);
        // `lifetime` is at most MAX_LIFETIME_SECS, which neither clock can overflow.
        AccessToken {
            value: self.access_token,
            expires_at: sent.instant + lifetime,
            expires_at_wall: sent.wall + lifetime,
            renew_at: sent.instant + renew_in,
            renew_at_wall: sent.wall + renew_in,
            use_until: sent.instant + use_for,
            use_until_wall: sent.wall + use_for,
        }
    }
}

/// Longer lifetimes (`expires_in: 1e300`) are taken as this: ~31 years.
pub(crate) const MAX_LIFETIME_SECS: f64 = 1e9;

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

    fn sent_at(wall_secs: f64) -> SentAt {
        SentAt {
            instant: Instant::now(),
            wall: UNIX_EPOCH + Duration::from_secs_f64(wall_secs),
        }
    }

    fn grant(secs: u64) -> TokenGrant {
        TokenGrant {
            access_token: secret(),
            expires_in: Duration::from_secs(secs),
            refresh_in: None,
            refresh_token: None,
        }
    }

    fn jwt_with_exp(exp: serde_json::Value) -> Secret {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let claims = URL_SAFE_NO_PAD.encode(serde_json::json!({ "exp": exp }).to_string());
        Secret::new(format!("eyJhbGciOiJub25lIn0.{claims}.sig"))
    }

    #[test]
    fn renewal_margin_is_clamped_for_short_tokens() {
        let sent = sent_at(1_000.0);
        let now = sent.instant;
        let long = grant(3599).into_token(sent, Duration::from_secs(300));
        assert_eq!(long.renew_at - now, Duration::from_secs(3299));
        assert_eq!(long.use_until - now, Duration::from_secs(3599 - 60));
        let short = grant(2).into_token(sent, Duration::from_secs(300));
        assert_eq!(short.renew_at - now, Duration::from_secs(1));
        let hinted = TokenGrant {
            refresh_in: Some(Duration::from_secs(600)),
            ..grant(3599)
        };
        assert_eq!(
            hinted.into_token(sent, Duration::from_secs(300)).renew_at - now,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn lifetime_counts_from_when_the_request_was_sent() {
        // The answer took 3 s to arrive: expiry is still 3599 s after sending.
        let sent = sent_at(1_000.0);
        let token = grant(3599).into_token(sent, Duration::from_secs(300));
        assert_eq!(token.expires_at - sent.instant, Duration::from_secs(3599));
        assert_eq!(token.expires_at_wall, UNIX_EPOCH + Duration::from_secs(4599));
        assert_eq!(token.use_until_wall, UNIX_EPOCH + Duration::from_secs(4599 - 60));
    }

    #[test]
    fn a_jwt_is_never_used_past_its_exp_claim() {
        // A 5 s token issued at .954: its exp (whole seconds) is 4.046 s after sending.
        let sent = sent_at(995.954);
        let token = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(1000)),
            ..grant(5)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(token.expires_at_wall, UNIX_EPOCH + Duration::from_secs(1000));
        assert!(token.use_until_wall <= UNIX_EPOCH + Duration::from_secs(1000));
        let exp = UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(token.freshness(sent.instant, exp), Freshness::Stale);
        // A later exp than expires_in changes nothing; an exp already past means no use.
        let later = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(99_999)),
            ..grant(5)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(later.expires_at - sent.instant, Duration::from_secs(5));
        let past = TokenGrant {
            access_token: jwt_with_exp(serde_json::json!(10)),
            ..grant(3599)
        }
        .into_token(sent, Duration::from_secs(300));
        assert_eq!(past.freshness(sent.instant, sent.wall), Freshness::Stale);
    }

    #[test]
    fn a_suspended_machine_does_not_use_a_token_past_its_wall_clock_expiry() {
        let sent = sent_at(1_000.0);
        let token = grant(3599).into_token(sent, Duration::from_secs(300));
        let just_after = sent.instant + Duration::from_secs(1);
        assert_eq!(
            token.freshness(just_after, sent.wall + Duration::from_secs(1)),
            Freshness::Fresh
        );
        // Suspended for two hours: the monotonic clock stood still, the wall clock did not.
        let after_resume = sent.wall + Duration::from_secs(7200);
        assert_eq!(token.freshness(just_after, after_resume), Freshness::Stale);
        let near_expiry = sent.wall + Duration::from_secs(3400);
        assert_eq!(token.freshness(just_after, near_expiry), Freshness::DueForRenewal);
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
