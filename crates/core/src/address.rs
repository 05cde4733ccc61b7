//! Addresses in every form nodemailer accepts: `'a@b.c'`, `'Name <a@b.c>'`,
//! `{ name, address }`, arrays of those, and comma-separated lists.

use lettre::message::Mailbox;
use lettre::Address;

use crate::error::Result;
use crate::input::{Field, Value};

/// Every mailbox in `field` (absent gives an empty list). An entry that is not a valid
/// address is an error naming the field and the entry.
pub fn parse_mailboxes(field: &Field) -> Result<Vec<Mailbox>> {
    let mut mailboxes = Vec::new();
    for item in field.items() {
        match item.value() {
            Some(Value::String(text)) => {
                for part in split_list(text) {
                    let mailbox = parse_one(&part).map_err(|problem| item.error(problem))?;
                    if let Some(name) = &mailbox.name {
                        item.check_header_text(name)?;
                    }
                    mailboxes.push(mailbox);
                }
            }
            Some(Value::Object(_)) => {
                let address = item.child("address").string()?;
                // nodemailer treats an empty name as no name.
                let name = match item.child("name").value() {
                    Some(Value::String(name)) if name.trim().is_empty() => None,
                    _ => item.child("name").optional_string()?,
                };
                if let Some(name) = name {
                    item.child("name").check_header_text(name)?;
                }
                let email = address.trim().parse().map_err(|_| {
                    item.child("address")
                        .error(format!("is not a valid e-mail address: {address:?}"))
                })?;
                check_display_name(name).map_err(|problem| item.child("name").error(problem))?;
                mailboxes.push(Mailbox::new(name.map(str::to_string), email));
            }
            None | Some(Value::Null) => {}
            Some(_) => {
                return Err(item.wrong_type("an address ('a@b.c', 'Name <a@b.c>' or { name, address })"))
            }
        }
    }
    Ok(mailboxes)
}

/// The one mailbox in `field`, if any; more than one is an error.
pub fn parse_single_mailbox(field: &Field) -> Result<Option<Mailbox>> {
    let mut mailboxes = parse_mailboxes(field)?;
    match mailboxes.len() {
        0 => Ok(None),
        1 => Ok(mailboxes.pop()),
        n => Err(field.error(format!("must be a single address, got {n}"))),
    }
}

/// `mailbox` with an internationalised domain written as punycode (IDNA 2008), as
/// nodemailer writes headers: they stay ASCII whether or not the server offers SMTPUTF8.
/// A non-ASCII local part has no ASCII form and is kept.
pub fn with_ascii_domain(mailbox: Mailbox) -> Mailbox {
    if mailbox.email.domain().is_ascii() {
        return mailbox;
    }
    let ascii = idna::domain_to_ascii(mailbox.email.domain())
        .ok()
        .and_then(|domain| Address::new(mailbox.email.user(), domain).ok());
    match ascii {
        Some(email) => Mailbox::new(mailbox.name, email),
        None => mailbox,
    }
}

/// Splits `a@b.c, "Doe, Jane" <j@d.e>` at the commas that separate entries, not those
/// inside quotes or angle brackets.
fn split_list(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut in_quotes, mut in_angle, mut escaped) = (false, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => in_angle = true,
            '>' if !in_quotes => in_angle = false,
            ',' | ';' if !in_quotes && !in_angle => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Parses one `addr` or `Name <addr>` entry completely: lettre's parser stops at the first
/// thing it cannot read and ignores the rest, which would drop text silently.
fn parse_one(entry: &str) -> std::result::Result<Mailbox, String> {
    let invalid = || format!("is not a valid e-mail address: {entry:?}");
    if entry.contains(['\r', '\n']) {
        return Err(format!("contains a line break: {entry:?}"));
    }
    let (name, address) = match (entry.rfind('<'), entry.ends_with('>')) {
        (Some(open), true) => {
            let name = entry[..open].trim().trim_matches('"').trim();
            (
                Some(name).filter(|n| !n.is_empty()),
                entry[open + 1..entry.len() - 1].trim(),
            )
        }
        (None, false) => (None, entry),
        _ => return Err(invalid()),
    };
    let email = address.parse().map_err(|_| invalid())?;
    check_display_name(name)?;
    Ok(Mailbox::new(name.map(|n| n.replace("\\\"", "\"")), email))
}

fn check_display_name(name: Option<&str>) -> std::result::Result<(), String> {
    match name {
        Some(name) if name.contains(['\r', '\n']) => Err(format!("contains a line break: {name:?}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn parse(value: Value) -> Result<Vec<String>> {
        let field = Field::root("message.to", &value, ErrorKind::Message);
        Ok(parse_mailboxes(&field)?.iter().map(|m| m.to_string()).collect())
    }

    #[test]
    fn every_nodemailer_form() {
        assert_eq!(parse(Value::str("a@b.c")).unwrap(), ["a@b.c"]);
        assert_eq!(
            parse(Value::str("Jane Doe <jane@d.e>")).unwrap(),
            ["Jane Doe <jane@d.e>"]
        );
        assert_eq!(
            parse(Value::str(r#"a@b.c, "Doe, Jane" <jane@d.e>; x@y.z"#)).unwrap(),
            ["a@b.c", r#""Doe, Jane" <jane@d.e>"#, "x@y.z"]
        );
        let object = Value::object([
            ("name", Value::str("Žluťoučký kůň")),
            ("address", Value::str("kun@d.e")),
        ]);
        let list = Value::Array(vec![object, Value::str("x@y.z")]);
        let parsed = parse(list).unwrap();
        assert_eq!(parsed[1], "x@y.z");
        assert!(parsed[0].ends_with("<kun@d.e>"), "{}", parsed[0]);
    }

    #[test]
    fn invalid_entries_name_the_field() {
        let err = parse(Value::str("not an address")).unwrap_err();
        assert_eq!(
            err.message(),
            r#"message.to is not a valid e-mail address: "not an address""#
        );
        assert_eq!(err.code(), "EMESSAGE");
        let err = parse(Value::str("a@b.c garbage")).unwrap_err();
        assert!(err.message().contains("a@b.c garbage"));
        let err = parse(Value::Array(vec![Value::str("a@b.c"), Value::Number(1.0)])).unwrap_err();
        assert!(err.message().starts_with("message.to[1] must be an address"));
        let err = parse(Value::str("Evil\r\nBcc: x@y.z <a@b.c>")).unwrap_err();
        assert!(err.message().contains("line break"));
    }

    #[test]
    fn header_domains_become_punycode() {
        let mailbox: Mailbox = "Jürgen <jürgen@bücher.example>".parse().unwrap();
        let ascii = with_ascii_domain(mailbox);
        assert_eq!(ascii.email.to_string(), "jürgen@xn--bcher-kva.example");
        assert_eq!(ascii.name.as_deref(), Some("Jürgen"));
    }

    #[test]
    fn idn_and_quoted_local_parts() {
        assert_eq!(parse(Value::str("user@bücher.example")).unwrap().len(), 1);
        assert_eq!(parse(Value::str(r#""john doe"@example.com"#)).unwrap().len(), 1);
    }
}
