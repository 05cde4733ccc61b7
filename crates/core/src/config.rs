//! The validated transport configuration: a TAS `mail.smtp` object, checked field by field.
//!
//! Every error names the field's full path (`mail.smtp.oauth2.clientId is missing`), so an
//! administrator can fix `local.js` from the message alone.

use std::time::Duration;

use rustls::pki_types::{pem::PemObject, CertificateDer};
use zeroize::Zeroizing;

use crate::content_access::ContentAccess;
use crate::error::{ErrorKind, Result};
use crate::hints::{Hint, HintContext};
use crate::input::{Field, Value};
use crate::oauth::{CertificateCredential, ClientCredential};
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

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// The token endpoint (`oauth2.host` in the TAS config, or built from `tenantId`).
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub credential: ClientCredential,
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
        let root = Field::root(CONFIG_ROOT, smtp, ErrorKind::Config);
        if !matches!(smtp, Value::Object(_)) {
            return Err(root.wrong_type("an object"));
        }
        let host = root.child("host").string()?.trim().to_string();
        let port_field = root.child("port");
        let secure = root.child("secure").optional_bool()?;
        let port = match port_field.optional_integer(1..=65535)? {
            Some(port) => port as u16,
            None if root.child("type").is_present() || root.child("oauth2").is_present() => {
                return Err(port_field.missing());
            }
            None if secure == Some(true) => 465,
            None => 587,
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
        let auth = parse_auth(&root, extra_ca_file)?;

        Ok(TransportConfig {
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
            pool: parse_pool(&root, &auth)?,
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
        })
    }

    /// The name the SMTP server's certificate is checked against.
    pub fn tls_server_name(&self) -> &str {
        self.tls.servername.as_deref().unwrap_or(&self.host)
    }
}

/// Exchange Online allows 3 concurrent connections per mailbox; nodemailer's default is 5.
const EXCHANGE_MAX_CONNECTIONS: u64 = 3;
const DEFAULT_MAX_CONNECTIONS: u64 = 5;
const DEFAULT_MAX_MESSAGES: usize = 100;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RATE_DELTA: Duration = Duration::from_secs(1);
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Exchange Online's limit of recipients per message.
const DEFAULT_MAX_RECIPIENTS_PER_MESSAGE: u64 = 500;

fn parse_pool(root: &Field, auth: &Auth) -> Result<Option<PoolOptions>> {
    if !root.child("pool").optional_bool()?.unwrap_or(false) {
        return Ok(None);
    }
    let default_connections = match auth {
        Auth::OAuth2 { .. } => EXCHANGE_MAX_CONNECTIONS,
        _ => DEFAULT_MAX_CONNECTIONS,
    };
    let max_connections = root
        .child("maxConnections")
        .optional_integer(1..=100)?
        .unwrap_or(default_connections);
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

fn parse_auth(root: &Field, extra_ca_file: Option<&[u8]>) -> Result<Auth> {
    let auth = root.child("auth");
    auth.optional_object()?;
    let is_oauth2 = match root.child("type").optional_string()? {
        Some(kind) if kind.eq_ignore_ascii_case("oauth2") => true,
        Some("login") | None => false,
        Some(_) => return Err(root.child("type").wrong_type("'oauth2' or 'login'")),
    };
    if is_oauth2 {
        let user = auth.child("user").string()?.trim().to_string();
        let oauth2 = parse_oauth2(&root.child("oauth2"), extra_ca_file)?;
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

fn parse_oauth2(field: &Field, extra_ca_file: Option<&[u8]>) -> Result<OAuth2Config> {
    if field.optional_object()?.is_none() {
        return Err(field.missing());
    }
    let grant = field.child("grantType");
    if let Some(grant_type) = grant.optional_string()? {
        if grant_type != "client_credentials" {
            return Err(grant.wrong_type("'client_credentials' (the only grant a server can use)"));
        }
    }
    let client_id = field.child("clientId").string()?.trim().to_string();
    let tenant_id = field
        .child("tenantId")
        .optional_string()?
        .map(|t| t.trim().to_string());
    let url_field = field.child("host");
    let (token_url, default_scope) = match (url_field.is_present(), &tenant_id) {
        (true, _) => (parse_token_url(&url_field)?, None),
        (false, Some(tenant)) => {
            let (authority, scope) = cloud_authority(&field.child("cloud"))?;
            let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
            let url = reqwest::Url::parse(&url).map_err(|err| {
                field
                    .child("tenantId")
                    .error(format!("does not make a valid token URL ({err})"))
            })?;
            (url, scope)
        }
        (false, None) => return Err(url_field.missing()),
    };
    // `'.../' + process.env.TENANT + '/oauth2/...'` with the variable unset: no tenant has
    // that name, and the request would only earn AADSTS90002.
    if let Some(tenant) = tenant_in_url(&token_url).filter(|t| t == "undefined" || t == "null") {
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
    let failure_cache = match field.child("failureCacheSeconds").optional_integer(0..=3600)? {
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_FAILURE_CACHE,
    };
    let mut extra_ca = parse_ca(&field.child("ca"))?;
    extra_ca.extend(node_extra_ca(extra_ca_file));
    let (credential, secret_trimmed) = parse_credential(field)?;
    Ok(OAuth2Config {
        tenant_id: tenant_id.or_else(|| tenant_in_url(&token_url)),
        token_url,
        client_id,
        credential,
        scope,
        proxy,
        renew_before,
        timeout: timeout(&field.child("timeout"), DEFAULT_TOKEN_TIMEOUT)?,
        extra_ca,
        failure_cache,
        secret_trimmed,
        rbac: field.child("rbac").optional_bool()?.unwrap_or(false),
    })
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
            assert_eq!(message, format!("mail.smtp.{} is missing", path.join(".")));
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
}
