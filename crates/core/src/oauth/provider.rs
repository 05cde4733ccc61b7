//! The token cache every send shares: one token per lifetime, one request at a time.
//!
//! Readers take a read lock and leave with the cached token while it is fresh (the fast
//! path). A token due for renewal but still valid is returned at once while one background
//! task fetches the next. When there is no usable token, callers queue on one refresh
//! lock; the first one through asks the endpoint, and the others find its token (or its
//! error) when their turn comes, so N concurrent sends cause one request and a failure is
//! not repeated N times. After a 429 no request is made until its `Retry-After` has passed;
//! after a credential refusal (another 4xx) none for `oauth2.failureCacheSeconds`, so that a
//! queue of sends behind a wrong secret fails fast on one request.
//!
//! The HTTP client is the token endpoint's own: it always verifies certificates (trusting
//! `oauth2.ca` besides the usual roots), follows no redirect, and reaches an `http://`
//! (loopback) endpoint directly, never through a proxy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Grant, OAuth2Config, TlsOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::oauth::assertion::AssertionClaims;
use crate::oauth::claims::{inspect, Expectations, TokenReport};
use crate::oauth::credential::{ClientCredential, CredentialReport};
use crate::oauth::request::request_token;
use crate::oauth::token::{AccessToken, Freshness};
use crate::secret::Secret;
use crate::tls::token_client_config;

/// Told about every new token (never the token itself: only its expiry).
pub type TokenListener = Box<dyn Fn(SystemTime) + Send + Sync>;

/// After a failed background renewal, wait this long before trying again in the background.
const BACKGROUND_RETRY_DELAY: Duration = Duration::from_secs(10);

pub struct TokenProvider {
    config: OAuth2Config,
    http: reqwest::Client,
    cached: RwLock<Option<Arc<AccessToken>>>,
    /// Held while a request is in flight; holds the error of the last one if it failed.
    refresh: tokio::sync::Mutex<Option<Error>>,
    /// Counts finished requests, so that a waiter can tell one finished while it queued.
    finished: AtomicU64,
    background_running: AtomicBool,
    /// No background renewal before this instant (after one failed).
    background_not_before: Mutex<Option<Instant>>,
    /// No request at all before this instant (the endpoint answered 429).
    throttled_until: Mutex<Option<(Instant, SystemTime)>>,
    /// The endpoint refused the credentials: this answer stands until the instant.
    refused_until: Mutex<Option<(Instant, Error)>>,
    listener: Option<TokenListener>,
    /// The claims of the last client assertion a file or callback provided.
    last_assertion: Mutex<Option<AssertionClaims>>,
    /// The grant of the next request: `config.grant`, with the refresh token replaced by
    /// the one the endpoint last returned (rotation).
    grant: Mutex<Grant>,
}

impl TokenProvider {
    pub fn new(config: OAuth2Config, tls: &TlsOptions, listener: Option<TokenListener>) -> Result<Self> {
        // A managed identity endpoint that is not there (not on Azure) is found out quickly.
        let connect_timeout = match &config.credential {
            ClientCredential::ManagedIdentity(identity) => identity.connect_timeout(config.timeout),
            _ => config.timeout,
        };
        let http = http_client_builder(&config, tls, &config.token_url)?
            .connect_timeout(connect_timeout)
            .build()
            .map_err(|err| Error::config(format!("cannot create the HTTPS client: {err}")))?;
        // nodemailer's fixed auth.accessToken is the first token, as if just obtained.
        let fixed = config
            .fixed_token
            .as_ref()
            .map(|fixed| Arc::new(fixed.to_access_token(config.renew_before)));
        Ok(TokenProvider {
            grant: Mutex::new(config.grant.clone()),
            config,
            http,
            cached: RwLock::new(fixed),
            refresh: tokio::sync::Mutex::new(None),
            finished: AtomicU64::new(0),
            background_running: AtomicBool::new(false),
            background_not_before: Mutex::new(None),
            throttled_until: Mutex::new(None),
            refused_until: Mutex::new(None),
            listener,
            last_assertion: Mutex::new(None),
        })
    }

