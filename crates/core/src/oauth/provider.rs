//! The token cache every send shares: one token per lifetime, one request at a time.
//!
//! Readers take a read lock and leave with the cached token while it is fresh (the fast
//! path). A token due for renewal but still valid is returned at once while one background
//! task fetches the next. When there is no usable token, callers queue on one refresh
//! lock; the first one through asks the endpoint, and the others find its token (or its
//! error) when their turn comes, so N concurrent sends cause one request and a failure is
//! not repeated N times. After a 429 no request is made until its `Retry-After` has passed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{OAuth2Config, TlsOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::oauth::claims::{inspect, Expectations, TokenReport};
use crate::oauth::token::{request_token, AccessToken};
use crate::tls::rustls_client_config;

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
    listener: Option<TokenListener>,
}

impl TokenProvider {
    pub fn new(config: OAuth2Config, tls: &TlsOptions, listener: Option<TokenListener>) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls_client_config(tls)?)
            .connect_timeout(config.timeout)
            .http1_only();
        if let Some(proxy) = &config.proxy {
            let proxy = reqwest::Proxy::all(proxy.expose())
                .map_err(|_| Error::config("mail.smtp.oauth2.proxy is not a usable proxy URL"))?;
            builder = builder.proxy(proxy);
        }
        let http = builder
            .build()
            .map_err(|err| Error::config(format!("cannot create the HTTPS client: {err}")))?;
        Ok(TokenProvider {
            config,
            http,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            finished: AtomicU64::new(0),
            background_running: AtomicBool::new(false),
            background_not_before: Mutex::new(None),
            throttled_until: Mutex::new(None),
            listener,
        })
    }

    /// A token that is valid now; fetched only when there is none usable.
    pub async fn token(self: &Arc<Self>) -> Result<Arc<AccessToken>> {
        if let Some(token) = self.cached_token() {
            let now = Instant::now();
            if now < token.renew_at {
                return Ok(token);
            }
            if now < token.use_until {
                self.renew_in_background();
                return Ok(token);
            }
        }
        self.refresh().await
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

    /// What `token` says about the setup (audience, role, tenant).
    pub fn inspect(&self, token: &AccessToken) -> TokenReport {
        let expected = Expectations {
            scope: &self.config.scope,
            tenant_id: self.config.tenant_id.as_deref(),
            client_id: &self.config.client_id,
        };
        inspect(token.value.expose(), &expected)
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
            if Instant::now() < token.renew_at {
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
        self.check_throttle()?;
        let outcome = request_token(&self.http, &self.config)
            .await
            .map(|grant| Arc::new(grant.into_token(Instant::now(), self.config.renew_before)));
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
