//! nodemailer's `proxy` option: a tunnel to the SMTP server through an HTTP CONNECT proxy
//! (`http://`, `https://`) or a SOCKS5 proxy (`socks5://` resolves the SMTP host here,
//! `socks5h://` lets the proxy resolve it; RFC 1928, username/password RFC 1929).
//!
//! The proxy URL may carry a password: it is never printed. Errors and log lines name the
//! proxy by `host:port` only.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};
use crate::secret::Secret;

/// The longest CONNECT answer read (status line and headers).
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    Http,
    /// HTTP CONNECT inside TLS to the proxy, verified with the SMTP connection's trust.
    Https,
    /// `remote_dns`: `socks5h://`, the proxy resolves the SMTP host name.
    Socks5 {
        remote_dns: bool,
    },
}

/// A parsed `proxy` URL. `Debug` shows the kind and `host:port` only.
#[derive(Clone)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    /// user and password, percent-decoded, from the URL's user-info.
    credentials: Option<(Secret, Secret)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.credentials.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Proxy {
    /// Parses a proxy URL. The problem returned never repeats the URL.
    pub fn parse(text: &str) -> std::result::Result<Proxy, String> {
        let url = url::Url::parse(text).map_err(|err| {
            format!("must be a proxy URL such as http://proxy:3128 or socks5://proxy:1080 ({err})")
        })?;
        let (kind, default_port) = match url.scheme() {
            "http" => (ProxyKind::Http, 80),
            "https" => (ProxyKind::Https, 443),
            "socks5" => (ProxyKind::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (ProxyKind::Socks5 { remote_dns: true }, 1080),
            // Without "://" the part before ":" is likely a user name, not a scheme.
            other if !text.starts_with(&format!("{other}://")) => {
                return Err(
                    "must be a proxy URL such as http://proxy:3128 or socks5://proxy:1080".to_string(),
                )
            }
            other => {
                return Err(format!(
                    "uses the unsupported scheme {other:?}: use http://, https://, socks5:// or socks5h://"
                ))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err("has no proxy host name".to_string()),
        };
        let decode = |part: &str| Secret::new(percent_decode_str(part).decode_utf8_lossy());
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((decode(user), decode(password.unwrap_or("")))),
        };
        if let (ProxyKind::Socks5 { .. }, Some((user, password))) = (kind, &credentials) {
            // RFC 1929 gives each one byte of length.
            if user.expose().len() > 255 || password.expose().len() > 255 {
                return Err("has a user name or password longer than SOCKS5 allows (255 bytes)".to_string());
            }
        }
        Ok(Proxy {
            kind,
            host,
            port: url.port().unwrap_or(default_port),
            credentials,
        })
    }

    /// `host:port`, bracketed for IPv6: how errors and log lines name the proxy.
    pub fn name(&self) -> String {
        authority(&self.host, self.port)
    }

    /// What the transcript calls the proxy kind.
    pub fn label(&self) -> &'static str {
        match self.kind {
            ProxyKind::Http => "HTTP proxy",
            ProxyKind::Https => "HTTPS proxy",
            ProxyKind::Socks5 { .. } => "SOCKS5 proxy",
        }
    }

    fn error(&self, problem: impl fmt::Display) -> Error {
        Error::new(
            ErrorKind::Connection,
            format!("{} {}: {problem}", self.label(), self.name()),
        )
        .with_command("CONN")
    }

    /// Removes the credentials from text the proxy sent (a proxy might echo them).
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_string();
        if let Some((user, password)) = &self.credentials {
            let basic = basic_credentials(user, password);
            for secret in [basic.as_str(), password.expose()] {
                if !secret.is_empty() {
                    text = text.replace(secret, "<redacted>");
                }
            }
        }
        text
    }
}

/// Where the tunnel leads: the SMTP server, by name (CONNECT, `socks5h`) or by address
/// (`socks5`, resolved here).
pub enum Target<'a> {
    Name(&'a str, u16),
    Address(SocketAddr),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Name(host, port) => f.write_str(&authority(host, *port)),
            Target::Address(addr) => write!(f, "{addr}"),
        }
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn basic_credentials(user: &Secret, password: &Secret) -> Zeroizing<String> {
    let pair = Zeroizing::new(format!("{}:{}", user.expose(), password.expose()));
    Zeroizing::new(STANDARD.encode(pair.as_bytes()))
}

