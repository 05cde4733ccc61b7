#![deny(clippy::all)]
//! The N-API layer: translation only. JS values become the core's input tree, the core's
//! results become `info` objects, its errors become nodemailer-shaped `Error`s. All logic
//! lives in `smtp-oauth-core`.

mod js_error;
mod js_input;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use napi::bindgen_prelude::{FnArgs, Function, JsObjectValue, Object, Promise, PromiseRaw, Unknown};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Result, Status, ValueType};
use napi_derive::napi;
use smtp_oauth_core::log::{dropping_when_full, Level, LogSink};
use smtp_oauth_core::oauth::{AssertionCallback, TokenListener};
use smtp_oauth_core::probe::ProbeOptions;
use smtp_oauth_core::secret::Secret;
use smtp_oauth_core::transport::Admission;
use smtp_oauth_core::{Environment, Error, ErrorKind, SentInfo, Transport};

use js_error::to_js_error;
use js_input::to_value;

/// The SMTP envelope actually used: MAIL FROM and RCPT TO.
#[napi(object)]
pub struct Envelope {
    pub from: Option<String>,
    pub to: Vec<String>,
}

/// A recipient the server refused (nodemailer's `rejectedErrors` entries).
#[napi(object)]
pub struct RecipientError {
    pub message: String,
    /// Always `'EENVELOPE'`.
    pub code: String,
    pub recipient: String,
    pub response_code: u32,
    pub response: String,
    /// Always `'RCPT TO'`.
    pub command: String,
}

/// What `sendMail` resolves with, as in nodemailer.
#[napi(object)]
pub struct SentMessageInfo {
    /// The `Message-ID` header of the message, with angle brackets.
    pub message_id: String,
    pub envelope: Envelope,
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients the server refused; the message was still sent to the others.
    pub rejected: Vec<String>,
    pub rejected_errors: Vec<RecipientError>,
    /// The server's final reply to DATA, e.g. `250 2.0.0 OK`.
    pub response: String,
}

impl From<SentInfo> for SentMessageInfo {
    fn from(info: SentInfo) -> Self {
        let rejected_errors = info
            .rejected
            .iter()
            .map(|r| RecipientError {
                message: format!("recipient {} refused: {}", r.recipient, r.reply),
                code: "EENVELOPE".into(),
                recipient: r.recipient.clone(),
                response_code: r.reply.code.into(),
                response: r.reply.to_string(),
                command: "RCPT TO".into(),
            })
            .collect();
        SentMessageInfo {
            message_id: info.message_id,
            envelope: Envelope {
                from: info.envelope_from,
                to: info.envelope_to,
            },
            accepted: info.accepted,
            rejected: info.rejected.into_iter().map(|r| r.recipient).collect(),
            rejected_errors,
            response: info.response,
        }
    }
}

/// Sent to the `onToken` callback when a new access token was obtained (never the token).
#[napi(object)]
pub struct TokenEvent {
    /// The mailbox the token is used for (`auth.user`).
    pub user: String,
    /// When the token expires, in milliseconds since the epoch.
    pub expires_at: f64,
}

/// One log line for the user's `logger` (already redacted).
#[napi(object)]
pub struct LogRecord {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
}

/// An access token, for callers that also use it elsewhere (e.g. Microsoft Graph).
#[napi(object)]
pub struct AccessTokenInfo {
    pub access_token: String,
    /// When the token expires, in milliseconds since the epoch.
    pub expires_at: f64,
}

/// A problem a token's claims show about the Entra ID / Exchange setup.
#[napi(object)]
pub struct TokenProblem {
    /// `AUDIENCE`, `ROLE_MISSING`, `TENANT_MISMATCH` or `APP_MISMATCH`.
    pub code: String,
    pub message: String,
}

/// The token's claims that matter for SMTP (decoded, not verified).
#[napi(object)]
pub struct TokenInspection {
    /// `false` for opaque (non-JWT) tokens; the other fields are then empty.
    pub is_jwt: bool,
    pub aud: Option<String>,
    pub roles: Vec<String>,
    pub tid: Option<String>,
    pub appid: Option<String>,
    /// Expiry in milliseconds since the epoch.
    pub exp: Option<f64>,
    pub problems: Vec<TokenProblem>,
    /// Which credential obtained the token, and from where.
    pub credential: Option<CredentialInfo>,
}

