//! The doctor's walk along the chain, with the transport's own code: config, token, token
//! claims, the SMTP server (DNS, TCP, greeting, EHLO, STARTTLS, TLS, certificate), AUTH and an
//! optional test message. With `api: 'graph'` the claims are Graph's and the SMTP server and
//! AUTH steps are replaced by one: the mailbox looked up in Microsoft Graph. Each step says whether it passed, what it found, what to do (a
//! [`Hint`]) and the details it saw; the CLI only presents them.
//!
//! A step that fails stops the walk: the ones after it are skipped, as each builds on the
//! one before (no SMTP connection after a refused token).

mod config;
mod graph;
mod server;
mod submission;
mod token;

use std::time::Instant;

use serde::Serialize;
use serde_json::Value as Json;

use crate::hints::Hint;
use crate::transport::Transport;

/// What the caller asks of the walk besides the transport's own configuration.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    /// Send a test message to this address (the last step); `None` skips it.
    pub send_to: Option<String>,
    /// The sender of the test message (`mail.from`); the mailbox when `None`.
    pub from: Option<String>,
}

/// The outcome of one step.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// 1-based position.
    pub step: usize,
    /// `config`, `token`, `claims`, `smtp`, `auth`, `send`; with Graph `config`, `token`,
    /// `claims`, `mailbox`, `send`.
    pub name: &'static str,
    pub title: &'static str,
    /// `true` passed, `false` failed, `None` not applicable or skipped.
    pub ok: Option<bool>,
    /// `pass`, `fail` or `skip`.
    pub status: &'static str,
    pub finding: String,
    /// What to do: the hint's text (all hints' texts when several problems were found).
    pub fix: Option<String>,
    pub hint: Option<Hint>,
    /// Not failures, but worth knowing before sending (another sender, Exchange's limits).
    pub warnings: Vec<Hint>,
    pub details: Json,
    pub elapsed_ms: f64,
}

/// Every step, in order, and whether all that ran passed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub ok: bool,
    pub steps: Vec<Step>,
}

/// What one step found, before it is numbered.
pub(crate) struct Outcome {
    ok: Option<bool>,
    finding: String,
    hint: Option<Hint>,
    fix: Option<String>,
    warnings: Vec<Hint>,
    details: Json,
}

impl Outcome {
    fn pass(finding: String, details: Json) -> Self {
        Outcome {
            ok: Some(true),
            finding,
            hint: None,
            fix: None,
            warnings: Vec::new(),
            details,
        }
    }

    fn fail(finding: String, hint: Option<Hint>, details: Json) -> Self {
        Outcome {
            ok: Some(false),
            finding,
            fix: hint.as_ref().map(|h| h.text.clone()),
            hint,
            warnings: Vec::new(),
            details,
        }
    }

    fn not_applicable(finding: &str) -> Self {
        Outcome {
            ok: None,
            finding: finding.to_string(),
            hint: None,
            fix: None,
            warnings: Vec::new(),
            details: Json::Null,
        }
    }

    fn with_warnings(mut self, warnings: Vec<Hint>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// A URL as the report shows it: without user name and password.
fn shown_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

const TITLES: [(&str, &str); 6] = [
    ("config", "Configuration"),
    ("token", "Token from the token endpoint"),
    ("claims", "Token claims"),
    ("smtp", "SMTP server, STARTTLS and certificate"),
    ("auth", "AUTH"),
    ("send", "Test message"),
];

const GRAPH_TITLES: [(&str, &str); 5] = [
    ("config", "Configuration"),
    ("token", "Token from the token endpoint"),
    ("claims", "Token claims (Microsoft Graph)"),
    ("mailbox", "Mailbox in Microsoft Graph"),
    ("send", "Test message through Microsoft Graph"),
];

/// Walks the chain of `transport`; never fails (a failure is a failed step).
pub async fn run(transport: &Transport, options: &ProbeOptions) -> ProbeReport {
    let titles: &[(&'static str, &'static str)] = match transport.config().graph {
        Some(_) => &GRAPH_TITLES,
        None => &TITLES,
    };
    let mut steps = Vec::new();
    let mut failed_at = None;
    // The Graph client's one look (claims, then the mailbox), for steps 3 and 4.
    let mut graph_probe = None;
    for (index, &(name, title)) in titles.iter().enumerate() {
        let started = Instant::now();
        let outcome = match failed_at {
            Some(failed) => Outcome::not_applicable(&format!("skipped (step {failed} failed)")),
            None => match name {
                "config" => config::check(transport, options),
                "token" => token::check_token(transport).await,
                "claims" if transport.config().graph.is_some() => {
                    let probe = graph_probe.insert(transport.probe_graph().await);
                    graph::check_claims(transport, probe)
                }
                "claims" => token::check_claims(transport).await,
                "mailbox" => match &graph_probe {
                    Some(probe) => graph::check_mailbox(transport, probe),
                    None => Outcome::not_applicable("skipped (no Graph look)"),
                },
                "smtp" => server::check(transport).await,
                "auth" => submission::check_auth(transport).await,
                _ => submission::check_send(transport, options).await,
            },
        };
        if outcome.ok == Some(false) && failed_at.is_none() {
            failed_at = Some(index + 1);
        }
        steps.push(Step {
            step: index + 1,
            name,
            title,
            ok: outcome.ok,
            status: match outcome.ok {
                Some(true) => "pass",
                Some(false) => "fail",
                None => "skip",
            },
            finding: outcome.finding,
            fix: outcome.fix,
            hint: outcome.hint,
            warnings: outcome.warnings,
            details: outcome.details,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
    }
    ProbeReport {
        ok: failed_at.is_none(),
        steps,
    }
}

#[cfg(test)]
mod tests;
