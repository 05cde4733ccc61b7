//! The validated transport configuration: a TAS `mail.smtp` object, checked field by field.
//!
//! Every error names the field's full path (`mail.smtp.oauth2.clientId is missing`), so an
//! administrator can fix `local.js` from the message alone.

use std::time::{Duration, UNIX_EPOCH};

use rustls::pki_types::{pem::PemObject, CertificateDer};
use zeroize::Zeroizing;

use crate::content_access::ContentAccess;
use crate::error::{Error, ErrorKind, Result};
use crate::hints::{Hint, HintContext};
use crate::input::{Field, Value};
use crate::oauth::{
    managed_identity_url, AssertionCallback, AssertionFile, CertificateCredential, ClientCredential,
    FixedToken, Identity, ManagedIdentity,
};
use crate::secret::Secret;
pub use crate::smtp::{Proxy, Resolver};

/// The path every config error starts with, as the field is called in a TAS `local.js`.
pub const CONFIG_ROOT: &str = "mail.smtp";

/// nodemailer's defaults, so that a swapped-in transport behaves the same.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_GREETING_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SOCKET_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// msal-node treats a token as expired this long before it does (clamped for short tokens).
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(300);
/// How long a refused credential (a 4xx from the token endpoint) is reported without asking
/// again: long enough that a queue of sends fails fast on one request, short enough that a
/// fixed secret is picked up at once.
const DEFAULT_FAILURE_CACHE: Duration = Duration::from_secs(5);
/// How long an `oauth2.clientAssertion` callback may take.
const DEFAULT_ASSERTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The credentials an `oauth2` object may name; exactly one is used.
const CREDENTIAL_FIELDS: [&str; 5] = [
    "clientSecret",
    "privateKey",
    "clientAssertionFile",
    "clientAssertion",
    "managedIdentity",
];
/// Longer timeouts are surely a unit mistake (seconds given as minutes...).
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub host: String,
    pub port: u16,
    /// `true`: TLS from the first byte (port 465). `false`: plain connect, then STARTTLS.
    pub implicit_tls: bool,
    /// The EHLO name; `None` uses this machine's host name.
    pub hello_name: Option<String>,
    /// What to do about STARTTLS on a plain connection.
    pub starttls: StartTls,
    pub auth: Auth,
    pub tls: TlsOptions,
    pub timeouts: Timeouts,
    /// Log the SMTP transcript (redacted) at debug level.
    pub debug: bool,
    /// `pool: true`: reuse connections, at most `max_connections` at a time.
    pub pool: Option<PoolOptions>,
    /// Attempts after the first for transient failures (4xx, lost connections, timeouts).
    pub max_retries: u32,
    pub network: NetworkOptions,
    /// Whether attachments may name local files and URLs, and how large a file may be.
    pub content_access: ContentAccess,
    /// Recipients per SMTP transaction; a message to more is sent in several.
    pub max_recipients_per_message: usize,
    /// Send the content in BDAT chunks when the server offers CHUNKING (else after DATA).
    pub chunking: bool,
    /// `api: 'graph'`: messages go to Microsoft Graph's sendMail over HTTPS, not SMTP.
    pub graph: Option<GraphOptions>,
}

/// `api: 'graph'`: where Microsoft Graph is and what sendMail is asked to do.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    /// The API root, `https://graph.microsoft.com/v1.0` or the cloud's (`graphUrl`).
    pub base_url: reqwest::Url,
    /// `saveToSentItems` (Graph's default: true).
    pub save_to_sent_items: bool,
}

/// How the SMTP server is reached: nodemailer's `proxy`, `localAddress`, `dnsTimeout`.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// `proxy`: an HTTP CONNECT or SOCKS5 proxy every connection goes through.
    pub proxy: Option<Proxy>,
    /// `localAddress`: the socket is bound to it; only server addresses of its family are tried.
    pub local_address: Option<std::net::IpAddr>,
    /// `dnsTimeout`, capped by the connection timeout.
    pub dns_timeout: Option<Duration>,
    /// Host names to addresses: the system resolver, or a fixed table in tests.
    pub resolver: Resolver,
}

/// STARTTLS on a plain connection (nodemailer's `requireTLS` / `ignoreTLS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartTls {
    /// Used when offered; required when there are credentials (the default).
    WhenOffered,
    /// Required even without credentials (`requireTLS: true`).
    Required,
    /// Never used (`ignoreTLS: true`, only without credentials).
    Never,
}

/// nodemailer's `requireTLS`, `ignoreTLS` and `opportunisticTLS`, never weaker than the
/// rule that credentials only cross an encrypted connection.
fn parse_starttls(root: &Field, auth: &Auth) -> Result<StartTls> {
    let has_credentials = !matches!(auth, Auth::None);
    if root.child("opportunisticTLS").optional_bool()? == Some(true) {
        return Err(root.child("opportunisticTLS").error(
            "is not supported: a failed STARTTLS is never followed by a plaintext session (leave it out; STARTTLS is used whenever the server offers it)",
        ));
    }
    let require = root.child("requireTLS").optional_bool()?.unwrap_or(false);
    let ignore = root.child("ignoreTLS").optional_bool()?.unwrap_or(false);
    match (require, ignore) {
        (true, true) => Err(root
            .child("ignoreTLS")
            .error("cannot be true together with requireTLS")),
        (_, true) if has_credentials => Err(root
            .child("ignoreTLS")
            .error("cannot be true with credentials: AUTH is never sent over an unencrypted connection")),
        (_, true) => Ok(StartTls::Never),
        (true, false) => Ok(StartTls::Required),
        (false, false) => Ok(StartTls::WhenOffered),
    }
}

/// nodemailer's `authMethod`: accepted when it names the method this config uses.
fn check_auth_method(field: &Field, auth: &Auth) -> Result<()> {
    let Some(method) = field.optional_string()? else {
        return Ok(());
    };
    let method = method.trim().to_ascii_uppercase();
    let fits = match auth {
        Auth::OAuth2 { .. } => method == "XOAUTH2",
        Auth::Password { .. } => method == "PLAIN" || method == "LOGIN",
        Auth::None => false,
    };
    match fits {
        true => Ok(()),
        false => Err(field.error(format!(
            "{method:?} does not fit this config: type 'oauth2' uses XOAUTH2, auth.user + auth.pass use PLAIN or LOGIN (whichever the server offers)"
        ))),
    }
}

/// A well-known service of nodemailer's list (`service: 'Outlook365'`).
#[derive(Debug, Clone, Copy)]
struct Service {
    host: &'static str,
    port: u16,
    secure: bool,
}

/// nodemailer's well-known services that matter here (names compared as nodemailer does:
/// case and punctuation aside); others are an `ECONFIG` that says to set `host` and `port`.
const SERVICES: &[(&[&str], Service)] = &[
    (
        &["outlook365", "office365"],
        Service {
            host: "smtp.office365.com",
            port: 587,
            secure: false,
        },
    ),
    (
        &["hotmail", "outlook", "outlookcom", "hotmailcom"],
        Service {
            host: "smtp-mail.outlook.com",
            port: 587,
            secure: false,
        },
    ),
    (
        &["gmail", "googlemail"],
        Service {
            host: "smtp.gmail.com",
            port: 465,
            secure: true,
        },
    ),
    (
        &["yahoo"],
        Service {
            host: "smtp.mail.yahoo.com",
            port: 465,
            secure: true,
        },
    ),
    (
        &["icloud", "me", "mac"],
        Service {
            host: "smtp.mail.me.com",
            port: 587,
            secure: false,
        },
    ),
    (
        &["zoho"],
        Service {
            host: "smtp.zoho.com",
            port: 465,
            secure: true,
        },
    ),
    (
        &["ses"],
        Service {
            host: "email-smtp.us-east-1.amazonaws.com",
            port: 465,
            secure: true,
        },
    ),
    (
        &["sendgrid"],
        Service {
            host: "smtp.sendgrid.net",
            port: 587,
            secure: false,
        },
    ),
    (
        &["mailgun"],
        Service {
            host: "smtp.mailgun.org",
            port: 465,
            secure: true,
        },
    ),
    (
        &["postmark", "postmarkapp"],
        Service {
            host: "smtp.postmarkapp.com",
            port: 2525,
            secure: false,
        },
    ),
];

fn well_known_service(field: &Field) -> Result<Option<Service>> {
    let Some(name) = field.optional_string()? else {
        return Ok(None);
    };
    let key: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match SERVICES.iter().find(|(names, _)| names.contains(&key.as_str())) {
        Some((_, service)) => Ok(Some(*service)),
        None => Err(field.error(format!(
            "{name:?} is not a service this package knows (Outlook365, Office365, Hotmail, Gmail, Yahoo, iCloud, Zoho, SES, SendGrid, Mailgun, Postmark): set host and port instead"
        ))),
    }
}

/// nodemailer's pool options.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: usize,
    /// Messages per connection before it is replaced.
    pub max_messages: usize,
    /// An idle connection is closed (QUIT) after this long.
    pub idle_timeout: Duration,
    /// At most this many messages per `rate_delta` (queued, not rejected).
    pub rate_limit: Option<(usize, Duration)>,
}

#[derive(Debug, Clone)]
pub enum Auth {
    /// XOAUTH2 with a token obtained by the client_credentials grant.
    OAuth2 { user: String, oauth2: Box<OAuth2Config> },
    /// PLAIN or LOGIN with a password (TAS's basic configuration).
    Password { user: String, password: Secret },
    /// No AUTH at all (a relay that trusts the network).
    None,
}

impl Auth {
    /// The authenticated mailbox, the last fallback for `from`.
    pub fn user(&self) -> Option<&str> {
        match self {
            Auth::OAuth2 { user, .. } | Auth::Password { user, .. } => Some(user),
            Auth::None => None,
        }
    }
}

