//! Microsoft Graph's sendMail (`api: 'graph'`): the same MIME bytes as over SMTP, posted
//! over HTTPS where SMTP AUTH is switched off.
//!
//! A message is posted base64-encoded (`Content-Type: text/plain`) to
//! `/users/{auth.user}/sendMail`. One over Graph's request limit (4 MB), or one that must
//! not be saved to Sent Items (sendMail's MIME form has no `saveToSentItems`), goes through
//! a draft ([`draft`]). Requests use the token client's trust rules
//! ([`crate::oauth::http_client_builder`]), at most `maxConnections` (at most 4, Outlook's
//! limit per app and mailbox) at a time. A 401 is answered once with a fresh token. Retries
//! of throttling (429, 503, 504 with `Retry-After`) are the caller's, as for SMTP.

mod answer;
mod draft;
mod mime;
mod probe;

use std::sync::Arc;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::Semaphore;

use crate::config::{GraphOptions, TransportConfig, GRAPH_MAX_CONCURRENT_REQUESTS};
use crate::error::{Error, ErrorKind, Result};
use crate::hints::Hint;
use crate::log::Logger;
use crate::message::OutgoingMessage;
use crate::oauth::{http_client_builder, AccessToken, TokenProvider};
use crate::smtp::Delivery;

pub use probe::{GraphProbe, MailboxCheck};

/// Graph refuses requests over 4 MB; the base64 body must stay under it.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

pub struct GraphClient {
    http: reqwest::Client,
    options: GraphOptions,
    user: String,
    tokens: Arc<TokenProvider>,
    /// Concurrent requests for this mailbox.
    slots: Semaphore,
    logger: Logger,
}

/// A request ready to go, except for the token.
pub(crate) struct Call {
    step: &'static str,
    method: reqwest::Method,
    url: reqwest::Url,
    content_type: &'static str,
    body: Vec<u8>,
    /// Whether a lost connection may mean the message left (sendMail, send).
    delivers: bool,
}

impl GraphClient {
    pub fn new(config: &TransportConfig, tokens: Arc<TokenProvider>, logger: Logger) -> Result<Self> {
        let (options, user, oauth2) = match (&config.graph, &config.auth) {
            (Some(options), crate::config::Auth::OAuth2 { user, oauth2 }) => {
                (options.clone(), user.clone(), oauth2)
            }
            _ => return Err(Error::config("mail.smtp.api 'graph' needs type: 'oauth2'")),
        };
        let http = http_client_builder(oauth2, &config.tls, &options.base_url)?
            .connect_timeout(config.timeouts.connection)
            .read_timeout(config.timeouts.socket)
            .build()
            .map_err(|err| Error::config(format!("cannot create the HTTPS client: {err}")))?;
        let permits = config
            .pool
            .map_or(GRAPH_MAX_CONCURRENT_REQUESTS as usize, |pool| {
                pool.max_connections
            });
        Ok(GraphClient {
            http,
            options,
            user,
            tokens,
            slots: Semaphore::new(permits),
            logger,
        })
    }

    /// Sends `message`; resolves on Graph's 202, which is final.
    pub async fn send(&self, message: &OutgoingMessage) -> Result<Delivery> {
        let mime = mime::with_bcc(&message.body.to_vec(), &message.envelope_to);
        let response = if mime::base64_len(mime.len()) > MAX_REQUEST_BYTES || !self.options.save_to_sent_items
        {
            self.logger.info(|| {
                format!(
                    "sending {} through a Graph draft ({} bytes of MIME{})",
                    message.message_id,
                    mime.len(),
                    if self.options.save_to_sent_items {
                        ""
                    } else {
                        ", not saved to Sent Items"
                    }
                )
            });
            draft::send(self, mime).await?
        } else {
            let call = self.call(
                "sendMail",
                reqwest::Method::POST,
                &["sendMail"],
                "text/plain",
                mime::base64(&mime).into_bytes(),
                true,
            );
            self.execute(call).await?
        };
        Ok(Delivery {
            accepted: message.envelope_to.iter().map(|a| a.to_string()).collect(),
            rejected: Vec::new(),
            response,
        })
    }

    /// A call to `{base}/users/{user}/{path...}`.
    pub(crate) fn call(
        &self,
        step: &'static str,
        method: reqwest::Method,
        path: &[&str],
        content_type: &'static str,
        body: Vec<u8>,
        delivers: bool,
    ) -> Call {
        Call {
            step,
            method,
            url: self.user_url(path),
            content_type,
            body,
            delivers,
        }
    }

    fn user_url(&self, path: &[&str]) -> reqwest::Url {
        let mut url = self.options.base_url.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has path segments")
            .pop_if_empty()
            .push("users")
            .push(&self.user)
            .extend(path);
        url
    }

    /// Runs `call` with the current token; a 401 is tried once more with a fresh token.
    /// Returns the status line and request id of the answer (`HTTP/1.1 202 Accepted
    /// request-id: ...`) and its body.
    pub(crate) async fn execute(&self, call: Call) -> Result<String> {
        self.execute_with_body(call).await.map(|(line, _)| line)
    }

