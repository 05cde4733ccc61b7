//! One SMTP connection: TCP (with `TCP_NODELAY`), TLS, EHLO, AUTH, then messages.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use zeroize::Zeroizing;

use super::reply::{from_lettre, refused, reply_of, Step};
use super::xoauth2::{decode_challenge, xoauth2_initial_response};
use crate::config::{Auth, TransportConfig};
use crate::error::{Error, ErrorKind, RejectedRecipient, Result, SmtpReply};
use crate::message::OutgoingMessage;
use crate::secret::Secret;
use crate::tls::{rustls_client_config, smtp_tls_parameters};

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

pub struct SmtpConnection {
    inner: AsyncSmtpConnection,
    socket_timeout: Duration,
    /// Set once TLS is up; credentials are never sent before.
    encrypted: bool,
}

impl SmtpConnection {
    /// Connects, reads the greeting, says EHLO and sets up TLS: implicit TLS when the
    /// config says `secure`, else STARTTLS, which is required whenever the config has
    /// credentials (a missing STARTTLS is an `ETLS` error, never a plaintext fallback).
    pub async fn connect(config: &TransportConfig) -> Result<Self> {
        let address = format!("{}:{}", config.host, config.port);
        let tcp = match tokio::time::timeout(
            config.timeouts.connection,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                return Err(Error::new(
                    ErrorKind::Connection,
                    format!("cannot connect to {address}: {err}"),
                )
                .with_command("CONN")
                .with_source(err))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "connection to {address} timed out after {} ms",
                        config.timeouts.connection.as_millis()
                    ),
                )
                .with_command("CONN"))
            }
        };
        // lettre writes the message and the final "." separately; with Nagle's algorithm on,
        // each message then waits for the server's delayed ACK (~40 ms).
        tcp.set_nodelay(true).map_err(|err| {
            Error::new(
                ErrorKind::Connection,
                format!("cannot configure the socket: {err}"),
            )
        })?;

        let stream: Box<dyn AsyncTokioStream> = if config.implicit_tls {
            Box::new(ImplicitTls::handshake(tcp, config).await?)
        } else {
            Box::new(tcp)
        };
        let hello = hello_name(config);
        let greeting = AsyncSmtpConnection::connect_with_transport(stream, &hello);
        let inner = match tokio::time::timeout(config.timeouts.greeting, greeting).await {
            Ok(Ok(inner)) => inner,
            Ok(Err(err)) => return Err(from_lettre(err, Step::Greeting)),
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "{address} sent no greeting within {} ms",
                        config.timeouts.greeting.as_millis()
                    ),
                )
                .with_command("CONN"))
            }
        };
        let mut connection = SmtpConnection {
            inner,
            socket_timeout: config.timeouts.socket,
            encrypted: config.implicit_tls,
        };

        if !connection.encrypted {
            let offers_starttls = connection
                .inner
                .server_info()
                .supports_feature(Extension::StartTls);
            let needs_tls = !matches!(config.auth, Auth::None);
            if offers_starttls {
                let parameters = smtp_tls_parameters(&config.tls, config.tls_server_name())?;
                let limit = connection.socket_timeout;
                within(
                    limit,
                    Step::StartTls,
                    connection.inner.starttls(parameters, &hello),
                )
                .await?;
                connection.encrypted = true;
            } else if needs_tls {
                connection.quit().await;
                return Err(Error::new(
                    ErrorKind::Tls,
                    format!("{address} does not offer STARTTLS: credentials are never sent over an unencrypted connection (use port 465 with secure: true if the server wants implicit TLS)"),
                )
                .with_command("STARTTLS"));
            }
        }
        Ok(connection)
    }

    /// AUTH with `login`. Refused credentials are `EAUTH` with the server's reply and a hint.
    pub async fn authenticate(&mut self, login: &Login<'_>) -> Result<()> {
        if !self.encrypted {
            return Err(Error::new(
                ErrorKind::Tls,
                "refusing to authenticate over an unencrypted connection",
            ));
        }
        match login {
            Login::XOAuth2 { user, token } => self.auth_xoauth2(user, token).await,
            Login::Password { user, password } => self.auth_password(user, password).await,
        }
    }

    async fn auth_xoauth2(&mut self, user: &str, token: &Secret) -> Result<()> {
        let step = Step::Auth("AUTH XOAUTH2");
        if !self
            .inner
            .server_info()
            .supports_auth_mechanism(Mechanism::Xoauth2)
        {
            return Err(
                Error::new(ErrorKind::Auth, "the server does not offer AUTH XOAUTH2")
                    .with_command(step.command()),
            );
        }
        let line = SecretLine(Zeroizing::new(format!(
            "AUTH XOAUTH2 {}",
            xoauth2_initial_response(user, token.expose()).as_str()
        )));
        let limit = self.socket_timeout;
        let response = within(limit, step, self.inner.command(line)).await?;
        if !response.has_code(334) {
            return Ok(());
        }
        // A refused XOAUTH2 may come as a 334 challenge carrying a JSON error (Google's way);
        // the client must answer with an empty line to receive the final 535.
        let details = decode_challenge(&response_text(&response));
        let outcome = within(
            limit,
            step,
            self.inner.command(SecretLine(Zeroizing::new(String::new()))),
        )
        .await;
        let reply = match outcome {
            Err(err) => err.reply().cloned(),
            Ok(response) => Some(to_reply(&response)),
        }
        .unwrap_or(SmtpReply {
            code: 535,
            text: "no final reply after the challenge".into(),
        });
        let err = refused(step, reply);
        let message = format!("{}; the server explained: {details}", err.message());
        Err(Error::new(ErrorKind::Auth, message)
            .with_reply(
                step.command(),
                err.reply().cloned().expect("refused() sets the reply"),
            )
            .with_hint(
                err.hint()
                    .unwrap_or("The server refused the token: check the token's scope and the mailbox.")
                    .to_string(),
            ))
    }

    async fn auth_password(&mut self, user: &str, password: &Secret) -> Result<()> {
        let info = self.inner.server_info();
        let (mechanism, step) = if info.supports_auth_mechanism(Mechanism::Plain) {
            (Mechanism::Plain, Step::Auth("AUTH PLAIN"))
        } else if info.supports_auth_mechanism(Mechanism::Login) {
            (Mechanism::Login, Step::Auth("AUTH LOGIN"))
        } else {
            return Err(Error::new(
                ErrorKind::Auth,
                "the server offers neither AUTH PLAIN nor AUTH LOGIN",
            )
            .with_command("AUTH"));
        };
        let credentials = Credentials::new(user.to_string(), password.expose().to_string());
        let limit = self.socket_timeout;
        within(limit, step, self.inner.auth(&[mechanism], &credentials)).await?;
        Ok(())
    }

    /// MAIL FROM, RCPT TO for each recipient, DATA. Refused recipients are reported, not
    /// fatal, unless every one is refused (`EENVELOPE`).
    pub async fn send(&mut self, message: &OutgoingMessage) -> Result<Delivery> {
        let limit = self.socket_timeout;
        let mut parameters = Vec::new();
        let non_ascii_address = message
            .envelope_from
            .iter()
            .chain(&message.envelope_to)
            .any(|address| !address.to_string().is_ascii());
        if non_ascii_address {
            if !self.inner.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(Error::new(
                    ErrorKind::Envelope,
                    "an address is not ASCII and the server does not support SMTPUTF8",
                ));
            }
            parameters.push(MailParameter::SmtpUtfEight);
        }
        if !message.bytes.is_ascii() && self.inner.server_info().supports_feature(Extension::EightBitMime) {
            parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        within(
            limit,
            Step::MailFrom,
            self.inner
                .command(Mail::new(message.envelope_from.clone(), parameters)),
        )
        .await?;

        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for recipient in &message.envelope_to {
            match tokio::time::timeout(
                limit,
                self.inner.command(Rcpt::new(recipient.clone(), Vec::new())),
            )
            .await
            {
                Ok(Ok(_)) => accepted.push(recipient.to_string()),
                Ok(Err(err)) => match reply_of(&err) {
                    Some(reply) => rejected.push(RejectedRecipient {
                        recipient: recipient.to_string(),
                        reply,
                    }),
                    None => return Err(from_lettre(err, Step::RcptTo)),
                },
                Err(_) => return Err(timed_out(Step::RcptTo, limit)),
            }
        }
        if accepted.is_empty() {
            let list: Vec<String> = rejected
                .iter()
                .map(|r| format!("{} ({})", r.recipient, r.reply))
                .collect();
            let mut err = Error::new(
                ErrorKind::Envelope,
                format!("all recipients were refused: {}", list.join(", ")),
            )
            .with_rejected(rejected.clone());
            if let Some(first) = rejected.first() {
                err = err.with_reply(Step::RcptTo.command(), first.reply.clone());
            }
            return Err(err);
        }

        within(limit, Step::Data, self.inner.command(Data)).await?;
        let response = within(limit, Step::Message, self.inner.message(&message.bytes)).await?;
        Ok(Delivery {
            accepted,
            rejected,
            response: to_reply(&response).to_string(),
        })
    }

    /// Says QUIT and closes; a server that does not answer is simply dropped.
    pub async fn quit(mut self) {
        let limit = self.socket_timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(limit, self.inner.quit()).await;
    }
}

