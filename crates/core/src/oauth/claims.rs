//! What an access token says about the setup, read without verifying it (only Exchange can
//! verify it; reading it tells an administrator what is wrong before any SMTP traffic).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value as Json;

use crate::oauth::credential::CredentialReport;

/// Exchange Online's application id, which some tokens carry as `aud`.
const EXCHANGE_APP_ID: &str = "00000002-0000-0ff1-ce00-000000000000";
/// The app role an app needs to send over SMTP.
pub const SMTP_ROLE: &str = "SMTP.SendAsApp";
/// Microsoft Graph's application id, which some Graph tokens carry as `aud`.
const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The app role an app needs for Graph's sendMail.
pub const GRAPH_SEND_ROLE: &str = "Mail.Send";
/// Microsoft Graph in each cloud (`api: 'graph'`).
const GRAPH_RESOURCES: [&str; 3] = [
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
];
const EXCHANGE_RESOURCES: [&str; 4] = [
    "https://outlook.office365.com",
    "https://outlook.office.com",
    "https://outlook.office365.us",
    "https://partner.outlook.cn",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenProblem {
    /// `AUDIENCE`, `ROLE_MISSING`, `TENANT_MISMATCH` or `APP_MISMATCH`.
    pub code: &'static str,
    pub message: String,
}

/// The claims that matter for SMTP, and what is wrong with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenReport {
    /// `false` for opaque tokens: nothing can be read from them, and that is not an error.
    pub is_jwt: bool,
    pub aud: Option<String>,
    pub roles: Vec<String>,
    pub tid: Option<String>,
    pub appid: Option<String>,
    pub exp: Option<SystemTime>,
    pub problems: Vec<TokenProblem>,
    /// Which credential obtained the token, and from where.
    pub credential: Option<CredentialReport>,
}

/// What the configuration expects of a token.
pub struct Expectations<'a> {
    /// The `scope` that was asked for (`https://outlook.office365.com/.default`).
    pub scope: &'a str,
    pub tenant_id: Option<&'a str>,
    /// `None` when unknown (a system-assigned managed identity).
    pub client_id: Option<&'a str>,
    /// The Exchange app role the token must carry (`SMTP.SendAsApp`; `Mail.Send` for High
    /// Volume Email); `None` when Exchange grants the mailbox otherwise (RBAC for
    /// Applications). A Graph scope always needs Graph's `Mail.Send`.
    pub role: Option<&'a str>,
}

