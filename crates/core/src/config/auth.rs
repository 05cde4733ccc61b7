//! `auth` and `type`: basic auth (TAS's `type: 'login'`), the TAS OAuth2 shape (`type:
//! 'oauth2'` with an `oauth2` block), nodemailer's own OAuth2 `auth` shape, a fixed
//! `auth.accessToken`, and `authMethod`.

use std::time::{Duration, UNIX_EPOCH};

use super::oauth2::{
    parse_oauth2, CLOUDS, DEFAULT_ASSERTION_TIMEOUT, DEFAULT_RENEW_BEFORE, DEFAULT_TOKEN_TIMEOUT,
};
use super::{ConfigInputs, Grant, OAuth2Config};
use crate::error::{Error, ErrorKind, Result};
use crate::hints::{Hint, HintContext};
use crate::input::{Field, Value};
use crate::oauth::{ClientCredential, FixedToken};
use crate::secret::Secret;

/// nodemailer's `authMethod`: accepted when it names the method this config uses.
pub(super) fn check_auth_method(field: &Field, auth: &Auth) -> Result<()> {
    let Some(method) = field.optional_string()? else {
        return Ok(());
    };
    let method = method.trim().to_ascii_uppercase();
    let fits = match auth {
        Auth::OAuth2 { .. } => method == "XOAUTH2",
        Auth::Password { .. } => method == "PLAIN" || method == "LOGIN",
        Auth::None => false,
    };
    match fits {
        true => Ok(()),
        false => Err(field.error(format!(
            "{method:?} does not fit this config: type 'oauth2' uses XOAUTH2, auth.user + auth.pass use PLAIN or LOGIN (whichever the server offers)"
        ))),
    }
}

#[derive(Debug, Clone)]
pub enum Auth {
    /// XOAUTH2 with a token obtained by the client_credentials grant.
    OAuth2 { user: String, oauth2: Box<OAuth2Config> },
    /// PLAIN or LOGIN with a password (TAS's basic configuration).
    Password { user: String, password: Secret },
    /// No AUTH at all (a relay that trusts the network).
    None,
}

impl Auth {
    /// The authenticated mailbox, the last fallback for `from`.
    pub fn user(&self) -> Option<&str> {
        match self {
            Auth::OAuth2 { user, .. } | Auth::Password { user, .. } => Some(user),
            Auth::None => None,
        }
    }
}

pub(super) fn parse_auth(root: &Field, inputs: &ConfigInputs, graph: bool) -> Result<Auth> {
    let auth = root.child("auth");
    auth.optional_object()?;
    let nodemailer_oauth2 = auth
        .child("type")
        .optional_string()?
        .is_some_and(|kind| kind.eq_ignore_ascii_case("oauth2"));
    if nodemailer_oauth2 && !root.child("type").is_present() {
        return parse_nodemailer_oauth2(&auth, inputs, graph);
    }
    let is_oauth2 = match root.child("type").optional_string()? {
        Some(kind) if kind.eq_ignore_ascii_case("oauth2") => true,
        Some("login") | None => false,
        Some(_) => return Err(root.child("type").wrong_type("'oauth2' or 'login'")),
    };
    if is_oauth2 {
        let user = auth.child("user").string()?.trim().to_string();
        let oauth2 = parse_oauth2(&root.child("oauth2"), inputs, graph)?;
        return Ok(Auth::OAuth2 {
            user,
            oauth2: Box::new(oauth2),
        });
    }
    // nodemailer ignores oauth2 settings without `type: 'oauth2'`; with no password either,
    // they were meant to be used.
    let untyped = root.child("type").optional_string()?.is_none();
    if untyped && root.child("oauth2").is_present() && !auth.child("pass").is_present() {
        return Err(root
            .child("type")
            .error("is undefined, not 'oauth2': the mail.smtp.oauth2 settings are ignored")
            .with_hint(Hint::render(
                "config.oauth2_without_type",
                &HintContext::default(),
            )));
    }
    if !auth.is_present() {
        return Ok(Auth::None);
    }
    let user = auth.child("user").string()?.trim().to_string();
    let password = auth.child("pass").secret()?;
    Ok(Auth::Password {
        user,
        password: Secret::new(password),
    })
}

/// The scope of Exchange Online in the global cloud.
const EXCHANGE_SCOPE: &str = "https://outlook.office365.com/.default";