/// Asks the proxy, over `io` (connected to it, and for `https://` through TLS), for a tunnel
/// to `target`. Afterwards `io` carries the SMTP dialogue.
pub async fn open_tunnel<S>(io: &mut S, proxy: &Proxy, target: &Target<'_>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match proxy.kind {
        ProxyKind::Http | ProxyKind::Https => http_connect(io, proxy, target).await,
        ProxyKind::Socks5 { .. } => socks5_connect(io, proxy, target).await,
    }
}

async fn http_connect<S>(io: &mut S, proxy: &Proxy, target: &Target<'_>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = Zeroizing::new(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"));
    if let Some((user, password)) = &proxy.credentials {
        let basic = basic_credentials(user, password);
        request.push_str(&format!("Proxy-Authorization: Basic {}\r\n", basic.as_str()));
    }
    request.push_str("\r\n");
    let io_error = |err: std::io::Error| proxy.error(format!("the CONNECT request failed: {err}"));
    io.write_all(request.as_bytes()).await.map_err(io_error)?;
    io.flush().await.map_err(io_error)?;

    // Byte by byte up to the blank line: what follows it is the SMTP server's and must stay
    // unread here.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err(proxy.error(format!(
                "its answer to CONNECT is longer than {MAX_CONNECT_RESPONSE} bytes"
            )));
        }
        let byte = io.read_u8().await.map_err(|err| match err.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                proxy.error("it closed the connection instead of answering CONNECT")
            }
            _ => io_error(err),
        })?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let (version, status) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let status: u16 = match (version.starts_with("HTTP/1."), status.parse()) {
        (true, Ok(status)) => status,
        _ => {
            let shown: String = proxy.scrub(status_line).chars().take(100).collect();
            return Err(proxy.error(format!(
                "it answered CONNECT with something other than HTTP: {shown:?}"
            )));
        }
    };
    if (200..300).contains(&status) {
        return Ok(());
    }
    let reason: String = proxy
        .scrub(words.next().unwrap_or_default())
        .chars()
        .take(100)
        .collect();
    let why = match status {
        407 if proxy.credentials.is_some() => "the proxy refused the user name and password of the proxy URL",
        407 => "the proxy wants credentials: put them in the proxy URL (http://user:password@proxy:3128)",
        _ => "the proxy refused the tunnel",
    };
    Err(proxy
        .error(format!("CONNECT {target} was answered {status} {reason}: {why}"))
        .with_http_status(status))
}

const SOCKS_VERSION: u8 = 5;
const NO_AUTHENTICATION: u8 = 0x00;
const USERNAME_PASSWORD: u8 = 0x02;
const NO_ACCEPTABLE_METHOD: u8 = 0xff;