pub fn inspect(token: &str, expected: &Expectations) -> TokenReport {
    let Some(claims) = decode_payload(token) else {
        return TokenReport::default();
    };
    let text = |name: &str| claims.get(name).and_then(Json::as_str).map(str::to_string);
    let aud = match claims.get("aud") {
        Some(Json::Array(items)) => items.first().and_then(Json::as_str).map(str::to_string),
        _ => text("aud"),
    };
    let roles = claims
        .get("roles")
        .and_then(Json::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut report = TokenReport {
        is_jwt: true,
        aud,
        roles,
        tid: text("tid"),
        appid: text("appid").or_else(|| text("azp")),
        exp: claims.get("exp").and_then(expiry),
        problems: Vec::new(),
        credential: None,
    };
    report.problems = problems(&report, expected);
    report
}

fn problems(report: &TokenReport, expected: &Expectations) -> Vec<TokenProblem> {
    let mut problems = Vec::new();
    let resource = normalize(expected.scope.trim_end_matches("/.default"));
    let for_exchange = EXCHANGE_RESOURCES.iter().any(|r| normalize(r) == resource);
    let for_graph = GRAPH_RESOURCES.iter().any(|r| normalize(r) == resource);
    if let Some(aud) = &report.aud {
        let matches = normalize(aud) == resource
            || (for_exchange && aud == EXCHANGE_APP_ID)
            || (for_graph && aud == GRAPH_APP_ID);
        if !matches {
            let graph = aud.contains("graph.microsoft") || aud == "00000003-0000-0000-c000-000000000000";
            let what = if graph {
                " (a Microsoft Graph token: the scope is Graph's)"
            } else {
                ""
            };
            problems.push(TokenProblem {
                code: "AUDIENCE",
                message: format!("the token's audience is {aud}{what}, not {resource}: set oauth2.scope to '{resource}/.default'"),
            });
        }
    }
    let missing_role = expected
        .role
        .filter(|role| !report.roles.iter().any(|r| r == role));
    if let (true, Some(role)) = (for_exchange, missing_role) {
        let roles = if report.roles.is_empty() {
            "none".to_string()
        } else {
            report.roles.join(", ")
        };
        problems.push(TokenProblem {
            code: "ROLE_MISSING",
            message: format!("the token has no {role} role (roles: {roles}): add the Office 365 Exchange Online application permission {role} to the app registration and grant admin consent"),
        });
    }
    if for_graph && !report.roles.iter().any(|r| r == GRAPH_SEND_ROLE) {
        let roles = if report.roles.is_empty() {
            "none".to_string()
        } else {
            report.roles.join(", ")
        };
        problems.push(TokenProblem {
            code: "ROLE_MISSING",
            message: format!("the token has no {GRAPH_SEND_ROLE} role (roles: {roles}): add the Microsoft Graph application permission Mail.Send to the app registration and grant admin consent"),
        });
    }
    // Only a tenant id says which tenant issued a token: a domain (`contoso.onmicrosoft.com`)
    // or `organizations` in the token URL says nothing comparable with `tid`.
    let tenant_id = expected.tenant_id.filter(|tenant| is_guid(tenant));
    if let (Some(tid), Some(tenant)) = (&report.tid, tenant_id) {
        if !tid.eq_ignore_ascii_case(tenant) {
            problems.push(TokenProblem {
                code: "TENANT_MISMATCH",
                message: format!(
                    "the token was issued by tenant {tid}, but the configured tenant is {tenant}"
                ),
            });
        }
    }
    if let (Some(appid), Some(client_id)) = (&report.appid, expected.client_id) {
        if !appid.eq_ignore_ascii_case(client_id) {
            problems.push(TokenProblem {
                code: "APP_MISMATCH",
                message: format!(
                    "the token was issued to app {appid}, not to the configured client id {client_id}"
                ),
            });
        }
    }
    problems
}

/// The last second of the year 9999: later dates are not dates (JavaScript's `Date` and HTTP
/// dates end around there).
const LAST_EXPIRY_SECS: f64 = 253_402_300_799.0;

/// The token's own expiry, `exp`, in whole seconds (a server compares whole seconds: a
/// token with `exp` 1000.9 is refused at 1000). Absurd values (negative, after the year
/// 9999, not a number) are no expiry at all, never a panic.
pub(crate) fn expiry(exp: &Json) -> Option<SystemTime> {
    let seconds = exp.as_f64()?.floor();
    if !(0.0..=LAST_EXPIRY_SECS).contains(&seconds) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds as u64))
}

/// The `exp` claim of a JWT access token, if it has a usable one.
pub fn token_expiry(token: &str) -> Option<SystemTime> {
    decode_payload(token)?.get("exp").and_then(expiry)
}

/// `8-4-4-4-12` hex digits, the form of an Entra ID tenant id.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_ascii_lowercase()
}

