//! Managed identity: the token comes from the platform's own endpoint, not from
//! login.microsoftonline.com, and the app holds no credential at all.
//!
//! - Azure VMs and scale sets: IMDS, `GET http://169.254.169.254/metadata/identity/oauth2/token`
//!   with `Metadata: true`.
//! - App Service and Functions: `GET $IDENTITY_ENDPOINT` with `X-IDENTITY-HEADER: $IDENTITY_HEADER`.
//! - Azure Arc: `GET $IDENTITY_ENDPOINT` answers 401 with `WWW-Authenticate: Basic realm=<file>`;
//!   the file (written by the Arc agent, readable only by privileged users) holds the
//!   key to send back as `Authorization: Basic <key>`.
//!
//! These endpoints are plain http by design: IMDS is link-local, the others loopback or
//! link-local, all on the machine's side of the network. Nothing secret is sent to them but
//! the App Service header or the Arc key, which are only good for that same endpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::OAuth2Config;
use crate::error::{Error, ErrorKind, Result};
use crate::hints::{managed_identity_not_found, managed_identity_unreachable};
use crate::oauth::assertion::read_bounded;
use crate::oauth::request::exchange;
use crate::oauth::token::{SentAt, TokenGrant};
use crate::secret::Secret;

/// IMDS, where every Azure VM reaches its identity.
pub const IMDS_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const ARC_API_VERSION: &str = "2019-11-01";
/// Where the Arc agent writes its challenge files on Linux (documented by Azure Arc; the
/// realm of a 401 pointing anywhere else is refused).
pub const ARC_TOKEN_DIR: &str = "/var/opt/azcmagent/tokens";
/// On an Azure VM, IMDS accepts a connection at once; elsewhere a connection to
/// 169.254.169.254 often hangs (no route): without this bound, "not on Azure" would take the
/// whole token timeout, three times.
const IMDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The Arc key file is a few hundred bytes; azure-identity refuses more than 4 KB.
const MAX_ARC_KEY_BYTES: u64 = 4096;

/// Which identity of the machine: its system-assigned one, or a user-assigned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    SystemAssigned,
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

