//! SMTP: one connection (TCP, TLS, EHLO, AUTH) and the sending of messages over it.
//!
//! lettre's high-level `AsyncSmtpTransport` does not fit: its credentials are fixed when it
//! is built (a token expires), its pool cannot fetch a fresh token per connection, and one
//! refused RCPT aborts the whole message without naming the recipient. Its low-level
//! connection cannot pipeline or tell whether a message's final `.` left before a failure.
//! So the dialogue is a small client here ([`SmtpConnection`]); a connection is opened with
//! whatever login the caller holds now, so a pool of them shares one token provider.
//!
//! One file per concept: [`connection`] the socket (TCP, TLS), [`session`] the dialogue
//! (greeting, EHLO, STARTTLS, QUIT, reading and judging replies), [`auth`], [`transaction`]
//! (MAIL/RCPT/DATA/BDAT, pipelining), [`data`] (the content's wire form), [`reply`] (replies
//! and the reply-code table).

mod auth;
mod connection;
mod data;
mod dial;
mod proxy;
mod reply;
mod session;
mod stream;
mod trace;
mod transaction;
mod xoauth2;

#[cfg(test)]
mod tests;

pub use auth::Login;
pub use dial::Resolver;
pub use proxy::Proxy;
pub use session::SmtpConnection;
pub use trace::{ConnectTrace, TlsFacts};
pub use transaction::Delivery;
