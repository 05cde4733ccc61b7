//! Client assertions someone else makes: a federated token file that the platform rotates
//! (workload identity federation: Kubernetes, GitHub Actions) or a callback (a vault, a
//! signing service). The assertion is a bearer credential: it is a [`Secret`], and only its
//! decoded claims (`iss`, `sub`, `aud`, `exp`) are ever shown, for hints and the doctor.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::oauth::claims::{decode_payload, expiry};
use crate::secret::Secret;

/// The `client_assertion_type` of every assertion sent.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A projected service account token is about 1-2 KB; a file far larger is not one.
const MAX_ASSERTION_FILE_BYTES: u64 = 64 * 1024;

/// What a callback's future resolves with: the assertion, or the callback's own error
/// message (a throw, a rejection, a result that is not a string).
pub type AssertionFuture = Pin<Box<dyn Future<Output = std::result::Result<Secret, String>> + Send>>;

/// `oauth2.clientAssertion`: called for every token request. The embedding layer (N-API)
/// supplies it; the core only calls it, bounded by `oauth2.clientAssertionTimeout`.
#[derive(Clone)]
pub struct AssertionCallback(Arc<dyn Fn() -> AssertionFuture + Send + Sync>);

impl AssertionCallback {
    pub fn new(callback: impl Fn() -> AssertionFuture + Send + Sync + 'static) -> Self {
        AssertionCallback(Arc::new(callback))
    }

    /// The callback's assertion, or `EOAUTH2` naming the callback and what went wrong.
    pub async fn assertion(&self, timeout: Duration) -> Result<Secret> {
        let failed = |problem: String| {
            Error::new(
                ErrorKind::OAuth2,
                format!("mail.smtp.oauth2.clientAssertion failed: {problem}"),
            )
            .with_hint("The clientAssertion callback must return (or resolve with) the client assertion, a non-empty JWT string, for every token request.")
        };
        match tokio::time::timeout(timeout, (self.0)()).await {
            Err(_) => Err(failed(format!(
                "it did not settle within {} ms (oauth2.clientAssertionTimeout)",
                timeout.as_millis()
            ))),
            Ok(Err(problem)) => Err(failed(redact_jwts(&problem))),
            Ok(Ok(assertion)) if assertion.expose().trim().is_empty() => {
                Err(failed("it returned an empty string".into()))
            }
            Ok(Ok(assertion)) => Ok(trimmed(assertion)),
        }
    }
}

impl fmt::Debug for AssertionCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AssertionCallback")
    }
}

/// A federated token file and where its path came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionFile {
    pub path: PathBuf,
    /// `mail.smtp.oauth2.clientAssertionFile` or `AZURE_FEDERATED_TOKEN_FILE`.
    pub named_by: &'static str,
}

impl AssertionFile {
    /// Reads the file afresh (the platform rotates it), trimmed. Errors name the file, never
    /// its content.
    pub async fn assertion(&self) -> Result<Secret> {
        let path = self.path.display();
        let failed = |problem: String| {
            Error::new(
                ErrorKind::OAuth2,
                format!("the federated token file {path} ({}) {problem}", self.named_by),
            )
            .with_hint("The platform writes this file (Azure Workload Identity projects the service account token there); check that the pod has the azure.workload.identity/use label and the volume is mounted, or fix the path.")
        };
        let content = read_bounded(&self.path, MAX_ASSERTION_FILE_BYTES)
            .await
            .map_err(|err| failed(err.describe()))?;
        let text = std::str::from_utf8(&content).map_err(|_| failed("is not text".into()))?;
        if text.trim().is_empty() {
            return Err(failed("is empty".into()));
        }
        Ok(Secret::new(text.trim()))
    }
}

/// Why a bounded read failed.
pub(crate) enum ReadProblem {
    Io(std::io::Error),
    TooLarge(u64),
}

impl ReadProblem {
    pub(crate) fn describe(&self) -> String {
        match self {
            ReadProblem::Io(err) if err.kind() == std::io::ErrorKind::NotFound => "does not exist".into(),
            ReadProblem::Io(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                "cannot be read (permission denied)".into()
            }
            ReadProblem::Io(err) => format!("cannot be read ({})", err.kind()),
            ReadProblem::TooLarge(limit) => format!("is larger than {limit} bytes"),
        }
    }
}

/// The file's bytes, in memory that is zeroed when freed, refusing more than `limit`.
pub(crate) async fn read_bounded(
    path: &Path,
    limit: u64,
) -> std::result::Result<Zeroizing<Vec<u8>>, ReadProblem> {
    let file = tokio::fs::File::open(path).await.map_err(ReadProblem::Io)?;
    let mut content = Zeroizing::new(Vec::with_capacity(limit.min(8192) as usize + 1));
    let read = file
        .take(limit + 1)
        .read_to_end(&mut content)
        .await
        .map_err(ReadProblem::Io)?;
    if read as u64 > limit {
        return Err(ReadProblem::TooLarge(limit));
    }
    Ok(content)
}

/// `text` with anything shaped like a JWT (`eyJ...` with two dots) replaced by
/// `<redacted>`: a callback's error message may quote the assertion it could not use.
fn redact_jwts(text: &str) -> String {
    let is_jwt_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        let candidate = &rest[start..];
        let end = candidate
            .find(|c: char| !is_jwt_char(c))
            .unwrap_or(candidate.len());
        out.push_str(&rest[..start]);
        if candidate[..end].matches('.').count() >= 2 {
            out.push_str("<redacted>");
        } else {
            out.push_str(&candidate[..end]);
        }
        rest = &candidate[end..];
    }
    out.push_str(rest);
    out
}

