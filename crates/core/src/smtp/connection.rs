//! [`SmtpConnection::connect`]: opens the stream (see [`super::stream`]: TCP with Happy
//! Eyeballs or through a proxy, then TLS) and starts the session (greeting, EHLO, STARTTLS).
//!
//! A small client of its own rather than lettre's `AsyncSmtpConnection`: sending needs to
//! know whether the final `.` of a message was written before a connection broke (if it
//! was, the outcome is unknown and the message must not be resent blindly), to pipeline
//! MAIL/RCPT/DATA, to honour the server's SIZE, to bound every reply, and to log a redacted
//! transcript. lettre still builds the messages.

use std::sync::Arc;

use super::session::{hello_name, SmtpConnection};
use super::stream::{self, tls_handshake, Stream};
use super::trace::{ConnectTrace, TlsFacts};
use crate::config::{Auth, StartTls, TransportConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::hints::Hint;
use crate::log::Logger;

impl SmtpConnection {
    /// Connects, reads the greeting, says EHLO and sets up TLS: implicit TLS when the
    /// config says `secure`, else STARTTLS, which is required whenever the config has
    /// credentials (a missing STARTTLS is an `ETLS` error, never a plaintext fallback).
    pub async fn connect(
        config: &TransportConfig,
        tls: &Arc<rustls::ClientConfig>,
        logger: &Logger,
    ) -> Result<Self> {
        Self::connect_traced(config, tls, logger, &mut ConnectTrace::default()).await
    }

    /// [`SmtpConnection::connect`], noting in `trace` what each step saw (the doctor's view).
    pub async fn connect_traced(
        config: &TransportConfig,
        tls: &Arc<rustls::ClientConfig>,
        logger: &Logger,
        trace: &mut ConnectTrace,
    ) -> Result<Self> {
        let peer = format!("{}:{}", config.host, config.port);
        let socket = stream::open(config, tls, logger, trace).await?;
        let stream = if config.implicit_tls {
            let tls_stream = tls_handshake(socket, config, tls).await?;
            trace.tls = Some(TlsFacts::of(&tls_stream));
            Stream::Tls(Box::new(tls_stream))
        } else {
            Stream::Plain(socket)
        };
        let mut connection = SmtpConnection::new(stream, peer, config.implicit_tls, config, logger);
        let hello = hello_name(config);
        let greeted = connection.greet(config.timeouts.greeting, &hello).await;
        trace.greeting = connection.greeting.clone();
        greeted?;
        trace.ehlo = connection.capabilities.lines.clone();

        if !connection.encrypted && config.starttls != StartTls::Never {
            let needs_tls = config.starttls == StartTls::Required || !matches!(config.auth, Auth::None);
            trace.starttls_offered = Some(connection.capabilities.starttls);
            if connection.capabilities.starttls {
                connection.start_tls(config, tls).await?;
                if let Stream::Tls(tls_stream) = connection.stream.get_ref() {
                    trace.tls = Some(TlsFacts::of(tls_stream));
                }
                connection.ehlo(&hello).await?;
            } else if needs_tls {
                connection.quit().await;
                return Err(Error::new(
                    ErrorKind::Tls,
                    format!("{}:{} does not offer STARTTLS: credentials are never sent over an unencrypted connection (use port 465 with secure: true if the server wants implicit TLS)", config.host, config.port),
                )
                .with_command("STARTTLS")
                .with_hint(Hint::render("tls.no_starttls", &Default::default())));
            }
        }
        trace.ehlo_after_tls = connection.capabilities.lines.clone();
        Ok(connection)
    }

    /// The EHLO keywords the server offers now.
    pub fn capabilities(&self) -> &[String] {
        &self.capabilities.lines
    }
}
