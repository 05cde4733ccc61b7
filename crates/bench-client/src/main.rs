//! A minimal SMTP client, the ceiling `npm run bench` compares the transport against: no
//! message building, no retries, no pool logic. Each of N connections does connect, EHLO,
//! STARTTLS, EHLO, one AUTH XOAUTH2, then its share of the messages with PIPELINING (MAIL,
//! RCPT and DATA in one write; after the 354 the body and the final "." in one write), then
//! QUIT.
//!
//! ```text
//! bench-client --port P --ca ca.pem --user U --token T --message msg.eml \
//!              --count 2000 --connections 3 [--host 127.0.0.1] [--servername localhost]
//! ```
//!
//! Prints one JSON line: `{"messages":..,"connections":..,"elapsedMs":..,"perSecond":..,"setupMs":..}`
//! (`setupMs`: the slowest connection's connect-to-`235` time).

#![deny(clippy::all)]

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type BoxError = Box<dyn Error + Send + Sync>;

struct Options {
    host: String,
    port: u16,
    servername: String,
    ca: String,
    user: String,
    token: String,
    message: String,
    count: usize,
    connections: usize,
}

fn parse_args() -> Result<Options, BoxError> {
    let mut options = Options {
        host: "127.0.0.1".into(),
        port: 0,
        servername: "localhost".into(),
        ca: String::new(),
        user: String::new(),
        token: String::new(),
        message: String::new(),
        count: 2000,
        connections: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => options.host = value,
            "--port" => options.port = value.parse()?,
            "--servername" => options.servername = value,
            "--ca" => options.ca = value,
            "--user" => options.user = value,
            "--token" => options.token = value,
            "--message" => options.message = value,
            "--count" => options.count = value.parse()?,
            "--connections" => options.connections = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if options.port == 0 || options.ca.is_empty() || options.token.is_empty() || options.message.is_empty() {
        return Err("--port, --ca, --token and --message are required".into());
    }
    Ok(options)
}

/// Reads one (possibly multi-line) reply and returns its code.
async fn reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<u16, BoxError> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err("the server closed the connection".into());
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an SMTP reply: {line:?}"))?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

async fn expect<R: AsyncBufRead + Unpin>(reader: &mut R, want: u16, step: &str) -> Result<(), BoxError> {
    let code = reply(reader).await?;
    if code == want {
        Ok(())
    } else {
        Err(format!("{step}: expected {want}, got {code}").into())
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut BufReader<S>,
    line: &str,
    want: u16,
) -> Result<(), BoxError> {
    stream.get_mut().write_all(line.as_bytes()).await?;
    stream.get_mut().write_all(b"\r\n").await?;
    stream.get_mut().flush().await?;
    let step = line.split(' ').next().unwrap_or(line);
    expect(stream, want, step).await
}

/// The message as it goes on the wire: CRLF line breaks, dot-stuffed, then the final ".".
fn wire_body(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32 + 5);
    let mut previous = b'\n';
    for &byte in raw {
        if byte == b'.' && previous == b'\n' {
            out.push(b'.');
        }
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    if previous != b'\n' {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

struct Shared {
    options: Options,
    tls: tokio_rustls::TlsConnector,
    envelope: Vec<u8>,
    body: Vec<u8>,
    /// Messages not yet taken by a connection.
    remaining: AtomicUsize,
}

impl Shared {
    /// Takes one message to send; `false` when none is left.
    fn take(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One connection: set up, then send messages until none is left. Returns how many it sent
/// and how long the setup took (connect to `235` after AUTH).
async fn connection(shared: Arc<Shared>) -> Result<(usize, Duration), BoxError> {
    let options = &shared.options;
    let setup_started = Instant::now();
    let tcp = TcpStream::connect((options.host.as_str(), options.port)).await?;
    tcp.set_nodelay(true)?;
    let mut plain = BufReader::new(tcp);
    expect(&mut plain, 220, "greeting").await?;
    command(&mut plain, "EHLO bench-client", 250).await?;
    command(&mut plain, "STARTTLS", 220).await?;
    let name = ServerName::try_from(options.servername.clone())?;
    let tls = shared.tls.connect(name, plain.into_inner()).await?;
    let mut stream = BufReader::new(tls);
    command(&mut stream, "EHLO bench-client", 250).await?;
    let sasl = format!("user={}\x01auth=Bearer {}\x01\x01", options.user, options.token);
    command(
        &mut stream,
        &format!("AUTH XOAUTH2 {}", STANDARD.encode(sasl)),
        235,
    )
    .await?;
    let setup = setup_started.elapsed();

    let mut sent = 0;
    while shared.take() {
        stream.get_mut().write_all(&shared.envelope).await?;
        stream.get_mut().flush().await?;
        expect(&mut stream, 250, "MAIL FROM").await?;
        expect(&mut stream, 250, "RCPT TO").await?;
        expect(&mut stream, 354, "DATA").await?;
        stream.get_mut().write_all(&shared.body).await?;
        stream.get_mut().flush().await?;
        expect(&mut stream, 250, "end of DATA").await?;
        sent += 1;
    }
    command(&mut stream, "QUIT", 221).await?;
    let _ = stream.get_mut().shutdown().await;
    Ok((sent, setup))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = parse_args()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&options.ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let raw = std::fs::read(&options.message)?;
    let envelope = format!(
        "MAIL FROM:<{user}>\r\nRCPT TO:<rcpt@example.com>\r\nDATA\r\n",
        user = options.user
    )
    .into_bytes();
    let shared = Arc::new(Shared {
        tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        envelope,
        body: wire_body(&raw),
        remaining: AtomicUsize::new(options.count),
        options,
    });

    let started = Instant::now();
    let tasks: Vec<_> = (0..shared.options.connections)
        .map(|_| tokio::spawn(connection(Arc::clone(&shared))))
        .collect();
    let mut messages = 0;
    let mut slowest_setup = Duration::ZERO;
    for task in tasks {
        let (sent, setup) = task.await??;
        messages += sent;
        slowest_setup = slowest_setup.max(setup);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"messages\":{messages},\"connections\":{},\"elapsedMs\":{:.1},\"perSecond\":{:.1},\"setupMs\":{:.1}}}",
        shared.options.connections,
        elapsed * 1000.0,
        messages as f64 / elapsed,
        slowest_setup.as_secs_f64() * 1000.0
    );
    Ok(())
}