/// The OAuth2 grant of the token requests.
#[derive(Clone)]
pub enum Grant {
    /// The app's own token (`grant_type=client_credentials`): what a server uses.
    ClientCredentials,
    /// A user's delegated token, renewed with this refresh token (nodemailer's
    /// `auth.refreshToken`; `grant_type=refresh_token`).
    RefreshToken(Secret),
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::ClientCredentials => f.write_str("ClientCredentials"),
            Grant::RefreshToken(_) => f.write_str("RefreshToken(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// The token endpoint (`oauth2.host` in the TAS config, or built from `tenantId`).
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub credential: ClientCredential,
    /// How tokens are obtained: the app's own (client_credentials), or a user's refresh token.
    pub grant: Grant,
    pub scope: String,
    /// The tenant tokens must come from: `tenantId`, or the tenant id in the token URL.
    pub tenant_id: Option<String>,
    /// An explicit proxy for token requests (`HTTPS_PROXY`/`NO_PROXY` apply otherwise). A
    /// `Secret`: a proxy URL may carry a password.
    pub proxy: Option<Secret>,
    /// How long before expiry a token is renewed (clamped for short-lived tokens).
    pub renew_before: Duration,
    /// The whole token request, connect to last byte.
    pub timeout: Duration,
    /// Extra CA certificates (DER) the token client trusts besides Mozilla's roots: from
    /// `oauth2.ca` and `NODE_EXTRA_CA_CERTS`. Never `tls.ca`, and the token client always
    /// verifies (`tls.rejectUnauthorized` is an SMTP option).
    pub extra_ca: Vec<CertificateDer<'static>>,
    /// How long a credential refusal (4xx other than 429) is answered from memory;
    /// zero asks the endpoint every time.
    pub failure_cache: Duration,
    /// `clientSecret` had leading or trailing whitespace, which was removed.
    pub secret_trimmed: bool,
    /// `oauth2.rbac`: Exchange RBAC for Applications grants the mailbox, so the token carries
    /// no `SMTP.SendAsApp` role and none is expected.
    pub rbac: bool,
    /// How long an `oauth2.clientAssertion` callback may take.
    pub assertion_timeout: Duration,
    /// The environment variables that chose or completed the credential (empty when the
    /// config alone did).
    pub credential_environment: Vec<&'static str>,
    /// nodemailer's `auth.accessToken`: used first, until it expires or is refused.
    pub fixed_token: Option<FixedToken>,
}

/// What the embedding environment gives the config parser besides the config object.
pub struct ConfigInputs<'a> {
    /// The content of the file named by `NODE_EXTRA_CA_CERTS`, if any (read by the caller,
    /// as Node reads it at start-up).
    pub extra_ca_file: Option<&'a [u8]>,
    /// Environment variables: the process's ([`process_variable`]), or a test's table.
    pub variable: &'a dyn Fn(&str) -> Option<String>,
    /// The function given as `oauth2.clientAssertion`, made callable by the embedding layer.
    pub client_assertion: Option<AssertionCallback>,
}

/// This process's environment variable `name`, if set and valid Unicode.
pub fn process_variable(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (DER) for the SMTP server, from `tls.ca` and
    /// `NODE_EXTRA_CA_CERTS`. The token endpoint has its own (`OAuth2Config::extra_ca`).
    pub extra_ca: Vec<CertificateDer<'static>>,
    /// `false` turns certificate verification off for SMTP (`tls.rejectUnauthorized`); the
    /// token client verifies regardless.
    pub verify_certificates: bool,
    /// The name the SMTP server's certificate must match; defaults to `host`.
    pub servername: Option<String>,
    /// `tls.minVersion: 'TLSv1.3'` refuses TLS 1.2; TLS 1.2 is the floor either way.
    pub tls13_only: bool,
    /// A client certificate (`tls.cert` + `tls.key`), for servers that ask for one.
    pub client_identity: Option<ClientIdentity>,
}

/// A certificate chain and its private key, presented when a server asks for one.
#[derive(Clone)]
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, key <redacted>)",
            self.chain.len()
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect (and the TLS handshake of implicit TLS).
    pub connection: Duration,
    /// From connect to the server's greeting.
    pub greeting: Duration,
    /// Any single read or write afterwards.
    pub socket: Duration,
}

impl TransportConfig {
    /// Validates a TAS `mail.smtp` object. `extra_ca_file` is the content of the file named
    /// by `NODE_EXTRA_CA_CERTS`, if any (read by the caller, as Node reads it at start-up).
    pub fn from_value(smtp: &Value, extra_ca_file: Option<&[u8]>) -> Result<Self> {
        Self::from_inputs(
            smtp,
            &ConfigInputs {
                extra_ca_file,
                variable: &process_variable,
                client_assertion: None,
            },
        )
    }

    /// Validates a TAS `mail.smtp` object with what the environment supplies.
    pub fn from_inputs(smtp: &Value, inputs: &ConfigInputs) -> Result<Self> {
        let extra_ca_file = inputs.extra_ca_file;
        let root = Field::root(CONFIG_ROOT, smtp, ErrorKind::Config);
        if !matches!(smtp, Value::Object(_)) {
            return Err(root.wrong_type("an object"));
        }
        let graph = parse_graph(&root)?;
        let service = well_known_service(&root.child("service"))?;
        // Graph needs no SMTP server.
        let host = match (root.child("host").is_present(), service, &graph) {
            (false, Some(service), _) => service.host.to_string(),
            (false, None, Some(_)) => String::new(),
            _ => root.child("host").string()?.trim().to_string(),
        };
        let port_field = root.child("port");
        let secure = match root.child("secure").optional_bool()? {
            Some(secure) => Some(secure),
            None => service.map(|s| s.secure),
        };
        let port = match (port_field.optional_integer(1..=65535)?, service) {
            (Some(port), _) => port as u16,
            (None, Some(service)) => service.port,
            (None, None)
                if graph.is_none()
                    && (root.child("type").is_present() || root.child("oauth2").is_present()) =>
            {
                return Err(port_field.missing());
            }
            (None, None) if secure == Some(true) => 465,
            (None, None) => 587,
        };
        let implicit_tls = secure.unwrap_or(port == 465);
        let name_field = root.child("name");
        let hello_name = match name_field.optional_string()? {
            Some(name) if is_hello_name(name) => Some(name.to_string()),
            Some(_) => {
                return Err(name_field.wrong_type(
                    "a host name (letters, digits, '.', '-') or an address literal such as [192.0.2.1]",
                ))
            }
            None => None,
        };
        let auth = parse_auth(&root, inputs, graph.is_some())?;
        if graph.is_some() && !matches!(auth, Auth::OAuth2 { .. }) {
            return Err(root
                .child("type")
                .error("must be 'oauth2' with api: 'graph' (Microsoft Graph takes only OAuth2 tokens)"));
        }
        let starttls = parse_starttls(&root, &auth)?;
        check_auth_method(&root.child("authMethod"), &auth)?;

        Ok(TransportConfig {
            starttls,
            host,
            port,
            implicit_tls,
            hello_name,
            tls: parse_tls(&root.child("tls"), extra_ca_file)?,
            timeouts: Timeouts {
                connection: timeout(&root.child("connectionTimeout"), DEFAULT_CONNECTION_TIMEOUT)?,
                greeting: timeout(&root.child("greetingTimeout"), DEFAULT_GREETING_TIMEOUT)?,
                socket: timeout(&root.child("socketTimeout"), DEFAULT_SOCKET_TIMEOUT)?,
            },
            debug: root.child("debug").optional_bool()?.unwrap_or(false),
            pool: parse_pool(&root, &auth, graph.is_some())?,
            max_retries: root
                .child("maxRetries")
                .optional_integer(0..=20)?
                .unwrap_or(DEFAULT_MAX_RETRIES as u64) as u32,
            network: parse_network(&root)?,
            content_access: ContentAccess::from_config(&root)?,
            max_recipients_per_message: root
                .child("maxRecipientsPerMessage")
                .optional_integer(1..=100_000)?
                .unwrap_or(DEFAULT_MAX_RECIPIENTS_PER_MESSAGE)
                as usize,
            chunking: root.child("chunking").optional_bool()?.unwrap_or(false),
            auth,
            graph,
        })
    }

    /// The name the SMTP server's certificate is checked against.
    pub fn tls_server_name(&self) -> &str {
        self.tls.servername.as_deref().unwrap_or(&self.host)
    }
}

/// Exchange Online allows 3 concurrent connections per mailbox; nodemailer's default is 5.
const EXCHANGE_MAX_CONNECTIONS: u64 = 3;
/// Outlook's Graph limit: 4 concurrent requests per app and mailbox.
pub const GRAPH_MAX_CONCURRENT_REQUESTS: u64 = 4;
const DEFAULT_MAX_CONNECTIONS: u64 = 5;
const DEFAULT_MAX_MESSAGES: usize = 100;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RATE_DELTA: Duration = Duration::from_secs(1);
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Exchange Online's limit of recipients per message.
const DEFAULT_MAX_RECIPIENTS_PER_MESSAGE: u64 = 500;

fn parse_pool(root: &Field, auth: &Auth, graph: bool) -> Result<Option<PoolOptions>> {
    if !root.child("pool").optional_bool()?.unwrap_or(false) {
        return Ok(None);
    }
    let default_connections = match auth {
        _ if graph => GRAPH_MAX_CONCURRENT_REQUESTS,
        Auth::OAuth2 { .. } => EXCHANGE_MAX_CONNECTIONS,
        _ => DEFAULT_MAX_CONNECTIONS,
    };
    let max_connections = root
        .child("maxConnections")
        .optional_integer(1..=100)?
        .unwrap_or(default_connections);
    // With Graph, `maxConnections` counts concurrent requests, which Outlook caps.
    let max_connections = if graph {
        max_connections.min(GRAPH_MAX_CONCURRENT_REQUESTS)
    } else {
        max_connections
    };
    let max_messages_field = root.child("maxMessages");
    let max_messages = match max_messages_field.value() {
        // As in nodemailer, `maxMessages: Infinity` never replaces a connection.
        Some(Value::Number(n)) if *n == f64::INFINITY => usize::MAX,
        _ => max_messages_field
            .optional_integer(1..=1_000_000)?
            .map_or(DEFAULT_MAX_MESSAGES, |n| n as usize),
    };
    let rate_limit = match root.child("rateLimit").optional_integer(1..=1_000_000)? {
        Some(limit) => Some((
            limit as usize,
            timeout(&root.child("rateDelta"), DEFAULT_RATE_DELTA)?,
        )),
        None => None,
    };
    Ok(Some(PoolOptions {
        max_connections: max_connections as usize,
        max_messages,
        idle_timeout: timeout(&root.child("idleTimeout"), DEFAULT_IDLE_TIMEOUT)?,
        rate_limit,
    }))
}

