//! Helpers shared by the config tests: the TAS seed config and ways to change it.

use super::*;
use crate::error::Result;
use crate::input::Value;

pub(super) fn tas_config() -> Value {
    Value::object([
        ("type", Value::str("oauth2")),
        ("host", Value::str("smtp.office365.com")),
        ("port", Value::Number(587.0)),
        ("auth", Value::object([("user", Value::str("tas@contoso.com"))])),
        (
            "oauth2",
            Value::object([
                (
                    "host",
                    Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
                ),
                ("grantType", Value::str("client_credentials")),
                ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
                ("clientSecret", Value::str("canary-secret")),
                ("scope", Value::str("https://outlook.office365.com/.default")),
            ]),
        ),
    ])
}

pub(super) fn without(value: &Value, path: &[&str]) -> Value {
    let Value::Object(pairs) = value else {
        unreachable!()
    };
    let mut pairs = pairs.clone();
    if path.len() == 1 {
        pairs.retain(|(k, _)| k != path[0]);
    } else {
        for (k, v) in pairs.iter_mut() {
            if k == path[0] {
                *v = without(v, &path[1..]);
            }
        }
    }
    Value::Object(pairs)
}

pub(super) fn set(value: &Value, path: &[&str], new: Value) -> Value {
    let Value::Object(pairs) = value else {
        unreachable!()
    };
    let mut pairs = pairs.clone();
    match pairs.iter_mut().find(|(k, _)| k == path[0]) {
        Some((_, v)) if path.len() == 1 => *v = new,
        Some((_, v)) => *v = set(v, &path[1..], new),
        None => pairs.push((path[0].to_string(), new)),
    }
    Value::Object(pairs)
}

pub(super) fn error_of(value: &Value) -> String {
    let err = TransportConfig::from_value(value, None).unwrap_err();
    assert_eq!(err.code(), "ECONFIG");
    err.message().to_string()
}

pub(super) fn oauth2_of(value: &Value) -> OAuth2Config {
    match TransportConfig::from_value(value, None).unwrap().auth {
        Auth::OAuth2 { oauth2, .. } => *oauth2,
        _ => panic!("not oauth2"),
    }
}

/// A PEM block (its DER is only checked when a TLS client is built, not here).
pub(super) const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";

pub(super) fn with(value: &Value, key: &str, field: Value) -> Value {
    let Value::Object(pairs) = value else {
        unreachable!()
    };
    let mut pairs: Vec<(String, Value)> = pairs.iter().filter(|(k, _)| k != key).cloned().collect();
    pairs.push((key.to_string(), field));
    Value::Object(pairs)
}

pub(super) fn parse_with(value: &Value, variables: &[(&str, &str)]) -> Result<TransportConfig> {
    let variables: Vec<(String, String)> = variables
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |name: &str| variables.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    TransportConfig::from_inputs(
        value,
        &ConfigInputs {
            extra_ca_file: None,
            variable: &lookup,
            client_assertion: None,
        },
    )
}

pub(super) fn oauth2_with(value: &Value, variables: &[(&str, &str)]) -> OAuth2Config {
    match parse_with(value, variables).unwrap().auth {
        Auth::OAuth2 { oauth2, .. } => *oauth2,
        _ => panic!("not oauth2"),
    }
}

pub(super) const WORKLOAD_IDENTITY: [(&str, &str); 3] = [
    (
        "AZURE_FEDERATED_TOKEN_FILE",
        "/var/run/secrets/azure/tokens/azure-identity-token",
    ),
    ("AZURE_CLIENT_ID", "env-client"),
    ("AZURE_TENANT_ID", "env-tenant"),
];
