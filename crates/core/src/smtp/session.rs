//! The SMTP session: the connection object, the greeting, EHLO and the capabilities it
//! announces, STARTTLS, QUIT, and the plumbing every command goes through (write, read one
//! bounded reply, judge it by the reply-code table, keep secrets out of the transcript).
//!
//! The session is generic over its byte stream so that its state machines run in tests on
//! `tokio::io::duplex` against a scripted server; in use the stream is the socket
//! ([`Stream`]: TCP, then TLS).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

use super::reply::{judge, read_reply, ReadFailure, Reply, Step};
use super::stream::{tls_handshake, Stream};
use crate::config::{is_hello_name, TransportConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::log::Logger;

/// What the server announced in its EHLO reply.
#[derive(Debug, Default, Clone)]
pub(super) struct Capabilities {
    pub starttls: bool,
    pub pipelining: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub chunking: bool,
    /// `SIZE n`; `Some(0)` means "no fixed limit".
    pub size: Option<u64>,
    pub auth: Vec<String>,
    /// Every keyword line as the server sent it (`SIZE 157286400`, `AUTH LOGIN XOAUTH2`).
    pub lines: Vec<String>,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities {
            lines: reply.lines.iter().skip(1).cloned().collect(),
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "CHUNKING" => caps.chunking = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {}
            }
        }
        caps
    }

    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

