//! Delivery status notifications (RFC 3461): the message's `dsn` option, as nodemailer
//! takes it (`{ id, return, notify, recipient }`), and the MAIL/RCPT parameters it becomes
//! (`ENVID`, `RET`, `NOTIFY`, `ORCPT`).

use crate::error::Result;
use crate::input::{Field, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `RET=FULL` or `RET=HDRS`.
    pub ret: Option<&'static str>,
    /// `ENVID`: the sender's id for this message, returned in each notification.
    pub envid: Option<String>,
    /// `NOTIFY`: `NEVER`, or a comma-separated list of `SUCCESS`, `FAILURE`, `DELAY`.
    pub notify: Option<String>,
    /// `ORCPT`: `type;address` (`rfc822;` added when the type is missing).
    pub orcpt: Option<String>,
}

impl Dsn {
    /// The parameters MAIL FROM carries (each with its leading space).
    pub fn mail_parameters(&self) -> String {
        let mut out = String::new();
        if let Some(ret) = self.ret {
            out.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = &self.envid {
            out.push_str(&format!(" ENVID={}", xtext(envid)));
        }
        out
    }

    /// The parameters each RCPT TO carries (each with its leading space).
    pub fn rcpt_parameters(&self) -> String {
        let mut out = String::new();
        if let Some(notify) = &self.notify {
            out.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = &self.orcpt {
            out.push_str(&format!(" ORCPT={}", xtext(orcpt)));
        }
        out
    }
}

/// `message.dsn`, checked: absent gives `None`.
pub fn parse_dsn(field: &Field) -> Result<Option<Dsn>> {
    if field.optional_object()?.is_none() {
        return Ok(None);
    }
    let ret_field = field.child("return");
    let ret = match ret_field
        .optional_string()?
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None => None,
        Some("HDRS" | "HEADERS") => Some("HDRS"),
        Some("FULL" | "BODY") => Some("FULL"),
        Some(_) => return Err(ret_field.wrong_type("'headers' or 'full'")),
    };
    let envid = field.child("id").optional_string()?.map(str::to_string);
    let notify_field = field.child("notify");
    let notify = match notify_field.value() {
        None | Some(Value::Null | Value::Undefined) => None,
        Some(_) => {
            let mut words = Vec::new();
            for item in notify_field.items() {
                words.extend(item.string()?.split(',').map(|w| w.trim().to_ascii_uppercase()));
            }
            let valid = ["NEVER", "SUCCESS", "FAILURE", "DELAY"];
            let never_with_others = words.len() > 1 && words.iter().any(|w| w == "NEVER");
            if words.is_empty() || never_with_others || words.iter().any(|w| !valid.contains(&w.as_str())) {
                return Err(notify_field.error(format!(
                    "must be 'never', or any of 'success', 'failure', 'delay' (got {:?})",
                    words.join(",")
                )));
            }
            Some(words.join(","))
        }
    };
    let orcpt = field
        .child("recipient")
        .optional_string()?
        .map(|recipient| match recipient.contains(';') {
            true => recipient.to_string(),
            false => format!("rfc822;{recipient}"),
        });
    Ok(Some(Dsn {
        ret,
        envid,
        notify,
        orcpt,
    }))
}

/// RFC 3461 §4 xtext: `+XX` for `+`, `=`, and bytes outside `!`..`~`.
fn xtext(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'+' && byte != b'=' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("+{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(value: Value) -> Result<Option<Dsn>> {
        let root = Value::object([("dsn", value)]);
        let field = Field::root("message", &root, ErrorKind::Message);
        parse_dsn(&field.child("dsn"))
    }

    #[test]
    fn nodemailers_form_becomes_rfc_3461_parameters() {
        let dsn = parse(Value::object([
            ("id", Value::str("msg 42+x")),
            ("return", Value::str("headers")),
            (
                "notify",
                Value::Array(vec![Value::str("success"), Value::str("failure")]),
            ),
            ("recipient", Value::str("sender@example.com")),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(dsn.mail_parameters(), " RET=HDRS ENVID=msg+2042+2Bx");
        assert_eq!(
            dsn.rcpt_parameters(),
            " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;sender@example.com"
        );
        let notify_only = parse(Value::object([("notify", Value::str("delay, failure"))]))
            .unwrap()
            .unwrap();
        assert_eq!(notify_only.mail_parameters(), "");
        assert_eq!(notify_only.rcpt_parameters(), " NOTIFY=DELAY,FAILURE");
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = parse(Value::object([("notify", Value::str("never,success"))])).unwrap_err();
        assert!(
            err.message().starts_with("message.dsn.notify must be 'never'"),
            "{}",
            err.message()
        );
        let err = parse(Value::object([("return", Value::str("all"))])).unwrap_err();
        assert!(
            err.message().starts_with("message.dsn.return must be"),
            "{}",
            err.message()
        );
        assert_eq!(parse(Value::Null).unwrap(), None);
    }
}
