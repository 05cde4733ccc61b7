//! Steps 3 and 4 with `api: 'graph'`: the token's claims as Graph wants them (audience Graph,
//! role `Mail.Send`), then the mailbox looked up with `GET /users/{user}`; both from the
//! transport's own Graph client ([`Transport::probe_graph`]). No SMTP step runs.

use serde_json::{json, Value as Json};

use super::token::claims_outcome;
use super::Outcome;
use crate::error::{Error, Result};
use crate::exchange::hint_context;
use crate::graph::{GraphProbe, MailboxCheck};
use crate::hints::Hint;
use crate::oauth::GRAPH_SEND_ROLE;
use crate::transport::Transport;

pub(super) fn check_claims(transport: &Transport, probe: &Result<GraphProbe>) -> Outcome {
    match probe {
        Ok(probe) => claims_outcome(transport, &probe.token, Some(GRAPH_SEND_ROLE), true),
        Err(err) => failure(transport, err),
    }
}

pub(super) fn check_mailbox(transport: &Transport, probe: &Result<GraphProbe>) -> Outcome {
    let user = transport.config().auth.user().unwrap_or_default();
    match probe.as_ref().map(|probe| &probe.mailbox) {
        Ok(MailboxCheck::Found(status)) => Outcome::pass(
            format!("Microsoft Graph knows the mailbox {user} (GET /users/{user}: {status})"),
            Json::Null,
        ),
        Ok(MailboxCheck::NeedsUserReadAll(message)) => {
            let context = hint_context(transport.config(), None);
            Outcome::pass(message.clone(), json!({ "statusCode": 403 }))
                .with_warnings(vec![Hint::render("graph.user_read_all", &context)])
        }
        Ok(MailboxCheck::Failed(err)) | Err(err) => failure(transport, err),
    }
}

/// A Graph refusal as a failed step, with its status, Graph's error code, request id and
/// the hint filled in with what the transport knows.
fn failure(transport: &Transport, err: &Error) -> Outcome {
    let graph = err.graph_error();
    let details = json!({
        "code": err.code(),
        "statusCode": err.http_status(),
        "graphError": graph.map(|g| g.code.clone()),
        "requestId": graph.and_then(|g| g.request_id.clone()),
    });
    let hint = err
        .hint_data()
        .cloned()
        .map(|hint| hint.in_context(&hint_context(transport.config(), None)));
    Outcome::fail(format!("{}: {}", err.code(), err.message()), hint, details)
}