/// One SMTP connection and the state of its dialogue.
pub struct SmtpConnection<S = Stream> {
    pub(super) stream: BufReader<S>,
    pub(super) socket_timeout: Duration,
    /// Set once TLS is up; credentials are never sent before.
    pub(super) encrypted: bool,
    pub(super) capabilities: Capabilities,
    pub(super) logger: Logger,
    /// `host:port`, for messages.
    pub(super) peer: String,
    /// `false` once the dialogue is in an unknown state: the connection must not be reused.
    pub(super) usable: bool,
    pub(super) messages_sent: usize,
    /// The final `.` (or `BDAT ... LAST`) of a message was written and its reply not yet
    /// read: a failure now (even a panic) means the message may have been delivered.
    pub(super) awaiting_final_reply: bool,
    /// Recipients per transaction (`maxRecipientsPerMessage`).
    pub(super) max_recipients: usize,
    /// BDAT when the server offers CHUNKING (`chunking: true`).
    pub(super) chunking: bool,
    /// While AUTH runs: the secret strings sent, removed from any reply that echoes them
    /// (errors and the transcript show replies).
    pub(super) sent_secrets: Vec<Zeroizing<String>>,
    /// The server's greeting, once read.
    pub(super) greeting: Option<String>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpConnection<S> {
    /// A session over `stream`, before the greeting.
    pub(super) fn new(
        stream: S,
        peer: String,
        encrypted: bool,
        config: &TransportConfig,
        logger: &Logger,
    ) -> Self {
        SmtpConnection {
            stream: BufReader::new(stream),
            socket_timeout: config.timeouts.socket,
            encrypted,
            capabilities: Capabilities::default(),
            logger: logger.clone(),
            peer,
            usable: true,
            messages_sent: 0,
            awaiting_final_reply: false,
            max_recipients: config.max_recipients_per_message,
            chunking: config.chunking,
            sent_secrets: Vec::new(),
            greeting: None,
        }
    }

    /// Reads the greeting (within `limit`) and says EHLO.
    pub(super) async fn greet(&mut self, limit: Duration, hello: &str) -> Result<()> {
        let greeting = match tokio::time::timeout(limit, self.read(Step::Greeting)).await {
            Ok(reply) => reply?,
            Err(_) => {
                let limit = limit.as_millis();
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{} sent no greeting within {limit} ms", self.peer),
                )
                .with_command("CONN"));
            }
        };
        self.greeting = Some(greeting.to_smtp_reply().to_string());
        self.judged(Step::Greeting, greeting)?;
        self.ehlo(hello).await
    }

    pub(super) async fn ehlo(&mut self, hello: &str) -> Result<()> {
        let reply = match self.command(Step::Ehlo, &format!("EHLO {hello}"), None).await {
            Ok(reply) => reply,
            // A server that predates ESMTP: HELO works, but offers no STARTTLS or AUTH.
            Err(err) if err.reply().is_some_and(|r| r.code == 500 || r.code == 502) => {
                self.command(Step::Ehlo, &format!("HELO {hello}"), None).await?
            }
            Err(err) => return Err(err),
        };
        self.capabilities = Capabilities::from_ehlo(&reply);
        Ok(())
    }

    /// How many messages this connection has sent.
    pub fn messages_sent(&self) -> usize {
        self.messages_sent
    }

    /// `false` once a failure left the dialogue in an unknown state.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// The end of the current message was written and the server has not answered it.
    pub fn message_may_have_left(&self) -> bool {
        self.awaiting_final_reply
    }

    /// Whether an idle connection can carry the next message: usable, and nothing arrived
    /// while it was idle. A server that gave up on it (`421 idle timeout`) or closed it has
    /// left bytes (or an end of stream) that would otherwise be read as the reply to the
    /// next command. Checked without waiting.
    pub fn is_reusable(&mut self) -> bool {
        if !self.usable {
            return false;
        }
        let mut context = Context::from_waker(Waker::noop());
        let waiting = match Pin::new(&mut self.stream).poll_fill_buf(&mut context) {
            Poll::Pending => return true,
            Poll::Ready(Ok(bytes)) => String::from_utf8_lossy(bytes).trim_end().to_string(),
            Poll::Ready(Err(err)) => err.to_string(),
        };
        self.usable = false;
        self.logger.transcript(|| match waiting.is_empty() {
            true => "S: <closed while idle>".to_string(),
            false => format!("S: {waiting} <sent while idle: the connection is not reused>"),
        });
        false
    }

    /// Says QUIT and closes; a server that does not answer is simply dropped.
    pub async fn quit(mut self) {
        if self.usable {
            self.socket_timeout = self.socket_timeout.min(Duration::from_secs(5));
            let _ = self.command(Step::Quit, "QUIT", None).await;
        }
        let _ = self.stream.get_mut().shutdown().await;
    }

    /// Sends one command line and reads its reply, which must be a success code of `step`
    /// (else the error it means). `shown` replaces the line in the transcript (for secrets).
    pub(super) async fn command(&mut self, step: Step, line: &str, shown: Option<&str>) -> Result<Reply> {
        let reply = self.exchange(step, line, shown).await?;
        self.judged(step, reply)
    }

    /// Sends one command line and reads its reply, whatever its code.
    pub(super) async fn exchange(&mut self, step: Step, line: &str, shown: Option<&str>) -> Result<Reply> {
        self.logger.transcript(|| format!("C: {}", shown.unwrap_or(line)));
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(step, &bytes).await?;
        self.read(step).await
    }

    /// `reply` if it is a success of `step`, else its error. A reply the step does not
    /// allow, or a 421 (the server is closing), leaves the connection unusable.
    pub(super) fn judged(&mut self, step: Step, reply: Reply) -> Result<Reply> {
        match judge(step, &reply) {
            Ok(()) => Ok(reply),
            Err(err) => {
                if err.kind() == ErrorKind::Protocol || reply.code == 421 {
                    self.usable = false;
                }
                Err(err)
            }
        }
    }

    pub(super) async fn write(&mut self, step: Step, bytes: &[u8]) -> Result<()> {
        self.write_unflushed(step, bytes).await?;
        let flushing = self.stream.get_mut().flush();
        match tokio::time::timeout(self.socket_timeout, flushing).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.broken(step, format!("write failed: {err}"))),
            Err(_) => Err(self.timed_out(step)),
        }
    }

    pub(super) async fn write_unflushed(&mut self, step: Step, bytes: &[u8]) -> Result<()> {
        let writing = self.stream.get_mut().write_all(bytes);
        match tokio::time::timeout(self.socket_timeout, writing).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.broken(step, format!("write failed: {err}"))),
            Err(_) => Err(self.timed_out(step)),
        }
    }

    /// Reads one reply (whatever its code); a connection failure is an error.
    pub(super) async fn read(&mut self, step: Step) -> Result<Reply> {
        let reply = match tokio::time::timeout(self.socket_timeout, read_reply(&mut self.stream)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(ReadFailure::Malformed(why))) => {
                self.usable = false;
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("{} sent {why} during {}", self.peer, step.describe()),
                )
                .with_command(step.command()));
            }
            Ok(Err(failure)) => return Err(self.broken(step, describe_failure(&failure))),
            Err(_) => return Err(self.timed_out(step)),
        };
        let reply = self.without_secrets(reply);
        self.logger.transcript(|| format!("S: {}", reply.to_smtp_reply()));
        Ok(reply)
    }

    /// A server that echoes what AUTH sent must not put it into errors or logs.
    fn without_secrets(&self, mut reply: Reply) -> Reply {
        if !self.sent_secrets.is_empty() {
            reply.lines = reply.lines.into_iter().map(|line| self.scrub(line)).collect();
        }
        reply
    }

    pub(super) fn scrub(&self, mut text: String) -> String {
        for secret in self.sent_secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    fn broken(&mut self, step: Step, why: String) -> Error {
        self.usable = false;
        let kind = if matches!(step, Step::StartTls) {
            ErrorKind::Tls
        } else {
            ErrorKind::Connection
        };
        Error::new(
            kind,
            format!(
                "connection to {} failed during {}: {why}",
                self.peer,
                step.describe()
            ),
        )
        .with_command(step.command())
    }

    fn timed_out(&mut self, step: Step) -> Error {
        self.usable = false;
        let limit = self.socket_timeout.as_millis();
        Error::new(
            ErrorKind::Timeout,
            format!(
                "no answer to {} within {limit} ms (socketTimeout)",
                step.command()
            ),
        )
        .with_command(step.command())
    }

    pub(super) fn unknown_delivery(&mut self, why: String) -> Error {
        self.usable = false;
        Error::new(
            ErrorKind::UnknownDelivery,
            format!("the message was sent to {} but the connection failed before the server confirmed it ({why}): it may or may not have been delivered, and it was not resent", self.peer),
        )
        .with_command(Step::Message.command())
    }
}

