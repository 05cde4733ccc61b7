//! nodemailer's `normalizeHeaderKey` for the header names this builder writes. The function
//! is JavaScript and the builder runs without access to it, so `transport.js` calls it for
//! each name the builder can write and passes the results here as an object (name -> name
//! written); they are applied to every header line of the message and of its parts.

use crate::error::Result;
use crate::input::{Field, Value};

#[derive(Debug, Default)]
pub(super) struct HeaderNames {
    /// Lowercased name -> the name to write.
    renamed: Vec<(String, String)>,
}

impl HeaderNames {
    /// The object `transport.js` made of `normalizeHeaderKey`; a result that is not a header
    /// name (empty, a space, a colon, a control character) is refused naming the field, as
    /// it would end or forge the header line.
    pub(super) fn parse(field: &Field) -> Result<Self> {
        let pairs = match field.value() {
            None | Some(Value::Null) => return Ok(HeaderNames::default()),
            Some(Value::Object(pairs)) => pairs,
            Some(_) => return Err(field.wrong_type("a function (key, value) => key")),
        };
        let mut renamed = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let Value::String(written) = value else {
                return Err(field.wrong_type("a function (key, value) => key"));
            };
            let valid = !written.is_empty() && written.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if !valid {
                return Err(field.error(format!(
                    "returned {written:?} for {name}, which is not a header name (printable ASCII without spaces or colons)"
                )));
            }
            renamed.push((name.to_ascii_lowercase(), written.clone()));
        }
        Ok(HeaderNames { renamed })
    }

    /// `block` (header lines ending in CRLF) with each field name renamed; continuation
    /// lines and values are kept as they are.
    pub(super) fn apply(&self, block: &[u8]) -> Vec<u8> {
        if self.renamed.is_empty() {
            return block.to_vec();
        }
        let mut out = Vec::with_capacity(block.len() + 16);
        for line in block.split_inclusive(|&b| b == b'\n') {
            let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
            let colon = line.iter().position(|&b| b == b':');
            let renamed = match (folded, colon) {
                (false, Some(colon)) => {
                    let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
                    self.renamed
                        .iter()
                        .find(|(from, _)| *from == name)
                        .map(|(_, to)| (colon, to))
                }
                _ => None,
            };
            match renamed {
                Some((colon, to)) => {
                    out.extend_from_slice(to.as_bytes());
                    out.extend_from_slice(&line[colon..]);
                }
                None => out.extend_from_slice(line),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn names(pairs: &[(&str, &str)]) -> Value {
        Value::object(pairs.iter().map(|(k, v)| (*k, Value::str(*v))))
    }

    #[test]
    fn names_are_renamed_case_insensitively_and_values_kept() {
        let value = names(&[("Content-Type", "CONTENT-TYPE"), ("Subject", "subject")]);
        let parsed =
            HeaderNames::parse(&Field::root("normalizeHeaderKey", &value, ErrorKind::Message)).unwrap();
        let block = b"content-type: text/plain;\r\n charset=utf-8\r\nSubject: a: b\r\nFrom: x@y\r\n";
        assert_eq!(
            String::from_utf8(parsed.apply(block)).unwrap(),
            "CONTENT-TYPE: text/plain;\r\n charset=utf-8\r\nsubject: a: b\r\nFrom: x@y\r\n"
        );
    }

    #[test]
    fn a_result_that_would_forge_a_header_is_refused() {
        for bad in ["X-A: injected", "X A", "", "X\r\nBcc"] {
            let value = names(&[("Subject", bad)]);
            let err = HeaderNames::parse(&Field::root("normalizeHeaderKey", &value, ErrorKind::Message))
                .unwrap_err();
            assert_eq!(err.code(), "EMESSAGE");
            assert!(
                err.message().starts_with("normalizeHeaderKey returned"),
                "{}",
                err.message()
            );
        }
    }
}
