//! The transport: a validated config, the connector (token provider included), an optional
//! pool, and the send path `message -> token -> connection -> delivery` that the N-API layer
//! exposes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{process_variable, Auth, ConfigInputs, TransportConfig};
use crate::connector::Connector;
use crate::error::{Error, ErrorKind, RejectedRecipient, Result};
use crate::exchange::hint_context;
use crate::graph::{GraphClient, GraphProbe};
use crate::hints::Hint;
use crate::input::Value;
use crate::log::{LogSink, Logger};
use crate::message::{build_message, raw_message, OutgoingMessage};
use crate::oauth::{
    AccessToken, AssertionCallback, CredentialReport, TokenListener, TokenProvider, TokenReport,
};
use crate::pool::Pool;
use crate::probe::{self, ProbeOptions, ProbeReport};
use crate::tls::rustls_client_config;

/// What `sendMail` resolves with (nodemailer's `info`).
#[derive(Debug, Clone)]
pub struct SentInfo {
    pub message_id: String,
    pub envelope_from: Option<String>,
    pub envelope_to: Vec<String>,
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    pub response: String,
}

/// Counts admitted sends, so that `close()` can wait for them.
#[derive(Default)]
struct PendingSends {
    count: AtomicUsize,
    closing: AtomicBool,
    /// Signalled whenever the count drops to zero.
    drained: Notify,
}

