//! SMTP: one connection (TCP, TLS, EHLO, AUTH) and the sending of one message over it.
//!
//! Built on lettre's low-level `AsyncSmtpConnection` rather than its `AsyncSmtpTransport`:
//! the transport fixes credentials when it is built (a token expires), its pool cannot ask
//! for a fresh token per connection, and one refused RCPT aborts the whole message without
//! naming the recipient. A connection here is opened with whatever login the caller holds
//! now, so a pool of them can share one token provider.

mod connection;
mod reply;
mod xoauth2;

pub use connection::{Delivery, Login, SmtpConnection};
pub use xoauth2::xoauth2_initial_response;