fn parse_auth(root: &Field, inputs: &ConfigInputs, graph: bool) -> Result<Auth> {
    let auth = root.child("auth");
    auth.optional_object()?;
    let nodemailer_oauth2 = auth
        .child("type")
        .optional_string()?
        .is_some_and(|kind| kind.eq_ignore_ascii_case("oauth2"));
    if nodemailer_oauth2 && !root.child("type").is_present() {
        return parse_nodemailer_oauth2(&auth, inputs, graph);
    }
    let is_oauth2 = match root.child("type").optional_string()? {
        Some(kind) if kind.eq_ignore_ascii_case("oauth2") => true,
        Some("login") | None => false,
        Some(_) => return Err(root.child("type").wrong_type("'oauth2' or 'login'")),
    };
    if is_oauth2 {
        let user = auth.child("user").string()?.trim().to_string();
        let oauth2 = parse_oauth2(&root.child("oauth2"), inputs, graph)?;
        return Ok(Auth::OAuth2 {
            user,
            oauth2: Box::new(oauth2),
        });
    }
    // nodemailer ignores oauth2 settings without `type: 'oauth2'`; with no password either,
    // they were meant to be used.
    let untyped = root.child("type").optional_string()?.is_none();
    if untyped && root.child("oauth2").is_present() && !auth.child("pass").is_present() {
        return Err(root
            .child("type")
            .error("is undefined, not 'oauth2': the mail.smtp.oauth2 settings are ignored")
            .with_hint(Hint::render(
                "config.oauth2_without_type",
                &HintContext::default(),
            )));
    }
    if !auth.is_present() {
        return Ok(Auth::None);
    }
    let user = auth.child("user").string()?.trim().to_string();
    let password = auth.child("pass").secret()?;
    Ok(Auth::Password {
        user,
        password: Secret::new(password),
    })
}

/// The scope of Exchange Online in the global cloud.
const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

/// nodemailer's own OAuth2 shape, `auth: { type: 'OAuth2', user, clientId, clientSecret,
/// accessUrl, refreshToken?, scope?, accessToken?, expires? }`: the refresh_token grant when
/// `refreshToken` is given, else client_credentials (the scope defaults to Exchange Online's).
/// A fixed `accessToken` is used first, until `expires` (ms since the epoch) or until
/// refused; alone (no `clientSecret`, no `refreshToken`) it is never renewed. A Google
/// service account is refused, naming the field. `clientSecret` is its one credential: the
/// other kinds of `oauth2` have no place in this shape.
fn parse_nodemailer_oauth2(auth: &Field, inputs: &ConfigInputs, graph: bool) -> Result<Auth> {
    for key in ["serviceClient", "privateKey"] {
        if auth.child(key).is_present() {
            return Err(auth.child(key).error(
                "is not supported: give auth.refreshToken (a user's token) or nothing (the app's own, client_credentials) with auth.clientId + auth.clientSecret + auth.accessUrl, or use the TAS shape (type: 'oauth2' with oauth2: { ... })",
            ));
        }
    }
    let fixed_token = parse_fixed_token(auth)?;
    let renewable = auth.child("clientSecret").is_present() || auth.child("refreshToken").is_present();
    if let (Some(fixed_token), false) = (&fixed_token, renewable) {
        let user = auth.child("user").string()?.trim().to_string();
        return Ok(Auth::OAuth2 {
            user,
            oauth2: Box::new(fixed_token_only(fixed_token.clone(), auth)?),
        });
    }
    if auth.child("expires").is_present() && fixed_token.is_none() {
        return Err(auth
            .child("expires")
            .error("is the expiry of auth.accessToken, which is missing"));
    }
    let refresh_token = match auth.child("refreshToken").is_present() {
        true => Some(Secret::new(auth.child("refreshToken").secret()?)),
        false => None,
    };
    let user = auth.child("user").string()?.trim().to_string();
    auth.child("clientSecret").secret()?;
    let mut mapped = Vec::new();
    for (from, to) in [
        ("accessUrl", "host"),
        ("clientId", "clientId"),
        ("clientSecret", "clientSecret"),
        ("scope", "scope"),
    ] {
        if let Some(value) = auth.child(from).value() {
            mapped.push((to.to_string(), value.clone()));
        }
    }
    if !auth.child("scope").is_present() && !graph {
        mapped.push(("scope".to_string(), Value::str(EXCHANGE_SCOPE)));
    }
    let mapped = Value::Object(mapped);
    let oauth2 = parse_oauth2(
        &Field::root(auth.path(), &mapped, ErrorKind::Config),
        inputs,
        graph,
    )
    .map_err(|err| {
        let host = format!("{}.host ", auth.path());
        match err.message().strip_prefix(&host) {
            Some(rest) => Error::config(format!("{}.accessUrl {rest}", auth.path())),
            None => err,
        }
    })?;
    let mut oauth2 = oauth2;
    if let Some(refresh_token) = refresh_token {
        oauth2.grant = Grant::RefreshToken(refresh_token);
    }
    oauth2.fixed_token = fixed_token;
    Ok(Auth::OAuth2 {
        user,
        oauth2: Box::new(oauth2),
    })
}

/// `auth.accessToken` and its `auth.expires` (ms since the epoch; a `Date` arrives as that).
fn parse_fixed_token(auth: &Field) -> Result<Option<FixedToken>> {
    if !auth.child("accessToken").is_present() {
        return Ok(None);
    }
    let value = Secret::new(auth.child("accessToken").secret()?);
    // Up to the year 9999, as a Date can be.
    let expires = auth
        .child("expires")
        .optional_integer(0..=253_402_300_799_999)?
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    Ok(Some(FixedToken { value, expires }))
}

/// The config of a fixed `auth.accessToken` with nothing to renew it: no token request is
/// ever made, so the endpoint fields only keep their defaults.
fn fixed_token_only(fixed_token: FixedToken, auth: &Field) -> Result<OAuth2Config> {
    let client_id = auth.child("clientId").optional_string()?.unwrap_or_default();
    Ok(OAuth2Config {
        token_url: reqwest::Url::parse(&format!("{}/organizations/oauth2/v2.0/token", CLOUDS[0].1))
            .expect("a valid constant URL"),
        client_id: client_id.trim().to_string(),
        credential: ClientCredential::NoRenewal,
        grant: Grant::ClientCredentials,
        scope: EXCHANGE_SCOPE.to_string(),
        tenant_id: None,
        proxy: None,
        renew_before: DEFAULT_RENEW_BEFORE,
        timeout: DEFAULT_TOKEN_TIMEOUT,
        extra_ca: Vec::new(),
        failure_cache: Duration::ZERO,
        secret_trimmed: false,
        assertion_timeout: DEFAULT_ASSERTION_TIMEOUT,
        credential_environment: Vec::new(),
        fixed_token: Some(fixed_token),
        rbac: false,
    })
}

/// An EHLO argument: a domain, or an address literal in brackets. Anything else (spaces,
/// line breaks) could smuggle SMTP commands.
pub fn is_hello_name(name: &str) -> bool {
    let literal = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let body = if literal { &name[1..name.len() - 1] } else { name };
    !body.is_empty() && name.len() <= 255 && body.chars().all(|c| allowed(c) || (literal && matches!(c, ':')))
}

/// The sovereign clouds: login host and Exchange scope (`oauth2.cloud`).
const CLOUDS: [(&str, &str, &str); 3] = [
    (
        "global",
        "https://login.microsoftonline.com",
        "https://outlook.office365.com/.default",
    ),
    (
        "usgov",
        "https://login.microsoftonline.us",
        "https://outlook.office365.us/.default",
    ),
    (
        "china",
        "https://login.partner.microsoftonline.cn",
        "https://partner.outlook.cn/.default",
    ),
];

/// Microsoft Graph in each cloud (`api: 'graph'`): the token scope and the API root
/// (learn.microsoft.com, "National cloud deployments").
const GRAPH_CLOUDS: [(&str, &str, &str); 3] = [
    (
        "global",
        "https://graph.microsoft.com/.default",
        "https://graph.microsoft.com/v1.0",
    ),
    (
        "usgov",
        "https://graph.microsoft.us/.default",
        "https://graph.microsoft.us/v1.0",
    ),
    (
        "china",
        "https://microsoftgraph.chinacloudapi.cn/.default",
        "https://microsoftgraph.chinacloudapi.cn/v1.0",
    ),
];

/// The Graph scope and API root of `oauth2.cloud` (global when absent or an authority URL).
fn graph_cloud(oauth2: &Field) -> Result<(&'static str, &'static str)> {
    let name = oauth2.child("cloud").optional_string()?.unwrap_or("global");
    let (_, scope, url) = GRAPH_CLOUDS
        .iter()
        .find(|(cloud, _, _)| cloud.eq_ignore_ascii_case(name))
        .unwrap_or(&GRAPH_CLOUDS[0]);
    Ok((scope, url))
}

/// `api` (`'smtp'`, the default, or `'graph'`), `graphUrl` and `saveToSentItems`.
fn parse_graph(root: &Field) -> Result<Option<GraphOptions>> {
    let api = root.child("api");
    match api.optional_string()?.map(str::trim) {
        None => {}
        Some(name) if name.eq_ignore_ascii_case("smtp") => {}
        Some(name) if name.eq_ignore_ascii_case("graph") => {}
        Some(_) => return Err(api.wrong_type("'smtp' or 'graph'")),
    }
    let is_graph = api
        .optional_string()?
        .is_some_and(|name| name.trim().eq_ignore_ascii_case("graph"));
    let url_field = root.child("graphUrl");
    let save_field = root.child("saveToSentItems");
    if !is_graph {
        for field in [&url_field, &save_field] {
            if field.is_present() {
                return Err(field.error("is only used with api: 'graph'"));
            }
        }
        return Ok(None);
    }
    let base_url = match url_field.optional_string()? {
        Some(text) => {
            let url = reqwest::Url::parse(text.trim()).map_err(|err| {
                url_field.error(format!(
                    "must be the Graph API root such as https://graph.microsoft.com/v1.0, got {text:?} ({err})"
                ))
            })?;
            match url.scheme() {
                "https" => url,
                "http" if is_loopback(&url) => url,
                _ => {
                    return Err(url_field.error(format!(
                        "must be an https:// URL (the access token must not travel unencrypted), got {text:?}"
                    )))
                }
            }
        }
        None => reqwest::Url::parse(graph_cloud(&root.child("oauth2"))?.1)
            .expect("the cloud table holds valid URLs"),
    };
    Ok(Some(GraphOptions {
        base_url,
        save_to_sent_items: save_field.optional_bool()?.unwrap_or(true),
    }))
}

