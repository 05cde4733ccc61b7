//! The credential of an `oauth2` block: exactly one of `clientSecret`, `privateKey`,
//! `clientAssertionFile`, `clientAssertion` or `managedIdentity`, or Azure Workload
//! Identity's environment variables when none is named.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::input::{Field, Value};
use crate::oauth::{CertificateCredential, ClientCredential, Identity};
use crate::secret::Secret;

/// The credentials an `oauth2` object may name; exactly one is used.
const CREDENTIAL_FIELDS: [&str; 5] = [
    "clientSecret",
    "privateKey",
    "clientAssertionFile",
    "clientAssertion",
    "managedIdentity",
];

/// Which credential an `oauth2` object names.
pub(super) enum Chosen<'a> {
    Secret,
    Certificate,
    File(&'a str),
    Callback,
    ManagedIdentity(Identity),
    /// None named, and Azure Workload Identity's variables are set.
    WorkloadIdentity(WorkloadIdentityEnv),
}

/// The variables the Azure Workload Identity webhook injects into a pod.
pub(super) struct WorkloadIdentityEnv {
    pub(super) token_file: String,
    pub(super) client_id: String,
    pub(super) tenant_id: String,
}

impl WorkloadIdentityEnv {
    fn from(variable: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let get = |name: &str| {
            variable(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        Some(WorkloadIdentityEnv {
            token_file: get("AZURE_FEDERATED_TOKEN_FILE")?,
            client_id: get("AZURE_CLIENT_ID")?,
            tenant_id: get("AZURE_TENANT_ID")?,
        })
    }
}

/// Exactly one credential: more is a conflict (`ECONFIG` naming them), none falls back to
/// Azure Workload Identity's environment variables, else lists the choices.
pub(super) fn choose_credential<'a>(
    field: &Field<'a>,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Result<Chosen<'a>> {
    // `managedIdentity: false` names no credential.
    let named: Vec<&str> = CREDENTIAL_FIELDS
        .into_iter()
        .filter(|name| {
            let child = field.child(name);
            child.is_present() && !matches!(child.value(), Some(Value::Bool(false)))
        })
        .collect();
    match named.as_slice() {
        [] => match WorkloadIdentityEnv::from(variable) {
            Some(env) => Ok(Chosen::WorkloadIdentity(env)),
            None => Err(no_credential(field)),
        },
        ["clientSecret"] => Ok(Chosen::Secret),
        ["privateKey"] => Ok(Chosen::Certificate),
        ["clientAssertionFile"] => {
            let file = field.child("clientAssertionFile");
            let path = file.string()?.trim();
            // The assertion itself given by mistake would be echoed as "the file <path>".
            if path.starts_with("eyJ") && path.matches('.').count() >= 2 && !path.contains('/') {
                return Err(file.error(
                    "looks like an assertion (a JWT), not a file path: give the path of the file the platform writes, or the assertion through clientAssertion",
                ));
            }
            Ok(Chosen::File(path))
        }
        ["clientAssertion"] => Ok(Chosen::Callback),
        ["managedIdentity"] => {
            parse_managed_identity(&field.child("managedIdentity")).map(Chosen::ManagedIdentity)
        }
        several => Err(field.error(format!(
            "names more than one credential ({}): keep exactly one",
            several.join(", ")
        ))),
    }
}

/// No credential at all: `clientSecret` is missing (with the note on `undefined`, which is
/// usually an unset environment variable), and the alternatives are listed.
fn no_credential(field: &Field) -> Error {
    let missing = field.child("clientSecret").missing();
    Error::config(format!(
        "{}; give exactly one credential: clientSecret, privateKey (with certificate or thumbprint), clientAssertionFile, clientAssertion or managedIdentity (or set AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID)",
        missing.message()
    ))
}

/// `managedIdentity: true` (system-assigned) or `{ clientId }`, `{ objectId }`,
/// `{ resourceId }` (user-assigned).
fn parse_managed_identity(field: &Field) -> Result<Identity> {
    let expected = "true or an object with one of clientId, objectId or resourceId";
    match field.value() {
        Some(Value::Bool(true)) => Ok(Identity::SystemAssigned),
        Some(Value::Object(pairs)) => {
            let given: Vec<&str> = ["clientId", "objectId", "resourceId"]
                .into_iter()
                .filter(|name| field.child(name).is_present())
                .collect();
            if let Some((unknown, _)) = pairs
                .iter()
                .find(|(key, _)| !["clientId", "objectId", "resourceId"].contains(&key.as_str()))
            {
                return Err(field.child(unknown).error(
                    "is not an option of managedIdentity (it takes one of clientId, objectId or resourceId)",
                ));
            }
            let [name] = given.as_slice() else {
                return Err(field.wrong_type(expected));
            };
            let id = field.child(name).string()?.trim().to_string();
            Ok(match *name {
                "clientId" => Identity::ClientId(id),
                "objectId" => Identity::ObjectId(id),
                _ => Identity::ResourceId(id),
            })
        }
        _ => Err(field.wrong_type(expected)),
    }
}

/// A client secret, or a private key with its certificate (or thumbprint); and whether
/// the secret had surrounding whitespace (a secret read from a file keeps its newline),
/// which is removed as from every other field.
pub(super) fn parse_credential(field: &Field) -> Result<(ClientCredential, bool)> {
    let secret = field.child("clientSecret");
    let key = field.child("privateKey");
    if secret.is_present() || !key.is_present() {
        let given = secret.secret()?;
        let trimmed = given.trim();
        if trimmed.is_empty() {
            return Err(secret.error("is only whitespace"));
        }
        let credential = ClientCredential::Secret(Secret::new(trimmed));
        return Ok((credential, trimmed.len() != given.len()));
    }
    // The copies of the key made here are zeroed once the key is parsed.
    let pem = |child: &Field| -> Result<Option<Zeroizing<Vec<u8>>>> {
        match child.value() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(Zeroizing::new(text.as_bytes().to_vec()))),
            Some(Value::Bytes(bytes)) => Ok(Some(Zeroizing::new(bytes.to_vec()))),
            Some(other) => {
                Err(child.error(format!("must be PEM text or a Buffer, got {}", other.type_name())))
            }
        }
    };
    let key_pem = pem(&key)?.unwrap_or_default();
    let certificate = pem(&field.child("certificate"))?;
    let sha256 = field.child("thumbprintSha256").optional_string()?;
    let sha1 = field.child("thumbprint").optional_string()?;
    let credential = CertificateCredential::new(
        &key_pem,
        certificate.as_deref().map(|c| c.as_slice()),
        sha256,
        sha1,
    )
    .map_err(|(name, problem)| field.child(name).error(problem))?;
    Ok((
        ClientCredential::Certificate(std::sync::Arc::new(credential)),
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::oauth2::DEFAULT_ASSERTION_TIMEOUT;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn undefined_points_at_the_environment() {
        let config = set(&tas_config(), &["oauth2", "clientSecret"], Value::Undefined);
        let message = error_of(&config);
        assert!(
            message.starts_with("mail.smtp.oauth2.clientSecret is missing"),
            "{message}"
        );
        assert!(message.contains("environment variable"));
    }

    #[test]
    fn a_private_key_replaces_the_secret() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let config = set(&config, &["oauth2", "privateKey"], Value::str("not a key"));
        let config = set(&config, &["oauth2", "thumbprint"], Value::str("ab".repeat(20)));
        assert!(error_of(&config).starts_with("mail.smtp.oauth2.privateKey is not a PEM private key"));
    }

    #[test]
    fn a_client_secret_with_surrounding_whitespace_is_trimmed_and_noted() {
        let config = set(
            &tas_config(),
            &["oauth2", "clientSecret"],
            Value::str("  canary-secret\r\n"),
        );
        let oauth2 = oauth2_of(&config);
        let ClientCredential::Secret(secret) = &oauth2.credential else {
            panic!("not a secret")
        };
        assert_eq!((secret.expose(), oauth2.secret_trimmed), ("canary-secret", true));
        assert!(!oauth2_of(&tas_config()).secret_trimmed);
        let blank = set(&tas_config(), &["oauth2", "clientSecret"], Value::str(" \n"));
        assert_eq!(
            error_of(&blank),
            "mail.smtp.oauth2.clientSecret is only whitespace"
        );
    }

    #[test]
    fn more_than_one_credential_is_a_conflict_naming_them() {
        let both = set(&tas_config(), &["oauth2", "managedIdentity"], Value::Bool(true));
        let both = set(&both, &["oauth2", "clientAssertionFile"], Value::str("/t"));
        assert_eq!(
            error_of(&both),
            "mail.smtp.oauth2 names more than one credential (clientSecret, clientAssertionFile, managedIdentity): keep exactly one"
        );
        // `managedIdentity: false` names none.
        let off = set(&tas_config(), &["oauth2", "managedIdentity"], Value::Bool(false));
        assert!(parse_with(&off, &[]).is_ok());
    }

    #[test]
    fn a_token_file_is_a_credential_read_later() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let config = set(
            &config,
            &["oauth2", "clientAssertionFile"],
            Value::str(" /run/token \n"),
        );
        let oauth2 = oauth2_with(&config, &WORKLOAD_IDENTITY);
        let ClientCredential::AssertionFile(file) = &oauth2.credential else {
            panic!("not a file: {:?}", oauth2.credential)
        };
        assert_eq!(file.path, std::path::PathBuf::from("/run/token"));
        assert!(
            oauth2.credential_environment.is_empty(),
            "the config named the credential"
        );
        assert_eq!(oauth2.assertion_timeout, DEFAULT_ASSERTION_TIMEOUT);
    }