/// nodemailer's own OAuth2 shape, `auth: { type: 'OAuth2', user, clientId, clientSecret,
/// accessUrl, refreshToken?, scope?, accessToken?, expires? }`: the refresh_token grant when
/// `refreshToken` is given, else client_credentials (the scope defaults to Exchange Online's).
/// A fixed `accessToken` is used first, until `expires` (ms since the epoch) or until
/// refused; alone (no `clientSecret`, no `refreshToken`) it is never renewed. A Google
/// service account is refused, naming the field. `clientSecret` is its one credential: the
/// other kinds of `oauth2` have no place in this shape.
fn parse_nodemailer_oauth2(auth: &Field, inputs: &ConfigInputs, graph: bool) -> Result<Auth> {
    for key in ["serviceClient", "privateKey"] {
        if auth.child(key).is_present() {
            return Err(auth.child(key).error(
                "is not supported: give auth.refreshToken (a user's token) or nothing (the app's own, client_credentials) with auth.clientId + auth.clientSecret + auth.accessUrl, or use the TAS shape (type: 'oauth2' with oauth2: { ... })",
            ));
        }
    }
    let fixed_token = parse_fixed_token(auth)?;
    let renewable = auth.child("clientSecret").is_present() || auth.child("refreshToken").is_present();
    if let (Some(fixed_token), false) = (&fixed_token, renewable) {
        let user = auth.child("user").string()?.trim().to_string();
        return Ok(Auth::OAuth2 {
            user,
            oauth2: Box::new(fixed_token_only(fixed_token.clone(), auth)?),
        });
    }
    if auth.child("expires").is_present() && fixed_token.is_none() {
        return Err(auth
            .child("expires")
            .error("is the expiry of auth.accessToken, which is missing"));
    }
    let refresh_token = match auth.child("refreshToken").is_present() {
        true => Some(Secret::new(auth.child("refreshToken").secret()?)),
        false => None,
    };
    let user = auth.child("user").string()?.trim().to_string();
    auth.child("clientSecret").secret()?;
    let mut mapped = Vec::new();
    for (from, to) in [
        ("accessUrl", "host"),
        ("clientId", "clientId"),
        ("clientSecret", "clientSecret"),
        ("scope", "scope"),
    ] {
        if let Some(value) = auth.child(from).value() {
            mapped.push((to.to_string(), value.clone()));
        }
    }
    if !auth.child("scope").is_present() && !graph {
        mapped.push(("scope".to_string(), Value::str(EXCHANGE_SCOPE)));
    }
    let mapped = Value::Object(mapped);
    let oauth2 = parse_oauth2(
        &Field::root(auth.path(), &mapped, ErrorKind::Config),
        inputs,
        graph,
    )
    .map_err(|err| {
        let host = format!("{}.host ", auth.path());
        match err.message().strip_prefix(&host) {
            Some(rest) => Error::config(format!("{}.accessUrl {rest}", auth.path())),
            None => err,
        }
    })?;
    let mut oauth2 = oauth2;
    if let Some(refresh_token) = refresh_token {
        oauth2.grant = Grant::RefreshToken(refresh_token);
    }
    oauth2.fixed_token = fixed_token;
    Ok(Auth::OAuth2 {
        user,
        oauth2: Box::new(oauth2),
    })
}

/// `auth.accessToken` and its `auth.expires` (ms since the epoch; a `Date` arrives as that).
fn parse_fixed_token(auth: &Field) -> Result<Option<FixedToken>> {
    if !auth.child("accessToken").is_present() {
        return Ok(None);
    }
    let value = Secret::new(auth.child("accessToken").secret()?);
    // Up to the year 9999, as a Date can be.
    let expires = auth
        .child("expires")
        .optional_integer(0..=253_402_300_799_999)?
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    Ok(Some(FixedToken { value, expires }))
}

