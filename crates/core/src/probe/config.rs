//! Step 1: what the transport will do, without secrets, and what to know before sending.

use serde_json::{json, Value as Json};

use super::{shown_url, Outcome, ProbeOptions};
use crate::config::{Auth, OAuth2Config, TransportConfig};
use crate::exchange::{hint_context, is_hve_host, limit_warnings, required_role};
use crate::hints::Hint;
use crate::oauth::ClientCredential;
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
    warnings.extend(limit_warnings(config, &context));
    let tls = if config.implicit_tls {
        "implicit TLS"
    } else {
        "STARTTLS"
    };
    let credentials = match &config.auth {
        Auth::OAuth2 { oauth2, .. } => format!("OAuth2 client {}", oauth2.client_id),
        Auth::Password { .. } => "password".to_string(),
        Auth::None => "no credentials".to_string(),
    };
    let finding = format!(
        "{user} via {}:{} ({tls}), {credentials}",
        config.host, config.port
    );
    Outcome::pass(finding, summary(config, from)).with_warnings(warnings)
}

/// The configuration as the transport understood it; never a secret.
fn summary(config: &TransportConfig, from: Option<&str>) -> Json {
    let mut summary = json!({
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
            "credential": credential_summary(oauth2),
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

/// How the app proves who it is, in words. The place for further credential kinds (a
/// federated token file, a callback, a managed identity) and what they show.
fn credential_summary(oauth2: &OAuth2Config) -> String {
    match &oauth2.credential {
        ClientCredential::Secret(_) => "client secret (not shown)".to_string(),
        ClientCredential::Certificate(certificate) if certificate.names_by_sha256() => {
            "certificate, assertion PS256 with x5t#S256 (key not shown)".to_string()
        }
        ClientCredential::Certificate(_) => {
            "certificate, assertion RS256 with x5t (key not shown)".to_string()
        }
        other => format!("{} from {}", other.kind(), other.source()),
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