    #[test]
    fn workload_identity_variables_apply_only_when_no_credential_is_named() {
        let bare = without(
            &without(
                &without(&tas_config(), &["oauth2", "clientSecret"]),
                &["oauth2", "clientId"],
            ),
            &["oauth2", "host"],
        );
        let oauth2 = oauth2_with(&bare, &WORKLOAD_IDENTITY);
        assert_eq!(oauth2.credential.kind(), "clientAssertionFile");
        assert_eq!(
            (oauth2.client_id.as_str(), oauth2.tenant_id.as_deref()),
            ("env-client", Some("env-tenant"))
        );
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.com/env-tenant/oauth2/v2.0/token"
        );
        assert_eq!(
            oauth2.credential_environment,
            ["AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_ID", "AZURE_TENANT_ID"]
        );
        // The config's own client id and token URL win over the environment's.
        let explicit = without(&tas_config(), &["oauth2", "clientSecret"]);
        let oauth2 = oauth2_with(&explicit, &WORKLOAD_IDENTITY);
        assert_eq!(oauth2.client_id, "00000000-0000-0000-0000-000000000001");
        assert_eq!(oauth2.tenant_id.as_deref(), Some("t"));
        assert_eq!(oauth2.credential_environment, ["AZURE_FEDERATED_TOKEN_FILE"]);
        // A named credential wins; one missing variable means no fallback.
        assert_eq!(
            oauth2_with(&tas_config(), &WORKLOAD_IDENTITY).credential.kind(),
            "clientSecret"
        );
        let err = parse_with(&explicit, &WORKLOAD_IDENTITY[..2]).unwrap_err();
        assert!(
            err.message()
                .contains("clientAssertionFile, clientAssertion or managedIdentity"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn a_callback_needs_a_function_the_environment_can_call() {
        let config = without(&tas_config(), &["oauth2", "clientSecret"]);
        let text = set(&config, &["oauth2", "clientAssertion"], Value::str("eyJ.x.y"));
        assert!(error_of(&text).starts_with(
            "mail.smtp.oauth2.clientAssertion must be a function returning the client assertion"
        ));
        let function = set(
            &config,
            &["oauth2", "clientAssertion"],
            Value::Other("function".into()),
        );
        let with_callback = |value: &Value| {
            let callback = AssertionCallback::new(|| Box::pin(async { Ok(Secret::new("a.b.c")) }));
            let inputs = ConfigInputs {
                extra_ca_file: None,
                variable: &|_| None,
                client_assertion: Some(callback),
            };
            TransportConfig::from_inputs(value, &inputs).map(|parsed| match parsed.auth {
                Auth::OAuth2 { oauth2, .. } => oauth2,
                _ => panic!("not oauth2"),
            })
        };
        assert_eq!(
            with_callback(&function).unwrap().credential.kind(),
            "clientAssertion"
        );
        let quick = set(
            &function,
            &["oauth2", "clientAssertionTimeout"],
            Value::Number(250.0),
        );
        assert_eq!(
            with_callback(&quick).unwrap().assertion_timeout,
            Duration::from_millis(250)
        );
        let never = set(
            &function,
            &["oauth2", "clientAssertionTimeout"],
            Value::Number(0.0),
        );
        assert!(with_callback(&never)
            .unwrap_err()
            .message()
            .starts_with("mail.smtp.oauth2.clientAssertionTimeout must be a number"));
    }

    #[test]
    fn managed_identity_needs_no_client_id_or_token_url() {
        let bare = without(
            &without(
                &without(&tas_config(), &["oauth2", "clientSecret"]),
                &["oauth2", "clientId"],
            ),
            &["oauth2", "host"],
        );
        let bare = without(&bare, &["oauth2", "scope"]);
        let system = set(&bare, &["oauth2", "managedIdentity"], Value::Bool(true));
        let oauth2 = oauth2_with(&system, &[]);
        assert_eq!(
            oauth2.token_url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token"
        );
        assert_eq!(
            (oauth2.scope.as_str(), oauth2.client_id.as_str()),
            ("https://outlook.office365.com/.default", "")
        );
        let user = set(
            &bare,
            &["oauth2", "managedIdentity"],
            Value::object([("clientId", Value::str("mi-client"))]),
        );
        let local = set(
            &user,
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://127.0.0.1:9/token"),
        );
        let oauth2 = oauth2_with(
            &local,
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:8/"),
                ("IDENTITY_HEADER", "h"),
            ],
        );
        assert_eq!(
            (oauth2.token_url.as_str(), oauth2.client_id.as_str()),
            ("http://127.0.0.1:9/token", "mi-client")
        );
        let app_service = oauth2_with(
            &user,
            &[
                ("IDENTITY_ENDPOINT", "http://127.0.0.1:8/msi/token"),
                ("IDENTITY_HEADER", "h"),
            ],
        );
        assert_eq!(
            app_service.credential_environment,
            ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"]
        );
        for (value, message) in [
            (Value::str("yes"), "mail.smtp.oauth2.managedIdentity must be true or an object with one of clientId, objectId or resourceId"),
            (Value::object([("clientId", Value::str("a")), ("objectId", Value::str("b"))]), "mail.smtp.oauth2.managedIdentity must be true or an object"),
            (Value::object([("client_id", Value::str("a"))]), "mail.smtp.oauth2.managedIdentity.client_id is not an option of managedIdentity"),
        ] {
            let config = set(&bare, &["oauth2", "managedIdentity"], value);
            assert!(error_of(&config).starts_with(message), "{}", error_of(&config));
        }
        let remote = set(
            &system,
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://10.1.2.3/token"),
        );
        assert!(error_of(&remote).starts_with("mail.smtp.oauth2.managedIdentityEndpoint must be an https:// URL, or http:// on a loopback or link-local address"));
        let with_client = set(&system, &["oauth2", "clientId"], Value::str("c"));
        assert!(
            error_of(&with_client).starts_with("mail.smtp.oauth2.clientId is not used with managedIdentity")
        );
        let misplaced = set(
            &tas_config(),
            &["oauth2", "managedIdentityEndpoint"],
            Value::str("http://127.0.0.1:9/"),
        );
        assert_eq!(
            error_of(&misplaced),
            "mail.smtp.oauth2.managedIdentityEndpoint is only used with managedIdentity"
        );
        let err = parse_with(&system, &[("IDENTITY_ENDPOINT", "http://10.0.0.1/")]).unwrap_err();
        assert!(
            err.message()
                .starts_with("the environment variable IDENTITY_ENDPOINT must be an https:// URL"),
            "{}",
            err.message()
        );
    }
}