/// RFC 1928 §6: what a failed CONNECT reply code means.
fn socks_reply_meaning(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused by the SMTP server",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

async fn socks5_connect<S>(io: &mut S, proxy: &Proxy, target: &Target<'_>) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io_error = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            proxy.error("it closed the connection during the SOCKS5 handshake")
        }
        _ => proxy.error(format!("the SOCKS5 handshake failed: {err}")),
    };
    let methods: &[u8] = match proxy.credentials {
        Some(_) => &[NO_AUTHENTICATION, USERNAME_PASSWORD],
        None => &[NO_AUTHENTICATION],
    };
    let mut greeting = vec![SOCKS_VERSION, methods.len() as u8];
    greeting.extend_from_slice(methods);
    io.write_all(&greeting).await.map_err(io_error)?;
    let mut choice = [0u8; 2];
    io.read_exact(&mut choice).await.map_err(io_error)?;
    if choice[0] != SOCKS_VERSION {
        return Err(proxy.error(format!("it is not a SOCKS5 proxy (version byte {})", choice[0])));
    }
    match (choice[1], &proxy.credentials) {
        (NO_AUTHENTICATION, _) => {}
        (USERNAME_PASSWORD, Some((user, password))) => {
            // RFC 1929: version 1, then the user name and the password, each with its length.
            let (user, password) = (user.expose().as_bytes(), password.expose().as_bytes());
            let mut request = Zeroizing::new(vec![1u8, user.len() as u8]);
            request.extend_from_slice(user);
            request.push(password.len() as u8);
            request.extend_from_slice(password);
            io.write_all(&request).await.map_err(io_error)?;
            let mut status = [0u8; 2];
            io.read_exact(&mut status).await.map_err(io_error)?;
            if status[1] != 0 {
                return Err(proxy.error("it refused the user name and password of the proxy URL"));
            }
        }
        (NO_ACCEPTABLE_METHOD, None) => {
            return Err(proxy.error(
                "it wants credentials: put them in the proxy URL (socks5://user:password@proxy:1080)",
            ))
        }
        (NO_ACCEPTABLE_METHOD, Some(_)) => {
            return Err(proxy.error("it accepts neither no authentication nor a user name and password"))
        }
        (other, _) => {
            return Err(proxy.error(format!(
                "it chose an authentication method that was not offered ({other})"
            )))
        }
    }

    let mut request = vec![SOCKS_VERSION, 0x01 /* CONNECT */, 0x00];
    match target {
        Target::Name(host, port) => {
            if host.len() > 255 {
                return Err(proxy.error("the SMTP host name is longer than SOCKS5 allows (255 bytes)"));
            }
            request.push(0x03);
            request.push(host.len() as u8);
            request.extend_from_slice(host.as_bytes());
            request.extend_from_slice(&port.to_be_bytes());
        }
        Target::Address(addr) => {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    request.push(0x01);
                    request.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    request.push(0x04);
                    request.extend_from_slice(&ip.octets());
                }
            }
            request.extend_from_slice(&addr.port().to_be_bytes());
        }
    }
    io.write_all(&request).await.map_err(io_error)?;
    let mut reply = [0u8; 4];
    io.read_exact(&mut reply).await.map_err(io_error)?;
    if reply[1] != 0 {
        let code = reply[1];
        let meaning = socks_reply_meaning(code);
        return Err(proxy.error(format!(
            "it could not connect to {target}: {meaning} (SOCKS5 reply {code})"
        )));
    }
    // The address the proxy bound, which is of no use here, but must be read past.
    let bound_len = match reply[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => io.read_u8().await.map_err(io_error)? as usize,
        other => return Err(proxy.error(format!("its CONNECT reply has an unknown address type ({other})"))),
    };
    let mut bound = vec![0u8; bound_len + 2];
    io.read_exact(&mut bound).await.map_err(io_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn urls_parse_and_never_print_their_credentials() {
        let proxy = Proxy::parse("socks5h://us%40er:p%3Ass@[::1]:1081").unwrap();
        assert_eq!(proxy.kind, ProxyKind::Socks5 { remote_dns: true });
        assert_eq!(proxy.name(), "[::1]:1081");
        let (user, password) = proxy.credentials.as_ref().unwrap();
        assert_eq!((user.expose(), password.expose()), ("us@er", "p:ss"));
        let shown = format!("{proxy:?}");
        assert!(
            !shown.contains("p:ss") && !shown.contains("p%3Ass") && !shown.contains("us@er"),
            "{shown}"
        );

        assert_eq!(Proxy::parse("http://proxy").unwrap().port, 80);
        assert_eq!(Proxy::parse("https://proxy").unwrap().port, 443);
        assert_eq!(Proxy::parse("socks5://proxy").unwrap().port, 1080);
        let problem = Proxy::parse("ftp://user:canary@proxy:21").unwrap_err();
        assert!(problem.contains("unsupported scheme \"ftp\""), "{problem}");
        let problem = Proxy::parse("canary-password@proxy").unwrap_err();
        assert!(!problem.contains("canary"), "{problem}");
    }

    /// Runs `open_tunnel` against a scripted proxy: `script` gets the proxy's end.
    async fn tunnel_with<F, Fut>(url: &str, target: Target<'_>, script: F) -> Result<()>
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let proxy = Proxy::parse(url).unwrap();
        let (mut client, server) = duplex(4096);
        let peer = tokio::spawn(script(server));
        let outcome = open_tunnel(&mut client, &proxy, &target).await;
        if outcome.is_ok() {
            // What the proxy sends after its answer is the SMTP server's: still unread.
            let mut greeting = [0u8; 4];
            client.read_exact(&mut greeting).await.unwrap();
            assert_eq!(&greeting, b"220 ");
        }
        drop(client);
        peer.await.unwrap();
        outcome
    }

    async fn read_head(io: &mut tokio::io::DuplexStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(io.read_u8().await.unwrap());
        }
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn http_connect_sends_basic_credentials_and_leaves_the_greeting_unread() {
        tunnel_with("http://al%20ice:s3cret@proxy:3128", Target::Name("smtp.example.test", 587), |mut io| async move {
            let head = read_head(&mut io).await;
            let basic = STANDARD.encode("al ice:s3cret");
            assert_eq!(
                head,
                format!("CONNECT smtp.example.test:587 HTTP/1.1\r\nHost: smtp.example.test:587\r\nProxy-Authorization: Basic {basic}\r\n\r\n")
            );
            io.write_all(b"HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n220 ").await.unwrap();
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn http_connect_refusals_name_the_status_not_the_password() {
        let err = tunnel_with(
            "http://alice:s3cret@proxy:3128",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                read_head(&mut io).await;
                io.write_all(b"HTTP/1.1 407 Proxy Authentication Required s3cret\r\n\r\n")
                    .await
                    .unwrap();
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert_eq!(err.http_status(), Some(407));
        assert!(
            err.message()
                .starts_with("HTTP proxy proxy:3128: CONNECT smtp.example.test:587 was answered 407"),
            "{err}"
        );
        assert!(
            err.message().contains("refused the user name and password"),
            "{err}"
        );
        assert!(!err.message().contains("s3cret"), "{err}");

        let err = tunnel_with(
            "http://proxy:3128",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                read_head(&mut io).await;
                io.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await.unwrap();
            },
        )
        .await
        .unwrap_err();
        assert!(
            err.message()
                .contains("was answered 403 Forbidden: the proxy refused the tunnel"),
            "{err}"
        );

        let err = tunnel_with(
            "http://proxy:3128",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                read_head(&mut io).await;
                io.write_all(b"SSH-2.0-OpenSSH\r\n\r\n").await.unwrap();
            },
        )
        .await
        .unwrap_err();
        assert!(err.message().contains("something other than HTTP"), "{err}");
    }

    #[tokio::test]
    async fn socks5h_authenticates_and_sends_the_host_name() {
        tunnel_with(
            "socks5h://alice:s3cret@proxy:1080",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                let mut greeting = [0u8; 4];
                io.read_exact(&mut greeting).await.unwrap();
                assert_eq!(greeting, [5, 2, 0, 2]);
                io.write_all(&[5, 2]).await.unwrap();
                let mut auth = [0u8; 14];
                io.read_exact(&mut auth).await.unwrap();
                assert_eq!(&auth, b"\x01\x05alice\x06s3cret");
                io.write_all(&[1, 0]).await.unwrap();
                let mut request = [0u8; 5 + 17 + 2];
                io.read_exact(&mut request).await.unwrap();
                assert_eq!(&request[..5], &[5, 1, 0, 3, 17]);
                assert_eq!(&request[5..22], b"smtp.example.test");
                assert_eq!(&request[22..], &587u16.to_be_bytes());
                io.write_all(&[5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 25])
                    .await
                    .unwrap();
                io.write_all(b"220 ").await.unwrap();
            },
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn socks5_sends_an_address_and_maps_reply_codes() {
        let target = Target::Address("[::1]:587".parse().unwrap());
        let err = tunnel_with("socks5://proxy:1080", target, |mut io| async move {
            let mut greeting = [0u8; 3];
            io.read_exact(&mut greeting).await.unwrap();
            assert_eq!(greeting, [5, 1, 0]);
            io.write_all(&[5, 0]).await.unwrap();
            let mut request = [0u8; 4 + 16 + 2];
            io.read_exact(&mut request).await.unwrap();
            assert_eq!(&request[..4], &[5, 1, 0, 4]);
            io.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.message(),
            "SOCKS5 proxy proxy:1080: it could not connect to [::1]:587: connection refused by the SMTP server (SOCKS5 reply 5)"
        );
    }

    #[tokio::test]
    async fn socks5_refused_credentials_are_named() {
        let err = tunnel_with(
            "socks5://alice:s3cret@proxy:1080",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                let mut greeting = [0u8; 4];
                io.read_exact(&mut greeting).await.unwrap();
                io.write_all(&[5, 2]).await.unwrap();
                let mut auth = [0u8; 14];
                io.read_exact(&mut auth).await.unwrap();
                io.write_all(&[1, 1]).await.unwrap();
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(
            err.message().contains("refused the user name and password"),
            "{err}"
        );
        assert!(!err.message().contains("s3cret"), "{err}");

        let err = tunnel_with(
            "socks5://proxy:1080",
            Target::Name("smtp.example.test", 587),
            |mut io| async move {
                let mut greeting = [0u8; 3];
                io.read_exact(&mut greeting).await.unwrap();
                io.write_all(&[5, 0xff]).await.unwrap();
            },
        )
        .await
        .unwrap_err();
        assert!(err.message().contains("it wants credentials"), "{err}");
    }
}