impl Identity {
    /// The query parameter naming a user-assigned identity, as each endpoint spells it.
    fn parameter(&self, kind: EndpointKind) -> Option<(&'static str, &str)> {
        let (imds, app_service, value) = match self {
            Identity::SystemAssigned => return None,
            Identity::ClientId(id) => ("client_id", "client_id", id),
            Identity::ObjectId(id) => ("object_id", "principal_id", id),
            Identity::ResourceId(id) => ("msi_res_id", "mi_res_id", id),
        };
        match kind {
            EndpointKind::AppService => Some((app_service, value)),
            EndpointKind::Imds | EndpointKind::AzureArc => Some((imds, value)),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Identity::SystemAssigned => "system-assigned".into(),
            Identity::ClientId(id) => format!("user-assigned, client id {id}"),
            Identity::ObjectId(id) => format!("user-assigned, object id {id}"),
            Identity::ResourceId(id) => format!("user-assigned, resource id {id}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    Imds,
    AppService,
    AzureArc,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Imds => "imds",
            EndpointKind::AppService => "appService",
            EndpointKind::AzureArc => "azureArc",
        }
    }
}

/// `oauth2.managedIdentity` with the endpoint it is reached at.
#[derive(Debug, Clone)]
pub struct ManagedIdentity {
    pub identity: Identity,
    pub kind: EndpointKind,
    /// Without the query, which is added per request.
    pub endpoint: reqwest::Url,
    /// What chose the endpoint: `mail.smtp.oauth2.managedIdentityEndpoint`, an environment
    /// variable, or the IMDS default.
    pub chosen_by: &'static str,
    /// App Service's `IDENTITY_HEADER`.
    header: Option<Secret>,
}

impl ManagedIdentity {
    /// Picks the endpoint: `endpoint_override` (`oauth2.managedIdentityEndpoint`, spoken to
    /// as IMDS), else App Service's or Azure Arc's environment variables, else IMDS.
    /// Errors are `(field or variable, problem)` for the caller to report.
    pub fn select(
        identity: Identity,
        endpoint_override: Option<reqwest::Url>,
        variable: &dyn Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, (&'static str, String)> {
        let (kind, endpoint, chosen_by, header) = if let Some(url) = endpoint_override {
            (
                EndpointKind::Imds,
                url,
                "mail.smtp.oauth2.managedIdentityEndpoint",
                None,
            )
        } else if let Some(text) = variable("IDENTITY_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            let url = managed_identity_url(text.trim()).map_err(|problem| ("IDENTITY_ENDPOINT", problem))?;
            if variable("IMDS_ENDPOINT").is_some_and(|v| !v.trim().is_empty()) {
                (
                    EndpointKind::AzureArc,
                    url,
                    "IDENTITY_ENDPOINT and IMDS_ENDPOINT (Azure Arc)",
                    None,
                )
            } else if let Some(header) = variable("IDENTITY_HEADER").filter(|v| !v.trim().is_empty()) {
                let header = Secret::new(header.trim());
                (
                    EndpointKind::AppService,
                    url,
                    "IDENTITY_ENDPOINT and IDENTITY_HEADER (App Service)",
                    Some(header),
                )
            } else {
                return Err((
                    "IDENTITY_ENDPOINT",
                    "is set without IDENTITY_HEADER (App Service, Functions) or IMDS_ENDPOINT (Azure Arc)"
                        .into(),
                ));
            }
        } else {
            let url = reqwest::Url::parse(IMDS_URL).expect("the IMDS URL is valid");
            (EndpointKind::Imds, url, "the Azure VM default (IMDS)", None)
        };
        if kind == EndpointKind::AzureArc && identity != Identity::SystemAssigned {
            return Err((
                "managedIdentity",
                "must be true on Azure Arc (Arc-enabled servers have only a system-assigned identity)".into(),
            ));
        }
        Ok(ManagedIdentity {
            identity,
            kind,
            endpoint,
            chosen_by,
            header,
        })
    }

    /// How long to wait for a connection to the endpoint: briefly for IMDS.
    pub fn connect_timeout(&self, timeout: Duration) -> Duration {
        match self.kind {
            EndpointKind::Imds => timeout.min(IMDS_CONNECT_TIMEOUT),
            _ => timeout,
        }
    }

    /// The environment variables that chose the endpoint.
    pub fn environment(&self) -> Vec<&'static str> {
        match self.kind {
            EndpointKind::AzureArc => vec!["IDENTITY_ENDPOINT", "IMDS_ENDPOINT"],
            EndpointKind::AppService => vec!["IDENTITY_ENDPOINT", "IDENTITY_HEADER"],
            EndpointKind::Imds => Vec::new(),
        }
    }

    /// One token request (two on Azure Arc: the challenge, then the answer).
    pub async fn request_once(
        &self,
        http: &reqwest::Client,
        config: &OAuth2Config,
    ) -> Result<(TokenGrant, SentAt)> {
        let mut url = self.endpoint.clone();
        let api_version = match self.kind {
            EndpointKind::Imds => IMDS_API_VERSION,
            EndpointKind::AppService => APP_SERVICE_API_VERSION,
            EndpointKind::AzureArc => ARC_API_VERSION,
        };
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("api-version", api_version);
            query.append_pair("resource", resource(&config.scope));
            if let Some((name, value)) = self.identity.parameter(self.kind) {
                query.append_pair(name, value);
            }
        }
        let request = || {
            let request = http.get(url.clone());
            match (self.kind, &self.header) {
                (EndpointKind::AppService, Some(header)) => {
                    request.header("X-IDENTITY-HEADER", header.expose())
                }
                _ => request.header("Metadata", "true"),
            }
        };
        let outcome = match self.kind {
            EndpointKind::AzureArc => {
                let key = self.arc_key(request(), config).await?;
                let authorization = Secret::new(format!("Basic {}", key.expose()));
                exchange(
                    request().header("Authorization", authorization.expose()),
                    config,
                    &[&key],
                )
                .await
            }
            _ => {
                let scrubbed = self.header.clone().unwrap_or_else(|| Secret::new(""));
                exchange(request(), config, &[&scrubbed]).await
            }
        };
        outcome.map_err(|err| self.explain(err))
    }

