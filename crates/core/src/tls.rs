//! The trust policies of the two TLS peers. Both start from Mozilla's roots (as Node bundles
//! them) and `NODE_EXTRA_CA_CERTS`. The SMTP server adds `tls.ca` and may be unverified
//! (`rejectUnauthorized: false`); the token endpoint, which receives the client secret,
//! adds only `oauth2.ca` and is always verified. `tls.minVersion` applies to both.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{OAuth2Config, TlsOptions};
use crate::error::{Error, ErrorKind, Result};

/// The rustls configuration of SMTP connections (STARTTLS or implicit TLS).
/// `tls.cert` + `tls.key`, when given, are the client certificate it presents.
pub fn rustls_client_config(options: &TlsOptions) -> Result<rustls::ClientConfig> {
    smtp_client_config(options, |verifier| verifier)
}

/// The same configuration, with a verifier that also keeps the chain the server presented,
/// so that the doctor can show a certificate the transport refuses.
pub fn recording_client_config(options: &TlsOptions) -> Result<(rustls::ClientConfig, Arc<PresentedChain>)> {
    let presented = Arc::new(PresentedChain::default());
    let keep = Arc::clone(&presented);
    let config = smtp_client_config(options, move |inner| {
        Arc::new(Recording {
            inner,
            presented: keep,
        })
    })?;
    Ok((config, presented))
}

/// The SMTP policy: Mozilla's roots plus `tls.ca`, or any certificate with
/// `rejectUnauthorized: false`; `wrap` may put a verifier around it.
fn smtp_client_config(
    options: &TlsOptions,
    wrap: impl FnOnce(Arc<dyn ServerCertVerifier>) -> Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig> {
    let builder = config_builder(options.tls13_only)?;
    let provider = builder.crypto_provider().clone();
    let verifier: Arc<dyn ServerCertVerifier> = if options.verify_certificates {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots(&options.extra_ca, "tls.ca")?), provider)
            .build()
            .map_err(|err| Error::new(ErrorKind::Tls, format!("cannot set up TLS: {err}")))?
    } else {
        Arc::new(AcceptAnyCertificate(provider))
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(wrap(verifier));
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

/// The certificate chain (DER, leaf first) the server presented last.
#[derive(Debug, Default)]
pub struct PresentedChain(Mutex<Vec<Vec<u8>>>);

impl PresentedChain {
    pub fn certificates(&self) -> Vec<Vec<u8>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Keeps the presented chain, then lets the transport's verifier decide.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    presented: Arc<PresentedChain>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|der| der.to_vec())
            .collect();
        *self.presented.0.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
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
