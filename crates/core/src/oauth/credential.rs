//! How the app proves who it is: a client secret; a certificate whose private key signs a
//! `client_assertion` JWT (what Microsoft recommends: secrets expire and leak); an assertion
//! the platform provides (a federated token file, a callback); or a managed identity, for
//! which the platform's endpoint issues the token itself. Exactly one per transport.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::oauth::assertion::{AssertionCallback, AssertionClaims, AssertionFile};
use crate::oauth::managed_identity::ManagedIdentity;
use crate::secret::Secret;

/// How long a client assertion is valid; Entra ID accepts up to 10 minutes.
const ASSERTION_LIFETIME_SECS: u64 = 10 * 60;

#[derive(Clone)]
pub enum ClientCredential {
    Secret(Secret),
    Certificate(Arc<CertificateCredential>),
    /// `oauth2.clientAssertionFile` (or `AZURE_FEDERATED_TOKEN_FILE`), read for every request.
    AssertionFile(AssertionFile),
    /// `oauth2.clientAssertion`, called for every request.
    AssertionCallback(AssertionCallback),
    /// `oauth2.managedIdentity`: no credential; the platform's endpoint issues the token.
    ManagedIdentity(Arc<ManagedIdentity>),
    /// nodemailer's `auth.accessToken` alone: no credential, no token request; the fixed
    /// token is used until it expires or is refused.
    NoRenewal,
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCredential::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientCredential::Certificate(cert) => write!(f, "Certificate({:?})", cert.thumbprint),
            ClientCredential::AssertionFile(file) => write!(f, "AssertionFile({:?})", file.path),
            ClientCredential::AssertionCallback(_) => f.write_str("AssertionCallback"),
            ClientCredential::ManagedIdentity(identity) => write!(f, "{identity:?}"),
            ClientCredential::NoRenewal => f.write_str("NoRenewal"),
        }
    }
}

impl ClientCredential {
    /// Which credential, named as its config field.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientCredential::Secret(_) => "clientSecret",
            ClientCredential::Certificate(_) => "certificate",
            ClientCredential::AssertionFile(_) => "clientAssertionFile",
            ClientCredential::AssertionCallback(_) => "clientAssertion",
            ClientCredential::ManagedIdentity(_) => "managedIdentity",
            ClientCredential::NoRenewal => "accessToken",
        }
    }

    /// Where the credential comes from, for logs and the doctor (never its value).
    pub fn source(&self) -> String {
        match self {
            ClientCredential::Secret(_) => "mail.smtp.oauth2.clientSecret".into(),
            ClientCredential::Certificate(_) => "mail.smtp.oauth2.privateKey".into(),
            ClientCredential::AssertionFile(file) => {
                format!("the file {} ({})", file.path.display(), file.named_by)
            }
            ClientCredential::AssertionCallback(_) => "the callback mail.smtp.oauth2.clientAssertion".into(),
            ClientCredential::ManagedIdentity(identity) => format!(
                "the {} managed identity endpoint {} (chosen by {}), {} identity",
                identity.kind.as_str(),
                identity.endpoint,
                identity.chosen_by,
                identity.identity.describe()
            ),
            ClientCredential::NoRenewal => {
                "mail.smtp.auth.accessToken, fixed in the config (cannot be renewed)".into()
            }
        }
    }
}

/// Which credential a transport uses and where it comes from, for `inspectToken` and the
/// doctor; with the claims of the last client assertion someone else made (never the
/// assertion itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialReport {
    /// `clientSecret`, `certificate`, `clientAssertionFile`, `clientAssertion`,
    /// `managedIdentity` or `accessToken` (a fixed token, nothing to renew it with).
    pub kind: &'static str,
    pub source: String,
    /// The environment variables that chose or completed the credential (Azure Workload
    /// Identity's `AZURE_*`, App Service's or Arc's `IDENTITY_ENDPOINT`...), empty when the
    /// config alone did.
    pub environment: Vec<&'static str>,
    /// For a federated token file or a callback: the last assertion's `iss`/`sub`/`aud`/`exp`.
    pub assertion: Option<AssertionClaims>,
}

/// The certificate's identity as the JWT header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thumbprint {
    /// `x5t#S256` with PS256: what current Entra ID documentation asks for.
    Sha256(Vec<u8>),
    /// `x5t` with RS256: the older form, used when only a SHA-1 thumbprint (the one the Azure
    /// portal shows) is known.
    Sha1(Vec<u8>),
}

pub struct CertificateCredential {
    key: RsaKeyPair,
    thumbprint: Thumbprint,
    /// SHA-1 and SHA-256 thumbprints (hex) of the configured certificate, for the doctor.
    certificate_thumbprints: Option<(String, String)>,
}