fn parse_oauth2(field: &Field, inputs: &ConfigInputs, graph: bool) -> Result<OAuth2Config> {
    if field.optional_object()?.is_none() {
        return Err(field.missing());
    }
    let grant = field.child("grantType");
    if let Some(grant_type) = grant.optional_string()? {
        if grant_type != "client_credentials" {
            return Err(grant.wrong_type("'client_credentials' (the only grant a server can use)"));
        }
    }
    let chosen = choose_credential(field, inputs.variable)?;
    let (client_id, tenant_id, mut credential_environment) = match &chosen {
        Chosen::ManagedIdentity(_) => {
            for unused in ["clientId", "host"] {
                if field.child(unused).is_present() {
                    return Err(field.child(unused).error(
                        "is not used with managedIdentity (the token comes from the managed identity endpoint); for a user-assigned identity give managedIdentity: { clientId }",
                    ));
                }
            }
            (
                String::new(),
                optional_trimmed(&field.child("tenantId"))?,
                Vec::new(),
            )
        }
        Chosen::WorkloadIdentity(env) => {
            // The config wins over the environment: an explicit clientId or tenant is kept.
            let mut used = vec!["AZURE_FEDERATED_TOKEN_FILE"];
            let client_id = match optional_trimmed(&field.child("clientId"))? {
                Some(id) => id,
                None => {
                    used.push("AZURE_CLIENT_ID");
                    env.client_id.clone()
                }
            };
            let tenant_id = match optional_trimmed(&field.child("tenantId"))? {
                Some(tenant) => Some(tenant),
                None if field.child("host").is_present() => None,
                None => {
                    used.push("AZURE_TENANT_ID");
                    Some(env.tenant_id.clone())
                }
            };
            (client_id, tenant_id, used)
        }
        _ => (
            field.child("clientId").string()?.trim().to_string(),
            optional_trimmed(&field.child("tenantId"))?,
            Vec::new(),
        ),
    };
    let url_field = field.child("host");
    let (token_url, default_scope) = match (&chosen, url_field.is_present(), &tenant_id) {
        (Chosen::ManagedIdentity(_), _, _) => (None, cloud_authority(&field.child("cloud"))?.1),
        (_, true, _) => (Some(parse_token_url(&url_field)?), None),
        (_, false, Some(tenant)) => {
            let (authority, scope) = cloud_authority(&field.child("cloud"))?;
            let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
            let url = reqwest::Url::parse(&url).map_err(|err| {
                field
                    .child("tenantId")
                    .error(format!("does not make a valid token URL ({err})"))
            })?;
            (Some(url), scope)
        }
        (_, false, None) => return Err(url_field.missing()),
    };
    let default_scope = match graph {
        true => Some(graph_cloud(field)?.0),
        false => default_scope,
    };
    // `'.../' + process.env.TENANT + '/oauth2/...'` with the variable unset: no tenant has
    // that name, and the request would only earn AADSTS90002.
    if let Some(tenant) = token_url
        .as_ref()
        .and_then(tenant_in_url)
        .filter(|t| t == "undefined" || t == "null")
    {
        return Err(url_field.error(format!(
            "has no tenant: its tenant segment is '{tenant}' (an environment variable that was not set?)"
        )));
    }
    let scope = match (field.child("scope").optional_string()?, default_scope) {
        (Some(scope), _) => scope.trim().to_string(),
        (None, Some(scope)) => scope.to_string(),
        (None, None) => return Err(field.child("scope").missing()),
    };
    let renew_before = match field.child("renewBeforeSeconds").optional_integer(0..=86_400)? {
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_RENEW_BEFORE,
    };
    let failure_cache = match field.child("failureCacheSeconds").optional_integer(0..=3600)? {
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_FAILURE_CACHE,
    };
    let mut extra_ca = parse_ca(&field.child("ca"))?;
    extra_ca.extend(node_extra_ca(inputs.extra_ca_file));
    let endpoint_field = field.child("managedIdentityEndpoint");
    if endpoint_field.is_present() && !matches!(chosen, Chosen::ManagedIdentity(_)) {
        return Err(endpoint_field.error("is only used with managedIdentity"));
    }
    let mut secret_trimmed = false;
    let credential = match chosen {
        Chosen::Secret | Chosen::Certificate => {
            let (credential, trimmed) = parse_credential(field)?;
            secret_trimmed = trimmed;
            credential
        }
        Chosen::File(path) => ClientCredential::AssertionFile(AssertionFile {
            path: path.into(),
            named_by: "mail.smtp.oauth2.clientAssertionFile",
        }),
        Chosen::WorkloadIdentity(env) => ClientCredential::AssertionFile(AssertionFile {
            path: env.token_file.into(),
            named_by: "AZURE_FEDERATED_TOKEN_FILE",
        }),
        Chosen::Callback => match (
            field.child("clientAssertion").value(),
            inputs.client_assertion.clone(),
        ) {
            (Some(Value::Other(kind)), Some(callback)) if kind == "function" => {
                ClientCredential::AssertionCallback(callback)
            }
            (given, _) => {
                // Never the value: a string here is most likely an assertion itself.
                let got = given.map(Value::type_name).unwrap_or("nothing");
                return Err(field.child("clientAssertion").error(format!(
                    "must be a function returning the client assertion (a string, or a Promise of one), got {got}"
                )));
            }
        },
        Chosen::ManagedIdentity(identity) => {
            let endpoint = match endpoint_field.optional_string()? {
                Some(text) => {
                    Some(managed_identity_url(text.trim()).map_err(|problem| endpoint_field.error(problem))?)
                }
                None => None,
            };
            let selected =
                ManagedIdentity::select(identity, endpoint, inputs.variable).map_err(|(name, problem)| {
                    if name == "managedIdentity" {
                        field.child(name).error(problem)
                    } else {
                        Error::config(format!(
                        "the environment variable {name} {problem} (mail.smtp.oauth2.managedIdentity uses it)"
                    ))
                    }
                })?;
            credential_environment = selected.environment();
            ClientCredential::ManagedIdentity(std::sync::Arc::new(selected))
        }
    };
    let token_url = match (&credential, token_url) {
        (ClientCredential::ManagedIdentity(identity), _) => identity.endpoint.clone(),
        (_, Some(url)) => url,
        (_, None) => return Err(url_field.missing()),
    };
    let proxy_field = field.child("proxy");
    let proxy = match proxy_field.optional_string()? {
        // A proxy would receive a plain-http request, secret included, over the network.
        Some(_) if token_url.scheme() != "https" => {
            return Err(proxy_field.error(
                "cannot be used with an http:// token URL: the client secret would reach the proxy unencrypted (loopback token endpoints are always reached directly)",
            ))
        }
        Some(text) => {
            // The parser's message never repeats the URL (which may hold a password).
            reqwest::Url::parse(text.trim()).map_err(|err| {
                proxy_field.error(format!("must be a proxy URL such as http://proxy:3128 ({err})"))
            })?;
            Some(Secret::new(text.trim()))
        }
        None => None,
    };
    let client_id = match &credential {
        ClientCredential::ManagedIdentity(identity) => match &identity.identity {
            Identity::ClientId(id) => id.clone(),
            _ => client_id,
        },
        _ => client_id,
    };
    Ok(OAuth2Config {
        tenant_id: tenant_id.or_else(|| tenant_in_url(&token_url)),
        token_url,
        client_id,
        credential,
        grant: Grant::ClientCredentials,
        scope,
        proxy,
        renew_before,
        timeout: timeout(&field.child("timeout"), DEFAULT_TOKEN_TIMEOUT)?,
        extra_ca,
        failure_cache,
        secret_trimmed,
        rbac: field.child("rbac").optional_bool()?.unwrap_or(false),
        assertion_timeout: timeout(&field.child("clientAssertionTimeout"), DEFAULT_ASSERTION_TIMEOUT)?,
        fixed_token: None,
        credential_environment,
    })
}

fn optional_trimmed(field: &Field) -> Result<Option<String>> {
    Ok(field.optional_string()?.map(|text| text.trim().to_string()))
}

/// Which credential an `oauth2` object names.
enum Chosen<'a> {
    Secret,
    Certificate,
    File(&'a str),
    Callback,
    ManagedIdentity(Identity),
    /// None named, and Azure Workload Identity's variables are set.
    WorkloadIdentity(WorkloadIdentityEnv),
}

/// The variables the Azure Workload Identity webhook injects into a pod.
struct WorkloadIdentityEnv {
    token_file: String,
    client_id: String,
    tenant_id: String,
}

impl WorkloadIdentityEnv {
    fn from(variable: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |name: &str| {
            variable(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Some(WorkloadIdentityEnv {
            token_file: get("AZURE_FEDERATED_TOKEN_FILE")?,
            client_id: get("AZURE_CLIENT_ID")?,
            tenant_id: get("AZURE_TENANT_ID")?,
        })
    }
}

/// Exactly one credential: more is a conflict (`ECONFIG` naming them), none falls back to
/// Azure Workload Identity's environment variables, else lists the choices.
fn choose_credential<'a>(field: &Field<'a>, variable: &dyn Fn(&str) -> Option<String>) -> Result<Chosen<'a>> {
    // `managedIdentity: false` names no credential.
    let named: Vec<&str> = CREDENTIAL_FIELDS
        .into_iter()
        .filter(|name| {
            let child = field.child(name);
            child.is_present() && !matches!(child.value(), Some(Value::Bool(false)))
        })
        .collect();
    match named.as_slice() {
        [] => match WorkloadIdentityEnv::from(variable) {
            Some(env) => Ok(Chosen::WorkloadIdentity(env)),
            None => Err(no_credential(field)),
        },
        ["clientSecret"] => Ok(Chosen::Secret),
        ["privateKey"] => Ok(Chosen::Certificate),
        ["clientAssertionFile"] => {
            let file = field.child("clientAssertionFile");
            let path = file.string()?.trim();
            // The assertion itself given by mistake would be echoed as "the file <path>".
            if path.starts_with("eyJ") && path.matches('.').count() >= 2 && !path.contains('/') {
                return Err(file.error(
                    "looks like an assertion (a JWT), not a file path: give the path of the file the platform writes, or the assertion through clientAssertion",
                ));
            }
            Ok(Chosen::File(path))
        }
        ["clientAssertion"] => Ok(Chosen::Callback),
        ["managedIdentity"] => {
            parse_managed_identity(&field.child("managedIdentity")).map(Chosen::ManagedIdentity)
        }
        several => Err(field.error(format!(
            "names more than one credential ({}): keep exactly one",
            several.join(", ")
        ))),
    }
}

/// No credential at all: `clientSecret` is missing (with the note on `undefined`, which is
/// usually an unset environment variable), and the alternatives are listed.
fn no_credential(field: &Field) -> Error {
    let missing = field.child("clientSecret").missing();
    Error::config(format!(
        "{}; give exactly one credential: clientSecret, privateKey (with certificate or thumbprint), clientAssertionFile, clientAssertion or managedIdentity (or set AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID)",
        missing.message()
    ))
}