impl SmtpConnection<Stream> {
    pub(super) async fn start_tls(
        &mut self,
        config: &TransportConfig,
        tls_config: &Arc<rustls::ClientConfig>,
    ) -> Result<()> {
        self.command(Step::StartTls, "STARTTLS", None).await?;
        // Bytes the server sent after its 220 but before the handshake would be read as if
        // they came over TLS: the classic STARTTLS injection. Refuse them.
        if !self.stream.buffer().is_empty() {
            self.usable = false;
            return Err(Error::new(
                ErrorKind::Tls,
                "the server sent data between STARTTLS and the TLS handshake",
            )
            .with_command("STARTTLS"));
        }
        let Stream::Plain(socket) = std::mem::replace(self.stream.get_mut(), Stream::Closed) else {
            return Err(
                Error::new(ErrorKind::Tls, "the connection is already encrypted").with_command("STARTTLS")
            );
        };
        let tls = tls_handshake(socket, config, tls_config)
            .await
            .inspect_err(|_| self.usable = false)?;
        *self.stream.get_mut() = Stream::Tls(Box::new(tls));
        self.encrypted = true;
        self.logger.transcript(|| "TLS established".to_string());
        Ok(())
    }
}

pub(super) fn describe_failure(failure: &ReadFailure) -> String {
    match failure {
        ReadFailure::Io(err) => err.to_string(),
        ReadFailure::Closed => "the server closed the connection".to_string(),
        ReadFailure::Malformed(why) => why.clone(),
    }
}

pub(super) fn hello_name(config: &TransportConfig) -> String {
    if let Some(name) = &config.hello_name {
        return name.clone();
    }
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| is_hello_name(name))
        .unwrap_or_else(|| "[127.0.0.1]".to_string())
}