impl CertificateCredential {
    /// `private_key_pem`: PKCS#8 or PKCS#1 RSA key. The thumbprint comes from
    /// `certificate_pem` (SHA-256), else from a given SHA-256 or SHA-1 thumbprint.
    /// Errors are plain descriptions; the caller prefixes the field path. They never
    /// contain key material. The DER decoded from the PEM is zeroed once the key is parsed
    /// (the parsed key itself lives in ring, which does not zero it; see SECURITY.md).
    pub fn new(
        private_key_pem: &[u8],
        certificate_pem: Option<&[u8]>,
        thumbprint_sha256: Option<&str>,
        thumbprint_sha1: Option<&str>,
    ) -> std::result::Result<Self, (&'static str, String)> {
        let der = PrivateKeyDer::from_pem_slice(private_key_pem).map(Zeroizing::new);
        let key = match der.as_deref() {
            Ok(PrivateKeyDer::Pkcs8(der)) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            Ok(PrivateKeyDer::Pkcs1(der)) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            Ok(_) => {
                return Err((
                    "privateKey",
                    "must be an RSA key (EC keys are not accepted by Entra ID for assertions)".into(),
                ))
            }
            Err(_) => return Err((
                "privateKey",
                "is not a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)"
                    .into(),
            )),
        }
        .map_err(|err| ("privateKey", format!("is not a usable RSA key ({err})")))?;
        let mut certificate_thumbprints = None;
        let thumbprint = if let Some(pem) = certificate_pem {
            let der = CertificateDer::from_pem_slice(pem).map_err(|_| {
                (
                    "certificate",
                    "is not a PEM certificate (-----BEGIN CERTIFICATE-----)".to_string(),
                )
            })?;
            let hex = |algorithm| hex_upper(ring::digest::digest(algorithm, &der).as_ref());
            certificate_thumbprints = Some((
                hex(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY),
                hex(&ring::digest::SHA256),
            ));
            Thumbprint::Sha256(
                ring::digest::digest(&ring::digest::SHA256, &der)
                    .as_ref()
                    .to_vec(),
            )
        } else if let Some(text) = thumbprint_sha256 {
            Thumbprint::Sha256(parse_thumbprint(text, 32).map_err(|e| ("thumbprintSha256", e))?)
        } else if let Some(text) = thumbprint_sha1 {
            Thumbprint::Sha1(parse_thumbprint(text, 20).map_err(|e| ("thumbprint", e))?)
        } else {
            return Err((
                "certificate",
                "is missing (or give thumbprintSha256 or thumbprint) for certificate credentials".into(),
            ));
        };
        Ok(CertificateCredential {
            key,
            thumbprint,
            certificate_thumbprints,
        })
    }

    /// `true` when the assertion names the certificate by SHA-256 (`x5t#S256`, PS256).
    pub fn names_by_sha256(&self) -> bool {
        matches!(self.thumbprint, Thumbprint::Sha256(_))
    }

    /// The configured certificate's SHA-1 and SHA-256 thumbprints (hex), when it was given.
    pub fn thumbprints_hex(&self) -> Option<(String, String)> {
        self.certificate_thumbprints.clone()
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<Secret> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let rng = SystemRandom::new();
        let (header, padding): (serde_json::Value, &'static dyn ring::signature::RsaEncoding) = match &self
            .thumbprint
        {
            Thumbprint::Sha256(hash) => (
                serde_json::json!({ "alg": "PS256", "typ": "JWT", "x5t#S256": URL_SAFE_NO_PAD.encode(hash) }),
                &RSA_PSS_SHA256,
            ),
            Thumbprint::Sha1(hash) => (
                serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": URL_SAFE_NO_PAD.encode(hash) }),
                &RSA_PKCS1_SHA256,
            ),
        };
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid_v4(&rng)?,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // The signature completes a bearer credential: its copies are zeroed, and the
        // assertion is built in one allocation (a growing String would free partial copies).
        let mut signature = Zeroizing::new(vec![0; self.key.public().modulus_len()]);
        self.key
            .sign(padding, &rng, signing_input.as_bytes(), &mut signature)
            .map_err(|_| Error::new(ErrorKind::OAuth2, "cannot sign the client assertion"))?;
        let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(signature.as_slice()));
        let mut assertion = String::with_capacity(signing_input.len() + 1 + encoded.len());
        assertion.push_str(&signing_input);
        assertion.push('.');
        assertion.push_str(&encoded);
        Ok(Secret::new(assertion))
    }
}

/// Hex (with or without colons) or base64url, as portals and tools print thumbprints.
fn parse_thumbprint(text: &str, length: usize) -> std::result::Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    let bytes = if compact.len() == length * 2 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..compact.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&compact[i..i + 2], 16).unwrap_or(0))
            .collect()
    } else {
        URL_SAFE_NO_PAD
            .decode(compact.trim_end_matches('='))
            .unwrap_or_default()
    };
    if bytes.len() == length {
        Ok(bytes)
    } else {
        Err(format!(
            "must be {length} bytes as hex ({} hex digits) or base64url",
            length * 2
        ))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn uuid_v4(rng: &SystemRandom) -> Result<String> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes)
        .map_err(|_| Error::new(ErrorKind::OAuth2, "no randomness for the assertion id"))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_in_hex_or_base64url() {
        let hex = "AB:CD:".to_string() + &"00".repeat(18);
        assert_eq!(parse_thumbprint(&hex, 20).unwrap()[..2], [0xab, 0xcd]);
        let b64 = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(parse_thumbprint(&b64, 32).unwrap(), vec![7u8; 32]);
        assert!(parse_thumbprint("abc", 20).is_err());
    }

    #[test]
    fn not_a_key_is_reported_without_content() {
        let err = CertificateCredential::new(b"secret-ish text", None, None, Some(&"00".repeat(20)))
            .err()
            .unwrap();
        assert_eq!(err.0, "privateKey");
        assert!(!err.1.contains("secret-ish"));
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid_v4(&SystemRandom::new()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