/// The OAuth2 credential a transport uses (never its value).
#[napi(object)]
pub struct CredentialInfo {
    /// `clientSecret`, `certificate`, `clientAssertionFile`, `clientAssertion` or `managedIdentity`.
    pub kind: String,
    /// Where it comes from: the config field, the file, the managed identity endpoint.
    pub source: String,
    /// The environment variables that chose or completed it (empty: the config alone).
    pub environment: Vec<String>,
    /// For a federated token file or callback: the last assertion's claims.
    pub assertion: Option<AssertionClaimsInfo>,
}

/// A client assertion's claims (decoded, not verified; never the assertion).
#[napi(object)]
pub struct AssertionClaimsInfo {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<String>,
    /// Expiry in milliseconds since the epoch.
    pub exp: Option<f64>,
}

/// What `probe()` is asked to do besides walking the configured chain.
#[napi(object)]
pub struct ProbeRequest {
    /// Also send a test message to this address.
    pub send_to: Option<String>,
    /// The test message's sender (`mail.from`); the mailbox when unset.
    pub from: Option<String>,
}

/// How long `closeAtExit()` may hold the exiting process to say QUIT.
const EXIT_QUIT_BUDGET: Duration = Duration::from_millis(500);

/// The native half of a transport; `transport.js` wraps it in nodemailer's API.
#[napi]
pub struct NativeTransport {
    /// `None` once closed: dropping the core transport zeroes the secrets it holds.
    inner: Mutex<Option<Arc<Transport>>>,
    /// Where finished sends are reported (`onComplete(id, error, info)`).
    completions: Arc<CompletionChannel>,
}

/// One send's outcome, on its way to the JS thread.
struct Completion {
    id: u32,
    outcome: std::result::Result<SentInfo, Error>,
}

/// One threadsafe function per transport for every send's outcome, instead of a promise
/// (and with it a threadsafe function, a libuv handle) per message: outcomes queue and are
/// delivered in batches. Weak: the JS side keeps the process alive while sends are pending.
type CompletionChannel = ThreadsafeFunction<
    Completion,
    (),
    FnArgs<(u32, Option<napi::Error>, Option<SentMessageInfo>)>,
    Status,
    false,
    true,
>;

