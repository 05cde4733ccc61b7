//! The JavaScript values the binding hands over, before validation.
//!
//! The N-API layer converts whatever the user passed (a TAS `mail.smtp` object, a message)
//! into this tree without judging it; [`crate::config`] and [`crate::message`] then
//! validate it here, where every error can name the exact field path and what was found
//! there. `undefined` is kept apart from a missing key because in a TAS `local.js` it
//! almost always means an environment variable is not set.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

/// Bytes owned by the core (the binding copies a JS `Buffer` at the call, see
/// `src/js_input.rs`), shared between the message parts and the send without further
/// copies: a 25 MB attachment is held once.
#[derive(Clone)]
pub struct ByteBuf(Arc<Vec<u8>>);

impl Deref for ByteBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for ByteBuf {
    fn from(bytes: Vec<u8>) -> Self {
        ByteBuf(Arc::new(bytes))
    }
}

impl PartialEq for ByteBuf {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// A JavaScript value, as far as configuration and messages need one.
#[derive(Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    /// A `Buffer`, `Uint8Array` (or other view) or `ArrayBuffer`, copied at the call.
    Bytes(ByteBuf),
    /// A `Date`, as milliseconds since the epoch.
    Date(f64),
    Array(Vec<Value>),
    /// A plain object, keys in insertion order.
    Object(Vec<(String, Value)>),
    /// Anything else (function, symbol, stream, ...): only its type name is kept.
    Other(String),
}

impl Value {
    /// Builds an object from pairs; handy in tests.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn str(value: impl Into<String>) -> Value {
        Value::String(value.into())
    }

    /// The value of `key` when this is an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(pairs) => pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The type name a JavaScript developer would use for this value.
    pub fn type_name(&self) -> &str {
        match self {
            Value::Undefined => "undefined",
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Bytes(_) => "Buffer",
            Value::Date(_) => "Date",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Other(name) => name,
        }
    }
}

/// Shows the value for an error message: short, and never the bytes of a Buffer.
/// Callers never describe a secret field with it.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => {
                let shown: String = s.chars().take(60).collect();
                let ellipsis = if shown.len() < s.len() { "..." } else { "" };
                write!(f, "{:?}", format!("{shown}{ellipsis}"))
            }
            Value::Number(n) => write!(f, "{n}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Bytes(bytes) => write!(f, "a Buffer of {} bytes", bytes.len()),
            Value::Array(items) => write!(f, "an array of {} items", items.len()),
            other => f.write_str(match other.type_name() {
                "object" => "an object",
                "Date" => "a Date",
                name => name,
            }),
        }
    }
}

/// A value found (or not) at a path such as `mail.smtp.oauth2.clientId`.
#[derive(Clone)]
pub struct Field<'a> {
    path: String,
    value: Option<&'a Value>,
    kind: ErrorKind,
}

/// What an error message says about a field that is absent or `undefined`.
const UNDEFINED_NOTE: &str =
    "it is undefined: if local.js reads it from process.env, is that environment variable set?";

impl<'a> Field<'a> {
    /// The root of a tree; `kind` is the kind of every error about it
    /// (`Config` for the transport config, `Message` for a message).
    pub fn root(path: &str, value: &'a Value, kind: ErrorKind) -> Self {
        Field {
            path: path.to_string(),
            value: Some(value),
            kind,
        }
    }