impl PendingSends {
    async fn settled(&self) {
        loop {
            let drained = self.drained.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

/// One admitted send; dropping it (when the send settles) lets `close()` go on.
pub struct Admission(Arc<PendingSends>);

impl Drop for Admission {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// What the embedding environment gives a transport besides its config.
#[derive(Default)]
pub struct Environment {
    /// The content of the file named by `NODE_EXTRA_CA_CERTS`, if any.
    pub extra_ca_file: Option<Vec<u8>>,
    /// Told the expiry of every new token.
    pub on_token: Option<TokenListener>,
    /// Where log lines go (the user's `logger`); `debug: true` adds the SMTP transcript.
    pub log: Option<LogSink>,
    /// The function given as `oauth2.clientAssertion`, made callable by the embedding layer.
    pub client_assertion: Option<AssertionCallback>,
}

pub struct Transport {
    connector: Arc<Connector>,
    /// Sends accepted and not yet settled; `close()` waits for them.
    pending: Arc<PendingSends>,
    /// Message fields used when a message lacks them (the 2nd argument of `createTransport`).
    defaults: Option<Value>,
    /// `pool: true`: reused connections; otherwise one connection per message.
    pool: Option<Pool>,
}

impl Transport {
    /// Validates the config (`ECONFIG` naming the field) and prepares the token provider.
    /// Makes no network call.
    pub fn new(config: &Value, defaults: Option<Value>, environment: Environment) -> Result<Self> {
        let inputs = ConfigInputs {
            extra_ca_file: environment.extra_ca_file.as_deref(),
            variable: &process_variable,
            client_assertion: environment.client_assertion,
        };
        let config = TransportConfig::from_inputs(config, &inputs)?;
        let logger = match environment.log {
            Some(sink) => Logger::new(sink, config.debug),
            None => Logger::default(),
        };
        if !config.tls.verify_certificates {
            logger.warn(|| {
                "tls.rejectUnauthorized is false: certificates are not verified, so anyone on the network path can read the credentials".to_string()
            });
        }
        let tokens = match &config.auth {
            Auth::OAuth2 { user, oauth2 } => {
                if !oauth2.credential_environment.is_empty() {
                    logger.info(|| {
                        format!(
                            "OAuth2 credential from the environment ({}): {}",
                            oauth2.credential_environment.join(", "),
                            oauth2.credential.source()
                        )
                    });
                }
                let on_token = environment.on_token;
                let token_logger = logger.clone();
                let user = user.clone();
                let listener: TokenListener = Box::new(move |expires_at| {
                    token_logger.info(|| {
                        format!(
                            "new access token for {user}, valid until {}",
                            httpdate::fmt_http_date(expires_at)
                        )
                    });
                    if let Some(on_token) = &on_token {
                        on_token(expires_at);
                    }
                });
                Some(Arc::new(TokenProvider::new(
                    (**oauth2).clone(),
                    &config.tls,
                    Some(listener),
                )?))
            }
            _ => None,
        };
        let pool_options = config.pool;
        let max_retries = config.max_retries;
        let tls = Arc::new(rustls_client_config(&config.tls)?);
        let graph = match (&config.graph, &tokens) {
            (Some(_), Some(tokens)) => Some(GraphClient::new(&config, Arc::clone(tokens), logger.clone())?),
            _ => None,
        };
        let connector = Arc::new(Connector {
            config,
            tls,
            logger,
            tokens,
            graph,
        });
        let pool = pool_options.map(|options| Pool::new(Arc::clone(&connector), options, max_retries));
        Ok(Transport {
            connector,
            pending: Arc::default(),
            defaults,
            pool,
        })
    }

    pub fn config(&self) -> &TransportConfig {
        &self.connector.config
    }

    pub(crate) fn logger(&self) -> &Logger {
        &self.connector.logger
    }

    /// The token endpoint, for an OAuth2 transport.
    pub fn token_url(&self) -> Option<&reqwest::Url> {
        match &self.connector.config.auth {
            Auth::OAuth2 { oauth2, .. } => Some(&oauth2.token_url),
            _ => None,
        }
    }

    /// Walks the chain as the transport does and reports each step (the doctor).
    pub async fn probe(&self, options: &ProbeOptions) -> ProbeReport {
        probe::run(self, options).await
    }

    /// The error's hint filled in with what this transport knows (and the sender, if any).
    fn explained(&self, err: Error, from: Option<&str>) -> Error {
        err.in_context(&hint_context(&self.connector.config, from))
    }

    /// Connects, sets up TLS, authenticates and quits: proves the whole chain works.
    /// With a pool, it takes one of its `maxConnections` slots. With Graph, which has no
    /// login step, it gets a token and checks its claims (audience Graph, role Mail.Send).
    pub async fn verify(&self) -> Result<()> {
        if self.connector.graph.is_some() {
            let report = self.connector.inspect_token().await?;
            if report.problems.is_empty() {
                return Ok(());
            }
            let findings: Vec<&str> = report.problems.iter().map(|p| p.message.as_str()).collect();
            return Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "the access token cannot send through Microsoft Graph: {}",
                    findings.join("; ")
                ),
            )
            .with_hint(Hint::render(
                "graph.access_denied",
                &hint_context(self.config(), None),
            )));
        }
        let check = async {
            let connection = self.connector.open_connection().await?;
            connection.quit().await;
            Ok(())
        };
        match &self.pool {
            Some(pool) => pool.in_slot(check).await,
            None => check.await,
        }
        .map_err(|err| self.explained(err, None))
    }

    /// Accepts a send, synchronously, before any of its work: a send admitted before
    /// `begin_close()` is delivered before `close()` finishes; one after is refused.
    pub fn admit(&self) -> Result<Admission> {
        if self.pending.closing.load(Ordering::Acquire) {
            return Err(Error::new(
                ErrorKind::Connection,
                "the transport is closed: the message was not sent",
            ));
        }
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        Ok(Admission(Arc::clone(&self.pending)))
    }

    /// Refuses new sends from now on (the synchronous half of `close()`).
    pub fn begin_close(&self) {
        self.pending.closing.store(true, Ordering::Release);
    }

    /// Builds `message` (failing before any connection if it is invalid), then delivers it
    /// through the pool, or over a connection of its own.
    pub async fn send(&self, message: &Value) -> Result<SentInfo> {
        let config = &self.connector.config;
        let outgoing = build_message(
            message,
            self.defaults.as_ref(),
            config.auth.user(),
            &config.content_access,
        )
        .await?;
        self.deliver(Arc::new(outgoing)).await
    }

    /// Sends a message built elsewhere (nodemailer's plugin API): its bytes as they are.
    pub async fn send_raw(&self, raw: &Value, envelope: &Value) -> Result<SentInfo> {
        self.deliver(Arc::new(raw_message(raw, envelope)?)).await
    }

    async fn deliver(&self, outgoing: Arc<OutgoingMessage>) -> Result<SentInfo> {
        let delivered = match &self.pool {
            Some(pool) => pool.send(Arc::clone(&outgoing)).await,
            None => self.connector.send_unpooled(&outgoing).await,
        };
        let from = outgoing.envelope_from.as_ref().map(|a| a.to_string());
        let delivery = delivered.map_err(|err| self.explained(err, from.as_deref()))?;
        Ok(SentInfo {
            message_id: outgoing.message_id.clone(),
            envelope_from: outgoing.envelope_from.as_ref().map(|a| a.to_string()),
            envelope_to: outgoing.envelope_to.iter().map(|a| a.to_string()).collect(),
            accepted: delivery.accepted,
            rejected: delivery.rejected,
            response: delivery.response,
        })
    }

    /// nodemailer's `isIdle()`: a send now would not wait for a connection slot.
    pub fn is_idle(&self) -> bool {
        match &self.pool {
            Some(pool) => self.pending.count.load(Ordering::Acquire) < pool.max_connections(),
            None => true,
        }
    }

    /// Refuses new sends, waits for the admitted ones (or, with `force`, rejects those still
    /// queued) and closes pooled connections with QUIT.
    pub async fn close(&self, force: bool) {
        self.begin_close();
        if !force {
            self.pending.settled().await;
        }
        if let Some(pool) = &self.pool {
            pool.close(force).await;
        }
    }

    /// The current access token (cached, or fetched now).
    pub async fn access_token(&self) -> Result<Arc<AccessToken>> {
        self.connector
            .access_token()
            .await
            .map_err(|err| self.explained(err, None))
    }

    /// Which OAuth2 credential this transport uses and where it comes from (`None` without
    /// OAuth2); needs no token.
    pub fn credential_report(&self) -> Option<CredentialReport> {
        self.connector
            .tokens
            .as_ref()
            .map(|tokens| tokens.credential_report())
    }

    /// The current token's claims that matter for SMTP, and the problems they show.
    pub async fn inspect_token(&self) -> Result<TokenReport> {
        self.connector.inspect_token().await
    }

    /// The doctor's Graph checks (token claims, then `GET /users/{user}`); `ECONFIG`
    /// without `api: 'graph'`.
    pub async fn probe_graph(&self) -> Result<GraphProbe> {
        match &self.connector.graph {
            Some(graph) => graph.probe().await,
            None => Err(Error::config(
                "mail.smtp.api is not 'graph': there is no Graph path to probe",
            )),
        }
    }
}
