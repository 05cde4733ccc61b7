//! The token cache every send shares: one token per lifetime, one request at a time.
//!
//! Readers take a read lock and leave with the cached token while it is fresh (the fast
//! path). When it is not, callers queue on one refresh lock; the first one through asks the
//! endpoint, and the others find its token (or its error) when their turn comes, so N
//! concurrent sends cause one request, and a failure is not repeated N times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::config::{OAuth2Config, TlsOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::oauth::token::{request_token, AccessToken};
use crate::tls::rustls_client_config;

pub struct TokenProvider {
    config: OAuth2Config,
    http: reqwest::Client,
    cached: RwLock<Option<Arc<AccessToken>>>,
    /// Held while a request is in flight; holds the error of the last one if it failed.
    refresh: tokio::sync::Mutex<Option<Error>>,
    /// Counts finished requests, so that a waiter can tell one finished while it queued.
    finished: AtomicU64,
}

impl TokenProvider {
    pub fn new(config: OAuth2Config, tls: &TlsOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls_client_config(tls)?)
            .connect_timeout(config.timeout)
            .http1_only()
            .build()
            .map_err(|err| {
                Error::new(
                    ErrorKind::Config,
                    format!("cannot create the HTTPS client: {err}"),
                )
            })?;
        Ok(TokenProvider {
            config,
            http,
            cached: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
            finished: AtomicU64::new(0),
        })
    }

    /// A token that is valid now and not due for renewal.
    pub async fn token(&self) -> Result<Arc<AccessToken>> {
        if let Some(token) = self.fresh_token() {
            return Ok(token);
        }
        let seen = self.finished.load(Ordering::Acquire);
        let mut last_failure = self.refresh.lock().await;
        if let Some(token) = self.fresh_token() {
            return Ok(token);
        }
        // A request finished while we queued and it failed: share its answer rather than
        // hammering an endpoint that just refused.
        if let Some(failure) = last_failure.as_ref() {
            if self.finished.load(Ordering::Acquire) > seen {
                return Err(failure.clone());
            }
        }
        let outcome = request_token(&self.http, &self.config).await;
        let outcome =
            outcome.map(|grant| Arc::new(grant.into_token(Instant::now(), self.config.renew_before)));
        match &outcome {
            Ok(token) => {
                *self.cached.write().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
                *last_failure = None;
            }
            Err(err) => *last_failure = Some(err.clone()),
        }
        self.finished.fetch_add(1, Ordering::Release);
        outcome
    }

    /// Drops the cached token, e.g. after the server refused it.
    pub fn invalidate(&self) {
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn fresh_token(&self) -> Option<Arc<AccessToken>> {
        let cached = self.cached.read().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|token| Instant::now() < token.renew_at)
            .cloned()
    }
}
