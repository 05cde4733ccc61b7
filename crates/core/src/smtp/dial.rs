//! A TCP connection to a host name: resolve it, then race its addresses as RFC 8305 (Happy
//! Eyeballs) says, so that a black-holed address (a broken IPv6 route) costs a fraction of a
//! second instead of the whole connection timeout.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

use crate::error::{Error, ErrorKind, Result};

/// RFC 8305 §5 recommends 250 ms between connection attempts.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// nodemailer's `dnsTimeout` default.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(30);

type Lookup = dyn Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync;

/// Host names to addresses: the system resolver (`getaddrinfo`, which reads `/etc/hosts` and
/// orders the answer by RFC 6724), or a fixed function, which tests use to give a name
/// addresses that misbehave.
#[derive(Clone, Default)]
pub enum Resolver {
    #[default]
    System,
    Fixed(Arc<Lookup>),
}

impl Resolver {
    pub fn fixed(lookup: impl Fn(&str) -> io::Result<Vec<IpAddr>> + Send + Sync + 'static) -> Self {
        Resolver::Fixed(Arc::new(lookup))
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        match self {
            Resolver::System => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
            // On the blocking pool, as tokio runs getaddrinfo: a slow lookup is bounded alike.
            Resolver::Fixed(lookup) => {
                let (lookup, host) = (Arc::clone(lookup), host.to_string());
                let found = tokio::task::spawn_blocking(move || lookup(&host)).await??;
                Ok(found.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
            }
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolver::System => "System",
            Resolver::Fixed(_) => "Fixed",
        })
    }
}

/// Where a name or address should be dialled from.
pub struct DialOptions<'a> {
    pub resolver: &'a Resolver,
    /// Bind to this address; only server addresses of its family are tried.
    pub local_address: Option<IpAddr>,
    /// The bound of the name lookup.
    pub dns_timeout: Duration,
}

/// `IPv4` or `IPv6`, for log lines.
pub fn family(addr: &SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// The addresses of `host` (an IP literal is its own address), in the order they are tried.
pub async fn addresses(host: &str, port: u16, options: &DialOptions<'_>) -> Result<Vec<SocketAddr>> {
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let resolved = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => match tokio::time::timeout(options.dns_timeout, options.resolver.resolve(host, port)).await
        {
            Ok(Ok(found)) => found,
            Ok(Err(err)) => {
                return Err(
                    Error::new(ErrorKind::Connection, format!("cannot resolve {host}: {err}"))
                        .with_command("CONN")
                        .with_source(err),
                )
            }
            Err(_) => {
                let limit = options.dns_timeout.as_millis();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("resolving {host} timed out after {limit} ms (dnsTimeout)"),
                )
                .with_command("CONN"));
            }
        },
    };
    let usable: Vec<SocketAddr> = match options.local_address {
        Some(local) => resolved
            .iter()
            .copied()
            .filter(|addr| addr.is_ipv4() == local.is_ipv4())
            .collect(),
        None => resolved.clone(),
    };
    if usable.is_empty() {
        let message = match options.local_address {
            Some(local) if !resolved.is_empty() => format!(
                "{host} has no {} address, and localAddress {local} can reach no other",
                if local.is_ipv4() { "IPv4" } else { "IPv6" }
            ),
            _ => format!("{host} resolves to no address"),
        };
        return Err(Error::new(ErrorKind::Connection, message).with_command("CONN"));
    }
    Ok(interleave(usable))
}

/// RFC 8305 §4: the family of the first answer first, then the families alternate, each
/// keeping the resolver's order.
fn interleave(addresses: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let first_is_v4 = addresses[0].is_ipv4();
    let (mut first, mut second): (VecDeque<_>, VecDeque<_>) = addresses
        .into_iter()
        .partition(|addr| addr.is_ipv4() == first_is_v4);
    let mut ordered = Vec::with_capacity(first.len() + second.len());
    loop {
        match (first.pop_front(), second.pop_front()) {
            (None, None) => return ordered,
            (a, b) => ordered.extend(a.into_iter().chain(b)),
        }
    }
}

/// Connects to one of `addresses` (in order): the next attempt starts when the previous one
/// fails or after [`ATTEMPT_DELAY`], the first connection wins, the others are dropped (which
/// closes their sockets). No bound of its own: the caller bounds it by the connection timeout.
pub async fn race(
    addresses: &[SocketAddr],
    local_address: Option<IpAddr>,
    name: &str,
) -> Result<(TcpStream, SocketAddr)> {
    let mut waiting: VecDeque<SocketAddr> = addresses.iter().copied().collect();
    let mut attempts = JoinSet::new();
    let mut failures = Vec::new();
    let mut all_refused = true;
    let mut start_next = true;
    loop {
        if start_next {
            if let Some(addr) = waiting.pop_front() {
                attempts.spawn(async move { (addr, attempt(addr, local_address).await) });
            }
        }
        let Some(more_waiting) = (!attempts.is_empty()).then_some(!waiting.is_empty()) else {
            let failed = failures.join("; ");
            let err = Error::new(
                ErrorKind::Connection,
                format!("cannot connect to {name}: {failed}"),
            )
            .with_command("CONN");
            // Every address said no: nothing listens there (the doctor tells it apart).
            return Err(match all_refused {
                true => err.with_source(io::Error::from(io::ErrorKind::ConnectionRefused)),
                false => err,
            });
        };
        tokio::select! {
            Some(joined) = attempts.join_next() => {
                match joined {
                    Ok((addr, Ok(tcp))) => return Ok((tcp, addr)),
                    Ok((addr, Err(err))) => {
                        all_refused &= err.kind() == io::ErrorKind::ConnectionRefused;
                        failures.push(format!("{addr}: {err}"));
                    }
                    Err(err) => {
                        all_refused = false;
                        failures.push(format!("a connection attempt failed: {err}"));
                    }
                }
                start_next = true;
            }
            _ = tokio::time::sleep(ATTEMPT_DELAY), if more_waiting => start_next = true,
        }
    }
}

