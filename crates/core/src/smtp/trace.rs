//! What opening a connection saw, step by step, for the doctor: the addresses tried and the
//! one that answered, the greeting, the EHLO keywords, STARTTLS, and the TLS session. The
//! transport's own connect path fills it in as it goes, so a failure still shows how far it
//! got.

use std::net::SocketAddr;

use tokio_rustls::client::TlsStream;

/// The facts of one connection attempt, filled in as far as it got.
#[derive(Debug, Default, Clone)]
pub struct ConnectTrace {
    /// The SMTP host's (or the proxy's) addresses, in the order they were tried.
    pub addresses: Vec<SocketAddr>,
    /// The address whose connection won the race.
    pub connected: Option<SocketAddr>,
    /// `the HTTP proxy host:port` when the connection went through one.
    pub proxy: Option<String>,
    /// The server's greeting, `220 ...`.
    pub greeting: Option<String>,
    /// The EHLO keywords of the first EHLO (before STARTTLS).
    pub ehlo: Vec<String>,
    /// Whether the first EHLO offered STARTTLS (`None` with implicit TLS).
    pub starttls_offered: Option<bool>,
    /// The TLS session with the SMTP server, once its handshake succeeded.
    pub tls: Option<TlsFacts>,
    /// The EHLO keywords after TLS (what AUTH is chosen from).
    pub ehlo_after_tls: Vec<String>,
}

/// The negotiated TLS session.
#[derive(Debug, Clone)]
pub struct TlsFacts {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server's certificate chain (DER), leaf first.
    pub certificates: Vec<Vec<u8>>,
}

impl TlsFacts {
    pub(super) fn of<IO>(stream: &TlsStream<IO>) -> Self {
        let (_, session) = stream.get_ref();
        let version = match session.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher_suite = session
            .negotiated_cipher_suite()
            .map(|suite| format!("{:?}", suite.suite()))
            .unwrap_or_default();
        let certificates = session
            .peer_certificates()
            .map(|chain| chain.iter().map(|der| der.as_ref().to_vec()).collect())
            .unwrap_or_default();
        TlsFacts {
            version,
            cipher_suite,
            certificates,
        }
    }
}