#[napi]
impl NativeTransport {
    /// Validates `config` (a TAS `mail.smtp` object) synchronously; throws `ECONFIG`
    /// naming the field. `onComplete(id, error, info)` receives the outcome of every
    /// `sendMail`/`sendRaw`. `defaults` are message fields used when a message lacks them.
    /// `onToken` is called (on the JS thread, without keeping the process alive) for each
    /// new access token.
    #[napi(
        constructor,
        catch_unwind,
        ts_args_type = "config: object, onComplete: (id: number, error: Error | null, info: SentMessageInfo | null) => void, defaults?: object | undefined | null, onToken?: ((event: TokenEvent) => void) | undefined | null, onLog?: ((record: LogRecord) => void) | undefined | null"
    )]
    pub fn new(
        env: Env,
        config: Unknown,
        on_complete: Function<u32, ()>,
        defaults: Option<Unknown>,
        on_token: Option<Function<TokenEvent, ()>>,
        on_log: Option<Function<LogRecord, ()>>,
    ) -> Result<Self> {
        let client_assertion = client_assertion(config)?;
        let config = to_value(&env, config)?;
        let defaults = defaults.map(|d| to_value(&env, d)).transpose()?;
        // Node reads NODE_EXTRA_CA_CERTS for its own TLS; the token endpoint and the SMTP
        // server are reached from Rust, so the same file is read here.
        let extra_ca_file = std::env::var_os("NODE_EXTRA_CA_CERTS").and_then(|path| std::fs::read(path).ok());
        let listener = match on_token {
            Some(callback) => Some(token_listener(&config, callback)?),
            None => None,
        };
        let log = match on_log {
            Some(callback) => Some(log_sink(callback)?),
            None => None,
        };
        let environment = Environment {
            extra_ca_file,
            on_token: listener,
            log,
            client_assertion,
        };
        let transport =
            Arc::new(Transport::new(&config, defaults, environment).map_err(|err| to_js_error(&env, &err))?);
        let completions = on_complete
            .build_threadsafe_function::<Completion>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(|ctx: ThreadsafeCallContext<Completion>| {
                let Completion { id, outcome } = ctx.value;
                Ok(FnArgs::from(match outcome {
                    Ok(info) => (id, None, Some(SentMessageInfo::from(info))),
                    Err(err) => (id, Some(to_js_error(&ctx.env, &err)), None),
                }))
            })?;
        Ok(NativeTransport {
            inner: Mutex::new(Some(transport)),
            completions: Arc::new(completions),
        })
    }

    /// Connects, starts TLS, gets a token, authenticates and quits. Resolves `true`.
    #[napi(ts_return_type = "Promise<true>")]
    pub fn verify<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, bool>> {
        let transport = self.transport();
        settle(
            env,
            async move { transport?.verify().await.map(|()| true) },
            |_, ok| Ok(ok),
        )
    }

    /// Builds and sends one message; its outcome goes to `onComplete(id, error, info)`.
    #[napi(catch_unwind, ts_args_type = "message: object, id: number")]
    pub fn send_mail(&self, env: Env, message: Unknown, id: u32) -> Result<()> {
        let message = to_value(&env, message)?;
        let admitted = self.admit();
        self.complete_later(id, async move {
            let (transport, _admission) = admitted?;
            transport.send(&message).await
        });
        Ok(())
    }

    /// The current access token (cached, or fetched now).
    #[napi(ts_return_type = "Promise<AccessTokenInfo>")]
    pub fn get_access_token<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, AccessTokenInfo>> {
        let transport = self.transport();
        settle(env, async move { transport?.access_token().await }, |_, token| {
            Ok(AccessTokenInfo {
                access_token: token.value.expose().to_string(),
                expires_at: epoch_ms(token.expires_at_wall),
            })
        })
    }

    /// The current token's claims and the setup problems they show.
    #[napi(ts_return_type = "Promise<TokenInspection>")]
    pub fn inspect_token<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, TokenInspection>> {
        let transport = self.transport();
        settle(
            env,
            async move { transport?.inspect_token().await },
            |_, report| {
                Ok(TokenInspection {
                    is_jwt: report.is_jwt,
                    aud: report.aud,
                    roles: report.roles,
                    tid: report.tid,
                    appid: report.appid,
                    exp: report.exp.map(epoch_ms),
                    problems: report
                        .problems
                        .into_iter()
                        .map(|p| TokenProblem {
                            code: p.code.to_string(),
                            message: p.message,
                        })
                        .collect(),
                    credential: report.credential.map(|c| CredentialInfo {
                        kind: c.kind.to_string(),
                        source: c.source,
                        environment: c.environment.iter().map(|v| v.to_string()).collect(),
                        assertion: c.assertion.map(|a| AssertionClaimsInfo {
                            iss: a.iss,
                            sub: a.sub,
                            aud: a.aud,
                            exp: a.exp.map(epoch_ms),
                        }),
                    }),
                })
            },
        )
    }

    /// The doctor's walk along the chain (config, token, claims, SMTP/TLS, AUTH, optional
    /// test message) with the transport's own code. Resolves
    /// `{ ok, steps: [{ step, name, title, ok, status, finding, fix, hint, warnings, details, elapsedMs }] }`.
    #[napi(ts_return_type = "Promise<{ ok: boolean; steps: Array<Record<string, any>> }>")]
    pub fn probe<'env>(
        &self,
        env: &'env Env,
        request: Option<ProbeRequest>,
    ) -> Result<PromiseRaw<'env, serde_json::Value>> {
        let transport = self.transport();
        let options = ProbeOptions {
            send_to: request.as_ref().and_then(|r| r.send_to.clone()),
            from: request.and_then(|r| r.from),
        };
        settle(
            env,
            async move {
                let report = transport?.probe(&options).await;
                serde_json::to_value(report).map_err(|err| Error::new(ErrorKind::Internal, err.to_string()))
            },
            |_, report| Ok(report),
        )
    }

    /// Sends a message someone else built (nodemailer's plugin API): `raw` is the whole
    /// message, `envelope` its `{ from, to }`; the outcome goes to `onComplete`.
    #[napi(
        catch_unwind,
        ts_args_type = "raw: Buffer | string, envelope: { from?: string | false; to: string[] }, id: number"
    )]
    pub fn send_raw(&self, env: Env, raw: Unknown, envelope: Unknown, id: u32) -> Result<()> {
        let raw = to_value(&env, raw)?;
        let envelope = to_value(&env, envelope)?;
        let admitted = self.admit();
        self.complete_later(id, async move {
            let (transport, _admission) = admitted?;
            transport.send_raw(&raw, &envelope).await
        });
        Ok(())
    }

    /// nodemailer's `isIdle()`: no message waiting and a connection slot free.
    #[napi]
    pub fn is_idle(&self) -> bool {
        self.transport().map(|t| t.is_idle()).unwrap_or(true)
    }

    /// Waits for queued messages to be sent (`force`: rejects them instead), closes pooled
    /// connections with QUIT, then releases the transport: its secrets are zeroed and later
    /// calls reject with `ECONNECTION`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env, force: Option<bool>) -> Result<PromiseRaw<'env, ()>> {
        let transport = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        // Sends made before this call are admitted and will be waited for; later ones are refused.
        if let Some(transport) = &transport {
            transport.begin_close();
        }
        settle(
            env,
            async move {
                if let Some(transport) = transport {
                    transport.close(force.unwrap_or(false)).await;
                }
                Ok(())
            },
            |_, ()| Ok(()),
        )
    }

    /// For `process.on('exit')` (also reached through `process.exit()`, which runs no event
    /// loop and no environment cleanup hooks afterwards): closes the transport now,
    /// synchronously, as `close({ force: true })` would. Idle pooled connections are sent
    /// QUIT; the whole takes at most `EXIT_QUIT_BUDGET`, after which whatever is still open is
    /// left to the process's end (the kernel closes the sockets).
    #[napi]
    pub fn close_at_exit(&self) {
        let Some(transport) = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        transport.begin_close();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            napi::bindgen_prelude::block_on(async {
                let _ = tokio::time::timeout(EXIT_QUIT_BUDGET, transport.close(true)).await;
            })
        }));
    }

    /// Runs a send on napi's tokio runtime and reports its outcome through the completion
    /// channel; a panic becomes an error outcome instead of unwinding into Node.
    fn complete_later<F>(&self, id: u32, work: F)
    where
        F: Future<Output = std::result::Result<SentInfo, Error>> + Send + 'static,
    {
        let completions = Arc::clone(&self.completions);
        napi::bindgen_prelude::spawn(async move {
            let outcome = guarded(work).await;
            completions.call(
                Completion { id, outcome },
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        });
    }

    /// The transport and an admission for one send, taken synchronously on the JS thread so
    /// that a `close()` called right after still waits for this send.
    fn admit(&self) -> std::result::Result<(Arc<Transport>, Admission), Error> {
        let transport = self.transport()?;
        let admission = transport.admit()?;
        Ok((transport, admission))
    }

    fn transport(&self) -> std::result::Result<Arc<Transport>, Error> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| Error::new(ErrorKind::Connection, "the transport is closed"))
    }
}