/// The config of a fixed `auth.accessToken` with nothing to renew it: no token request is
/// ever made, so the endpoint fields only keep their defaults.
fn fixed_token_only(fixed_token: FixedToken, auth: &Field) -> Result<OAuth2Config> {
    let client_id = auth.child("clientId").optional_string()?.unwrap_or_default();
    Ok(OAuth2Config {
        token_url: reqwest::Url::parse(&format!("{}/organizations/oauth2/v2.0/token", CLOUDS[0].1))
            .expect("a valid constant URL"),
        client_id: client_id.trim().to_string(),
        credential: ClientCredential::NoRenewal,
        grant: Grant::ClientCredentials,
        scope: EXCHANGE_SCOPE.to_string(),
        tenant_id: None,
        proxy: None,
        renew_before: DEFAULT_RENEW_BEFORE,
        timeout: DEFAULT_TOKEN_TIMEOUT,
        extra_ca: Vec::new(),
        failure_cache: Duration::ZERO,
        secret_trimmed: false,
        assertion_timeout: DEFAULT_ASSERTION_TIMEOUT,
        credential_environment: Vec::new(),
        fixed_token: Some(fixed_token),
        rbac: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn basic_auth_without_type() {
        let config = without(&without(&tas_config(), &["type"]), &["oauth2"]);
        let config = set(&config, &["auth", "pass"], Value::str("hunter2"));
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        assert!(matches!(parsed.auth, Auth::Password { .. }));
        let missing = without(&without(&tas_config(), &["type"]), &["oauth2"]);
        assert_eq!(error_of(&missing), "mail.smtp.auth.pass is missing");
    }

    #[test]
    fn nodemailer_oauth2_auth_is_the_client_credentials_grant() {
        let config = Value::object([
            ("host", Value::str("smtp.office365.com")),
            ("port", Value::Number(587.0)),
            (
                "auth",
                Value::object([
                    ("type", Value::str("OAuth2")),
                    ("user", Value::str("tas@contoso.com")),
                    ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                    ("clientSecret", Value::str("canary-secret")),
                    (
                        "accessUrl",
                        Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                    ),
                ]),
            ),
        ]);
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        let Auth::OAuth2 { user, oauth2 } = &parsed.auth else {
            panic!("not OAuth2: {:?}", parsed.auth)
        };
        assert_eq!(user, "tas@contoso.com");
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.com/t/oauth2/v2.0/token"
        );
        assert_eq!(oauth2.scope, EXCHANGE_SCOPE);

        let Value::Object(mut pairs) = config.clone() else {
            unreachable!()
        };
        let Value::Object(auth) = &mut pairs[2].1 else {
            unreachable!()
        };
        auth.retain(|(key, _)| key != "accessUrl");
        let err = TransportConfig::from_value(&Value::Object(pairs.clone()), None).unwrap_err();
        assert_eq!(err.message(), "mail.smtp.auth.accessUrl is missing");
        let Value::Object(auth) = &mut pairs[2].1 else {
            unreachable!()
        };
        auth.push(("expires".into(), Value::Number(1_800_000_000_000.0)));
        let err = TransportConfig::from_value(&Value::Object(pairs.clone()), None).unwrap_err();
        assert_eq!(
            err.message(),
            "mail.smtp.auth.expires is the expiry of auth.accessToken, which is missing"
        );
    }

    #[test]
    fn a_fixed_access_token_alone_is_never_renewed() {
        let auth = |extra: Vec<(&str, Value)>| {
            let mut fields = vec![
                ("type", Value::str("OAuth2")),
                ("user", Value::str("tas@contoso.com")),
                ("accessToken", Value::str("canary-access")),
            ];
            fields.extend(extra);
            Value::object([
                ("host", Value::str("smtp.office365.com")),
                ("auth", Value::object(fields)),
            ])
        };
        let parsed =
            TransportConfig::from_value(&auth(vec![("expires", Value::Number(1_800_000_000_000.0))]), None)
                .unwrap();
        let Auth::OAuth2 { oauth2, .. } = &parsed.auth else {
            panic!("not OAuth2")
        };
        assert!(matches!(oauth2.credential, ClientCredential::NoRenewal));
        let fixed = oauth2.fixed_token.as_ref().unwrap();
        assert_eq!(fixed.value.expose(), "canary-access");
        assert_eq!(
            fixed.expires,
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert!(!format!("{parsed:?}").contains("canary"));
        // With a way to renew, the fixed token comes first and the grant after it.
        let renewable = TransportConfig::from_value(
            &auth(vec![
                ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                ("clientSecret", Value::str("canary-secret")),
                ("refreshToken", Value::str("canary-refresh")),
                (
                    "accessUrl",
                    Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                ),
            ]),
            None,
        )
        .unwrap();
        let Auth::OAuth2 { oauth2, .. } = &renewable.auth else {
            panic!("not OAuth2")
        };
        assert!(matches!(oauth2.credential, ClientCredential::Secret(_)));
        assert!(matches!(oauth2.grant, Grant::RefreshToken(_)));
        assert!(oauth2.fixed_token.is_some());
        let message = error_of(&auth(vec![("expires", Value::str("tomorrow"))]));
        assert!(message.starts_with("mail.smtp.auth.expires must be"), "{message}");
        assert!(!message.contains("canary"));
        let message = error_of(&set(&auth(vec![]), &["auth", "accessToken"], Value::Number(5.0)));
        assert!(
            message.starts_with("mail.smtp.auth.accessToken must be"),
            "{message}"
        );
    }
}