/// `managedIdentity: true` (system-assigned) or `{ clientId }`, `{ objectId }`,
/// `{ resourceId }` (user-assigned).
fn parse_managed_identity(field: &Field) -> Result<Identity> {
    let expected = "true or an object with one of clientId, objectId or resourceId";
    match field.value() {
        Some(Value::Bool(true)) => Ok(Identity::SystemAssigned),
        Some(Value::Object(pairs)) => {
            let given: Vec<&str> = ["clientId", "objectId", "resourceId"]
                .into_iter()
                .filter(|name| field.child(name).is_present())
                .collect();
            if let Some((unknown, _)) = pairs
                .iter()
                .find(|(key, _)| !["clientId", "objectId", "resourceId"].contains(&key.as_str()))
            {
                return Err(field.child(unknown).error(
                    "is not an option of managedIdentity (it takes one of clientId, objectId or resourceId)",
                ));
            }
            let [name] = given.as_slice() else {
                return Err(field.wrong_type(expected));
            };
            let id = field.child(name).string()?.trim().to_string();
            Ok(match *name {
                "clientId" => Identity::ClientId(id),
                "objectId" => Identity::ObjectId(id),
                _ => Identity::ResourceId(id),
            })
        }
        _ => Err(field.wrong_type(expected)),
    }
}

/// `oauth2.cloud`: a known cloud's login host and Exchange scope, or an authority URL
/// (for which the scope must be given).
fn cloud_authority(field: &Field) -> Result<(String, Option<&'static str>)> {
    let name = field.optional_string()?.unwrap_or("global");
    if let Some((_, authority, scope)) = CLOUDS
        .iter()
        .find(|(cloud, _, _)| cloud.eq_ignore_ascii_case(name))
    {
        return Ok((authority.to_string(), Some(scope)));
    }
    if name.contains("://") {
        let url = parse_token_url(field)?;
        return Ok((url.as_str().to_string(), None));
    }
    Err(field.wrong_type("'global', 'usgov', 'china' or an authority URL"))
}

/// Entra ID token URLs are `https://login.../{tenant}/oauth2/v2.0/token`.
fn tenant_in_url(url: &reqwest::Url) -> Option<String> {
    let mut segments = url.path_segments()?;
    let tenant = segments.next()?;
    (segments.next() == Some("oauth2") && !tenant.is_empty()).then(|| tenant.to_string())
}

/// A client secret, or a private key with its certificate (or thumbprint); and whether
/// the secret had surrounding whitespace (a secret read from a file keeps its newline),
/// which is removed as from every other field.
fn parse_credential(field: &Field) -> Result<(ClientCredential, bool)> {
    let secret = field.child("clientSecret");
    let key = field.child("privateKey");
    if secret.is_present() || !key.is_present() {
        let given = secret.secret()?;
        let trimmed = given.trim();
        if trimmed.is_empty() {
            return Err(secret.error("is only whitespace"));
        }
        let credential = ClientCredential::Secret(Secret::new(trimmed));
        return Ok((credential, trimmed.len() != given.len()));
    }
    // The copies of the key made here are zeroed once the key is parsed.
    let pem = |child: &Field| -> Result<Option<Zeroizing<Vec<u8>>>> {
        match child.value() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(Zeroizing::new(text.as_bytes().to_vec()))),
            Some(Value::Bytes(bytes)) => Ok(Some(Zeroizing::new(bytes.to_vec()))),
            Some(other) => {
                Err(child.error(format!("must be PEM text or a Buffer, got {}", other.type_name())))
            }
        }
    };
    let key_pem = pem(&key)?.unwrap_or_default();
    let certificate = pem(&field.child("certificate"))?;
    let sha256 = field.child("thumbprintSha256").optional_string()?;
    let sha1 = field.child("thumbprint").optional_string()?;
    let credential = CertificateCredential::new(
        &key_pem,
        certificate.as_deref().map(|c| c.as_slice()),
        sha256,
        sha1,
    )
    .map_err(|(name, problem)| field.child(name).error(problem))?;
    Ok((
        ClientCredential::Certificate(std::sync::Arc::new(credential)),
        false,
    ))
}

/// The token URL must be `https://`, except on loopback hosts where tests and local
/// proxies listen: the client secret must never cross a network in clear text.
fn parse_token_url(field: &Field) -> Result<reqwest::Url> {
    let text = field.string()?.trim();
    let url = reqwest::Url::parse(text)
        .map_err(|err| field.error(format!("must be the token endpoint URL, got {text:?} ({err})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(field.error(format!(
            "must be an https:// URL (the client secret must not travel unencrypted), got {text:?}"
        ))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// `tls.ca` or `oauth2.ca`: PEM text or a Buffer, or an array of them, each holding at
/// least one certificate.
fn parse_ca(field: &Field) -> Result<Vec<CertificateDer<'static>>> {
    let mut extra_ca = Vec::new();
    for item in field.items() {
        let pem = match item.value() {
            Some(Value::String(text)) => text.as_bytes(),
            Some(Value::Bytes(bytes)) => bytes,
            _ => return Err(item.wrong_type("a PEM certificate (string or Buffer)")),
        };
        let before = extra_ca.len();
        extra_ca.extend(parse_pem_certificates(pem).map_err(|problem| item.error(problem))?);
        if extra_ca.len() == before {
            return Err(item.error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
    }
    Ok(extra_ca)
}

/// Node skips a NODE_EXTRA_CA_CERTS file it cannot use; so do we, keeping what parsed.
fn node_extra_ca(extra_ca_file: Option<&[u8]>) -> Vec<CertificateDer<'static>> {
    extra_ca_file
        .map(|pem| parse_pem_certificates(pem).unwrap_or_default())
        .unwrap_or_default()
}

fn parse_tls(field: &Field, extra_ca_file: Option<&[u8]>) -> Result<TlsOptions> {
    field.optional_object()?;
    let mut extra_ca = parse_ca(&field.child("ca"))?;
    extra_ca.extend(node_extra_ca(extra_ca_file));
    Ok(TlsOptions {
        extra_ca,
        client_identity: parse_client_identity(field)?,
        verify_certificates: field.child("rejectUnauthorized").optional_bool()?.unwrap_or(true),
        servername: field.child("servername").optional_string()?.map(str::to_string),
        tls13_only: match field.child("minVersion").optional_string()? {
            None | Some("TLSv1.2") => false,
            Some("TLSv1.3") => true,
            Some(_) => {
                return Err(field
                    .child("minVersion")
                    .wrong_type("'TLSv1.2' or 'TLSv1.3' (older versions are never used)"))
            }
        },
    })
}

/// `tls.cert` (PEM, the chain) and `tls.key` (PEM private key): both or neither. Errors
/// never show key material.
fn parse_client_identity(field: &Field) -> Result<Option<ClientIdentity>> {
    use rustls::pki_types::pem::PemObject;
    let pem = |name: &str| -> Result<Option<Vec<u8>>> {
        let item = field.child(name);
        match item.value() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_bytes().to_vec())),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.to_vec())),
            Some(other) => Err(item.error(format!(
                "must be PEM (a string or Buffer), got {}",
                other.type_name()
            ))),
        }
    };
    let (cert, key) = match (pem("cert")?, pem("key")?) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(field
                .child("key")
                .error("is missing: tls.cert needs its private key"))
        }
        (None, Some(_)) => {
            return Err(field
                .child("cert")
                .error("is missing: tls.key needs its certificate"))
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = parse_pem_certificates(&cert).map_err(|problem| field.child("cert").error(problem))?;
    if chain.is_empty() {
        return Err(field
            .child("cert")
            .error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
        field
            .child("key")
            .error("is not a PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
    })?;
    Ok(Some(ClientIdentity {
        chain,
        key: std::sync::Arc::new(key),
    }))
}

fn parse_pem_certificates(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| format!("is not a valid PEM certificate ({err})"))
}

fn parse_network(root: &Field) -> Result<NetworkOptions> {
    let proxy_field = root.child("proxy");
    let proxy = match proxy_field.optional_string()? {
        Some(text) => Some(Proxy::parse(text.trim()).map_err(|problem| proxy_field.error(problem))?),
        None => None,
    };
    let local_field = root.child("localAddress");
    let local_address = match local_field.optional_string()? {
        Some(text) => Some(text.trim().parse().map_err(|_| {
            local_field.wrong_type("an IP address of this machine, such as 192.0.2.10 or 2001:db8::10")
        })?),
        None => None,
    };
    Ok(NetworkOptions {
        proxy,
        local_address,
        dns_timeout: root
            .child("dnsTimeout")
            .optional_integer(1..=MAX_TIMEOUT_MS)?
            .map(Duration::from_millis),
        resolver: Resolver::default(),
    })
}