/// Forwards new-token notices to the JS callback. The threadsafe function is weak: a
/// pending notice never keeps the Node process alive.
fn token_listener(
    config: &smtp_oauth_core::Value,
    callback: Function<TokenEvent, ()>,
) -> Result<TokenListener> {
    let user = config
        .get("auth")
        .and_then(|auth| auth.get("user"))
        .and_then(|user| match user {
            smtp_oauth_core::Value::String(user) => Some(user.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let tsfn: ThreadsafeFunction<TokenEvent, (), TokenEvent, Status, false, true> = callback
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .build()?;
    Ok(Box::new(move |expires_at| {
        let event = TokenEvent {
            user: user.clone(),
            expires_at: epoch_ms(expires_at),
        };
        tsfn.call(event, ThreadsafeFunctionCallMode::NonBlocking);
    }))
}

/// `oauth2.clientAssertion`, when the config gives a function: called on the JS thread for
/// every token request. The threadsafe function is weak: an idle transport never keeps the
/// process alive. `transport.js` wraps the user's function so that it always returns a
/// Promise of a string (rejecting otherwise).
fn client_assertion(config: Unknown) -> Result<Option<AssertionCallback>> {
    let property = |value: Unknown, name: &str| -> Result<Option<Unknown>> {
        if value.get_type()? != ValueType::Object {
            return Ok(None);
        }
        let object = unsafe { value.cast::<Object>()? };
        Ok(Some(object.get_named_property(name)?))
    };
    let Some(callback) = property(config, "oauth2")?
        .map(|oauth2| property(oauth2, "clientAssertion"))
        .transpose()?
        .flatten()
    else {
        return Ok(None);
    };
    if callback.get_type()? != ValueType::Function {
        return Ok(None);
    }
    let callback: Function<(), Promise<String>> = unsafe { callback.cast()? };
    let tsfn: Arc<ThreadsafeFunction<(), Promise<String>, (), Status, false, true>> = Arc::new(
        callback
            .build_threadsafe_function()
            .callee_handled::<false>()
            .weak::<true>()
            .build()?,
    );
    Ok(Some(AssertionCallback::new(move || {
        let tsfn = Arc::clone(&tsfn);
        Box::pin(async move {
            let promise = tsfn
                .call_async_catch(())
                .await
                .map_err(|err| err.reason.clone())?;
            promise.await.map(Secret::new).map_err(|err| err.reason.clone())
        })
    })))
}

/// Log lines waiting for the JS thread; more are dropped and counted (see `dropping_when_full`).
const LOG_QUEUE_LINES: usize = 1024;

/// Forwards log lines to the JS callback (weak: never keeps the process alive) through a
/// bounded queue: a logger that does not keep up loses lines, never blocks a send.
fn log_sink(callback: Function<LogRecord, ()>) -> Result<LogSink> {
    let tsfn: ThreadsafeFunction<LogRecord, (), LogRecord, Status, false, true, LOG_QUEUE_LINES> = callback
        .build_threadsafe_function()
        .callee_handled::<false>()
        .weak::<true>()
        .max_queue_size::<LOG_QUEUE_LINES>()
        .build()?;
    Ok(dropping_when_full(move |level: Level, message: String| {
        let record = LogRecord {
            level: level.as_str().to_string(),
            message,
        };
        tsfn.call(record, ThreadsafeFunctionCallMode::NonBlocking) == Status::Ok
    }))
}

fn epoch_ms(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0)
}

/// Runs `work` as a task of its own, so that a panic in it is an error, not an unwind.
async fn guarded<T: Send + 'static>(
    work: impl Future<Output = std::result::Result<T, Error>> + Send + 'static,
) -> std::result::Result<T, Error> {
    match tokio::spawn(work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Error::new(
            ErrorKind::Internal,
            "internal error: the operation panicked (please report this bug)",
        )),
    }
}

