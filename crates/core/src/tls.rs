//! The trust policies of the two TLS peers. Both start from Mozilla's roots (as Node bundles
//! them) and `NODE_EXTRA_CA_CERTS`. The SMTP server adds `tls.ca` and may be unverified
//! (`rejectUnauthorized: false`); the token endpoint, which receives the client secret,
//! adds only `oauth2.ca` and is always verified. `tls.minVersion` applies to both.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{OAuth2Config, TlsOptions};
use crate::error::{Error, ErrorKind, Result};

/// The rustls configuration of SMTP connections (STARTTLS or implicit TLS).
/// `tls.cert` + `tls.key`, when given, are the client certificate it presents.
pub fn rustls_client_config(options: &TlsOptions) -> Result<rustls::ClientConfig> {
    let builder = config_builder(options.tls13_only)?;
    let config = if options.verify_certificates {
        builder.with_root_certificates(roots(&options.extra_ca, "tls.ca")?)
    } else {
        let provider = builder.crypto_provider().clone();
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    };
    match &options.client_identity {
        None => Ok(config.with_no_client_auth()),
        Some(identity) => config
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|err| {
                Error::config(format!(
                    "mail.smtp.tls.key does not fit mail.smtp.tls.cert: {err}"
                ))
            }),
    }
}

/// The rustls configuration of the token client: always verifying, whatever
/// `tls.rejectUnauthorized` says; only `oauth2.ca` (and `NODE_EXTRA_CA_CERTS`) widen it.
pub fn token_client_config(oauth2: &OAuth2Config, tls: &TlsOptions) -> Result<rustls::ClientConfig> {
    Ok(config_builder(tls.tls13_only)?
        .with_root_certificates(roots(&oauth2.extra_ca, "oauth2.ca")?)
        .with_no_client_auth())
}

fn config_builder(
    tls13_only: bool,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|err| Error::new(ErrorKind::Tls, format!("cannot set up TLS: {err}")))
}

/// Mozilla's roots plus `extra` (named `field` in errors).
fn roots(extra: &[CertificateDer<'static>], field: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for der in extra {
        roots
            .add(der.clone())
            .map_err(|err| Error::new(ErrorKind::Tls, format!("{field}: {err}")))?;
    }
    Ok(roots)
}

/// What `rejectUnauthorized: false` asks for: any certificate, still checking that the
/// handshake signatures are valid for the key it presents.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