    /// The child `key` of this object (absent when this is not an object).
    pub fn child(&self, key: &str) -> Field<'a> {
        Field {
            path: format!("{}.{key}", self.path),
            value: self.value.and_then(|value| value.get(key)),
            kind: self.kind,
        }
    }

    /// The full path of this field.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The value, unless it is absent or `undefined`.
    pub fn value(&self) -> Option<&'a Value> {
        match self.value {
            None | Some(Value::Undefined) => None,
            Some(value) => Some(value),
        }
    }

    pub fn is_present(&self) -> bool {
        !matches!(self.value, None | Some(Value::Undefined) | Some(Value::Null))
    }

    pub fn error(&self, problem: impl fmt::Display) -> Error {
        Error::new(self.kind, format!("{} {problem}", self.path))
    }

    /// "`path` is missing", with the environment-variable note for `undefined`.
    pub fn missing(&self) -> Error {
        match self.value {
            Some(Value::Undefined) => self.error(format!("is missing ({UNDEFINED_NOTE})")),
            Some(Value::Null) => self.error("is missing (it is null)"),
            _ => self.error("is missing"),
        }
    }

    pub fn wrong_type(&self, expected: &str) -> Error {
        match self.value() {
            Some(value) => self.error(format!("must be {expected}, got {value:?}")),
            None => self.missing(),
        }
    }

    /// A required non-empty string.
    pub fn string(&self) -> Result<&'a str> {
        match self.value() {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.error("is empty")),
            None | Some(Value::Null) => Err(self.missing()),
            Some(_) => Err(self.wrong_type("a string")),
        }
    }

    /// A required secret string: like [`Field::string`], but an error never shows the value.
    pub fn secret(&self) -> Result<&'a str> {
        match self.value() {
            Some(Value::String(s)) if !s.is_empty() => Ok(s),
            Some(Value::String(_)) => Err(self.error("is empty")),
            None | Some(Value::Null) => Err(self.missing()),
            Some(other) => Err(self.error(format!("must be a string, got {}", other.type_name()))),
        }
    }

    /// An optional string: absent, `undefined` and `null` give `None`.
    pub fn optional_string(&self) -> Result<Option<&'a str>> {
        if self.is_present() {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn optional_bool(&self) -> Result<Option<bool>> {
        match self.value() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(self.wrong_type("true or false")),
        }
    }

    /// An optional whole number in `range`; numeric strings such as `"587"` (what
    /// `process.env` gives) are accepted.
    pub fn optional_integer(&self, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>> {
        let expected = format!("a number between {} and {}", range.start(), range.end());
        let number = match self.value() {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => *n,
            Some(Value::String(s)) if !s.trim().is_empty() => match s.trim().parse::<f64>() {
                Ok(n) => n,
                Err(_) => return Err(self.wrong_type(&expected)),
            },
            Some(_) => return Err(self.wrong_type(&expected)),
        };
        if number.fract() != 0.0 || number < *range.start() as f64 || number > *range.end() as f64 {
            return Err(self.wrong_type(&expected));
        }
        Ok(Some(number as u64))
    }

    /// Checks text that goes into a header: a header line may not exceed 998 bytes, and
    /// a word without spaces cannot be folded, so no word may come near that.
    pub fn check_header_text(&self, text: &str) -> Result<()> {
        const MAX_WORD: usize = 900;
        match text.split_whitespace().map(str::len).max() {
            Some(longest) if longest > MAX_WORD => Err(self.error(format!(
                "has a word of {longest} characters without a space: header lines are limited to 998 bytes"
            ))),
            _ => Ok(()),
        }
    }

    /// An optional object; anything else is an error.
    pub fn optional_object(&self) -> Result<Option<&'a Value>> {
        match self.value() {
            None | Some(Value::Null) => Ok(None),
            Some(value @ Value::Object(_)) => Ok(Some(value)),
            Some(_) => Err(self.wrong_type("an object")),
        }
    }

    /// The items of an array (paths `field[0]`, `field[1]`, ...), or the field itself as a
    /// one-item list when it is not an array; empty when absent.
    pub fn items(&self) -> Vec<Field<'a>> {
        match self.value() {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| Field {
                    path: format!("{}[{index}]", self.path),
                    value: Some(item),
                    kind: self.kind,
                })
                .collect(),
            Some(_) => vec![self.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: Vec<(&str, Value)>) -> Value {
        Value::object(pairs)
    }

    #[test]
    fn missing_and_undefined_name_the_path() {
        let value = config(vec![("clientId", Value::Undefined)]);
        let root = Field::root("mail.smtp.oauth2", &value, ErrorKind::Config);
        let undefined = root.child("clientId").string().unwrap_err();
        assert_eq!(undefined.code(), "ECONFIG");
        assert!(undefined
            .message()
            .starts_with("mail.smtp.oauth2.clientId is missing"));
        assert!(undefined.message().contains("environment variable"));
        let absent = root.child("clientSecret").secret().unwrap_err();
        assert_eq!(absent.message(), "mail.smtp.oauth2.clientSecret is missing");
    }

    #[test]
    fn integers_report_what_they_got() {
        let value = config(vec![
            ("port", Value::str("abc")),
            ("big", Value::Number(70000.0)),
            ("env", Value::str("587")),
        ]);
        let root = Field::root("mail.smtp", &value, ErrorKind::Config);
        let err = root.child("port").optional_integer(1..=65535).unwrap_err();
        assert_eq!(
            err.message(),
            r#"mail.smtp.port must be a number between 1 and 65535, got "abc""#
        );
        assert!(root.child("big").optional_integer(1..=65535).is_err());
        assert_eq!(root.child("env").optional_integer(1..=65535).unwrap(), Some(587));
        assert_eq!(root.child("none").optional_integer(1..=65535).unwrap(), None);
    }

    #[test]
    fn secrets_are_never_echoed() {
        let value = config(vec![("clientSecret", Value::Number(12345.0))]);
        let root = Field::root("mail.smtp.oauth2", &value, ErrorKind::Config);
        let err = root.child("clientSecret").secret().unwrap_err();
        assert!(!err.message().contains("12345"));
    }

    #[test]
    fn items_index_their_paths() {
        let value = config(vec![("to", Value::Array(vec![Value::str("a@b.c"), Value::Null]))]);
        let root = Field::root("message", &value, ErrorKind::Message);
        let items = root.child("to").items();
        assert_eq!(items[1].path(), "message.to[1]");
        assert_eq!(root.child("cc").items().len(), 0);
    }
}
