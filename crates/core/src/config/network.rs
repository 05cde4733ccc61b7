//! How the SMTP server is reached: `proxy`, `localAddress`, `dnsTimeout`.

use std::time::Duration;

use super::MAX_TIMEOUT_MS;
use crate::error::Result;
use crate::input::Field;
pub use crate::smtp::{Proxy, Resolver};

/// How the SMTP server is reached: nodemailer's `proxy`, `localAddress`, `dnsTimeout`.
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    /// `proxy`: an HTTP CONNECT or SOCKS5 proxy every connection goes through.
    pub proxy: Option<Proxy>,
    /// `localAddress`: the socket is bound to it; only server addresses of its family are tried.
    pub local_address: Option<std::net::IpAddr>,
    /// `dnsTimeout`, capped by the connection timeout.
    pub dns_timeout: Option<Duration>,
    /// Host names to addresses: the system resolver, or a fixed table in tests.
    pub resolver: Resolver,
}

pub(super) fn parse_network(root: &Field) -> Result<NetworkOptions> {
    let proxy_field = root.child("proxy");
    let proxy = match proxy_field.optional_string()? {
        Some(text) => Some(Proxy::parse(text.trim()).map_err(|problem| proxy_field.error(problem))?),
        None => None,
    };
    let local_field = root.child("localAddress");
    let local_address = match local_field.optional_string()? {
        Some(text) => Some(text.trim().parse().map_err(|_| {
            local_field.wrong_type("an IP address of this machine, such as 192.0.2.10 or 2001:db8::10")
        })?),
        None => None,
    };
    Ok(NetworkOptions {
        proxy,
        local_address,
        dns_timeout: root
            .child("dnsTimeout")
            .optional_integer(1..=MAX_TIMEOUT_MS)?
            .map(Duration::from_millis),
        resolver: Resolver::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::*;
    use crate::config::*;

    #[test]
    fn network_options_are_checked_and_the_proxy_password_never_shown() {
        let config = set(
            &tas_config(),
            &["proxy"],
            Value::str("socks5h://user:canary-proxy@proxy.corp:1080"),
        );
        let config = set(&config, &["localAddress"], Value::str("192.0.2.10"));
        let config = set(&config, &["dnsTimeout"], Value::Number(1500.0));
        let parsed = TransportConfig::from_value(&config, None).unwrap();
        let network = &parsed.network;
        assert_eq!(
            network.proxy.as_ref().map(|p| p.name()),
            Some("proxy.corp:1080".to_string())
        );
        assert_eq!(network.local_address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(network.dns_timeout, Some(Duration::from_millis(1500)));
        assert!(!format!("{parsed:?}").contains("canary-proxy"));

        let message = error_of(&set(
            &tas_config(),
            &["proxy"],
            Value::str("ftp://user:canary-proxy@proxy:21"),
        ));
        assert!(
            message.starts_with("mail.smtp.proxy uses the unsupported scheme \"ftp\""),
            "{message}"
        );
        assert!(!message.contains("canary-proxy"), "{message}");
        let message = error_of(&set(
            &tas_config(),
            &["proxy"],
            Value::str("user:canary-proxy@proxy"),
        ));
        assert!(
            message.starts_with("mail.smtp.proxy must be a proxy URL"),
            "{message}"
        );
        assert!(!message.contains("canary-proxy"), "{message}");
        let message = error_of(&set(&tas_config(), &["localAddress"], Value::str("eth0")));
        assert!(
            message.starts_with("mail.smtp.localAddress must be an IP address"),
            "{message}"
        );
        let message = error_of(&set(&tas_config(), &["dnsTimeout"], Value::Number(0.0)));
        assert!(message.starts_with("mail.smtp.dnsTimeout must be"), "{message}");
    }
}
