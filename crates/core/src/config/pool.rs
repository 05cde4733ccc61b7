//! `pool: true` and its options (`maxConnections`, `maxMessages`, `idleTimeout`,
//! `rateLimit`, `rateDelta`).

use std::time::Duration;

use super::{timeout, Auth};
use crate::error::Result;
use crate::input::{Field, Value};

/// nodemailer's pool options.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    pub max_connections: usize,
    /// Messages per connection before it is replaced.
    pub max_messages: usize,
    /// An idle connection is closed (QUIT) after this long.
    pub idle_timeout: Duration,
    /// At most this many messages per `rate_delta` (queued, not rejected).
    pub rate_limit: Option<(usize, Duration)>,
}

/// Exchange Online allows 3 concurrent connections per mailbox; nodemailer's default is 5.
const EXCHANGE_MAX_CONNECTIONS: u64 = 3;
/// Outlook's Graph limit: 4 concurrent requests per app and mailbox.
pub const GRAPH_MAX_CONCURRENT_REQUESTS: u64 = 4;
const DEFAULT_MAX_CONNECTIONS: u64 = 5;
const DEFAULT_MAX_MESSAGES: usize = 100;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RATE_DELTA: Duration = Duration::from_secs(1);

pub(super) fn parse_pool(root: &Field, auth: &Auth, graph: bool) -> Result<Option<PoolOptions>> {
    if !root.child("pool").optional_bool()?.unwrap_or(false) {
        return Ok(None);
    }
    let default_connections = match auth {
        _ if graph => GRAPH_MAX_CONCURRENT_REQUESTS,
        Auth::OAuth2 { .. } => EXCHANGE_MAX_CONNECTIONS,
        _ => DEFAULT_MAX_CONNECTIONS,
    };
    let max_connections = root
        .child("maxConnections")
        .optional_integer(1..=100)?
        .unwrap_or(default_connections);
    // With Graph, `maxConnections` counts concurrent requests, which Outlook caps.
    let max_connections = if graph {
        max_connections.min(GRAPH_MAX_CONCURRENT_REQUESTS)
    } else {
        max_connections
    };
    let max_messages_field = root.child("maxMessages");
    let max_messages = match max_messages_field.value() {
        // As in nodemailer, `maxMessages: Infinity` never replaces a connection.
        Some(Value::Number(n)) if *n == f64::INFINITY => usize::MAX,
        _ => max_messages_field
            .optional_integer(1..=1_000_000)?
            .map_or(DEFAULT_MAX_MESSAGES, |n| n as usize),
    };
    let rate_limit = match root.child("rateLimit").optional_integer(1..=1_000_000)? {
        Some(limit) => Some((
            limit as usize,
            timeout(&root.child("rateDelta"), DEFAULT_RATE_DELTA)?,
        )),
        None => None,
    };
    Ok(Some(PoolOptions {
        max_connections: max_connections as usize,
        max_messages,
        idle_timeout: timeout(&root.child("idleTimeout"), DEFAULT_IDLE_TIMEOUT)?,
        rate_limit,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn max_messages_is_bounded_or_infinity() {
        let pooled = set(&tas_config(), &["pool"], Value::Bool(true));
        let max_messages = |value: Value| {
            let config = set(&pooled, &["maxMessages"], value);
            TransportConfig::from_value(&config, None).map(|c| c.pool.unwrap().max_messages)
        };
        assert_eq!(max_messages(Value::Null).unwrap(), DEFAULT_MAX_MESSAGES);
        assert_eq!(max_messages(Value::Number(500.0)).unwrap(), 500);
        assert_eq!(max_messages(Value::Number(f64::INFINITY)).unwrap(), usize::MAX);
        for bad in [0.0, 1.5, f64::NEG_INFINITY, f64::NAN, 2e6] {
            let message = max_messages(Value::Number(bad))
                .unwrap_err()
                .message()
                .to_string();
            assert!(
                message.starts_with("mail.smtp.maxMessages must be a number between 1 and 1000000"),
                "{bad}: {message}"
            );
        }
    }
}
