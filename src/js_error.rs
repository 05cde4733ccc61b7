//! The one place where a core [`Error`] becomes a JavaScript `Error`, with nodemailer's
//! fields: `code`, `responseCode`, `response`, `command`, plus `hint`, `oauthError`,
//! `oauthErrorCodes`, `graphError`, `requestId`, `statusCode`, `rejected` and
//! `rejectedErrors` where they apply; the hint also as data (`hintId`, `hintParams`).

use napi::bindgen_prelude::JsObjectValue;
use napi::bindgen_prelude::{Object, Unknown};
use napi::{Env, JsValue, Status};
use smtp_oauth_core::error::RejectedRecipient;
use smtp_oauth_core::Error;

/// Builds the JS error for `err` and returns it as a napi error that throws (or rejects
/// with) exactly that object.
pub fn to_js_error(env: &Env, err: &Error) -> napi::Error {
    match build(env, err) {
        Ok(object) => napi::Error::from(object.to_unknown()),
        // Creating the object failed (out of memory?): still reject, with the message.
        Err(_) => napi::Error::new(Status::GenericFailure, err.message()),
    }
}

fn build<'env>(env: &'env Env, err: &Error) -> napi::Result<Object<'env>> {
    let mut object = env.create_error(napi::Error::new(Status::GenericFailure, err.message()))?;
    object.set_named_property("code", err.code())?;
    if let Some(command) = err.command() {
        object.set_named_property("command", command)?;
    }
    if let Some(reply) = err.reply() {
        object.set_named_property("responseCode", reply.code)?;
        object.set_named_property("response", reply.to_string())?;
    }
    if let Some(status) = err.http_status() {
        object.set_named_property("statusCode", status)?;
    }
    if let Some(oauth) = err.oauth_error() {
        object.set_named_property("oauthError", oauth.error.as_str())?;
        object.set_named_property(
            "oauthErrorCodes",
            oauth.error_codes.iter().map(|&c| c as f64).collect::<Vec<_>>(),
        )?;
        if let Some(description) = &oauth.description {
            object.set_named_property("response", description.as_str())?;
        }
    }
    if let Some(graph) = err.graph_error() {
        object.set_named_property("graphError", graph.code.as_str())?;
        object.set_named_property("response", graph.message.as_str())?;
        if let Some(request_id) = &graph.request_id {
            object.set_named_property("requestId", request_id.as_str())?;
        }
    }
    if let Some(wait) = err.retry_after() {
        object.set_named_property("retryAfter", wait.as_secs_f64().ceil())?;
    }
    if let Some(hint) = err.hint_data() {
        object.set_named_property("hint", hint.text.as_str())?;
        object.set_named_property("hintId", hint.id)?;
        let mut params = Object::new(env)?;
        for (name, value) in &hint.params {
            params.set_named_property(name, value.as_str())?;
        }
        object.set_named_property("hintParams", params)?;
    }
    if !err.rejected().is_empty() {
        let rejected: Vec<&str> = err.rejected().iter().map(|r| r.recipient.as_str()).collect();
        object.set_named_property("rejected", rejected)?;
        let errors = err
            .rejected()
            .iter()
            .map(|r| recipient_error(env, r))
            .collect::<napi::Result<Vec<_>>>()?;
        object.set_named_property("rejectedErrors", errors)?;
    }
    if err.attempts() > 0 {
        object.set_named_property("attempts", err.attempts())?;
    }
    object.set_named_property("permanent", err.is_permanent())?;
    Ok(object)
}

/// A refused recipient as nodemailer reports it: an `Error` with code `EENVELOPE`.
pub fn recipient_error<'env>(env: &'env Env, rejected: &RejectedRecipient) -> napi::Result<Unknown<'env>> {
    let message = format!("recipient {} refused: {}", rejected.recipient, rejected.reply);
    let mut object = env.create_error(napi::Error::new(Status::GenericFailure, message))?;
    object.set_named_property("code", "EENVELOPE")?;
    object.set_named_property("recipient", rejected.recipient.as_str())?;
    object.set_named_property("responseCode", rejected.reply.code)?;
    object.set_named_property("response", rejected.reply.to_string())?;
    object.set_named_property("command", "RCPT TO")?;
    Ok(object.to_unknown())
}