async fn attempt(addr: SocketAddr, local_address: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(local) = local_address {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    let tcp = socket.connect(addr).await?;
    // Without it every message on a reused connection waits for the server's delayed ACK
    // (~40 ms) before its final "." leaves.
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

#[cfg(test)]
pub(super) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), 25)
    }

    fn v6(last: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)), 25)
    }

    /// A listening socket that never accepts, its queue filled: Linux drops further SYNs, so
    /// a connect to it hangs, as to a black-holed address, while this value lives.
    pub(in crate::smtp) struct BlackHole {
        pub addr: SocketAddr,
        _listener: TcpListener,
        _queued: Vec<TcpStream>,
    }

    pub(in crate::smtp) async fn black_hole(ip: IpAddr) -> BlackHole {
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4().unwrap()
        } else {
            TcpSocket::new_v6().unwrap()
        };
        socket.bind(SocketAddr::new(ip, 0)).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        // The accept queue of a backlog-1 socket holds two connections.
        let mut queued = Vec::new();
        for _ in 0..2 {
            queued.push(TcpStream::connect(addr).await.unwrap());
        }
        BlackHole {
            addr,
            _listener: listener,
            _queued: queued,
        }
    }

    fn options(resolver: &Resolver) -> DialOptions<'_> {
        DialOptions {
            resolver,
            local_address: None,
            dns_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn families_alternate_starting_with_the_first_answer() {
        assert_eq!(
            interleave(vec![v6(1), v6(2), v6(3), v4(1)]),
            vec![v6(1), v4(1), v6(2), v6(3)]
        );
        assert_eq!(
            interleave(vec![v4(1), v4(2), v6(1), v6(2)]),
            vec![v4(1), v6(1), v4(2), v6(2)]
        );
        assert_eq!(interleave(vec![v4(1)]), vec![v4(1)]);
    }

    #[tokio::test]
    async fn a_black_holed_first_address_costs_one_attempt_delay_not_the_timeout() {
        // smtp.example.test is [::1] (black-holed) and 127.0.0.1 (listening), on one port.
        let hole = black_hole(IpAddr::V6(Ipv6Addr::LOCALHOST)).await;
        let silent = hole.addr;
        let _server = TcpListener::bind((Ipv4Addr::LOCALHOST, silent.port()))
            .await
            .unwrap();
        let resolver = Resolver::fixed(|_| {
            Ok(vec![
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ])
        });
        let found = addresses("smtp.example.test", silent.port(), &options(&resolver))
            .await
            .unwrap();
        assert_eq!(found[0], silent);
        let started = Instant::now();
        let connecting = race(&found, None, "smtp.example.test");
        let (tcp, winner) = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .expect("the race must not wait for the silent address")
            .unwrap();
        assert_eq!(winner, found[1]);
        assert_eq!(tcp.peer_addr().unwrap(), found[1]);
        // Generous: the point is "one attempt delay", not the 10 s bound above.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_refused_address_starts_the_next_at_once_and_all_failures_are_named() {
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let refused = closed.local_addr().unwrap();
        drop(closed);
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let good = server.local_addr().unwrap();
        let (_, winner) = race(&[refused, good], None, "h").await.unwrap();
        assert_eq!(winner, good);

        let err = race(&[refused], None, "smtp.example.test:25").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(
            err.message()
                .contains(&format!("cannot connect to smtp.example.test:25: {refused}: ")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn local_address_keeps_its_family_and_binds_the_socket() {
        let server = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = server.local_addr().unwrap().port();
        let resolver = Resolver::fixed(|_| {
            Ok(vec![
                IpAddr::V6(Ipv6Addr::LOCALHOST),
                IpAddr::V4(Ipv4Addr::LOCALHOST),
            ])
        });
        let bound = DialOptions {
            local_address: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))),
            ..options(&resolver)
        };
        let found = addresses("smtp.example.test", port, &bound).await.unwrap();
        assert_eq!(
            found,
            vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)]
        );
        let (tcp, _) = race(&found, bound.local_address, "smtp.example.test")
            .await
            .unwrap();
        assert_eq!(
            tcp.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
        );

        let only_v6 = DialOptions {
            local_address: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ..options(&resolver)
        };
        let err = addresses("127.0.0.1", port, &only_v6).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connection);
        assert!(
            err.message()
                .contains("127.0.0.1 has no IPv6 address, and localAddress ::1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_slow_resolver_is_bounded_by_the_dns_timeout() {
        let resolver = Resolver::fixed(|_| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(vec![])
        });
        let hurried = DialOptions {
            dns_timeout: Duration::from_millis(50),
            ..options(&resolver)
        };
        let err = addresses("smtp.example.test", 25, &hurried).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert!(
            err.message()
                .contains("resolving smtp.example.test timed out after 50 ms (dnsTimeout)"),
            "{err}"
        );

        let empty = Resolver::fixed(|_| Ok(vec![]));
        let err = addresses("smtp.example.test", 25, &options(&empty))
            .await
            .unwrap_err();
        assert!(
            err.message().contains("smtp.example.test resolves to no address"),
            "{err}"
        );
    }
}