fn timeout(field: &Field, default: Duration) -> Result<Duration> {
    Ok(field
        .optional_integer(1..=MAX_TIMEOUT_MS)?
        .map(Duration::from_millis)
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tas_config() -> Value {
        Value::object([
            ("type", Value::str("oauth2")),
            ("host", Value::str("smtp.office365.com")),
            ("port", Value::Number(587.0)),
            ("auth", Value::object([("user", Value::str("tas@contoso.com"))])),
            (
                "oauth2",
                Value::object([
                    (
                        "host",
                        Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                    ),
                    ("grantType", Value::str("client_credentials")),
                    ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                    ("clientSecret", Value::str("canary-secret")),
                    ("scope", Value::str("https://outlook.office365.com/.default")),
                ]),
            ),
        ])
    }

    fn without(value: &Value, path: &[&str]) -> Value {
        let Value::Object(pairs) = value else {
            unreachable!()
        };
        let mut pairs = pairs.clone();
        if path.len() == 1 {
            pairs.retain(|(k, _)| k != path[0]);
        } else {
            for (k, v) in pairs.iter_mut() {
                if k == path[0] {
                    *v = without(v, &path[1..]);
                }
            }
        }
        Value::Object(pairs)
    }

    fn set(value: &Value, path: &[&str], new: Value) -> Value {
        let Value::Object(pairs) = value else {
            unreachable!()
        };
        let mut pairs = pairs.clone();
        match pairs.iter_mut().find(|(k, _)| k == path[0]) {
            Some((_, v)) if path.len() == 1 => *v = new,
            Some((_, v)) => *v = set(v, &path[1..], new),
            None => pairs.push((path[0].to_string(), new)),
        }
        Value::Object(pairs)
    }

    fn error_of(value: &Value) -> String {
        let err = TransportConfig::from_value(value, None).unwrap_err();
        assert_eq!(err.code(), "ECONFIG");
        err.message().to_string()
    }

    #[test]
    fn the_seed_config_is_valid() {
        let config = TransportConfig::from_value(&tas_config(), None).unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.implicit_tls),
            ("smtp.office365.com", 587, false)
        );
        let Auth::OAuth2 { user, oauth2 } = &config.auth else {
            panic!("not oauth2")
        };
        assert_eq!(user, "tas@contoso.com");
        assert_eq!(oauth2.scope, "https://outlook.office365.com/.default");
        assert_eq!(oauth2.renew_before, Duration::from_secs(300));
        assert_eq!(oauth2.tenant_id.as_deref(), Some("t"));
        assert!(config.tls.verify_certificates);
        assert!(!format!("{config:?}").contains("canary-secret"));
    }

    #[test]
    fn every_missing_field_is_named() {
        for path in [
            &["host"][..],
            &["port"],
            &["auth", "user"],
            &["oauth2", "host"],
            &["oauth2", "clientId"],
            &["oauth2", "clientSecret"],
            &["oauth2", "scope"],
            &["oauth2"],
        ] {
            let message = error_of(&without(&tas_config(), path));
            let expected = format!("mail.smtp.{} is missing", path.join("."));
            if path == ["oauth2", "clientSecret"] {
                // Followed by the other credentials one could give instead.
                assert!(
                    message.starts_with(&format!("{expected}; give exactly one credential")),
                    "{message}"
                );
            } else {
                assert_eq!(message, expected);
            }
        }
    }

    #[test]
    fn undefined_points_at_the_environment() {
        let config = set(&tas_config(), &["oauth2", "clientSecret"], Value::Undefined);
        let message = error_of(&config);
        assert!(
            message.starts_with("mail.smtp.oauth2.clientSecret is missing"),
            "{message}"
        );
        assert!(message.contains("environment variable"));
    }

    #[test]
    fn bad_values_are_quoted() {
        let message = error_of(&set(&tas_config(), &["port"], Value::str("abc")));
        assert_eq!(
            message,
            r#"mail.smtp.port must be a number between 1 and 65535, got "abc""#
        );
        let message = error_of(&set(
            &tas_config(),
            &["oauth2", "grantType"],
            Value::str("password"),
        ));
        assert!(message.starts_with("mail.smtp.oauth2.grantType must be 'client_credentials'"));
        let message = error_of(&set(&tas_config(), &["connectionTimeout"], Value::Number(-5.0)));
        assert!(message.starts_with("mail.smtp.connectionTimeout must be a number"));
    }

    #[test]
    fn token_url_must_be_https_unless_loopback() {
        let plain = set(
            &tas_config(),
            &["oauth2", "host"],
            Value::str("http://login.example.com/t/token"),
        );
        assert!(error_of(&plain).starts_with("mail.smtp.oauth2.host must be an https:// URL"));
        for local in [
            "http://127.0.0.1:8080/t/token",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            let config = set(&tas_config(), &["oauth2", "host"], Value::str(local));
            assert!(TransportConfig::from_value(&config, None).is_ok(), "{local}");
        }
    }

    #[test]
    fn basic_auth_without_type() {
        let config = without(&without(&tas_config(), &["type"]), &["oauth2"]);
        let config = set(&config, &["auth", "pass"], Value::str("hunter2"));
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        assert!(matches!(parsed.auth, Auth::Password { .. }));
        let missing = without(&without(&tas_config(), &["type"]), &["oauth2"]);
        assert_eq!(error_of(&missing), "mail.smtp.auth.pass is missing");
    }

    #[test]
    fn max_messages_is_bounded_or_infinity() {
        let pooled = set(&tas_config(), &["pool"], Value::Bool(true));
        let max_messages = |value: Value| {
            let config = set(&pooled, &["maxMessages"], value);
            TransportConfig::from_value(&config, None).map(|c| c.pool.unwrap().max_messages)
        };
        assert_eq!(max_messages(Value::Null).unwrap(), DEFAULT_MAX_MESSAGES);
        assert_eq!(max_messages(Value::Number(500.0)).unwrap(), 500);
        assert_eq!(max_messages(Value::Number(f64::INFINITY)).unwrap(), usize::MAX);
        for bad in [0.0, 1.5, f64::NEG_INFINITY, f64::NAN, 2e6] {
            let message = max_messages(Value::Number(bad))
                .unwrap_err()
                .message()
                .to_string();
            assert!(
                message.starts_with("mail.smtp.maxMessages must be a number between 1 and 1000000"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn recipients_per_message_and_chunking() {
        let parsed = TransportConfig::from_value(&tas_config(), None).unwrap();
        assert_eq!(parsed.max_recipients_per_message, 500);
        assert!(!parsed.chunking);
        let config = set(&tas_config(), &["maxRecipientsPerMessage"], Value::Number(2000.0));
        let config = set(&config, &["chunking"], Value::Bool(true));
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        assert_eq!(parsed.max_recipients_per_message, 2000);
        assert!(parsed.chunking);
        for bad in [0.0, 1.5, 200_000.0] {
            let config = set(&tas_config(), &["maxRecipientsPerMessage"], Value::Number(bad));
            assert!(
                error_of(&config)
                    .starts_with("mail.smtp.maxRecipientsPerMessage must be a number between 1 and 100000"),
                "{bad}: {}",
                error_of(&config)
            );
        }
        let config = set(&tas_config(), &["chunking"], Value::str("yes"));
        assert!(
            error_of(&config).starts_with("mail.smtp.chunking must be"),
            "{}",
            error_of(&config)
        );
    }

    #[test]
    fn secure_defaults_follow_the_port() {
        let config = set(&tas_config(), &["port"], Value::Number(465.0));
        assert!(TransportConfig::from_value(&config, None).unwrap().implicit_tls);
        let config = set(&config, &["secure"], Value::Bool(false));
        assert!(!TransportConfig::from_value(&config, None).unwrap().implicit_tls);
    }

    #[test]
    fn tenant_id_and_cloud_build_the_token_url() {
        let config = without(&tas_config(), &["oauth2", "host"]);
        let config = without(&config, &["oauth2", "scope"]);
        let config = set(&config, &["oauth2", "tenantId"], Value::str("contoso-tenant"));
        let usgov = set(&config, &["oauth2", "cloud"], Value::str("usgov"));
        let parsed = TransportConfig::from_value(&usgov, None).unwrap();
        let Auth::OAuth2 { oauth2, .. } = parsed.auth else {
            panic!("not oauth2")
        };
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.us/contoso-tenant/oauth2/v2.0/token"
        );
        assert_eq!(oauth2.scope, "https://outlook.office365.us/.default");
        let bad = set(&config, &["oauth2", "cloud"], Value::str("mars"));
        assert!(error_of(&bad).starts_with("mail.smtp.oauth2.cloud must be 'global', 'usgov', 'china'"));
    }

    #[test]
    fn a_private_key_replaces_the_secret() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let config = set(&config, &["oauth2", "privateKey"], Value::str("not a key"));
        let config = set(&config, &["oauth2", "thumbprint"], Value::str("ab".repeat(20)));
        assert!(error_of(&config).starts_with("mail.smtp.oauth2.privateKey is not a PEM private key"));
    }

    #[test]
    fn the_ehlo_name_cannot_carry_commands() {
        let config = set(
            &tas_config(),
            &["name"],
            Value::str("client.example.com\r\nMAIL FROM:<evil@example.com>"),
        );
        assert!(error_of(&config).starts_with("mail.smtp.name must be a host name"));
        let literal = set(&tas_config(), &["name"], Value::str("[IPv6:2001:db8::1]"));
        assert!(TransportConfig::from_value(&literal, None).is_ok());
    }

    fn oauth2_of(value: &Value) -> OAuth2Config {
        match TransportConfig::from_value(value, None).unwrap().auth {
            Auth::OAuth2 { oauth2, .. } => *oauth2,
            _ => panic!("not oauth2"),
        }
    }

    #[test]
    fn a_client_secret_with_surrounding_whitespace_is_trimmed_and_noted() {
        let config = set(
            &tas_config(),
            &["oauth2", "clientSecret"],
            Value::str("  canary-secret\r\n"),
        );
        let oauth2 = oauth2_of(&config);
        let ClientCredential::Secret(secret) = &oauth2.credential else {
            panic!("not a secret")
        };
        assert_eq!((secret.expose(), oauth2.secret_trimmed), ("canary-secret", true));
        assert!(!oauth2_of(&tas_config()).secret_trimmed);
        let blank = set(&tas_config(), &["oauth2", "clientSecret"], Value::str(" \n"));
        assert_eq!(
            error_of(&blank),
            "mail.smtp.oauth2.clientSecret is only whitespace"
        );
    }

    #[test]
    fn the_failure_cache_defaults_to_a_few_seconds_and_zero_disables_it() {
        assert_eq!(oauth2_of(&tas_config()).failure_cache, DEFAULT_FAILURE_CACHE);
        let off = set(
            &tas_config(),
            &["oauth2", "failureCacheSeconds"],
            Value::Number(0.0),
        );
        assert!(oauth2_of(&off).failure_cache.is_zero());
        let bad = set(
            &tas_config(),
            &["oauth2", "failureCacheSeconds"],
            Value::Number(-1.0),
        );
        assert!(error_of(&bad)
            .starts_with("mail.smtp.oauth2.failureCacheSeconds must be a number between 0 and 3600"));
    }

    #[test]
    fn oauth2_ca_is_the_token_clients_own_and_tls_ca_is_not_in_it() {
        let pem = Value::str(TEST_CA_PEM);
        let config = set(&tas_config(), &["tls"], Value::object([("ca", pem.clone())]));
        assert!(oauth2_of(&config).extra_ca.is_empty(), "tls.ca is for SMTP only");
        let config = set(&config, &["oauth2", "ca"], Value::Array(vec![pem]));
        assert_eq!(oauth2_of(&config).extra_ca.len(), 1);
        let parsed = TransportConfig::from_value(&config, Some(TEST_CA_PEM.as_bytes())).unwrap();
        let Auth::OAuth2 { oauth2, .. } = &parsed.auth else {
            panic!("not oauth2")
        };
        assert_eq!(
            (oauth2.extra_ca.len(), parsed.tls.extra_ca.len()),
            (2, 2),
            "NODE_EXTRA_CA_CERTS is for both"
        );
        let bad = set(
            &tas_config(),
            &["oauth2", "ca"],
            Value::Array(vec![Value::str("not a pem")]),
        );
        assert_eq!(
            error_of(&bad),
            "mail.smtp.oauth2.ca[0] holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
    }

    #[test]
    fn a_proxy_never_carries_an_http_token_request() {
        let local = set(
            &tas_config(),
            &["oauth2", "host"],
            Value::str("http://127.0.0.1:8080/t/oauth2/v2.0/token"),
        );
        let proxied = set(
            &local,
            &["oauth2", "proxy"],
            Value::str("http://proxy.example:3128"),
        );
        assert!(
            error_of(&proxied).starts_with("mail.smtp.oauth2.proxy cannot be used with an http:// token URL")
        );
        let https = set(
            &tas_config(),
            &["oauth2", "proxy"],
            Value::str("http://proxy.example:3128"),
        );
        assert!(oauth2_of(&https).proxy.is_some());
    }

    /// A PEM block (its DER is only checked when a TLS client is built, not here).
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn tls_ca_must_hold_certificates() {
        let config = set(
            &tas_config(),
            &["tls"],
            Value::object([("ca", Value::str("not a pem"))]),
        );
        assert_eq!(
            error_of(&config),
            "mail.smtp.tls.ca holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
    }

    fn with(value: &Value, key: &str, field: Value) -> Value {
        let Value::Object(pairs) = value else {
            unreachable!()
        };
        let mut pairs: Vec<(String, Value)> = pairs.iter().filter(|(k, _)| k != key).cloned().collect();
        pairs.push((key.to_string(), field));
        Value::Object(pairs)
    }

    #[test]
    fn nodemailer_tls_options_never_weaken_the_credential_rule() {
        let config = tas_config();
        let err =
            TransportConfig::from_value(&with(&config, "ignoreTLS", Value::Bool(true)), None).unwrap_err();
        assert_eq!(
            err.message(),
            "mail.smtp.ignoreTLS cannot be true with credentials: AUTH is never sent over an unencrypted connection"
        );
        let err = TransportConfig::from_value(&with(&config, "opportunisticTLS", Value::Bool(true)), None)
            .unwrap_err();
        assert!(err
            .message()
            .starts_with("mail.smtp.opportunisticTLS is not supported"));
        let required =
            TransportConfig::from_value(&with(&config, "requireTLS", Value::Bool(true)), None).unwrap();
        assert_eq!(required.starttls, StartTls::Required);
        let relay = Value::object([
            ("host", Value::str("relay.example.com")),
            ("ignoreTLS", Value::Bool(true)),
        ]);
        assert_eq!(
            TransportConfig::from_value(&relay, None).unwrap().starttls,
            StartTls::Never
        );
    }

    #[test]
    fn well_known_services_and_auth_methods() {
        let config = without(&without(&tas_config(), &["host"]), &["port"]);
        let office =
            TransportConfig::from_value(&with(&config, "service", Value::str("Office365")), None).unwrap();
        assert_eq!(
            (office.host.as_str(), office.port, office.implicit_tls),
            ("smtp.office365.com", 587, false)
        );
        let gmail =
            TransportConfig::from_value(&with(&config, "service", Value::str("gmail")), None).unwrap();
        assert_eq!(
            (gmail.host.as_str(), gmail.port, gmail.implicit_tls),
            ("smtp.gmail.com", 465, true)
        );
        let err =
            TransportConfig::from_value(&with(&config, "service", Value::str("Nowhere")), None).unwrap_err();
        assert!(
            err.message()
                .starts_with("mail.smtp.service \"Nowhere\" is not a service"),
            "{}",
            err.message()
        );
        let ok = with(&tas_config(), "authMethod", Value::str("XOAUTH2"));
        assert!(TransportConfig::from_value(&ok, None).is_ok());
        let err = TransportConfig::from_value(&with(&tas_config(), "authMethod", Value::str("PLAIN")), None)
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("mail.smtp.authMethod \"PLAIN\" does not fit"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn nodemailer_oauth2_auth_is_the_client_credentials_grant() {
        let config = Value::object([
            ("host", Value::str("smtp.office365.com")),
            ("port", Value::Number(587.0)),
            (
                "auth",
                Value::object([
                    ("type", Value::str("OAuth2")),
                    ("user", Value::str("tas@contoso.com")),
                    ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                    ("clientSecret", Value::str("canary-secret")),
                    (
                        "accessUrl",
                        Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                    ),
                ]),
            ),
        ]);
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        let Auth::OAuth2 { user, oauth2 } = &parsed.auth else {
            panic!("not OAuth2: {:?}", parsed.auth)
        };
        assert_eq!(user, "tas@contoso.com");
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        assert_eq!(oauth2.scope, EXCHANGE_SCOPE);

        let Value::Object(mut pairs) = config.clone() else {
            unreachable!()
        };
        let Value::Object(auth) = &mut pairs[2].1 else {
            unreachable!()
        };
        auth.retain(|(key, _)| key != "accessUrl");
        let err = TransportConfig::from_value(&Value::Object(pairs.clone()), None).unwrap_err();
        assert_eq!(err.message(), "mail.smtp.auth.accessUrl is missing");
        let Value::Object(auth) = &mut pairs[2].1 else {
            unreachable!()
        };
        auth.push(("expires".into(), Value::Number(1_800_000_000_000.0)));
        let err = TransportConfig::from_value(&Value::Object(pairs.clone()), None).unwrap_err();
        assert_eq!(
            err.message(),
            "mail.smtp.auth.expires is the expiry of auth.accessToken, which is missing"
        );
    }

    #[test]
    fn a_fixed_access_token_alone_is_never_renewed() {
        let auth = |extra: Vec<(&str, Value)>| {
            let mut fields = vec![
                ("type", Value::str("OAuth2")),
                ("user", Value::str("tas@contoso.com")),
                ("accessToken", Value::str("canary-access")),
            ];
            fields.extend(extra);
            Value::object([
                ("host", Value::str("smtp.office365.com")),
                ("auth", Value::object(fields)),
            ])
        };
        let parsed =
            TransportConfig::from_value(&auth(vec![("expires", Value::Number(1_800_000_000_000.0))]), None)
                .unwrap();
        let Auth::OAuth2 { oauth2, .. } = &parsed.auth else {
            panic!("not OAuth2")
        };
        assert!(matches!(oauth2.credential, ClientCredential::NoRenewal));
        let fixed = oauth2.fixed_token.as_ref().unwrap();
        assert_eq!(fixed.value.expose(), "canary-access");
        assert_eq!(
            fixed.expires,
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert!(!format!("{parsed:?}").contains("canary"));
        // With a way to renew, the fixed token comes first and the grant after it.
        let renewable = TransportConfig::from_value(
            &auth(vec![
                ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                ("clientSecret", Value::str("canary-secret")),
                ("refreshToken", Value::str("canary-refresh")),
                (
                    "accessUrl",
                    Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                ),
            ]),
            None,
        )
        .unwrap();
        let Auth::OAuth2 { oauth2, .. } = &renewable.auth else {
            panic!("not OAuth2")
        };
        assert!(matches!(oauth2.credential, ClientCredential::Secret(_)));
        assert!(matches!(oauth2.grant, Grant::RefreshToken(_)));
        assert!(oauth2.fixed_token.is_some());
        let message = error_of(&auth(vec![("expires", Value::str("tomorrow"))]));
        assert!(message.starts_with("mail.smtp.auth.expires must be"), "{message}");
        assert!(!message.contains("canary"));
        let message = error_of(&set(&auth(vec![]), &["auth", "accessToken"], Value::Number(5.0)));
        assert!(
            message.starts_with("mail.smtp.auth.accessToken must be"),
            "{message}"
        );
    }

    #[test]
    fn network_options_are_checked_and_the_proxy_password_never_shown() {
        let config = set(
            &tas_config(),
            &["proxy"],
            Value::str("socks5h://user:canary-proxy@proxy.corp:1080"),
        );
        let config = set(&config, &["localAddress"], Value::str("192.0.2.10"));
        let config = set(&config, &["dnsTimeout"], Value::Number(1500.0));
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        let network = &parsed.network;
        assert_eq!(
            network.proxy.as_ref().map(|p| p.name()),
            Some("proxy.corp:1080".to_string())
        );
        assert_eq!(network.local_address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(network.dns_timeout, Some(Duration::from_millis(1500)));
        assert!(!format!("{parsed:?}").contains("canary-proxy"));

        let message = error_of(&set(
            &tas_config(),
            &["proxy"],
            Value::str("ftp://user:canary-proxy@proxy:21"),
        ));
        assert!(
            message.starts_with("mail.smtp.proxy uses the unsupported scheme \"ftp\""),
            "{message}"
        );
        assert!(!message.contains("canary-proxy"), "{message}");
        let message = error_of(&set(
            &tas_config(),
            &["proxy"],
            Value::str("user:canary-proxy@proxy"),
        ));
        assert!(
            message.starts_with("mail.smtp.proxy must be a proxy URL"),
            "{message}"
        );
        assert!(!message.contains("canary-proxy"), "{message}");
        let message = error_of(&set(&tas_config(), &["localAddress"], Value::str("eth0")));
        assert!(
            message.starts_with("mail.smtp.localAddress must be an IP address"),
            "{message}"
        );
        let message = error_of(&set(&tas_config(), &["dnsTimeout"], Value::Number(0.0)));
        assert!(message.starts_with("mail.smtp.dnsTimeout must be"), "{message}");
    }

    fn parse_with(value: &Value, variables: &[(&str, &str)]) -> Result<TransportConfig> {
        let variables: Vec<(String, String)> = variables
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| variables.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        TransportConfig::from_inputs(
            value,
            &ConfigInputs {
                extra_ca_file: None,
                variable: &lookup,
                client_assertion: None,
            },
        )
    }

    fn oauth2_with(value: &Value, variables: &[(&str, &str)]) -> OAuth2Config {
        match parse_with(value, variables).unwrap().auth {
            Auth::OAuth2 { oauth2, .. } => *oauth2,
            _ => panic!("not oauth2"),
        }
    }

    const WORKLOAD_IDENTITY: [(&str, &str); 3] = [
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            "/var/run/secrets/azure/tokens/azure-identity-token",
        ),
        ("AZURE_CLIENT_ID", "env-client"),
        ("AZURE_TENANT_ID", "env-tenant"),
    ];

    #[test]
    fn more_than_one_credential_is_a_conflict_naming_them() {
        let both = set(&tas_config(), &["oauth2", "managedIdentity"], Value::Bool(true));
        let both = set(&both, &["oauth2", "clientAssertionFile"], Value::str("/t"));
        assert_eq!(
            error_of(&both),
            "mail.smtp.oauth2 names more than one credential (clientSecret, clientAssertionFile, managedIdentity): keep exactly one"
        );
        // `managedIdentity: false` names none.
        let off = set(&tas_config(), &["oauth2", "managedIdentity"], Value::Bool(false));
        assert!(parse_with(&off, &[]).is_ok());
    }

    #[test]
    fn a_token_file_is_a_credential_read_later() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let config = set(
            &config,
            &["oauth2", "clientAssertionFile"],
            Value::str(" /run/token \n"),
        );
        let oauth2 = oauth2_with(&config, &WORKLOAD_IDENTITY);
        let ClientCredential::AssertionFile(file) = &oauth2.credential else {
            panic!("not a file: {:?}", oauth2.credential)
        };
        assert_eq!(file.path, std::path::PathBuf::from("/run/token"));
        assert!(
            oauth2.credential_environment.is_empty(),
            "the config named the credential"
        );
        assert_eq!(oauth2.assertion_timeout, DEFAULT_ASSERTION_TIMEOUT);
    }

    #[test]
    fn workload_identity_variables_apply_only_when_no_credential_is_named() {
        let bare = without(
            &without(
                &without(&tas_config(), &["oauth2", "clientSecret"]),
                &["oauth2", "clientId"],
            ),
            &["oauth2", "host"],
        );
        let oauth2 = oauth2_with(&bare, &WORKLOAD_IDENTITY);
        assert_eq!(oauth2.credential.kind(), "clientAssertionFile");
        assert_eq!(
            (oauth2.client_id.as_str(), oauth2.tenant_id.as_deref()),
            ("env-client", Some("env-tenant"))
        );
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.com/env-tenant/oauth2/v2.0/token"
        );
        assert_eq!(
            oauth2.credential_environment,
            ["AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"]
        );
        // The config's own client id and token URL win over the environment's.
        let explicit = without(&tas_config(), &["oauth2", "clientSecret"]);
        let oauth2 = oauth2_with(&explicit, &WORKLOAD_IDENTITY);
        assert_eq!(oauth2.client_id, "00000000-0000-0000-0000-000000000001");
        assert_eq!(oauth2.tenant_id.as_deref(), Some("t"));
        assert_eq!(oauth2.credential_environment, ["AZURE_FEDERATED_TOKEN_FILE"]);
        // A named credential wins; one missing variable means no fallback.
        assert_eq!(
            oauth2_with(&tas_config(), &WORKLOAD_IDENTITY).credential.kind(),
            "clientSecret"
        );
        let err = parse_with(&explicit, &WORKLOAD_IDENTITY[..2]).unwrap_err();
        assert!(
            err.message()
                .contains("clientAssertionFile, clientAssertion or managedIdentity"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_callback_needs_a_function_the_environment_can_call() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let text = set(&config, &["oauth2", "clientAssertion"], Value::str("eyJ.x.y"));
        assert!(error_of(&text).starts_with(
            "mail.smtp.oauth2.clientAssertion must be a function returning the client assertion"
        ));
        let function = set(
            &config,
            &["oauth2", "clientAssertion"],
            Value::Other("function".into()),
        );
        let with_callback = |value: &Value| {
            let callback = AssertionCallback::new(|| Box::pin(async { Ok(Secret::new("a.b.c")) }));
            let inputs = ConfigInputs {
                extra_ca_file: None,
                variable: &|_| None,
                client_assertion: Some(callback),
            };
            TransportConfig::from_inputs(value, &inputs).map(|parsed| match parsed.auth {
                Auth::OAuth2 { oauth2, .. } => oauth2,
                _ => panic!("not oauth2"),
            })
        };
        assert_eq!(
            with_callback(&function).unwrap().credential.kind(),
            "clientAssertion"
        );
        let quick = set(
            &function,
            &["oauth2", "clientAssertionTimeout"],
            Value::Number(250.0),
        );
        assert_eq!(
            with_callback(&quick).unwrap().assertion_timeout,
            Duration::from_millis(250)
        );
        let never = set(
            &function,
            &["oauth2", "clientAssertionTimeout"],
            Value::Number(0.0),
        );
        assert!(with_callback(&never)
            .unwrap_err()
            .message()
            .starts_with("mail.smtp.oauth2.clientAssertionTimeout must be a number"));
    }

    #[test]
    fn managed_identity_needs_no_client_id_or_token_url() {
        let bare = without(
            &without(
                &without(&tas_config(), &["oauth2", "clientSecret"]),
                &["oauth2", "clientId"],
            ),
            &["oauth2", "host"],
        );
        let bare = without(&bare, &["oauth2", "scope"]);
        let system = set(&bare, &["oauth2", "managedIdentity"], Value::Bool(true));
        let oauth2 = oauth2_with(&system, &[]);
        assert_eq!(
            oauth2.token_url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token"
        );
        assert_eq!(
            (oauth2.scope.as_str(), oauth2.client_id.as_str()),
            ("https://outlook.office365.com/.default", "")
        );
        let user = set(
            &bare,
            &["oauth2", "managedIdentity"],
            Value::object([("clientId", Value::str("mi-client"))]),
        );
        let local = set(
            &user,
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://127.0.0.1:9/token"),
        );
        let oauth2 = oauth2_with(
            &local,
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:8/"),
                ("IDENTITY_HEADER", "h"),
            ],
        );
        assert_eq!(
            (oauth2.token_url.as_str(), oauth2.client_id.as_str()),
            ("http://127.0.0.1:9/token", "mi-client")
        );
        let app_service = oauth2_with(
            &user,
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:8/msi/token"),
                ("IDENTITY_HEADER", "h"),
            ],
        );
        assert_eq!(
            app_service.credential_environment,
            ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"]
        );
        for (value, message) in [
            (Value::str("yes"), "mail.smtp.oauth2.managedIdentity must be true or an object with one of clientId, objectId or resourceId"),
            (Value::object([("clientId", Value::str("a")), ("objectId", Value::str("b"))]), "mail.smtp.oauth2.managedIdentity must be true or an object"),
            (Value::object([("client_id", Value::str("a"))]), "mail.smtp.oauth2.managedIdentity.client_id is not an option of managedIdentity"),
        ] {
            let config = set(&bare, &["oauth2", "managedIdentity"], value);
            assert!(error_of(&config).starts_with(message), "{}", error_of(&config));
        }
        let remote = set(
            &system,
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://10.1.2.3/token"),
        );
        assert!(error_of(&remote).starts_with("mail.smtp.oauth2.managedIdentityEndpoint must be an https:// URL, or http:// on a loopback or link-local address"));
        let with_client = set(&system, &["oauth2", "clientId"], Value::str("c"));
        assert!(
            error_of(&with_client).starts_with("mail.smtp.oauth2.clientId is not used with managedIdentity")
        );
        let misplaced = set(
            &tas_config(),
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://127.0.0.1:9/"),
        );
        assert_eq!(
            error_of(&misplaced),
            "mail.smtp.oauth2.managedIdentityEndpoint is only used with managedIdentity"
        );
        let err = parse_with(&system, &[("IDENTITY_ENDPOINT", "http://10.0.0.1/")]).unwrap_err();
        assert!(
            err.message()
                .starts_with("the environment variable IDENTITY_ENDPOINT must be an https:// URL"),
            "{}",
            err.message()
        );
    }

    fn graph_config() -> Value {
        let config = without(&without(&tas_config(), &["host"]), &["port"]);
        let config = without(&config, &["oauth2", "scope"]);
        set(&config, &["api"], Value::str("graph"))
    }

    #[test]
    fn api_graph_needs_no_host_and_defaults_to_the_clouds_graph() {
        let parsed = TransportConfig::from_value(&graph_config(), None).unwrap();
        let graph = parsed.graph.as_ref().unwrap();
        assert_eq!(graph.base_url.as_str(), "https://graph.microsoft.com/v1.0");
        assert!(graph.save_to_sent_items);
        assert_eq!(
            oauth2_of(&graph_config()).scope,
            "https://graph.microsoft.com/.default"
        );
        let usgov = set(&graph_config(), &["oauth2", "cloud"], Value::str("usgov"));
        let parsed = TransportConfig::from_value(&usgov, None).unwrap();
        assert_eq!(
            parsed.graph.unwrap().base_url.as_str(),
            "https://graph.microsoft.us/v1.0"
        );
        assert_eq!(oauth2_of(&usgov).scope, "https://graph.microsoft.us/.default");
        let china = set(&graph_config(), &["oauth2", "cloud"], Value::str("china"));
        assert_eq!(
            oauth2_of(&china).scope,
            "https://microsoftgraph.chinacloudapi.cn/.default"
        );
        assert!(TransportConfig::from_value(&tas_config(), None)
            .unwrap()
            .graph
            .is_none());
    }

    #[test]
    fn graph_options_are_checked() {
        let pooled = set(&graph_config(), &["pool"], Value::Bool(true));
        let pooled = set(&pooled, &["maxConnections"], Value::Number(10.0));
        let parsed = TransportConfig::from_value(&pooled, None).unwrap();
        assert_eq!(
            parsed.pool.unwrap().max_connections,
            4,
            "Outlook's 4 concurrent requests"
        );
        let default_pool = set(&graph_config(), &["pool"], Value::Bool(true));
        assert_eq!(
            TransportConfig::from_value(&default_pool, None)
                .unwrap()
                .pool
                .unwrap()
                .max_connections,
            4
        );
        let no_copy = set(&graph_config(), &["saveToSentItems"], Value::Bool(false));
        assert!(
            !TransportConfig::from_value(&no_copy, None)
                .unwrap()
                .graph
                .unwrap()
                .save_to_sent_items
        );
        for (path, value, expected) in [
            (
                "api",
                Value::str("rest"),
                "mail.smtp.api must be 'smtp' or 'graph'",
            ),
            (
                "graphUrl",
                Value::str("http://graph.example.com/v1.0"),
                "mail.smtp.graphUrl must be an https:// URL",
            ),
            (
                "graphUrl",
                Value::str("not a url"),
                "mail.smtp.graphUrl must be the Graph API root",
            ),
            (
                "saveToSentItems",
                Value::str("no"),
                "mail.smtp.saveToSentItems must be",
            ),
        ] {
            let message = error_of(&set(&graph_config(), &[path], value));
            assert!(message.starts_with(expected), "{message}");
        }
        let local = set(
            &graph_config(),
            &["graphUrl"],
            Value::str("http://127.0.0.1:8080/v1.0"),
        );
        assert!(TransportConfig::from_value(&local, None).is_ok());
        let smtp_with_graph_url = set(
            &tas_config(),
            &["graphUrl"],
            Value::str("https://graph.microsoft.com/v1.0"),
        );
        assert_eq!(
            error_of(&smtp_with_graph_url),
            "mail.smtp.graphUrl is only used with api: 'graph'"
        );
        let basic = without(&without(&graph_config(), &["type"]), &["oauth2"]);
        let basic = set(&basic, &["auth", "pass"], Value::str("pw"));
        assert!(error_of(&basic).starts_with("mail.smtp.type must be 'oauth2' with api: 'graph'"));
    }
}
