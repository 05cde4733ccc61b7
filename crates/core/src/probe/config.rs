//! Step 1: what the transport will do, without secrets, and what to know before sending.

use serde_json::{json, Value as Json};

use super::{shown_url, Outcome, ProbeOptions};
use crate::config::{Auth, OAuth2Config, TransportConfig};
use crate::exchange::{hint_context, is_hve_host, limit_warnings, required_role};
use crate::hints::Hint;
use crate::oauth::{AssertionClaims, ClientCredential, CredentialReport};
use crate::transport::Transport;

pub(super) fn check(transport: &Transport, options: &ProbeOptions) -> Outcome {
    let config = transport.config();
    let user = config.auth.user().unwrap_or("(no mailbox)");
    let from = options.from.as_deref();
    let context = hint_context(config, from);
    let mut warnings = Vec::new();
    // Exchange refuses another sender unless the mailbox may send as it.
    if let (Some(from), Some(mailbox)) = (from, config.auth.user()) {
        if !from.eq_ignore_ascii_case(mailbox) {
            warnings.push(Hint::render("smtp.send_as_denied", &context));
        }
    }
    let route = match &config.graph {
        Some(graph) => format!("Microsoft Graph {}", shown_url(&graph.base_url)),
        None => {
            // Exchange's SMTP limits (connections, messages a minute) are SMTP's.
            warnings.extend(limit_warnings(config, &context));
            let tls = match config.implicit_tls {
                true => "implicit TLS",
                false => "STARTTLS",
            };
            format!("{}:{} ({tls})", config.host, config.port)
        }
    };
    let credentials = match &config.auth {
        Auth::OAuth2 { oauth2, .. } if oauth2.client_id.is_empty() => {
            format!("OAuth2 with {}", describe(oauth2))
        }
        Auth::OAuth2 { oauth2, .. } => {
            format!("OAuth2 client {} with {}", oauth2.client_id, describe(oauth2))
        }
        Auth::Password { .. } => "password".to_string(),
        Auth::None => "no credentials".to_string(),
    };
    let finding = format!("{user} via {route}, {credentials}");
    let report = transport.credential_report();
    Outcome::pass(finding, summary(config, from, report.as_ref())).with_warnings(warnings)
}

/// The configuration as the transport understood it; never a secret.
fn summary(config: &TransportConfig, from: Option<&str>, credential: Option<&CredentialReport>) -> Json {
    let mut summary = json!({
        "api": if config.graph.is_some() { "graph" } else { "smtp" },
        "graphUrl": config.graph.as_ref().map(|graph| shown_url(&graph.base_url)),
        "host": config.host,
        "port": config.port,
        "secure": config.implicit_tls,
        "user": config.auth.user(),
        "from": from,
        "hve": is_hve_host(&config.host),
        "requiredRole": required_role(config),
        "tlsCa": !config.tls.extra_ca.is_empty(),
        "tlsServername": config.tls.servername,
        "tlsRejectUnauthorized": config.tls.verify_certificates,
        "proxy": config.network.proxy.as_ref().map(|proxy| format!("{} {}", proxy.label(), proxy.name())),
        "pool": config.pool.map(|pool| json!({
            "maxConnections": pool.max_connections,
            "rateLimit": pool.rate_limit.map(|(messages, per)| json!({ "messages": messages, "perMs": per.as_millis() as u64 })),
        })),
    });
    let auth = match &config.auth {
        Auth::OAuth2 { oauth2, .. } => json!({
            "type": "oauth2",
            "clientId": oauth2.client_id,
            "credential": credential.map(|report| credential_summary(oauth2, report)),
            "tokenUrl": shown_url(&oauth2.token_url),
            "tenantId": oauth2.tenant_id,
            "scope": oauth2.scope,
            "rbac": oauth2.rbac,
            "thumbprints": thumbprints(oauth2),
        }),
        Auth::Password { .. } => json!({ "type": "login", "credential": "password (not shown)" }),
        Auth::None => json!({ "type": "none", "credential": "none" }),
    };
    if let (Json::Object(summary), Json::Object(auth)) = (&mut summary, auth) {
        summary.extend(auth);
    }
    summary
}

/// Which credential the app proves itself with and where it comes from (the file, the
/// callback, the environment variables, the managed identity endpoint), never its value;
/// for a client assertion someone else made, the claims of the last one sent.
pub(super) fn credential_summary(oauth2: &OAuth2Config, report: &CredentialReport) -> Json {
    json!({
        "kind": report.kind,
        "source": report.source,
        "environment": report.environment,
        "description": describe(oauth2),
        "assertion": report.assertion.as_ref().map(assertion_summary),
    })
}

/// [`credential_summary`] of `transport`'s credential as it is now (after a token request:
/// with the assertion sent); `null` without OAuth2.
pub(super) fn current_credential(transport: &Transport) -> Json {
    match (&transport.config().auth, transport.credential_report()) {
        (Auth::OAuth2 { oauth2, .. }, Some(report)) => credential_summary(oauth2, &report),
        _ => Json::Null,
    }
}

/// A client assertion's decoded claims (not verified; the assertion itself is never shown).
pub(super) fn assertion_summary(claims: &AssertionClaims) -> Json {
    json!({
        "iss": claims.iss,
        "sub": claims.sub,
        "aud": claims.aud,
        "exp": claims.exp.map(httpdate::fmt_http_date),
    })
}

/// The credential in words.
fn describe(oauth2: &OAuth2Config) -> String {
    let from_environment = match oauth2.credential_environment.is_empty() {
        true => String::new(),
        false => format!(" (set by {})", oauth2.credential_environment.join(", ")),
    };
    let credential = &oauth2.credential;
    match credential {
        ClientCredential::Secret(_) => "a client secret (not shown)".to_string(),
        ClientCredential::Certificate(certificate) if certificate.names_by_sha256() => {
            "a certificate, assertion PS256 with x5t#S256 (key not shown)".to_string()
        }
        ClientCredential::Certificate(_) => {
            "a certificate, assertion RS256 with x5t (key not shown)".to_string()
        }
        ClientCredential::AssertionFile(_) => format!(
            "a federated token from {}{from_environment}, read for each token request (not shown)",
            credential.source()
        ),
        ClientCredential::AssertionCallback(_) => {
            "a client assertion from the callback mail.smtp.oauth2.clientAssertion (not shown)".to_string()
        }
        ClientCredential::ManagedIdentity(_) => {
            format!("a managed identity: {}{from_environment}", credential.source())
        }
        ClientCredential::NoRenewal => {
            "a fixed access token from auth.accessToken, never renewed (not shown)".to_string()
        }
    }
}

/// Both thumbprints of the configured certificate: the portal shows SHA-1, the assertion
/// names SHA-256 (see `oauth.certificate_not_registered`).
fn thumbprints(oauth2: &OAuth2Config) -> Json {
    match &oauth2.credential {
        ClientCredential::Certificate(certificate) => match certificate.thumbprints_hex() {
            Some((sha1, sha256)) => json!({ "sha1": sha1, "sha256": sha256 }),
            None => Json::Null,
        },
        _ => Json::Null,
    }
}