/// Runs one step of the dialogue with the socket timeout, mapping its errors.
async fn within<T>(
    limit: Duration,
    step: Step,
    operation: impl Future<Output = std::result::Result<T, lettre::transport::smtp::Error>>,
) -> Result<T> {
    match tokio::time::timeout(limit, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(from_lettre(err, step)),
        Err(_) => Err(timed_out(step, limit)),
    }
}

fn timed_out(step: Step, limit: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "no answer to {} within {} ms (socketTimeout)",
            step.command(),
            limit.as_millis()
        ),
    )
    .with_command(step.command())
}

fn response_text(response: &Response) -> String {
    response.message().collect::<Vec<_>>().join(" ")
}

fn to_reply(response: &Response) -> SmtpReply {
    SmtpReply {
        code: response.code().to_string().parse().unwrap_or_default(),
        text: response_text(response),
    }
}

fn hello_name(config: &TransportConfig) -> ClientId {
    match &config.hello_name {
        Some(name) => ClientId::Domain(name.clone()),
        None => ClientId::default(),
    }
}

/// A command line holding a secret: `Debug` never shows it, and it is zeroed when dropped.
struct SecretLine(Zeroizing<String>);

impl std::fmt::Display for SecretLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\r\n", self.0.as_str())
    }
}

/// A TCP stream with TLS from the first byte (port 465), handed to lettre as a plain stream.
#[derive(Debug)]
struct ImplicitTls(tokio_rustls::client::TlsStream<TcpStream>);

impl ImplicitTls {
    async fn handshake(tcp: TcpStream, config: &TransportConfig) -> Result<Self> {
        let tls_config = Arc::new(rustls_client_config(&config.tls)?);
        let name =
            rustls::pki_types::ServerName::try_from(config.tls_server_name().to_string()).map_err(|err| {
                Error::new(
                    ErrorKind::Tls,
                    format!("invalid TLS server name {:?}: {err}", config.tls_server_name()),
                )
            })?;
        let connector = tokio_rustls::TlsConnector::from(tls_config);
        match tokio::time::timeout(config.timeouts.connection, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(ImplicitTls(stream)),
            Ok(Err(err)) => Err(Error::new(
                ErrorKind::Tls,
                format!("TLS handshake with {} failed: {err}", config.host),
            )
            .with_command("CONN")
            .with_source(err)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("TLS handshake with {} timed out", config.host),
            )
            .with_command("CONN")),
        }
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