/// Runs `work` on napi's tokio runtime and settles a promise with its outcome: `to_js`
/// converts a success, [`to_js_error`] a failure. A panic inside `work` rejects the promise
/// instead of unwinding into Node.
fn settle<'env, T, V, F, C>(env: &'env Env, work: F, to_js: C) -> Result<PromiseRaw<'env, V>>
where
    T: Send + 'static,
    V: napi::bindgen_prelude::ToNapiValue,
    F: Future<Output = std::result::Result<T, Error>> + Send + 'static,
    C: FnOnce(&Env, T) -> Result<V> + 'static,
{
    let work = async move { Ok(guarded(work).await) };
    env.spawn_future_with_callback(work, move |env, outcome| match outcome {
        Ok(value) => to_js(env, value),
        Err(err) => Err(to_js_error(env, &err)),
    })
}

/// One warning about a name a message or config uses (see the core's `known_names`).
#[napi(object)]
pub struct NameWarning {
    /// The name as given.
    pub name: String,
    /// What to tell the caller, with the closest known name when there is one.
    pub text: String,
}

/// Warnings for the names in `names` that `scope` (`message`, `attachment`, `config`,
/// `oauth2`, `tls`) does not know or does not act on.
#[napi]
pub fn name_warnings(scope: String, names: Vec<String>) -> Result<Vec<NameWarning>> {
    let scope = smtp_oauth_core::known_names::NameScope::parse(&scope)
        .ok_or_else(|| napi::Error::new(Status::InvalidArg, format!("unknown name scope {scope:?}")))?;
    Ok(smtp_oauth_core::known_names::name_warnings(scope, &names)
        .into_iter()
        .map(|warning| NameWarning {
            name: warning.name,
            text: warning.text,
        })
        .collect())
}