    pub(crate) async fn execute_with_body(&self, call: Call) -> Result<(String, Vec<u8>)> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Connection, "the Graph client is closed"))?;
        self.tokens.fail_fast()?;
        let token = self.tokens.token().await?;
        match self.attempt(&call, &token).await {
            Err(err) if err.http_status() == Some(401) => {
                self.tokens.invalidate(&token);
                let fresh = self.tokens.token().await?;
                self.attempt(&call, &fresh)
                    .await
                    .map_err(|err| self.explain(err, &fresh))
            }
            outcome => outcome.map_err(|err| self.explain(err, &token)),
        }
    }

    async fn attempt(&self, call: &Call, token: &AccessToken) -> Result<(String, Vec<u8>)> {
        let request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(AUTHORIZATION, format!("Bearer {}", token.value.expose()))
            .header(CONTENT_TYPE, call.content_type)
            .body(call.body.clone());
        self.logger
            .transcript(|| format!("{} {} ({} bytes)", call.method, call.url.path(), call.body.len()));
        let response = request
            .send()
            .await
            .map_err(|err| transport_error(call.step, call.delivers, &err))?;
        read_answer(call.step, call.delivers, response).await
    }

    /// Adds what the token's claims say (wrong audience, no Mail.Send role) to a refusal.
    fn explain(&self, err: Error, token: &AccessToken) -> Error {
        if err.kind() != ErrorKind::Auth {
            return err;
        }
        // A Graph scope: Graph's `Mail.Send` is checked whatever the Exchange role.
        let report = self.tokens.inspect(token, None);
        if report.problems.is_empty() {
            return err;
        }
        let findings: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
        let hint = err.hint_data().cloned().unwrap_or_else(|| Hint::from(""));
        err.with_hint(hint.with_preface(format!("The token shows: {}.", findings.join("; "))))
    }

    /// An upload session's pre-authenticated URL: no bearer token goes there, and it must
    /// be as safe as the API root (https, or http only on loopback when the root is).
    pub(crate) async fn upload(&self, url: &reqwest::Url, range: String, chunk: Vec<u8>) -> Result<u16> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Connection, "the Graph client is closed"))?;
        let response = self
            .http
            .put(url.clone())
            .header(reqwest::header::CONTENT_RANGE, range)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(chunk)
            .send()
            .await
            .map_err(|err| transport_error("upload", false, &err))?;
        let status = response.status().as_u16();
        read_answer("upload", false, response).await?;
        Ok(status)
    }

    pub(crate) fn base_url(&self) -> &reqwest::Url {
        &self.options.base_url
    }
}

/// The status line and body of a 2xx answer, or the error the answer stands for.
async fn read_answer(
    step: &'static str,
    delivers: bool,
    response: reqwest::Response,
) -> Result<(String, Vec<u8>)> {
    let status = response.status();
    let request_id = header_text(response.headers(), "request-id");
    let retry_after = retry_after(response.headers());
    let line = format!(
        "{:?} {} {}{}",
        response.version(),
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        request_id
            .as_ref()
            .map(|id| format!(" request-id: {id}"))
            .unwrap_or_default()
    );
    // A 2xx answer of a delivering call is final even if its body is lost.
    let body = match response.bytes().await {
        Ok(body) => body.to_vec(),
        Err(_) if status.is_success() => Vec::new(),
        Err(err) => return Err(transport_error(step, delivers && status.is_success(), &err)),
    };
    if status.is_success() {
        return Ok((line, body));
    }
    Err(answer::graph_error(
        step,
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        request_id,
        retry_after,
        &body,
    ))
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<std::time::Duration> {
    let text = header_text(headers, "retry-after")?;
    if let Ok(seconds) = text.trim().parse::<u64>() {
        return Some(std::time::Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(text.trim()).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// A request that got no answer. Before the connection was made nothing left; after it, a
/// delivering call may have reached Graph: `EUNKNOWN_DELIVERY`, never resent.
fn transport_error(step: &'static str, delivers: bool, err: &reqwest::Error) -> Error {
    // reqwest's Display never includes the headers (the token); the URL holds no secret.
    let detail = std::error::Error::source(err)
        .map(|source| source.to_string())
        .unwrap_or_else(|| err.to_string());
    if err.is_connect() {
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Connection
        };
        return Error::new(kind, format!("cannot reach Microsoft Graph ({step}): {detail}"))
            .with_command(step);
    }
    if delivers {
        return Error::new(
            ErrorKind::UnknownDelivery,
            format!("the connection to Microsoft Graph failed after the message was sent ({step}), before Graph answered: it may or may not have been accepted, so it is not resent ({detail})"),
        )
        .with_command(step);
    }
    let kind = if err.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Connection
    };
    Error::new(
        kind,
        format!("the request to Microsoft Graph failed ({step}): {detail}"),
    )
    .with_command(step)
}