pub(crate) fn decode_payload(token: &str) -> Option<serde_json::Map<String, Json>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Json::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: Json) -> String {
        format!(
            "eyJhbGciOiJub25lIn0.{}.sig",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    const TENANT: &str = "11111111-2222-3333-4444-555555555555";
    const OTHER_TENANT: &str = "99999999-2222-3333-4444-555555555555";

    fn expected() -> Expectations<'static> {
        Expectations {
            scope: "https://outlook.office365.com/.default",
            tenant_id: Some(TENANT),
            client_id: Some("app1"),
            role: Some(SMTP_ROLE),
        }
    }

    #[test]
    fn a_good_exchange_token_has_no_problems() {
        let token = jwt(
            serde_json::json!({"aud":"https://outlook.office365.com","roles":["SMTP.SendAsApp"],"tid":TENANT,"appid":"app1","exp":2000000000}),
        );
        let report = inspect(&token, &expected());
        assert!(report.is_jwt);
        assert_eq!(report.problems, vec![]);
        assert_eq!(
            report.exp.unwrap().duration_since(UNIX_EPOCH).unwrap().as_secs(),
            2_000_000_000
        );
    }

    #[test]
    fn the_expected_role_is_checked_and_none_is_expected_with_rbac() {
        let token = jwt(
            serde_json::json!({"aud":"https://outlook.office365.com","roles":["Mail.Send"],"tid":TENANT,"appid":"app1"}),
        );
        let hve = Expectations {
            role: Some("Mail.Send"),
            ..expected()
        };
        assert_eq!(inspect(&token, &hve).problems, vec![]);
        let smtp = inspect(&token, &expected()).problems;
        assert_eq!(smtp[0].code, "ROLE_MISSING");
        assert!(smtp[0]
            .message
            .contains("no SMTP.SendAsApp role (roles: Mail.Send)"));
        let rbac = Expectations {
            role: None,
            ..expected()
        };
        assert_eq!(inspect(&token, &rbac).problems, vec![]);
    }

    #[test]
    fn a_graph_token_without_the_role_from_another_tenant() {
        let token = jwt(
            serde_json::json!({"aud":"https://graph.microsoft.com","roles":["Mail.Send"],"tid":OTHER_TENANT,"appid":"app1"}),
        );
        let codes: Vec<_> = inspect(&token, &expected())
            .problems
            .iter()
            .map(|p| p.code)
            .collect();
        assert_eq!(codes, ["AUDIENCE", "ROLE_MISSING", "TENANT_MISMATCH"]);
    }

    #[test]
    fn with_a_graph_scope_a_graph_token_needs_mail_send() {
        let graph = Expectations {
            scope: "https://graph.microsoft.com/.default",
            ..expected()
        };
        let codes = |claims: serde_json::Value| -> Vec<&str> {
            inspect(&jwt(claims), &graph)
                .problems
                .iter()
                .map(|p| p.code)
                .collect()
        };
        assert!(codes(serde_json::json!({"aud":"https://graph.microsoft.com","roles":["Mail.Send"],"tid":TENANT,"appid":"app1"})).is_empty());
        assert!(codes(
            serde_json::json!({"aud":GRAPH_APP_ID,"roles":["Mail.Send"],"tid":TENANT,"appid":"app1"})
        )
        .is_empty());
        assert_eq!(
            codes(
                serde_json::json!({"aud":"https://graph.microsoft.com","roles":["User.Read.All"],"tid":TENANT,"appid":"app1"})
            ),
            ["ROLE_MISSING"]
        );
        assert_eq!(
            codes(
                serde_json::json!({"aud":"https://outlook.office365.com","roles":["Mail.Send"],"tid":TENANT,"appid":"app1"})
            ),
            ["AUDIENCE"]
        );
    }

    #[test]
    fn a_domain_tenant_says_nothing_about_tid() {
        let token = jwt(
            serde_json::json!({"aud":"https://outlook.office365.com","roles":["SMTP.SendAsApp"],"tid":OTHER_TENANT,"appid":"app1"}),
        );
        for tenant in ["contoso.onmicrosoft.com", "organizations", "t1"] {
            let expected = Expectations {
                tenant_id: Some(tenant),
                ..expected()
            };
            assert_eq!(inspect(&token, &expected).problems, vec![], "{tenant}");
        }
        let upper = TENANT.to_ascii_uppercase();
        let expected = Expectations {
            tenant_id: Some(&upper),
            ..expected()
        };
        let codes: Vec<_> = inspect(&token, &expected)
            .problems
            .iter()
            .map(|p| p.code)
            .collect();
        assert_eq!(codes, ["TENANT_MISMATCH"]);
    }

    #[test]
    fn absurd_exp_claims_are_no_expiry() {
        for exp in [
            serde_json::json!(1e300),
            serde_json::json!(-1),
            serde_json::json!(-1e300),
            serde_json::json!(u64::MAX),
            serde_json::json!(9.3e18),
            serde_json::json!(253_402_300_800u64),
            serde_json::json!("NaN"),
            serde_json::json!("1e999"),
            serde_json::json!(null),
        ] {
            let token = jwt(serde_json::json!({ "exp": exp }));
            assert_eq!(inspect(&token, &expected()).exp, None, "{exp}");
            assert_eq!(token_expiry(&token), None, "{exp}");
        }
        let token = jwt(serde_json::json!({ "exp": 1000.9 }));
        assert_eq!(token_expiry(&token), Some(UNIX_EPOCH + Duration::from_secs(1000)));
    }

    #[test]
    fn opaque_tokens_are_not_errors() {
        let report = inspect("ya29.opaque-google-token", &expected());
        assert!(!report.is_jwt);
        assert!(report.problems.is_empty());
    }
}
