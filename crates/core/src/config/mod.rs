//! The validated transport configuration: a TAS `mail.smtp` object, checked field by field.
//!
//! Every error names the field's full path (`mail.smtp.oauth2.clientId is missing`), so an
//! administrator can fix `local.js` from the message alone.

mod auth;
mod credential;
mod graph;
mod network;
mod oauth2;
mod pool;
mod starttls;
#[cfg(test)]
mod test_support;
mod tls;

use std::time::Duration;

use crate::content_access::ContentAccess;
use crate::error::{ErrorKind, Result};
use crate::input::{Field, Value};
use crate::oauth::AssertionCallback;

pub use auth::Auth;
pub use graph::GraphOptions;
pub use network::{NetworkOptions, Proxy, Resolver};
pub use oauth2::{Grant, OAuth2Config};
pub use pool::{PoolOptions, GRAPH_MAX_CONCURRENT_REQUESTS};
pub use starttls::StartTls;
pub use tls::{ClientIdentity, TlsOptions};

use auth::{check_auth_method, parse_auth};
use graph::parse_graph;
use network::parse_network;
use pool::parse_pool;
use starttls::parse_starttls;
use tls::parse_tls;

/// The path every config error starts with, as the field is called in a TAS `local.js`.
pub const CONFIG_ROOT: &str = "mail.smtp";

/// nodemailer's defaults, so that a swapped-in transport behaves the same.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_GREETING_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_SOCKET_TIMEOUT: Duration = Duration::from_secs(600);

/// Longer timeouts are surely a unit mistake (seconds given as minutes...).
pub(super) const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

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

const DEFAULT_MAX_RETRIES: u32 = 3;
/// Exchange Online's limit of recipients per message.
const DEFAULT_MAX_RECIPIENTS_PER_MESSAGE: u64 = 500;

/// An EHLO argument: a domain, or an address literal in brackets. Anything else (spaces,
/// line breaks) could smuggle SMTP commands.
pub fn is_hello_name(name: &str) -> bool {
    let literal = name.starts_with('[') && name.ends_with(']') && name.len() > 2;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let body = if literal { &name[1..name.len() - 1] } else { name };
    !body.is_empty() && name.len() <= 255 && body.chars().all(|c| allowed(c) || (literal && matches!(c, ':')))
}

pub(super) fn timeout(field: &Field, default: Duration) -> Result<Duration> {
    Ok(field
        .optional_integer(1..=MAX_TIMEOUT_MS)?
        .map(Duration::from_millis)
        .unwrap_or(default))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::*;

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
}
