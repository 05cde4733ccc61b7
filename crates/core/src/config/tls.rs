//! The SMTP connection's TLS options (`tls.ca`, `servername`, `rejectUnauthorized`,
//! `minVersion`, `cert` + `key`), and the PEM certificates they and `oauth2.ca` hold.

use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::error::Result;
use crate::input::{Field, Value};

#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (DER) for the SMTP server, from `tls.ca` and
    /// `NODE_EXTRA_CA_CERTS`. The token endpoint has its own (`OAuth2Config::extra_ca`).
    pub extra_ca: Vec<CertificateDer<'static>>,
    /// `false` turns certificate verification off for SMTP (`tls.rejectUnauthorized`); the
    /// token client verifies regardless.
    pub verify_certificates: bool,
    /// The name the SMTP server's certificate must match; defaults to `host`.
    pub servername: Option<String>,
    /// `tls.minVersion: 'TLSv1.3'` refuses TLS 1.2; TLS 1.2 is the floor either way.
    pub tls13_only: bool,
    /// A client certificate (`tls.cert` + `tls.key`), for servers that ask for one.
    pub client_identity: Option<ClientIdentity>,
}

/// A certificate chain and its private key, presented when a server asks for one.
#[derive(Clone)]
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: std::sync::Arc<rustls::pki_types::PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientIdentity({} certificates, key <redacted>)",
            self.chain.len()
        )
    }
}

/// `tls.ca` or `oauth2.ca`: PEM text or a Buffer, or an array of them, each holding at
/// least one certificate.
pub(super) fn parse_ca(field: &Field) -> Result<Vec<CertificateDer<'static>>> {
    let mut extra_ca = Vec::new();
    for item in field.items() {
        let pem = match item.value() {
            Some(Value::String(text)) => text.as_bytes(),
            Some(Value::Bytes(bytes)) => bytes,
            _ => return Err(item.wrong_type("a PEM certificate (string or Buffer)")),
        };
        let before = extra_ca.len();
        extra_ca.extend(parse_pem_certificates(pem).map_err(|problem| item.error(problem))?);
        if extra_ca.len() == before {
            return Err(item.error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
        }
    }
    Ok(extra_ca)
}

/// Node skips a NODE_EXTRA_CA_CERTS file it cannot use; so do we, keeping what parsed.
pub(super) fn node_extra_ca(extra_ca_file: Option<&[u8]>) -> Vec<CertificateDer<'static>> {
    extra_ca_file
        .map(|pem| parse_pem_certificates(pem).unwrap_or_default())
        .unwrap_or_default()
}

pub(super) fn parse_tls(field: &Field, extra_ca_file: Option<&[u8]>) -> Result<TlsOptions> {
    field.optional_object()?;
    let mut extra_ca = parse_ca(&field.child("ca"))?;
    extra_ca.extend(node_extra_ca(extra_ca_file));
    Ok(TlsOptions {
        extra_ca,
        client_identity: parse_client_identity(field)?,
        verify_certificates: field.child("rejectUnauthorized").optional_bool()?.unwrap_or(true),
        servername: field.child("servername").optional_string()?.map(str::to_string),
        tls13_only: match field.child("minVersion").optional_string()? {
            None | Some("TLSv1.2") => false,
            Some("TLSv1.3") => true,
            Some(_) => {
                return Err(field
                    .child("minVersion")
                    .wrong_type("'TLSv1.2' or 'TLSv1.3' (older versions are never used)"))
            }
        },
    })
}

/// `tls.cert` (PEM, the chain) and `tls.key` (PEM private key): both or neither. Errors
/// never show key material.
fn parse_client_identity(field: &Field) -> Result<Option<ClientIdentity>> {
    use rustls::pki_types::pem::PemObject;
    let pem = |name: &str| -> Result<Option<Vec<u8>>> {
        let item = field.child(name);
        match item.value() {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.as_bytes().to_vec())),
            Some(Value::Bytes(bytes)) => Ok(Some(bytes.to_vec())),
            Some(other) => Err(item.error(format!(
                "must be PEM (a string or Buffer), got {}",
                other.type_name()
            ))),
        }
    };
    let (cert, key) = match (pem("cert")?, pem("key")?) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(field
                .child("key")
                .error("is missing: tls.cert needs its private key"))
        }
        (None, Some(_)) => {
            return Err(field
                .child("cert")
                .error("is missing: tls.key needs its certificate"))
        }
        (Some(cert), Some(key)) => (cert, key),
    };
    let chain = parse_pem_certificates(&cert).map_err(|problem| field.child("cert").error(problem))?;
    if chain.is_empty() {
        return Err(field
            .child("cert")
            .error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).map_err(|_| {
        field
            .child("key")
            .error("is not a PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)")
    })?;
    Ok(Some(ClientIdentity {
        chain,
        key: std::sync::Arc::new(key),
    }))
}

fn parse_pem_certificates(pem: &[u8]) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| format!("is not a valid PEM certificate ({err})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;

    #[test]
    fn tls_ca_must_hold_certificates() {
        let config = set(
            &tas_config(),
            &["tls"],
            Value::object([("ca", Value::str("not a pem"))]),
        );
        assert_eq!(
            error_of(&config),
            "mail.smtp.tls.ca holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
    }
}
