//! The bytes under an SMTP session: a TCP connection to the server (Happy Eyeballs over its
//! addresses, see `dial`) or a tunnel through the configured proxy, then TLS to the SMTP
//! server, end to end through any tunnel.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::dial::{self, family, DialOptions, DEFAULT_DNS_TIMEOUT};
use super::proxy::{self, Proxy, ProxyKind, Target};
use super::trace::ConnectTrace;
use crate::config::TransportConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::log::Logger;

/// The connection to the SMTP server before its own TLS: TCP, or a tunnel through an
/// `https://` proxy (TLS to the proxy, which the SMTP TLS then runs inside).
pub enum Socket {
    Tcp(TcpStream),
    ProxyTls(Box<TlsStream<TcpStream>>),
}

/// The socket, before or after TLS.
pub enum Stream {
    Plain(Socket),
    Tls(Box<TlsStream<Socket>>),
    /// Between taking the plain socket and putting the TLS one back.
    Closed,
}

/// Connects to the SMTP server, directly or through the proxy, within the connection
/// timeout (name lookups, connection attempts and the proxy's handshake together).
pub async fn open(
    config: &TransportConfig,
    tls_config: &Arc<rustls::ClientConfig>,
    logger: &Logger,
    trace: &mut ConnectTrace,
) -> Result<Socket> {
    let limit = config.timeouts.connection;
    match tokio::time::timeout(limit, connect(config, tls_config, logger, trace)).await {
        Ok(socket) => socket,
        Err(_) => {
            let peer = format!("{}:{}", config.host, config.port);
            let via = match &config.network.proxy {
                Some(proxy) => format!(" through the {} {}", proxy.label(), proxy.name()),
                None => String::new(),
            };
            let limit = limit.as_millis();
            Err(Error::new(
                ErrorKind::Timeout,
                format!("connection to {peer}{via} timed out after {limit} ms"),
            )
            .with_command("CONN"))
        }
    }
}

async fn connect(
    config: &TransportConfig,
    tls_config: &Arc<rustls::ClientConfig>,
    logger: &Logger,
    trace: &mut ConnectTrace,
) -> Result<Socket> {
    let network = &config.network;
    let options = DialOptions {
        resolver: &network.resolver,
        local_address: network.local_address,
        dns_timeout: network
            .dns_timeout
            .unwrap_or(DEFAULT_DNS_TIMEOUT)
            .min(config.timeouts.connection),
    };
    let peer = format!("{}:{}", config.host, config.port);
    let Some(proxy) = &network.proxy else {
        let addresses = dial::addresses(&config.host, config.port, &options).await?;
        trace.addresses = addresses.clone();
        let (tcp, addr) = dial::race(&addresses, options.local_address, &peer).await?;
        trace.connected = Some(addr);
        logger.transcript(|| format!("connected to {peer} at {addr} ({})", family(&addr)));
        return Ok(Socket::Tcp(tcp));
    };

    let proxy_name = format!("the {} {}", proxy.label(), proxy.name());
    trace.proxy = Some(proxy_name.clone());
    let addresses = dial::addresses(&proxy.host, proxy.port, &options).await?;
    trace.addresses = addresses.clone();
    let (tcp, addr) = dial::race(&addresses, options.local_address, &proxy_name).await?;
    trace.connected = Some(addr);
    let mut socket = match proxy.kind {
        ProxyKind::Https => {
            let tls = handshake(tcp, &proxy.host, tls_config)
                .await
                .map_err(|err| proxy_tls_error(proxy, err))?;
            Socket::ProxyTls(Box::new(tls))
        }
        _ => Socket::Tcp(tcp),
    };
    let literal = config.host.trim_start_matches('[').trim_end_matches(']').parse();
    let target = match (proxy.kind, literal) {
        (_, Ok(ip)) => Target::Address(std::net::SocketAddr::new(ip, config.port)),
        // `socks5://`: the SMTP host is resolved here, and the proxy is given an address.
        (ProxyKind::Socks5 { remote_dns: false }, _) => {
            let here = DialOptions {
                local_address: None,
                ..options
            };
            Target::Address(dial::addresses(&config.host, config.port, &here).await?[0])
        }
        (_, Err(_)) => Target::Name(&config.host, config.port),
    };
    proxy::open_tunnel(&mut socket, proxy, &target).await?;
    logger.transcript(|| {
        format!(
            "connected to {peer} through {proxy_name} at {addr} ({})",
            family(&addr)
        )
    });
    Ok(socket)
}

fn proxy_tls_error(proxy: &Proxy, err: HandshakeError) -> Error {
    let (label, name) = (proxy.label(), proxy.name());
    let message = match err {
        HandshakeError::InvalidName(why) => format!("the {label} {name} has no valid TLS server name: {why}"),
        HandshakeError::Failed(err) => format!("TLS handshake with the {label} {name} failed: {err}"),
    };
    Error::new(ErrorKind::Tls, message).with_command("CONN")
}

enum HandshakeError {
    InvalidName(String),
    Failed(io::Error),
}

/// A TLS client handshake with the transport's one TLS configuration (built once, so its root
/// store is not rebuilt for every connection), checking the certificate against `server_name`.
async fn handshake<IO>(
    io: IO,
    server_name: &str,
    tls_config: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<IO>, HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|err| HandshakeError::InvalidName(err.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls_config));
    connector.connect(name, io).await.map_err(HandshakeError::Failed)
}

/// The handshake with the SMTP server (implicit TLS or after STARTTLS), through any tunnel:
/// the certificate must match the SMTP host (or `tls.servername`), never the proxy.
pub async fn tls_handshake(
    socket: Socket,
    config: &TransportConfig,
    tls_config: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream<Socket>> {
    let server_name = config.tls_server_name();
    match tokio::time::timeout(
        config.timeouts.connection,
        handshake(socket, server_name, tls_config),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(HandshakeError::InvalidName(err))) => Err(Error::new(
            ErrorKind::Tls,
            format!("invalid TLS server name {server_name:?}: {err}"),
        )),
        Ok(Err(HandshakeError::Failed(err))) => Err(Error::new(
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

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Socket::ProxyTls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Socket::ProxyTls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_flush(cx),
            Socket::ProxyTls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Socket::ProxyTls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    use tokio::net::TcpListener;

    use super::*;
    use crate::config::Resolver;
    use crate::input::Value;
    use crate::smtp::dial::tests::black_hole;

    #[tokio::test]
    async fn the_config_resolver_feeds_happy_eyeballs_and_the_first_connection_wins() {
        let hole = black_hole(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
        let silent = hole.addr;
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, silent.port()))
            .await
            .unwrap();
        let smtp = Value::object([
            ("host", Value::str("smtp.example.test")),
            ("port", Value::Number(f64::from(silent.port()))),
            ("connectionTimeout", Value::Number(10_000.0)),
        ]);
        let mut config = TransportConfig::from_value(&smtp, None).unwrap();
        config.network.resolver = Resolver::fixed(|host| {
            assert_eq!(host, "smtp.example.test");
            Ok(vec![
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ])
        });
        let tls = Arc::new(crate::tls::rustls_client_config(&config.tls).unwrap());
        let started = Instant::now();
        let socket = open(&config, &tls, &Logger::default(), &mut ConnectTrace::default())
            .await
            .unwrap();
        let Socket::Tcp(tcp) = socket else {
            panic!("a direct connection is plain TCP")
        };
        assert_eq!(tcp.peer_addr().unwrap(), server.local_addr().unwrap());
        assert!(tcp.nodelay().unwrap());
        // Generous: one attempt delay (250 ms), far from the 10 s connection timeout.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }
}
