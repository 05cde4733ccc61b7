//! One SMTP connection: TCP (with `TCP_NODELAY`), TLS (implicit or STARTTLS), EHLO, AUTH,
//! then messages, each with PIPELINING when the server offers it.
//!
//! A small client of its own rather than lettre's `AsyncSmtpConnection`: sending needs to
//! know whether the final `.` of a message was written before a connection broke (if it
//! was, the outcome is unknown and the message must not be resent blindly), to pipeline
//! MAIL/RCPT/DATA, to honour the server's SIZE, to bound every reply, and to log a redacted
//! transcript. lettre still builds the messages.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tokio::io::{AsyncWriteExt, BufReader};
use zeroize::Zeroizing;

use super::reply::{read_reply, refused, ReadFailure, Reply, Step};
use super::stream::{self, tls_handshake, Stream};
use super::xoauth2::{decode_challenge, xoauth2_command, xoauth2_initial_response};
use crate::config::{is_hello_name, Auth, TransportConfig};
use crate::error::{Error, ErrorKind, RejectedRecipient, Result, SmtpReply};
use crate::log::Logger;
use crate::message::{encode_base64_lines, MessageBody, OutgoingMessage, Segment, BASE64_LINE_INPUT};
use crate::secret::Secret;

/// The credentials a connection authenticates with, as they are at this moment.
pub enum Login<'a> {
    XOAuth2 { user: &'a str, token: &'a Secret },
    Password { user: &'a str, password: &'a Secret },
}

/// What the server did with one message.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    /// The final reply to DATA, e.g. `250 2.0.0 OK <id> [Hostname=...]`.
    pub response: String,
}

/// What the server announced in its EHLO reply.
#[derive(Debug, Default, Clone)]
struct Capabilities {
    starttls: bool,
    pipelining: bool,
    eight_bit_mime: bool,
    smtputf8: bool,
    /// `SIZE n`; `Some(0)` means "no fixed limit".
    size: Option<u64>,
    auth: Vec<String>,
}

impl Capabilities {
    fn from_ehlo(reply: &Reply) -> Self {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
            match keyword.as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "AUTH" => caps.auth.extend(words.map(str::to_ascii_uppercase)),
                _ => {}
            }
        }
        caps
    }

    fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth.iter().any(|m| m == mechanism)
    }
}

