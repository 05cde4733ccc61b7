//! The core of `smtp-oauth-transport`, free of N-API so that `cargo test` covers it.
//!
//! The data path, one module per step: [`config`] validates a TAS `mail.smtp` object,
//! [`oauth`] gets and caches the client_credentials token, [`message`] builds the MIME
//! message and envelope, [`smtp`] connects (STARTTLS), authenticates (XOAUTH2) and sends.
//! [`transport::Transport`] ties them together; [`error::Error`] is the one error type.

pub mod address;
pub mod config;
pub mod connector;
pub mod content_access;
pub mod dsn;
pub mod error;
pub mod exchange;
pub mod graph;
pub mod hints;
pub mod input;
pub mod known_names;
pub mod log;
pub mod message;
pub mod oauth;
pub mod panic;
pub mod pool;
pub mod probe;
pub mod secret;
pub mod smtp;
pub mod tls;
pub mod transport;

pub use error::{Error, ErrorKind, Result};
pub use input::{ByteBuf, Value};
pub use transport::{Environment, SentInfo, Transport};