    /// A token that is valid now; fetched only when there is none usable.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<AccessToken>> {
        if let Some(token) = self.cached_token() {
            match token.freshness(Instant::now(), SystemTime::now()) {
                Freshness::Fresh => return Ok(token),
                Freshness::DueForRenewal => {
                    if self.renewable() {
                        self.renew_in_background();
                    }
                    return Ok(token);
                }
                Freshness::Stale => {}
            }
        }
        self.refresh().await
    }

    /// Fails at once, without a request, when there is no usable token and the endpoint
    /// just refused the credentials or asked to wait (429): callers check this before
    /// opening an SMTP connection that could not authenticate anyway.
    pub fn fail_fast(&self) -> Result<()> {
        let usable = self
            .cached_token()
            .is_some_and(|token| token.freshness(Instant::now(), SystemTime::now()) != Freshness::Stale);
        if usable {
            return Ok(());
        }
        self.check_renewable()?;
        self.check_refused()?;
        self.check_throttle()
    }

    /// Drops the cached token if it is still `rejected` (the server refused it), so that the
    /// next [`TokenProvider::token`] fetches a new one. A token another caller already
    /// replaced is left alone.
    pub fn invalidate(&self, rejected: &Arc<AccessToken>) {
        let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
        if cached
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, rejected))
        {
            *cached = None;
        }
    }

    /// Whether a new token can be obtained: false for a fixed `auth.accessToken` alone.
    pub fn renewable(&self) -> bool {
        !matches!(self.config.credential, ClientCredential::NoRenewal)
    }

    /// What `token` says about the setup (audience, `role`, tenant), and which credential
    /// obtained it.
    pub fn inspect(&self, token: &AccessToken, role: Option<&str>) -> TokenReport {
        let expected = Expectations {
            scope: &self.config.scope,
            tenant_id: self.config.tenant_id.as_deref(),
            client_id: Some(self.config.client_id.as_str()).filter(|id| !id.is_empty()),
            role,
        };
        TokenReport {
            credential: Some(self.credential_report()),
            ..inspect(token.value.expose(), &expected)
        }
    }

    /// Which credential this provider uses and where it comes from; for an assertion
    /// someone else made, the claims of the last one sent.
    pub fn credential_report(&self) -> CredentialReport {
        let credential = &self.config.credential;
        CredentialReport {
            kind: credential.kind(),
            source: credential.source(),
            environment: self.config.credential_environment.clone(),
            assertion: self
                .last_assertion
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn cached_token(&self) -> Option<Arc<AccessToken>> {
        self.cached.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn renew_in_background(self: &Arc<Self>) {
        let not_before = *self
            .background_not_before
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        if self.background_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let provider = Arc::clone(self);
        tokio::spawn(async move {
            if provider.refresh().await.is_err() {
                let retry_at = Instant::now() + BACKGROUND_RETRY_DELAY;
                *provider
                    .background_not_before
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(retry_at);
            }
            provider.background_running.store(false, Ordering::Release);
        });
    }

    async fn refresh(&self) -> Result<Arc<AccessToken>> {
        let seen = self.finished.load(Ordering::Acquire);
        let mut last_failure = self.refresh.lock().await;
        if let Some(token) = self.cached_token() {
            // Someone else renewed while we queued.
            if token.freshness(Instant::now(), SystemTime::now()) == Freshness::Fresh {
                return Ok(token);
            }
        }
        // A request finished while we queued and it failed: share its answer rather than
        // asking an endpoint that just refused.
        if let Some(failure) = last_failure.as_ref() {
            if self.finished.load(Ordering::Acquire) > seen {
                return Err(failure.clone());
            }
        }
        self.check_renewable()?;
        self.check_refused()?;
        self.check_throttle()?;
        let grant = self.grant.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let outcome = request_token(&self.http, &self.config, &grant, &self.last_assertion)
            .await
            .map(|(mut grant, sent)| {
                self.keep_rotated_refresh_token(grant.refresh_token.take());
                Arc::new(grant.into_token(sent, self.config.renew_before))
            });
        match &outcome {
            Ok(token) => {
                *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                *last_failure = None;
                if let Some(listener) = &self.listener {
                    listener(token.expires_at_wall);
                }
            }
            Err(err) => {
                if let Some(wait) = err.retry_after() {
                    let until = (Instant::now() + wait, SystemTime::now() + wait);
                    *self.throttled_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
                }
                if is_credential_refusal(err) && !self.config.failure_cache.is_zero() {
                    let until = Instant::now() + self.config.failure_cache;
                    *self.refused_until.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some((until, err.clone()));
                }
                *last_failure = Some(err.clone());
            }
        }
        self.finished.fetch_add(1, Ordering::Release);
        // A 429 is reported the way every later call during the wait reports it: with when
        // to try again.
        match outcome {
            Err(err) if err.retry_after().is_some() => Err(self.check_throttle().err().unwrap_or(err)),
            outcome => outcome,
        }
    }

    /// A refresh token the endpoint returned replaces the one sent, as its issuer may have
    /// revoked that one (Entra ID rotates them). Irrelevant to the client_credentials grant.
    fn keep_rotated_refresh_token(&self, rotated: Option<Secret>) {
        let mut grant = self.grant.lock().unwrap_or_else(|e| e.into_inner());
        if let (Grant::RefreshToken(current), Some(rotated)) = (&mut *grant, rotated) {
            *current = rotated;
        }
    }

    /// A fixed `auth.accessToken` with nothing to renew it: there is no usable token (it
    /// expired, or the server refused it), and there will be none.
    fn check_renewable(&self) -> Result<()> {
        match &self.config.fixed_token {
            Some(fixed) if !self.renewable() => Err(fixed.unusable(self.cached_token().is_none())),
            _ => Ok(()),
        }
    }

    /// Fails fast, without a request, with the endpoint's last credential refusal while it
    /// is remembered.
    fn check_refused(&self) -> Result<()> {
        let refused = self.refused_until.lock().unwrap_or_else(|e| e.into_inner());
        match refused.as_ref() {
            Some((until, err)) if Instant::now() < *until => Err(err.clone()),
            _ => Ok(()),
        }
    }

    /// Fails fast, without a request, while the endpoint's `Retry-After` has not passed.
    fn check_throttle(&self) -> Result<()> {
        let throttled = *self.throttled_until.lock().unwrap_or_else(|e| e.into_inner());
        let Some((until, until_wall)) = throttled else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        let wait = until - now;
        Err(Error::new(
            ErrorKind::OAuth2,
            format!(
                "the token endpoint is throttling this app (HTTP 429): no token request before {} (in {} s); retry the send after that",
                httpdate::fmt_http_date(until_wall),
                wait.as_secs().max(1)
            ),
        )
        .with_http_status(429)
        .with_retry_after(wait)
        .with_hint("Entra ID throttles apps that request tokens too often. This transport caches tokens; if several processes share one app registration, they all count."))
    }
}

/// The HTTP client of every request that carries a credential (the token request, and
/// Microsoft Graph's bearer token): certificates always verified (Mozilla's roots plus
/// `oauth2.ca`), no redirect followed, HTTP/1.1; an `https://` endpoint through
/// `oauth2.proxy` or the environment's proxy, an `http://` (loopback) one always directly.
pub fn http_client_builder(
    config: &OAuth2Config,
    tls: &TlsOptions,
    endpoint: &reqwest::Url,
) -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(token_client_config(config, tls)?)
        .connect_timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only();
    if endpoint.scheme() != "https" {
        // A loopback endpoint over plain http (the config allows nothing else): through
        // a proxy (HTTP_PROXY, ALL_PROXY) the credential would cross the network in clear.
        builder = builder.no_proxy();
    } else if let Some(proxy) = &config.proxy {
        let proxy = reqwest::Proxy::all(proxy.expose())
            .map_err(|_| Error::config("mail.smtp.oauth2.proxy is not a usable proxy URL"))?;
        builder = builder.proxy(proxy);
    }
    Ok(builder)
}

/// A 4xx answer that says the request itself (credentials, client id, scope, tenant) is
/// wrong: asking again at once gets the same answer. 429 and `temporarily_unavailable`
/// are not refusals but requests to wait.
fn is_credential_refusal(err: &Error) -> bool {
    err.http_status()
        .is_some_and(|status| (400..500).contains(&status))
        && err.is_permanent()
}