    /// Azure Arc's challenge: the first request is answered 401 naming a file under
    /// [`ARC_TOKEN_DIR`] whose content proves this process may read it (root or the
    /// himds group).
    async fn arc_key(&self, challenge: reqwest::RequestBuilder, config: &OAuth2Config) -> Result<Secret> {
        let failed = |problem: String| {
            Error::new(
                ErrorKind::OAuth2,
                format!("the Azure Arc identity endpoint {} {problem}", self.endpoint),
            )
        };
        let response = tokio::time::timeout(config.timeout, challenge.send())
            .await
            .map_err(|_| failed(format!("did not answer within {} ms", config.timeout.as_millis())))?
            .map_err(|err| self.explain(failed(format!("cannot be reached ({})", describe_briefly(&err)))))?;
        let status = response.status().as_u16();
        let realm = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().strip_prefix("Basic realm="))
            .map(|realm| PathBuf::from(realm.trim().trim_matches('"')));
        let Some(path) = realm.filter(|_| status == 401) else {
            return Err(failed(format!(
                "answered HTTP {status} without the expected 401 challenge (WWW-Authenticate: Basic realm=<file>)"
            ))
            .with_http_status(status));
        };
        // The challenge was answered (401); what goes wrong from here on is not helped by
        // asking again at once, so the errors carry that status (permanent, not retried).
        let refused = |problem: String| failed(problem).with_http_status(status);
        let path = arc_key_path(&path, Path::new(ARC_TOKEN_DIR)).map_err(refused)?;
        let content = read_bounded(&path, MAX_ARC_KEY_BYTES)
            .await
            .map_err(|problem| {
                refused(format!("challenge file {} {}", path.display(), problem.describe()))
                    .with_hint("Only root and members of the himds group may read the Azure Arc challenge file: run the process as one of them.")
            })?;
        let key = std::str::from_utf8(&content).map_err(|_| refused("challenge file is not text".into()))?;
        Ok(Secret::new(key.trim()))
    }

    /// Adds what the typical managed identity failures mean.
    fn explain(&self, err: Error) -> Error {
        let hint = match err.http_status() {
            None if err.retry_after().is_none() && err.hint().is_none() => {
                managed_identity_unreachable(self.kind == EndpointKind::Imds, self.chosen_by)
            }
            Some(400 | 404) => managed_identity_not_found(&self.identity.describe()),
            _ => return err,
        };
        err.with_hint(hint)
    }
}

/// `https://outlook.office365.com/.default` -> `https://outlook.office365.com`.
pub fn resource(scope: &str) -> &str {
    scope.strip_suffix("/.default").unwrap_or(scope)
}

/// A managed identity endpoint URL: plain http only on loopback and link-local hosts
/// (where IMDS, App Service and Arc listen), https anywhere.
pub fn managed_identity_url(text: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("must be a URL, got {text:?} ({err})"))?;
    let local = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || (ip.segments()[0] & 0xffc0) == 0xfe80,
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if local => Ok(url),
        _ => Err(format!(
            "must be an https:// URL, or http:// on a loopback or link-local address (169.254.169.254), got {text:?}"
        )),
    }
}

/// The realm of an Arc challenge, accepted only as a `.key` file directly inside `dir`
/// (a compromised or fake endpoint must not make this process read and send any file).
fn arc_key_path(realm: &Path, dir: &Path) -> std::result::Result<PathBuf, String> {
    let refused = || {
        format!(
            "named the challenge file {}, which is not a .key file in {}: refused",
            realm.display(),
            dir.display()
        )
    };
    let is_key = realm.extension().is_some_and(|ext| ext == "key");
    let name = realm.file_name().ok_or_else(refused)?;
    if !is_key || realm.parent() != Some(dir) {
        return Err(refused());
    }
    // Resolving links too: the file itself must be inside the directory.
    let resolved = std::fs::canonicalize(dir.join(name)).map_err(|_| {
        format!(
            "named the challenge file {}, which does not exist",
            realm.display()
        )
    })?;
    let dir = std::fs::canonicalize(dir).map_err(|_| refused())?;
    if resolved.parent() != Some(dir.as_path()) {
        return Err(refused());
    }
    Ok(resolved)
}

