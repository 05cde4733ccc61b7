//! Step 4: the SMTP server as the transport reaches it: the same resolver, Happy Eyeballs,
//! proxy, greeting, EHLO, STARTTLS and rustls configuration; only the verifier also keeps the
//! chain the server presented, so that a refused certificate can be shown.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value as Json};

use super::Outcome;
use crate::config::Auth;
use crate::error::{Error, ErrorKind};
use crate::exchange::hint_context;
use crate::hints::Hint;
use crate::smtp::{ConnectTrace, SmtpConnection};
use crate::tls::recording_client_config;
use crate::transport::Transport;

pub(super) async fn check(transport: &Transport) -> Outcome {
    let config = transport.config();
    let (tls_config, presented) = match recording_client_config(&config.tls) {
        Ok(pair) => pair,
        Err(err) => return Outcome::fail(err.message().to_string(), err.hint_data().cloned(), Json::Null),
    };
    let mut trace = ConnectTrace::default();
    let connected =
        SmtpConnection::connect_traced(config, &Arc::new(tls_config), transport.logger(), &mut trace).await;
    let verified = config.tls.verify_certificates && trace.tls.is_some();
    let chain = match &trace.tls {
        Some(tls) => tls.certificates.clone(),
        None => presented.certificates(),
    };
    let auth_mechanisms: Vec<String> = trace
        .ehlo_after_tls
        .iter()
        .filter_map(|line| line.strip_prefix("AUTH ").or_else(|| line.strip_prefix("AUTH=")))
        .flat_map(|mechanisms| mechanisms.split_whitespace().map(str::to_ascii_uppercase))
        .collect();
    let mut details = Map::new();
    details.insert("host".into(), json!(config.host));
    details.insert("port".into(), json!(config.port));
    details.insert("secure".into(), json!(config.implicit_tls));
    let ips = |v4: bool| {
        trace
            .addresses
            .iter()
            .filter(|a| a.is_ipv4() == v4)
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
    };
    details.insert(
        "dns".into(),
        json!({ "a": ips(true), "aaaa": ips(false), "proxy": trace.proxy }),
    );
    if let Some(addr) = trace.connected {
        let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        details.insert(
            "tcp".into(),
            json!({ "address": addr.to_string(), "family": family }),
        );
    }
    details.insert("greeting".into(), json!(trace.greeting));
    details.insert("ehlo".into(), json!(trace.ehlo));
    if let Some(offered) = trace.starttls_offered {
        details.insert("starttls".into(), json!(offered));
    }
    if let Some(tls) = &trace.tls {
        details.insert(
            "tls".into(),
            json!({ "version": tls.version, "cipherSuite": tls.cipher_suite }),
        );
    }
    let mut certificate = json!({
        "verified": verified,
        "chain": chain.iter().map(|der| STANDARD.encode(der)).collect::<Vec<_>>(),
    });
    details.insert("authMechanisms".into(), json!(auth_mechanisms));

    let connection = match connected {
        Ok(connection) => connection,
        Err(err) => {
            let (finding, hint) = explain(&err, &trace, &config.host, config.port);
            if trace.tls.is_none() && !chain.is_empty() {
                certificate["error"] = json!(err.message());
            }
            details.insert("certificate".into(), certificate);
            let hint = hint.map(|h| h.in_context(&hint_context(config, None)));
            return Outcome::fail(finding, hint, Json::Object(details));
        }
    };
    connection.quit().await;
    details.insert("certificate".into(), certificate);
    let Some(tls) = &trace.tls else {
        // No credentials, no STARTTLS offered: the transport sends in clear, as configured.
        return Outcome::pass(
            format!(
                "{}:{} greets; no TLS (the server offers no STARTTLS and no credentials are sent)",
                config.host, config.port
            ),
            Json::Object(details),
        );
    };
    if matches!(config.auth, Auth::OAuth2 { .. }) && !auth_mechanisms.iter().any(|m| m == "XOAUTH2") {
        let offered = if auth_mechanisms.is_empty() {
            "no AUTH".to_string()
        } else {
            auth_mechanisms.join(" ")
        };
        return Outcome::fail(
            format!("{} does not offer AUTH XOAUTH2 (offers: {offered})", config.host),
            Some(Hint::render("smtp.no_xoauth2", &Default::default())),
            Json::Object(details),
        );
    }
    let via = match trace.connected {
        Some(addr) if trace.proxy.is_none() => format!(" ({})", addr.ip()),
        _ => trace
            .proxy
            .as_ref()
            .map(|p| format!(" (through {p})"))
            .unwrap_or_default(),
    };
    let mode = if config.implicit_tls {
        "implicit TLS"
    } else {
        "STARTTLS"
    };
    let trust = if verified {
        "certificate verified"
    } else {
        "certificate NOT verified (tls.rejectUnauthorized is false)"
    };
    Outcome::pass(
        format!(
            "{}:{}{via} greets, {mode} {}, {trust}, cipher {}, AUTH {}",
            config.host,
            config.port,
            tls.version,
            tls.cipher_suite,
            auth_mechanisms.join(" ")
        ),
        Json::Object(details),
    )
}

/// The finding and hint for a failed connection: rustls's own reason for a certificate, the
/// operating system's for the network.
fn explain(err: &Error, trace: &ConnectTrace, host: &str, port: u16) -> (String, Option<Hint>) {
    let context = Default::default();
    if let Some(certificate) = certificate_error(err) {
        use rustls::CertificateError::*;
        let id = match certificate {
            NotValidForName | NotValidForNameContext { .. } => "tls.wrong_name",
            Expired | ExpiredContext { .. } | NotValidYet | NotValidYetContext { .. } => "tls.expired",
            _ => "tls.untrusted",
        };
        return (
            format!("the certificate of {host} is not trusted: {}", err.message()),
            Some(Hint::render(id, &context)),
        );
    }
    let refused = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
    if refused {
        return (
            format!("{host}:{port} refused the connection ({})", err.message()),
            Some(Hint::render("net.refused", &context)),
        );
    }
    let id = match (err.kind(), err.command()) {
        _ if err.hint_data().is_some() => return (err.message().to_string(), err.hint_data().cloned()),
        // No address to try: the name did not resolve (or to nothing usable).
        (ErrorKind::Connection | ErrorKind::Timeout, Some("CONN")) if trace.addresses.is_empty() => {
            "net.unresolved"
        }
        (ErrorKind::Timeout, Some("CONN")) | (ErrorKind::Connection, Some("CONN")) => "net.unreachable",
        (ErrorKind::Tls, _) => "tls.handshake",
        _ => return (err.message().to_string(), None),
    };
    (err.message().to_string(), Some(Hint::render(id, &context)))
}

/// rustls's certificate verdict inside a failed handshake, if that is what failed.
fn certificate_error(err: &Error) -> Option<rustls::CertificateError> {
    let io = std::error::Error::source(err)?.downcast_ref::<std::io::Error>()?;
    match io.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(certificate) => Some(certificate.clone()),
        _ => None,
    }
}
