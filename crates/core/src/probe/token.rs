//! Steps 2 and 3: a token from the endpoint (timed, with Entra ID's error details), and what
//! its claims say about the setup.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value as Json};

use super::config::current_credential;
use super::{shown_url, Outcome};
use crate::exchange::{hint_context, required_role};
use crate::hints::Hint;
use crate::oauth::TokenReport;
use crate::transport::Transport;

const NOT_OAUTH2: &str = "not an OAuth2 configuration (mail.smtp.type is not 'oauth2')";

pub(super) async fn check_token(transport: &Transport) -> Outcome {
    let Some(token_url) = transport.token_url() else {
        return Outcome::not_applicable(NOT_OAUTH2);
    };
    let host = token_url.host_str().unwrap_or_default().to_string();
    let started = Instant::now();
    let outcome = transport.access_token().await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(token) => {
            let expires = token.expires_at_wall;
            let minutes = expires
                .duration_since(SystemTime::now())
                .map(|left| (left.as_secs() + 30) / 60)
                .unwrap_or(0);
            let until = httpdate::fmt_http_date(expires);
            Outcome::pass(
                format!("token issued by {host} in {elapsed_ms:.0} ms, valid until {until} ({minutes} min)"),
                json!({
                    "tokenUrl": shown_url(token_url),
                    "expiresAt": until,
                    "requestMs": elapsed_ms,
                    "credential": current_credential(transport),
                }),
            )
        }
        Err(err) => {
            let oauth = err.oauth_error();
            let details = json!({
                "tokenUrl": shown_url(token_url),
                "requestMs": elapsed_ms,
                "oauthError": oauth.map(|o| o.error.clone()),
                "oauthErrorCodes": oauth.map(|o| o.error_codes.clone()).unwrap_or_default(),
                "statusCode": err.http_status(),
                "response": oauth.and_then(|o| o.description.as_deref()).map(short_description),
                "credential": current_credential(transport),
            });
            let hint = err
                .hint_data()
                .cloned()
                .map(|hint| hint.in_context(&hint_context(transport.config(), None)));
            Outcome::fail(err.message().to_string(), hint, details)
        }
    }
}

/// Entra ID's description without its `Trace ID: ... Timestamp: ...` tail.
fn short_description(description: &str) -> String {
    description
        .split(" Trace ID:")
        .next()
        .unwrap_or(description)
        .trim()
        .to_string()
}

pub(super) async fn check_claims(transport: &Transport) -> Outcome {
    if transport.token_url().is_none() {
        return Outcome::not_applicable(NOT_OAUTH2);
    }
    let report = match transport.inspect_token().await {
        Ok(report) => report,
        Err(err) => return Outcome::fail(err.message().to_string(), err.hint_data().cloned(), Json::Null),
    };
    claims_outcome(transport, &report, required_role(transport.config()), false)
}

/// What `report` says, as a step; `role` is the role the token needs, `graph` that it is
/// for Microsoft Graph (whose audience and role have their own advice).
pub(super) fn claims_outcome(
    transport: &Transport,
    report: &TokenReport,
    role: Option<&str>,
    graph: bool,
) -> Outcome {
    let details = json!({
        "isJwt": report.is_jwt,
        "aud": report.aud,
        "roles": report.roles,
        "tid": report.tid,
        "appid": report.appid,
        "exp": report.exp.map(httpdate::fmt_http_date),
        "requiredRole": role,
        "problems": report.problems.iter().map(|p| json!({ "code": p.code, "message": p.message })).collect::<Vec<_>>(),
    });
    if !report.is_jwt {
        return Outcome::pass(
            "the token is opaque (not a JWT): its claims cannot be read here".to_string(),
            details,
        );
    }
    let roles = match report.roles.is_empty() {
        true => "none".to_string(),
        false => report.roles.join(", "),
    };
    let none = "none".to_string();
    let mut summary = format!(
        "aud {}, roles {roles}, tid {}, appid {}",
        report.aud.as_ref().unwrap_or(&none),
        report.tid.as_ref().unwrap_or(&none),
        report.appid.as_ref().unwrap_or(&none)
    );
    if role.is_none() {
        summary.push_str(" (no role needed: the mailbox is granted by RBAC for Applications)");
    }
    if report.problems.is_empty() {
        return Outcome::pass(summary, details);
    }
    let context = hint_context(transport.config(), None);
    let hints: Vec<Hint> = report
        .problems
        .iter()
        .map(|problem| Hint::render(problem_hint(problem.code, graph), &context))
        .collect();
    let finding = report
        .problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let mut outcome = Outcome::fail(finding, hints.first().cloned(), details);
    let mut fixes: Vec<String> = Vec::new();
    for hint in &hints {
        if !fixes.contains(&hint.text) {
            fixes.push(hint.text.clone());
        }
    }
    outcome.fix = Some(fixes.join("\n"));
    outcome
}

fn problem_hint(code: &str, graph: bool) -> &'static str {
    match code {
        "AUDIENCE" if graph => "claims.graph_audience",
        "ROLE_MISSING" if graph => "claims.graph_role_missing",
        "AUDIENCE" => "claims.audience",
        "ROLE_MISSING" => "claims.role_missing",
        "TENANT_MISMATCH" => "claims.tenant_mismatch",
        _ => "claims.app_mismatch",
    }
}