pub struct SmtpConnection {
    stream: BufReader<Stream>,
    socket_timeout: Duration,
    /// Set once TLS is up; credentials are never sent before.
    encrypted: bool,
    capabilities: Capabilities,
    logger: Logger,
    /// `host:port`, for messages.
    peer: String,
    /// `false` once the dialogue is in an unknown state: the connection must not be reused.
    usable: bool,
    messages_sent: usize,
    /// The final `.` of a message was written and its reply not yet read: a failure now
    /// (even a panic) means the message may have been delivered.
    awaiting_final_reply: bool,
    /// While AUTH runs: the secret strings sent, removed from any reply that echoes them
    /// (errors and the transcript show replies).
    sent_secrets: Vec<Zeroizing<String>>,
}

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
        let socket = stream::open(config, tls, logger).await?;
        let stream = if config.implicit_tls {
            Stream::Tls(Box::new(tls_handshake(socket, config, tls).await?))
        } else {
            Stream::Plain(socket)
        };
        let mut connection = SmtpConnection {
            stream: BufReader::new(stream),
            socket_timeout: config.timeouts.socket,
            encrypted: config.implicit_tls,
            capabilities: Capabilities::default(),
            logger: logger.clone(),
            peer,
            usable: true,
            messages_sent: 0,
            awaiting_final_reply: false,
            sent_secrets: Vec::new(),
        };
        let greeting =
            match tokio::time::timeout(config.timeouts.greeting, connection.read(Step::Greeting)).await {
                Ok(reply) => reply?,
                Err(_) => {
                    let limit = config.timeouts.greeting.as_millis();
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("{} sent no greeting within {limit} ms", connection.peer),
                    )
                    .with_command("CONN"));
                }
            };
        if greeting.code != 220 {
            return Err(refused(Step::Greeting, greeting.to_smtp_reply()));
        }
        let hello = hello_name(config);
        connection.ehlo(&hello).await?;

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

    /// How many messages this connection has sent.
    pub fn messages_sent(&self) -> usize {
        self.messages_sent
    }

    /// `false` once a failure left the dialogue in an unknown state.
    pub fn is_usable(&self) -> bool {
        self.usable
    }

    /// The final `.` of the current message was written and the server has not answered it.
    pub fn message_may_have_left(&self) -> bool {
        self.awaiting_final_reply
    }

    async fn ehlo(&mut self, hello: &str) -> Result<()> {
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

    async fn start_tls(
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

    /// AUTH with `login`. Refused credentials are `EAUTH` with the server's reply and a hint.
    pub async fn authenticate(&mut self, login: &Login<'_>) -> Result<()> {
        if !self.encrypted {
            return Err(Error::new(
                ErrorKind::Tls,
                "refusing to authenticate over an unencrypted connection",
            ));
        }
        let outcome = match login {
            Login::XOAuth2 { user, token } => self.auth_xoauth2(user, token).await,
            Login::Password { user, password } => self.auth_password(user, password).await,
        };
        self.sent_secrets.clear();
        outcome
    }

    async fn auth_xoauth2(&mut self, user: &str, token: &Secret) -> Result<()> {
        let step = Step::Auth("AUTH XOAUTH2");
        if !self.capabilities.offers_auth("XOAUTH2") {
            let offered = self.capabilities.auth.join(" ");
            return Err(Error::new(
                ErrorKind::Auth,
                format!("the server does not offer AUTH XOAUTH2 (it offers: {offered})"),
            )
            .with_command(step.command()));
        }
        let initial = xoauth2_initial_response(user, token.expose());
        self.sent_secrets = vec![initial.clone(), Zeroizing::new(token.expose().to_string())];
        let line = xoauth2_command(&initial);
        let reply = self.command(step, &line, Some("AUTH XOAUTH2 <redacted>")).await?;
        if reply.code != 334 {
            return Ok(());
        }
        // A refused XOAUTH2 may come as a 334 challenge carrying a JSON error (Google's way);
        // the client answers with an empty line to receive the final 535.
        let details = self.scrub(decode_challenge(&reply.lines.join(" ")));
        let final_reply = match self.command(step, "", None).await {
            Err(err) => match err.reply() {
                Some(reply) => reply.clone(),
                None => return Err(err),
            },
            Ok(reply) => reply.to_smtp_reply(),
        };
        let err = refused(
            step,
            SmtpReply {
                code: 535,
                ..final_reply.clone()
            },
        );
        let message = format!("authentication refused: {final_reply}; the server explained: {details}");
        let hint = err
            .hint()
            .unwrap_or("The server refused the token: check its scope and the mailbox.")
            .to_string();
        Err(Error::new(ErrorKind::Auth, message)
            .with_reply(step.command(), final_reply)
            .with_hint(hint))
    }

    async fn auth_password(&mut self, user: &str, password: &Secret) -> Result<()> {
        if self.capabilities.offers_auth("PLAIN") {
            let step = Step::Auth("AUTH PLAIN");
            let credentials = Zeroizing::new(format!("\0{user}\0{}", password.expose()));
            let encoded = Zeroizing::new(STANDARD.encode(credentials.as_bytes()));
            self.sent_secrets = vec![encoded.clone(), Zeroizing::new(password.expose().to_string())];
            let line = Zeroizing::new(format!("AUTH PLAIN {}", encoded.as_str()));
            self.command(step, &line, Some("AUTH PLAIN <redacted>")).await?;
            return Ok(());
        }
        if self.capabilities.offers_auth("LOGIN") {
            let step = Step::Auth("AUTH LOGIN");
            self.command(step, "AUTH LOGIN", None).await?;
            self.command(step, &STANDARD.encode(user), Some("<username redacted>"))
                .await?;
            let encoded = Zeroizing::new(STANDARD.encode(password.expose()));
            self.sent_secrets = vec![encoded.clone(), Zeroizing::new(password.expose().to_string())];
            self.command(step, &encoded, Some("<password redacted>")).await?;
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Auth,
            "the server offers neither AUTH PLAIN nor AUTH LOGIN",
        )
        .with_command("AUTH"))
    }

    /// MAIL FROM, RCPT TO for each recipient, DATA (pipelined when offered), then the
    /// message. Refused recipients are reported, not fatal, unless every one is refused
    /// (`EENVELOPE`). If the connection breaks after the final `.` and before the server's
    /// reply, the error is `EUNKNOWN_DELIVERY`: the message may have been delivered.
    pub async fn send(&mut self, message: &OutgoingMessage) -> Result<Delivery> {
        let size = message.body.len() as u64;
        if let Some(limit) = self.capabilities.size.filter(|&limit| limit > 0 && size > limit) {
            return Err(Error::message_error(format!(
                "the message is {size} bytes but the server accepts at most {limit} bytes (its SIZE): nothing was sent"
            )));
        }
        let mail = self.mail_command(message, size)?;
        let recipients: Vec<String> = message.envelope_to.iter().map(|a| a.to_string()).collect();
        let outcome = if self.capabilities.pipelining {
            self.envelope_pipelined(&mail, &recipients).await?
        } else {
            self.envelope_one_by_one(&mail, &recipients).await?
        };
        let (accepted, rejected) = match outcome {
            Envelope::Ready { accepted, rejected } => (accepted, rejected),
            Envelope::Refused(err) => {
                self.reset().await;
                return Err(err);
            }
        };

        self.write_message(&message.body).await?;
        let reply = tokio::time::timeout(self.socket_timeout, read_reply(&mut self.stream)).await;
        self.awaiting_final_reply = false;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(failure)) => return Err(self.unknown_delivery(describe_failure(&failure))),
            Err(_) => {
                let limit = self.socket_timeout.as_millis();
                return Err(self.unknown_delivery(format!("no reply within {limit} ms (socketTimeout)")));
            }
        };
        self.logger.transcript(|| format!("S: {}", reply.to_smtp_reply()));
        if !reply.is_positive() {
            self.reset().await;
            return Err(refused(Step::Message, reply.to_smtp_reply()));
        }
        self.messages_sent += 1;
        Ok(Delivery {
            accepted,
            rejected,
            response: reply.to_smtp_reply().to_string(),
        })
    }

    fn mail_command(&self, message: &OutgoingMessage, size: u64) -> Result<String> {
        let from = message
            .envelope_from
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let mut mail = format!("MAIL FROM:<{from}>");
        if self.capabilities.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if !message.body.is_ascii() && self.capabilities.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        let non_ascii_address =
            !from.is_ascii() || message.envelope_to.iter().any(|a| !a.to_string().is_ascii());
        if non_ascii_address {
            if !self.capabilities.smtputf8 {
                return Err(Error::new(
                    ErrorKind::Envelope,
                    "an envelope address is not ASCII and the server does not support SMTPUTF8",
                ));
            }
            mail.push_str(" SMTPUTF8");
        }
        Ok(mail)
    }

    /// MAIL, every RCPT and DATA in one write; then their replies, in order.
    async fn envelope_pipelined(&mut self, mail: &str, recipients: &[String]) -> Result<Envelope> {
        let mut batch = format!("{mail}\r\n");
        self.logger.transcript(|| format!("C: {mail}"));
        for recipient in recipients {
            batch.push_str(&format!("RCPT TO:<{recipient}>\r\n"));
            self.logger.transcript(|| format!("C: RCPT TO:<{recipient}>"));
        }
        batch.push_str("DATA\r\n");
        self.logger.transcript(|| "C: DATA".to_string());
        self.write(Step::MailFrom, batch.as_bytes()).await?;

        let mail_reply = self.read(Step::MailFrom).await?;
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for recipient in recipients {
            let reply = self.read(Step::RcptTo).await?;
            if reply.is_positive() {
                accepted.push(recipient.clone());
            } else {
                rejected.push(RejectedRecipient {
                    recipient: recipient.clone(),
                    reply: reply.to_smtp_reply(),
                });
            }
        }
        let data_reply = self.read(Step::Data).await?;
        let refusal = if !mail_reply.is_positive() {
            Some(refused(Step::MailFrom, mail_reply.to_smtp_reply()))
        } else if accepted.is_empty() {
            Some(all_refused(rejected.clone()))
        } else if data_reply.code != 354 {
            Some(refused(Step::Data, data_reply.to_smtp_reply()))
        } else {
            None
        };
        match refusal {
            None => Ok(Envelope::Ready { accepted, rejected }),
            Some(err) => {
                // A server that still said 354 is waiting for content: end it empty.
                if data_reply.code == 354 {
                    self.write(Step::Message, b".\r\n").await?;
                    self.read(Step::Message).await?;
                }
                Ok(Envelope::Refused(err))
            }
        }
    }

    async fn envelope_one_by_one(&mut self, mail: &str, recipients: &[String]) -> Result<Envelope> {
        let mail_reply = self.command(Step::MailFrom, mail, None).await;
        if let Err(err) = mail_reply {
            return if err.reply().is_some() {
                Ok(Envelope::Refused(err))
            } else {
                Err(err)
            };
        }
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for recipient in recipients {
            match self
                .command(Step::RcptTo, &format!("RCPT TO:<{recipient}>"), None)
                .await
            {
                Ok(_) => accepted.push(recipient.clone()),
                Err(err) => match err.reply() {
                    Some(reply) => rejected.push(RejectedRecipient {
                        recipient: recipient.clone(),
                        reply: reply.clone(),
                    }),
                    None => return Err(err),
                },
            }
        }
        if accepted.is_empty() {
            return Ok(Envelope::Refused(all_refused(rejected)));
        }
        match self.command(Step::Data, "DATA", None).await {
            Ok(_) => Ok(Envelope::Ready { accepted, rejected }),
            Err(err) if err.reply().is_some() => Ok(Envelope::Refused(err)),
            Err(err) => Err(err),
        }
    }

    /// The message, dot-stuffed, line endings made CRLF, then the final `.`: written in
    /// chunks, large attachments base64-encoded on the way, never copied whole.
    async fn write_message(&mut self, body: &MessageBody) -> Result<()> {
        const CHUNK: usize = 64 * 1024;
        // A multiple of 57 input bytes encodes to whole 76-character lines.
        const BASE64_CHUNK: usize = BASE64_LINE_INPUT * 1024;
        let mut out = Vec::with_capacity(CHUNK * 2);
        let mut lines = WireLines::default();
        for segment in body.segments() {
            match segment {
                Segment::Bytes(bytes) => {
                    for chunk in bytes.chunks(CHUNK) {
                        lines.push(chunk, &mut out);
                        self.write_full_chunk(&mut out, CHUNK).await?;
                    }
                }
                Segment::Base64(bytes) => {
                    lines.end_line(&mut out);
                    for (index, chunk) in bytes.chunks(BASE64_CHUNK).enumerate() {
                        if index > 0 {
                            out.extend_from_slice(b"\r\n");
                        }
                        encode_base64_lines(chunk, &mut out);
                        self.write_full_chunk(&mut out, CHUNK).await?;
                    }
                    lines.after_base64();
                }
            }
        }
        lines.finish(&mut out);
        self.write(Step::Message, &out).await?;
        self.awaiting_final_reply = true;
        self.logger
            .transcript(|| format!("C: <message, {} bytes>", body.len()));
        self.logger.transcript(|| "C: .".to_string());
        Ok(())
    }

    /// Writes `out` once it holds at least `chunk` bytes.
    async fn write_full_chunk(&mut self, out: &mut Vec<u8>, chunk: usize) -> Result<()> {
        if out.len() >= chunk {
            self.write_unflushed(Step::Message, out).await?;
            out.clear();
        }
        Ok(())
    }

    /// RSET after a refused transaction, so the connection can be reused; if that fails,
    /// the connection is marked unusable.
    async fn reset(&mut self) {
        if self.usable && self.command(Step::Reset, "RSET", None).await.is_err() {
            self.usable = false;
        }
    }

    /// Says QUIT and closes; a server that does not answer is simply dropped.
    pub async fn quit(mut self) {
        if self.usable {
            self.socket_timeout = self.socket_timeout.min(Duration::from_secs(5));
            let _ = self.command(Step::Quit, "QUIT", None).await;
        }
        let _ = self.stream.get_mut().shutdown().await;
    }

    /// Sends one command line and reads its reply; a negative reply is an error of the
    /// step's kind. `shown` replaces the line in the transcript (for secrets).
    async fn command(&mut self, step: Step, line: &str, shown: Option<&str>) -> Result<Reply> {
        self.logger.transcript(|| format!("C: {}", shown.unwrap_or(line)));
        let mut bytes = Zeroizing::new(Vec::with_capacity(line.len() + 2));
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.write(step, &bytes).await?;
        let reply = self.read(step).await?;
        if reply.is_positive() {
            Ok(reply)
        } else {
            Err(refused(step, reply.to_smtp_reply()))
        }
    }

    async fn write(&mut self, step: Step, bytes: &[u8]) -> Result<()> {
        self.write_unflushed(step, bytes).await?;
        let flushing = self.stream.get_mut().flush();
        match tokio::time::timeout(self.socket_timeout, flushing).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.broken(step, format!("write failed: {err}"))),
            Err(_) => Err(self.timed_out(step)),
        }
    }

    async fn write_unflushed(&mut self, step: Step, bytes: &[u8]) -> Result<()> {
        let writing = self.stream.get_mut().write_all(bytes);
        match tokio::time::timeout(self.socket_timeout, writing).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(self.broken(step, format!("write failed: {err}"))),
            Err(_) => Err(self.timed_out(step)),
        }
    }

    /// Reads one reply (positive or not); a connection failure is an error.
    async fn read(&mut self, step: Step) -> Result<Reply> {
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

    fn scrub(&self, mut text: String) -> String {
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

    fn unknown_delivery(&mut self, why: String) -> Error {
        self.usable = false;
        Error::new(
            ErrorKind::UnknownDelivery,
            format!("the message was sent to {} but the connection failed before the server confirmed it ({why}): it may or may not have been delivered, and it was not resent", self.peer),
        )
        .with_command(Step::Message.command())
    }
}

/// Turns message bytes into DATA content: CRLF line endings (a bare CR or LF becomes
/// CRLF, as nodemailer does) and a `.` doubled at the start of a line.
#[derive(Default)]
struct WireLines {
    /// Nothing yet, or the last byte written ended a line.
    at_line_start: bool,
    started: bool,
    pending_cr: bool,
}

impl WireLines {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &byte in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                }
                _ => {
                    if byte == b'.' && (self.at_line_start || !self.started) {
                        out.push(b'.');
                    }
                    out.push(byte);
                    self.at_line_start = false;
                }
            }
            self.started = true;
        }
    }

    /// Completes a CR left pending at the end of a segment.
    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
    }

    /// Base64 lines end without a line break and never start with a dot.
    fn after_base64(&mut self) {
        self.started = true;
        self.at_line_start = false;
    }

    /// The end-of-data marker, on a line of its own.
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_line(out);
        if !self.at_line_start && self.started {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

enum Envelope {
    Ready {
        accepted: Vec<String>,
        rejected: Vec<RejectedRecipient>,
    },
    Refused(Error),
}

fn all_refused(rejected: Vec<RejectedRecipient>) -> Error {
    let list: Vec<String> = rejected
        .iter()
        .map(|r| format!("{} ({})", r.recipient, r.reply))
        .collect();
    let mut err = Error::new(
        ErrorKind::Envelope,
        format!("all recipients were refused: {}", list.join(", ")),
    );
    if let Some(first) = rejected.first() {
        err = err.with_reply(Step::RcptTo.command(), first.reply.clone());
    }
    err.with_rejected(rejected)
}

fn describe_failure(failure: &ReadFailure) -> String {
    match failure {
        ReadFailure::Io(err) => err.to_string(),
        ReadFailure::Closed => "the server closed the connection".to_string(),
        ReadFailure::Malformed(why) => why.clone(),
    }
}

fn hello_name(config: &TransportConfig) -> String {
    if let Some(name) = &config.hello_name {
        return name.clone();
    }
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .filter(|name| is_hello_name(name))
        .unwrap_or_else(|| "[127.0.0.1]".to_string())
}

#[cfg(test)]
mod tests {
    use super::WireLines;

    fn wire(parts: &[&[u8]]) -> String {
        let mut lines = WireLines::default();
        let mut out = Vec::new();
        for part in parts {
            lines.push(part, &mut out);
        }
        lines.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dots_are_stuffed_and_line_endings_made_crlf() {
        assert_eq!(wire(&[b".a\r\n.b\nc\rd"]), "..a\r\n..b\r\nc\r\nd\r\n.\r\n");
        // A CRLF split between two chunks stays one line break.
        assert_eq!(wire(&[b"a\r", b"\nb\r\n"]), "a\r\nb\r\n.\r\n");
        assert_eq!(wire(&[b""]), ".\r\n");
    }
}
