//! STARTTLS on a plain connection: `requireTLS`, `ignoreTLS`, `opportunisticTLS`.

use super::Auth;
use crate::error::Result;
use crate::input::Field;

/// STARTTLS on a plain connection (nodemailer's `requireTLS` / `ignoreTLS`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartTls {
    /// Used when offered; required when there are credentials (the default).
    WhenOffered,
    /// Required even without credentials (`requireTLS: true`).
    Required,
    /// Never used (`ignoreTLS: true`, only without credentials).
    Never,
}

/// nodemailer's `requireTLS`, `ignoreTLS` and `opportunisticTLS`, never weaker than the
/// rule that credentials only cross an encrypted connection.
pub(super) fn parse_starttls(root: &Field, auth: &Auth) -> Result<StartTls> {
    let has_credentials = !matches!(auth, Auth::None);
    if root.child("opportunisticTLS").optional_bool()? == Some(true) {
        return Err(root.child("opportunisticTLS").error(
            "is not supported: a failed STARTTLS is never followed by a plaintext session (leave it out; STARTTLS is used whenever the server offers it)",
        ));
    }
    let require = root.child("requireTLS").optional_bool()?.unwrap_or(false);
    let ignore = root.child("ignoreTLS").optional_bool()?.unwrap_or(false);
    match (require, ignore) {
        (true, true) => Err(root
            .child("ignoreTLS")
            .error("cannot be true together with requireTLS")),
        (_, true) if has_credentials => Err(root
            .child("ignoreTLS")
            .error("cannot be true with credentials: AUTH is never sent over an unencrypted connection")),
        (_, true) => Ok(StartTls::Never),
        (true, false) => Ok(StartTls::Required),
        (false, false) => Ok(StartTls::WhenOffered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn nodemailer_tls_options_never_weaken_the_credential_rule() {
        let config = tas_config();
        let err =
            TransportConfig::from_value(&with(&config, "ignoreTLS", Value::Bool(true)), None).unwrap_err();
        assert_eq!(
            err.message(),
            "mail.smtp.ignoreTLS cannot be true with credentials: AUTH is never sent over an unencrypted connection"
        );
        let err = TransportConfig::from_value(&with(&config, "opportunisticTLS", Value::Bool(true)), None)
            .unwrap_err();
        assert!(err
            .message()
            .starts_with("mail.smtp.opportunisticTLS is not supported"));
        let required =
            TransportConfig::from_value(&with(&config, "requireTLS", Value::Bool(true)), None).unwrap();
        assert_eq!(required.starttls, StartTls::Required);
        let relay = Value::object([
            ("host", Value::str("relay.example.com")),
            ("ignoreTLS", Value::Bool(true)),
        ]);
        assert_eq!(
            TransportConfig::from_value(&relay, None).unwrap().starttls,
            StartTls::Never
        );
    }
}