fn describe_briefly(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_endpoint_comes_from_the_override_then_the_environment_then_imds() {
        let app_service = lookup(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41000/msi/token"),
            ("IDENTITY_HEADER", "header-secret"),
        ]);
        let chosen = ManagedIdentity::select(Identity::SystemAssigned, None, &app_service).unwrap();
        assert_eq!(chosen.kind, EndpointKind::AppService);
        assert_eq!(chosen.endpoint.as_str(), "http://127.0.0.1:41000/msi/token");
        assert!(!format!("{chosen:?}").contains("header-secret"));
        let local = reqwest::Url::parse("http://127.0.0.1:9/token").unwrap();
        let overridden =
            ManagedIdentity::select(Identity::SystemAssigned, Some(local), &app_service).unwrap();
        assert_eq!(
            (overridden.kind, overridden.endpoint.port()),
            (EndpointKind::Imds, Some(9))
        );
        let arc = lookup(&[
            (
                "IDENTITY_ENDPOINT",
                "http://localhost:40342/metadata/identity/oauth2/token",
            ),
            ("IMDS_ENDPOINT", "http://localhost:40342"),
        ]);
        assert_eq!(
            ManagedIdentity::select(Identity::SystemAssigned, None, &arc)
                .unwrap()
                .kind,
            EndpointKind::AzureArc
        );
        let user_assigned = ManagedIdentity::select(Identity::ClientId("c".into()), None, &arc).unwrap_err();
        assert_eq!(user_assigned.0, "managedIdentity");
        let nothing = ManagedIdentity::select(Identity::SystemAssigned, None, &lookup(&[])).unwrap();
        assert_eq!(
            (nothing.kind, nothing.endpoint.as_str()),
            (EndpointKind::Imds, IMDS_URL)
        );
        let half = lookup(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/")]);
        assert_eq!(
            ManagedIdentity::select(Identity::SystemAssigned, None, &half)
                .unwrap_err()
                .0,
            "IDENTITY_ENDPOINT"
        );
    }

    #[test]
    fn plain_http_only_on_loopback_and_link_local() {
        for ok in [
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://127.0.0.1:8081/msi/token",
            "http://localhost:40342/x",
            "http://[::1]:1/",
            "https://identity.example.net/token",
        ] {
            assert!(managed_identity_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.4/token",
            "http://identity.example.net/",
            "ftp://127.0.0.1/",
        ] {
            assert!(managed_identity_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_endpoint_names_a_user_assigned_identity_its_own_way() {
        let object = Identity::ObjectId("o".into());
        assert_eq!(object.parameter(EndpointKind::Imds), Some(("object_id", "o")));
        assert_eq!(
            object.parameter(EndpointKind::AppService),
            Some(("principal_id", "o"))
        );
        let resource_id = Identity::ResourceId("/subscriptions/s".into());
        assert_eq!(resource_id.parameter(EndpointKind::Imds).unwrap().0, "msi_res_id");
        assert_eq!(
            resource_id.parameter(EndpointKind::AppService).unwrap().0,
            "mi_res_id"
        );
        assert_eq!(Identity::SystemAssigned.parameter(EndpointKind::Imds), None);
        assert_eq!(
            resource("https://outlook.office365.com/.default"),
            "https://outlook.office365.com"
        );
    }

    #[test]
    fn an_arc_realm_outside_the_agent_directory_is_refused() {
        let dir = std::env::temp_dir().join(format!("arc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("abc.key"), "k").unwrap();
        std::fs::write(dir.join("abc.txt"), "k").unwrap();
        assert!(arc_key_path(&dir.join("abc.key"), &dir).is_ok());
        for realm in [
            dir.join("abc.txt"),
            dir.join("../etc/shadow.key"),
            PathBuf::from("/etc/shadow"),
            dir.join("missing.key"),
        ] {
            assert!(arc_key_path(&realm, &dir).is_err(), "{}", realm.display());
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc/hostname", dir.join("link.key")).unwrap();
            assert!(arc_key_path(&dir.join("link.key"), &dir).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
