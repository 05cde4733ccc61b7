//! SMTP: one connection (TCP, TLS, EHLO, AUTH) and the sending of messages over it.
//!
//! lettre's high-level `AsyncSmtpTransport` does not fit: its credentials are fixed when it
//! is built (a token expires), its pool cannot fetch a fresh token per connection, and one
//! refused RCPT aborts the whole message without naming the recipient. Its low-level
//! connection cannot pipeline or tell whether a message's final `.` left before a failure.
//! So the dialogue is a small client here ([`SmtpConnection`]); a connection is opened with
//! whatever login the caller holds now, so a pool of them shares one token provider.

mod connection;
mod dial;
mod proxy;
mod reply;
mod stream;
mod xoauth2;

pub use connection::{Delivery, Login, SmtpConnection};
pub use dial::Resolver;
pub use proxy::Proxy;
