//! Microsoft's setups as they are in 2026, as rules the transport and the doctor share: which
//! token role a host wants, which limits apply, and what the transport knows for the hints'
//! PowerShell lines. Each rule names the Microsoft page it comes from
//! (`shared/reference/entra-exchange.md` lists them).

use crate::config::{Auth, TransportConfig};
use crate::hints::{Hint, HintContext};
use crate::oauth::{ClientCredential, SMTP_ROLE};

/// The app role High Volume Email wants instead of `SMTP.SendAsApp`.
// learn.microsoft.com/exchange/mail-flow-best-practices/oauth-high-volume-mails-m365
pub const HVE_ROLE: &str = "Mail.Send";

/// Exchange Online's limits per mailbox.
// learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits
pub const MAX_CONNECTIONS_PER_MAILBOX: usize = 3;
// learn.microsoft.com, "SMTP AUTH client submission improvements": 30 a minute, the rest delayed.
pub const MESSAGES_PER_MINUTE: usize = 30;

/// High Volume Email's SMTP endpoints: the current one and the older one being retired.
// learn.microsoft.com/exchange/mail-flow-best-practices/high-volume-mails-m365
pub fn is_hve_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "smtp.hve.mx.microsoft" || host == "smtp-hve.office365.com"
}

/// Exchange Online's client submission endpoints (global and sovereign clouds).
// learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission
pub fn is_exchange_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    [
        "smtp.office365.com",
        "smtp.office365.us",
        "smtp.partner.outlook.cn",
    ]
    .contains(&host.as_str())
        || is_hve_host(&host)
}

/// The role the token must carry: none with RBAC for Applications, `Mail.Send` for High
/// Volume Email, else `SMTP.SendAsApp`.
// MicrosoftDocs office-developer-exchange-docs docs/legacy-protocols/smtp-app-rbac-onboarding.md:
// with RBAC for Applications the SMTP.SendAsApp Entra permission is not to be granted.
pub fn required_role(config: &TransportConfig) -> Option<&'static str> {
    match &config.auth {
        Auth::OAuth2 { oauth2, .. } if oauth2.rbac => None,
        _ if is_hve_host(&config.host) => Some(HVE_ROLE),
        _ => Some(SMTP_ROLE),
    }
}

/// What the configuration tells the hints: mailbox, client id, tenant, RBAC, HVE, and how
/// the certificate is named. `from` is the sender when one is known.
pub fn hint_context(config: &TransportConfig, from: Option<&str>) -> HintContext {
    let mut context = HintContext {
        user: config.auth.user().map(str::to_string),
        from: from.map(str::to_string),
        hve: is_hve_host(&config.host),
        ..Default::default()
    };
    if let Auth::OAuth2 { oauth2, .. } = &config.auth {
        context.client_id = Some(oauth2.client_id.clone());
        context.tenant = oauth2.tenant_id.clone();
        context.rbac = oauth2.rbac;
        if let ClientCredential::Certificate(certificate) = &oauth2.credential {
            context.assertion_sha256 = certificate.names_by_sha256();
            context.thumbprints = certificate.thumbprints_hex();
        }
    }
    context
}

/// Warnings about the configuration against Exchange Online's limits (nothing fails).
pub fn limit_warnings(config: &TransportConfig, context: &HintContext) -> Vec<Hint> {
    if !is_exchange_host(&config.host) {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    match &config.pool {
        Some(pool) if pool.max_connections > MAX_CONNECTIONS_PER_MAILBOX => {
            warnings.push(Hint::render("exchange.connections", context));
        }
        _ => {}
    }
    let paced = config
        .pool
        .and_then(|pool| pool.rate_limit)
        .is_some_and(|(messages, per)| {
            messages as f64 / per.as_secs_f64().max(0.001) <= MESSAGES_PER_MINUTE as f64 / 60.0
        });
    if config.pool.is_some() && !paced {
        warnings.push(Hint::render("exchange.rate", context));
    }
    if is_hve_host(&config.host) {
        warnings.push(Hint::render("exchange.hve_internal_only", context));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Value;

    fn config(host: &str, extra: &[(&str, Value)]) -> TransportConfig {
        let mut fields = vec![
            ("host", Value::str(host)),
            ("port", Value::Number(587.0)),
            ("type", Value::str("oauth2")),
            ("auth", Value::object([("user", Value::str("box@contoso.com"))])),
        ];
        let mut oauth2 = vec![
            ("tenantId", Value::str("11111111-2222-3333-4444-555555555555")),
            ("clientId", Value::str("app-1")),
            ("clientSecret", Value::str("s3cret-value")),
        ];
        for (key, value) in extra {
            if *key == "rbac" {
                oauth2.push(("rbac", value.clone()));
            } else {
                fields.push((key, value.clone()));
            }
        }
        fields.push(("oauth2", Value::object(oauth2)));
        TransportConfig::from_value(&Value::object(fields), None).unwrap()
    }

    #[test]
    fn the_role_follows_rbac_and_the_hve_host() {
        assert_eq!(required_role(&config("smtp.office365.com", &[])), Some(SMTP_ROLE));
        assert_eq!(
            required_role(&config("smtp.hve.mx.microsoft", &[])),
            Some(HVE_ROLE)
        );
        assert_eq!(
            required_role(&config("SMTP-HVE.office365.com", &[])),
            Some(HVE_ROLE)
        );
        let rbac = config("smtp.office365.com", &[("rbac", Value::Bool(true))]);
        assert_eq!(required_role(&rbac), None);
        assert!(hint_context(&rbac, None).rbac);
    }

    #[test]
    fn a_pool_beyond_exchanges_limits_is_warned_about() {
        let pooled = config(
            "smtp.office365.com",
            &[
                ("pool", Value::Bool(true)),
                ("maxConnections", Value::Number(5.0)),
            ],
        );
        let ids: Vec<_> = limit_warnings(&pooled, &HintContext::default())
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(ids, ["exchange.connections", "exchange.rate"]);
        let paced = config(
            "smtp.office365.com",
            &[
                ("pool", Value::Bool(true)),
                ("maxConnections", Value::Number(3.0)),
                ("rateLimit", Value::Number(30.0)),
                ("rateDelta", Value::Number(60_000.0)),
            ],
        );
        assert!(limit_warnings(&paced, &HintContext::default()).is_empty());
        assert!(limit_warnings(
            &config("mail.example.com", &[("pool", Value::Bool(true))]),
            &HintContext::default()
        )
        .is_empty());
    }
}