fn trimmed(assertion: Secret) -> Secret {
    let text = assertion.expose();
    if text.trim().len() == text.len() {
        assertion
    } else {
        Secret::new(text.trim())
    }
}

/// An assertion's claims that say which federated credential it must match (decoded, not
/// verified, never the assertion itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Option<String>,
    pub exp: Option<SystemTime>,
}

impl AssertionClaims {
    /// The claims of a JWT assertion; `None` if it is not one.
    pub fn of(assertion: &str) -> Option<Self> {
        let claims = decode_payload(assertion)?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let aud = match claims.get("aud") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            _ => text("aud").unwrap_or_default(),
        };
        Some(AssertionClaims {
            iss: text("iss"),
            sub: text("sub"),
            aud: (!aud.is_empty()).then_some(aud),
            exp: claims.get("exp").and_then(expiry),
        })
    }

    /// `iss=..., sub=..., aud=..., exp=<date> (expired 5 s ago)` for a hint.
    pub fn describe(&self, now: SystemTime) -> String {
        let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| "(none)".into());
        let exp = match self.exp {
            Some(exp) => {
                let when = httpdate::fmt_http_date(exp);
                match now.duration_since(exp) {
                    Ok(ago) => format!("{when} (expired {} s ago)", ago.as_secs()),
                    Err(_) => when,
                }
            }
            None => "(none)".into(),
        };
        format!(
            "iss={}, sub={}, aud={}, exp={exp}",
            or_none(&self.iss),
            or_none(&self.sub),
            or_none(&self.aud)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use std::time::UNIX_EPOCH;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn claims_are_decoded_and_described_without_the_assertion() {
        let assertion = jwt(serde_json::json!({
            "iss": "https://oidc.example/cluster", "sub": "system:serviceaccount:mail:sender",
            "aud": ["api://AzureADTokenExchange"], "exp": 1000
        }));
        let claims = AssertionClaims::of(&assertion).unwrap();
        assert_eq!(claims.aud.as_deref(), Some("api://AzureADTokenExchange"));
        let shown = claims.describe(UNIX_EPOCH + Duration::from_secs(1005));
        assert_eq!(
            shown,
            "iss=https://oidc.example/cluster, sub=system:serviceaccount:mail:sender, aud=api://AzureADTokenExchange, exp=Thu, 01 Jan 1970 00:16:40 GMT (expired 5 s ago)"
        );
        assert!(!shown.contains("c2ln"));
        assert_eq!(AssertionClaims::of("opaque"), None);
    }

    #[tokio::test]
    async fn a_token_file_is_trimmed_and_its_problems_name_the_path() {
        let dir = std::env::temp_dir().join(format!("assertion-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let file = AssertionFile {
            path: path.clone(),
            named_by: "mail.smtp.oauth2.clientAssertionFile",
        };
        std::fs::write(&path, "header.payload.sig\n").unwrap();
        assert_eq!(file.assertion().await.unwrap().expose(), "header.payload.sig");
        std::fs::write(&path, " \n").unwrap();
        let empty = file.assertion().await.unwrap_err();
        assert_eq!(empty.code(), "EOAUTH2");
        assert!(
            empty
                .message()
                .ends_with("(mail.smtp.oauth2.clientAssertionFile) is empty"),
            "{}",
            empty.message()
        );
        std::fs::write(&path, vec![b'a'; MAX_ASSERTION_FILE_BYTES as usize + 1]).unwrap();
        assert!(file
            .assertion()
            .await
            .unwrap_err()
            .message()
            .contains("larger than"));
        std::fs::remove_file(&path).unwrap();
        let missing = file.assertion().await.unwrap_err();
        assert!(missing.message().contains(&path.display().to_string()));
        assert!(missing.message().ends_with("does not exist"));
        std::fs::remove_dir(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_callback_that_fails_hangs_or_returns_nothing_is_eoauth2() {
        let failing = AssertionCallback::new(|| Box::pin(async { Err("vault says no".to_string()) }));
        let err = failing.assertion(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(
            (err.code(), err.message()),
            (
                "EOAUTH2",
                "mail.smtp.oauth2.clientAssertion failed: vault says no"
            )
        );
        let quoting = AssertionCallback::new(|| {
            Box::pin(async { Err("bad token eyJhbGc.eyJzdWI.c2ln-x_y, eyJ alone".to_string()) })
        });
        let err = quoting.assertion(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(
            err.message(),
            "mail.smtp.oauth2.clientAssertion failed: bad token <redacted>, eyJ alone"
        );
        let hanging = AssertionCallback::new(|| Box::pin(std::future::pending()));
        let err = hanging.assertion(Duration::from_millis(20)).await.unwrap_err();
        assert!(
            err.message().contains("did not settle within 20 ms"),
            "{}",
            err.message()
        );
        let empty = AssertionCallback::new(|| Box::pin(async { Ok(Secret::new(" ")) }));
        assert!(empty
            .assertion(Duration::from_secs(1))
            .await
            .unwrap_err()
            .message()
            .ends_with("returned an empty string"));
        let good = AssertionCallback::new(|| Box::pin(async { Ok(Secret::new("a.b.c\n")) }));
        assert_eq!(
            good.assertion(Duration::from_secs(1)).await.unwrap().expose(),
            "a.b.c"
        );
    }
}
