//! The socket of an SMTP connection: TCP (with `TCP_NODELAY`), then TLS (implicit, or
//! after STARTTLS), and [`SmtpConnection::connect`], which opens it and starts the session.
//!
//! A small client of its own rather than lettre's `AsyncSmtpConnection`: sending needs to
//! know whether the final `.` of a message was written before a connection broke (if it
//! was, the outcome is unknown and the message must not be resent blindly), to pipeline
//! MAIL/RCPT/DATA, to honour the server's SIZE, to bound every reply, and to log a redacted
//! transcript. lettre still builds the messages.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::session::{hello_name, SmtpConnection};
use crate::config::{Auth, TransportConfig};
use crate::error::{Error, ErrorKind, Result};
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
        let peer = format!("{}:{}", config.host, config.port);
        let connecting = TcpStream::connect((config.host.as_str(), config.port));
        let tcp = match tokio::time::timeout(config.timeouts.connection, connecting).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                return Err(
                    Error::new(ErrorKind::Connection, format!("cannot connect to {peer}: {err}"))
                        .with_command("CONN")
                        .with_source(err),
                )
            }
            Err(_) => {
                let limit = config.timeouts.connection.as_millis();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("connection to {peer} timed out after {limit} ms"),
                )
                .with_command("CONN"));
            }
        };
        // Without it every message on a reused connection waits for the server's delayed
        // ACK (~40 ms) before its final "." leaves.
        tcp.set_nodelay(true).map_err(|err| {
            Error::new(
                ErrorKind::Connection,
                format!("cannot configure the socket: {err}"),
            )
        })?;
        logger.transcript(|| format!("connected to {peer}"));

        let stream = if config.implicit_tls {
            Stream::Tls(Box::new(tls_handshake(tcp, config, tls).await?))
        } else {
            Stream::Plain(tcp)
        };
        let mut connection = SmtpConnection::new(stream, peer, config.implicit_tls, config, logger);
        let hello = hello_name(config);
        connection.greet(config.timeouts.greeting, &hello).await?;

        if !connection.encrypted {
            let needs_tls = !matches!(config.auth, Auth::None);
            if connection.capabilities.starttls {
                connection.start_tls(config, tls).await?;
                connection.ehlo(&hello).await?;
            } else if needs_tls {
                connection.quit().await;
                return Err(Error::new(
                    ErrorKind::Tls,
                    format!("{}:{} does not offer STARTTLS: credentials are never sent over an unencrypted connection (use port 465 with secure: true if the server wants implicit TLS)", config.host, config.port),
                )
                .with_command("STARTTLS"));
            }
        }
        Ok(connection)
    }
}

/// The handshake, with the transport's one TLS configuration (built once, so its root store
/// is not rebuilt for every connection).
pub(super) async fn tls_handshake(
    tcp: TcpStream,
    config: &TransportConfig,
    tls_config: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let server_name = config.tls_server_name();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|err| {
        Error::new(
            ErrorKind::Tls,
            format!("invalid TLS server name {server_name:?}: {err}"),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls_config));
    match tokio::time::timeout(config.timeouts.connection, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(err)) => Err(Error::new(
            ErrorKind::Tls,
            format!("TLS handshake with {server_name} failed: {err}"),
        )
        .with_command("STARTTLS")
        .with_source(err)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("TLS handshake with {server_name} timed out"),
        )
        .with_command("STARTTLS")),
    }
}

/// The socket, before or after TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between taking the plain socket and putting the TLS one back.
    Closed,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}
