//! The `oauth2` block: the token endpoint (`host`, `tenantId`, `cloud`), the scope, the
//! credential (see [`super::credential`]), and the token client's own `ca`, `proxy`,
//! timeouts, failure cache and `rbac`.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::credential::{choose_credential, parse_credential, Chosen};
use super::graph::graph_cloud;
use super::tls::{node_extra_ca, parse_ca};
use super::{timeout, ConfigInputs};
use crate::error::{Error, Result};
use crate::input::{Field, Value};
use crate::oauth::{
    managed_identity_url, AssertionFile, ClientCredential, FixedToken, Identity, ManagedIdentity,
};
use crate::secret::Secret;

pub(super) const DEFAULT_TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// msal-node treats a token as expired this long before it does (clamped for short tokens).
pub(super) const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(300);
/// How long a refused credential (a 4xx from the token endpoint) is reported without asking
/// again: long enough that a queue of sends fails fast on one request, short enough that a
/// fixed secret is picked up at once.
const DEFAULT_FAILURE_CACHE: Duration = Duration::from_secs(5);
/// How long an `oauth2.clientAssertion` callback may take.
pub(super) const DEFAULT_ASSERTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The OAuth2 grant of the token requests.
#[derive(Clone)]
pub enum Grant {
    /// The app's own token (`grant_type=client_credentials`): what a server uses.
    ClientCredentials,
    /// A user's delegated token, renewed with this refresh token (nodemailer's
    /// `auth.refreshToken`; `grant_type=refresh_token`).
    RefreshToken(Secret),
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::ClientCredentials => f.write_str("ClientCredentials"),
            Grant::RefreshToken(_) => f.write_str("RefreshToken(<redacted>)"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuth2Config {
    /// The token endpoint (`oauth2.host` in the TAS config, or built from `tenantId`).
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub credential: ClientCredential,
    /// How tokens are obtained: the app's own (client_credentials), or a user's refresh token.
    pub grant: Grant,
    pub scope: String,
    /// The tenant tokens must come from: `tenantId`, or the tenant id in the token URL.
    pub tenant_id: Option<String>,
    /// An explicit proxy for token requests (`HTTPS_PROXY`/`NO_PROXY` apply otherwise). A
    /// `Secret`: a proxy URL may carry a password.
    pub proxy: Option<Secret>,
    /// How long before expiry a token is renewed (clamped for short-lived tokens).
    pub renew_before: Duration,
    /// The whole token request, connect to last byte.
    pub timeout: Duration,
    /// Extra CA certificates (DER) the token client trusts besides Mozilla's roots: from
    /// `oauth2.ca` and `NODE_EXTRA_CA_CERTS`. Never `tls.ca`, and the token client always
    /// verifies (`tls.rejectUnauthorized` is an SMTP option).
    pub extra_ca: Vec<CertificateDer<'static>>,
    /// How long a credential refusal (4xx other than 429) is answered from memory;
    /// zero asks the endpoint every time.
    pub failure_cache: Duration,
    /// `clientSecret` had leading or trailing whitespace, which was removed.
    pub secret_trimmed: bool,
    /// `oauth2.rbac`: Exchange RBAC for Applications grants the mailbox, so the token carries
    /// no `SMTP.SendAsApp` role and none is expected.
    pub rbac: bool,
    /// How long an `oauth2.clientAssertion` callback may take.
    pub assertion_timeout: Duration,
    /// The environment variables that chose or completed the credential (empty when the
    /// config alone did).
    pub credential_environment: Vec<&'static str>,
    /// nodemailer's `auth.accessToken`: used first, until it expires or is refused.
    pub fixed_token: Option<FixedToken>,
}

/// The sovereign clouds: login host and Exchange scope (`oauth2.cloud`).
pub(super) const CLOUDS: [(&str, &str, &str); 3] = [
    (
        "global",
        "https://login.microsoftonline.com",
        "https://outlook.office365.com/.default",
    ),
    (
        "usgov",
        "https://login.microsoftonline.us",
        "https://outlook.office365.us/.default",
    ),
    (
        "china",
        "https://login.partner.microsoftonline.cn",
        "https://partner.outlook.cn/.default",
    ),
];

pub(super) fn parse_oauth2(field: &Field, inputs: &ConfigInputs, graph: bool) -> Result<OAuth2Config> {
    if field.optional_object()?.is_none() {
        return Err(field.missing());
    }
    let grant = field.child("grantType");
    if let Some(grant_type) = grant.optional_string()? {
        if grant_type != "client_credentials" {
            return Err(grant.wrong_type("'client_credentials' (the only grant a server can use)"));
        }
    }
    let chosen = choose_credential(field, inputs.variable)?;
    let (client_id, tenant_id, mut credential_environment) = match &chosen {
        Chosen::ManagedIdentity(_) => {
            for unused in ["clientId", "host"] {
                if field.child(unused).is_present() {
                    return Err(field.child(unused).error(
                        "is not used with managedIdentity (the token comes from the managed identity endpoint); for a user-assigned identity give managedIdentity: { clientId }",
                    ));
                }
            }
            (
                String::new(),
                optional_trimmed(&field.child("tenantId"))?,
                Vec::new(),
            )
        }
        Chosen::WorkloadIdentity(env) => {
            // The config wins over the environment: an explicit clientId or tenant is kept.
            let mut used = vec!["AZURE_FEDERATED_TOKEN_FILE"];
            let client_id = match optional_trimmed(&field.child("clientId"))? {
                Some(id) => id,
                None => {
                    used.push("AZURE_CLIENT_ID");
                    env.client_id.clone()
                }
            };
            let tenant_id = match optional_trimmed(&field.child("tenantId"))? {
                Some(tenant) => Some(tenant),
                None if field.child("host").is_present() => None,
                None => {
                    used.push("AZURE_TENANT_ID");
                    Some(env.tenant_id.clone())
                }
            };
            (client_id, tenant_id, used)
        }
        _ => (
            field.child("clientId").string()?.trim().to_string(),
            optional_trimmed(&field.child("tenantId"))?,
            Vec::new(),
        ),
    };
    let url_field = field.child("host");
    let (token_url, default_scope) = match (&chosen, url_field.is_present(), &tenant_id) {
        (Chosen::ManagedIdentity(_), _, _) => (None, cloud_authority(&field.child("cloud"))?.1),
        (_, true, _) => (Some(parse_token_url(&url_field)?), None),
        (_, false, Some(tenant)) => {
            let (authority, scope) = cloud_authority(&field.child("cloud"))?;
            let url = format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/'));
            let url = reqwest::Url::parse(&url).map_err(|err| {
                field
                    .child("tenantId")
                    .error(format!("does not make a valid token URL ({err})"))
            })?;
            (Some(url), scope)
        }
        (_, false, None) => return Err(url_field.missing()),
    };
    let default_scope = match graph {
        true => Some(graph_cloud(field)?.0),
        false => default_scope,
    };
    // `'.../' + process.env.TENANT + '/oauth2/...'` with the variable unset: no tenant has
    // that name, and the request would only earn AADSTS90002.
    if let Some(tenant) = token_url
        .as_ref()
        .and_then(tenant_in_url)
        .filter(|t| t == "undefined" || t == "null")
    {
        return Err(url_field.error(format!(
            "has no tenant: its tenant segment is '{tenant}' (an environment variable that was not set?)"
        )));
    }
    let scope = match (field.child("scope").optional_string()?, default_scope) {
        (Some(scope), _) => scope.trim().to_string(),
        (None, Some(scope)) => scope.to_string(),
        (None, None) => return Err(field.child("scope").missing()),
    };
    let renew_before = match field.child("renewBeforeSeconds").optional_integer(0..=86_400)? {
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_RENEW_BEFORE,
    };
    let failure_cache = match field.child("failureCacheSeconds").optional_integer(0..=3600)? {
        Some(seconds) => Duration::from_secs(seconds),
        None => DEFAULT_FAILURE_CACHE,
    };
    let mut extra_ca = parse_ca(&field.child("ca"))?;
    extra_ca.extend(node_extra_ca(inputs.extra_ca_file));
    let endpoint_field = field.child("managedIdentityEndpoint");
    if endpoint_field.is_present() && !matches!(chosen, Chosen::ManagedIdentity(_)) {
        return Err(endpoint_field.error("is only used with managedIdentity"));
    }
    let mut secret_trimmed = false;
    let credential = match chosen {
        Chosen::Secret | Chosen::Certificate => {
            let (credential, trimmed) = parse_credential(field)?;
            secret_trimmed = trimmed;
            credential
        }
        Chosen::File(path) => ClientCredential::AssertionFile(AssertionFile {
            path: path.into(),
            named_by: "mail.smtp.oauth2.clientAssertionFile",
        }),
        Chosen::WorkloadIdentity(env) => ClientCredential::AssertionFile(AssertionFile {
            path: env.token_file.into(),
            named_by: "AZURE_FEDERATED_TOKEN_FILE",
        }),
        Chosen::Callback => match (
            field.child("clientAssertion").value(),
            inputs.client_assertion.clone(),
        ) {
            (Some(Value::Other(kind)), Some(callback)) if kind == "function" => {
                ClientCredential::AssertionCallback(callback)
            }
            (given, _) => {
                // Never the value: a string here is most likely an assertion itself.
                let got = given.map(Value::type_name).unwrap_or("nothing");
                return Err(field.child("clientAssertion").error(format!(
                    "must be a function returning the client assertion (a string, or a Promise of one), got {got}"
                )));
            }
        },
        Chosen::ManagedIdentity(identity) => {
            let endpoint = match endpoint_field.optional_string()? {
                Some(text) => {
                    Some(managed_identity_url(text.trim()).map_err(|problem| endpoint_field.error(problem))?)
                }
                None => None,
            };
            let selected =
                ManagedIdentity::select(identity, endpoint, inputs.variable).map_err(|(name, problem)| {
                    if name == "managedIdentity" {
                        field.child(name).error(problem)
                    } else {
                        Error::config(format!(
                        "the environment variable {name} {problem} (mail.smtp.oauth2.managedIdentity uses it)"
                    ))
                    }
                })?;
            credential_environment = selected.environment();
            ClientCredential::ManagedIdentity(std::sync::Arc::new(selected))
        }
    };
    let token_url = match (&credential, token_url) {
        (ClientCredential::ManagedIdentity(identity), _) => identity.endpoint.clone(),
        (_, Some(url)) => url,
        (_, None) => return Err(url_field.missing()),
    };
    let proxy_field = field.child("proxy");
    let proxy = match proxy_field.optional_string()? {
        // A proxy would receive a plain-http request, secret included, over the network.
        Some(_) if token_url.scheme() != "https" => {
            return Err(proxy_field.error(
                "cannot be used with an http:// token URL: the client secret would reach the proxy unencrypted (loopback token endpoints are always reached directly)",
            ))
        }
        Some(text) => {
            // The parser's message never repeats the URL (which may hold a password).
            reqwest::Url::parse(text.trim()).map_err(|err| {
                proxy_field.error(format!("must be a proxy URL such as http://proxy:3128 ({err})"))
            })?;
            Some(Secret::new(text.trim()))
        }
        None => None,
    };
    let client_id = match &credential {
        ClientCredential::ManagedIdentity(identity) => match &identity.identity {
            Identity::ClientId(id) => id.clone(),
            _ => client_id,
        },
        _ => client_id,
    };
    Ok(OAuth2Config {
        tenant_id: tenant_id.or_else(|| tenant_in_url(&token_url)),
        token_url,
        client_id,
        credential,
        grant: Grant::ClientCredentials,
        scope,
        proxy,
        renew_before,
        timeout: timeout(&field.child("timeout"), DEFAULT_TOKEN_TIMEOUT)?,
        extra_ca,
        failure_cache,
        secret_trimmed,
        rbac: field.child("rbac").optional_bool()?.unwrap_or(false),
        assertion_timeout: timeout(&field.child("clientAssertionTimeout"), DEFAULT_ASSERTION_TIMEOUT)?,
        fixed_token: None,
        credential_environment,
    })
}

fn optional_trimmed(field: &Field) -> Result<Option<String>> {
    Ok(field.optional_string()?.map(|text| text.trim().to_string()))
}

/// `oauth2.cloud`: a known cloud's login host and Exchange scope, or an authority URL
/// (for which the scope must be given).
fn cloud_authority(field: &Field) -> Result<(String, Option<&'static str>)> {
    let name = field.optional_string()?.unwrap_or("global");
    if let Some((_, authority, scope)) = CLOUDS
        .iter()
        .find(|(cloud, _, _)| cloud.eq_ignore_ascii_case(name))
    {
        return Ok((authority.to_string(), Some(scope)));
    }
    if name.contains("://") {
        let url = parse_token_url(field)?;
        return Ok((url.as_str().to_string(), None));
    }
    Err(field.wrong_type("'global', 'usgov', 'china' or an authority URL"))
}

/// Entra ID token URLs are `https://login.../{tenant}/oauth2/v2.0/token`.
fn tenant_in_url(url: &reqwest::Url) -> Option<String> {
    let mut segments = url.path_segments()?;
    let tenant = segments.next()?;
    (segments.next() == Some("oauth2") && !tenant.is_empty()).then(|| tenant.to_string())
}

/// The token URL must be `https://`, except on loopback hosts where tests and local
/// proxies listen: the client secret must never cross a network in clear text.
pub(super) fn parse_token_url(field: &Field) -> Result<reqwest::Url> {
    let text = field.string()?.trim();
    let url = reqwest::Url::parse(text)
        .map_err(|err| field.error(format!("must be the token endpoint URL, got {text:?} ({err})")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(field.error(format!(
            "must be an https:// URL (the client secret must not travel unencrypted), got {text:?}"
        ))),
    }
}

pub(super) fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn token_url_must_be_https_unless_loopback() {
        let plain = set(
            &tas_config(),
            &["oauth2", "host"],
            Value::str("http://login.example.com/t/token"),
        );
        assert!(error_of(&plain).starts_with("mail.smtp.oauth2.host must be an https:// URL"));
        for local in [
            "http://127.0.0.1:8080/t/token",
            "http://localhost/t",
            "http://[::1]:9/t",
        ] {
            let config = set(&tas_config(), &["oauth2", "host"], Value::str(local));
            assert!(TransportConfig::from_value(&config, None).is_ok(), "{local}");
        }
    }

    #[test]
    fn tenant_id_and_cloud_build_the_token_url() {
        let config = without(&tas_config(), &["oauth2", "host"]);
        let config = without(&config, &["oauth2", "scope"]);
        let config = set(&config, &["oauth2", "tenantId"], Value::str("contoso-tenant"));
        let usgov = set(&config, &["oauth2", "cloud"], Value::str("usgov"));
        let parsed = TransportConfig::from_value(&usgov, None).unwrap();
        let Auth::OAuth2 { oauth2, .. } = parsed.auth else {
            panic!("not oauth2")
        };
        assert_eq!(
            oauth2.token_url.as_str(),
            "https://login.microsoftonline.us/contoso-tenant/oauth2/v2.0/token"
        );
        assert_eq!(oauth2.scope, "https://outlook.office365.us/.default");
        let bad = set(&config, &["oauth2", "cloud"], Value::str("mars"));
        assert!(error_of(&bad).starts_with("mail.smtp.oauth2.cloud must be 'global', 'usgov', 'china'"));
    }

    #[test]
    fn the_failure_cache_defaults_to_a_few_seconds_and_zero_disables_it() {
        assert_eq!(oauth2_of(&tas_config()).failure_cache, DEFAULT_FAILURE_CACHE);
        let off = set(
            &tas_config(),
            &["oauth2", "failureCacheSeconds"],
            Value::Number(0.0),
        );
        assert!(oauth2_of(&off).failure_cache.is_zero());
        let bad = set(
            &tas_config(),
            &["oauth2", "failureCacheSeconds"],
            Value::Number(-1.0),
        );
        assert!(error_of(&bad)
            .starts_with("mail.smtp.oauth2.failureCacheSeconds must be a number between 0 and 3600"));
    }

    #[test]
    fn oauth2_ca_is_the_token_clients_own_and_tls_ca_is_not_in_it() {
        let pem = Value::str(TEST_CA_PEM);
        let config = set(&tas_config(), &["tls"], Value::object([("ca", pem.clone())]));
        assert!(oauth2_of(&config).extra_ca.is_empty(), "tls.ca is for SMTP only");
        let config = set(&config, &["oauth2", "ca"], Value::Array(vec![pem]));
        assert_eq!(oauth2_of(&config).extra_ca.len(), 1);
        let parsed = TransportConfig::from_value(&config, Some(TEST_CA_PEM.as_bytes())).unwrap();
        let Auth::OAuth2 { oauth2, .. } = &parsed.auth else {
            panic!("not oauth2")
        };
        assert_eq!(
            (oauth2.extra_ca.len(), parsed.tls.extra_ca.len()),
            (2, 2),
            "NODE_EXTRA_CA_CERTS is for both"
        );
        let bad = set(
            &tas_config(),
            &["oauth2", "ca"],
            Value::Array(vec![Value::str("not a pem")]),
        );
        assert_eq!(
            error_of(&bad),
            "mail.smtp.oauth2.ca[0] holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
    }

    #[test]
    fn a_proxy_never_carries_an_http_token_request() {
        let local = set(
            &tas_config(),
            &["oauth2", "host"],
            Value::str("http://127.0.0.1:8080/t/oauth2/v2.0/token"),
        );
        let proxied = set(
            &local,
            &["oauth2", "proxy"],
            Value::str("http://proxy.example:3128"),
        );
        assert!(
            error_of(&proxied).starts_with("mail.smtp.oauth2.proxy cannot be used with an http:// token URL")
        );
        let https = set(
            &tas_config(),
            &["oauth2", "proxy"],
            Value::str("http://proxy.example:3128"),
        );
        assert!(oauth2_of(&https).proxy.is_some());
    }
}
