//! Every name a message or a config may use: nodemailer's schema and this package's own
//! keys, in one place. An unknown name is no error (nodemailer ignores it too), but the
//! caller is told once, with the closest known name; a nodemailer name this package does
//! not act on is named as such instead of being dropped without a word.

/// Where a name was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NameScope {
    /// A field of a message (`sendMail`'s argument, or the defaults).
    Message,
    /// A key of an attachment object.
    Attachment,
    /// A key of the transport config (`mail.smtp`).
    Config,
    /// A key of `mail.smtp.oauth2`.
    OAuth2,
    /// A key of `mail.smtp.tls`.
    Tls,
}

impl NameScope {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "message" => NameScope::Message,
            "attachment" => NameScope::Attachment,
            "config" => NameScope::Config,
            "oauth2" => NameScope::OAuth2,
            "tls" => NameScope::Tls,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            NameScope::Message => "a message field",
            NameScope::Attachment => "an attachment field",
            NameScope::Config => "a config key",
            NameScope::OAuth2 => "an oauth2 config key",
            NameScope::Tls => "a tls config key",
        }
    }

    /// The names this package acts on.
    fn known(self) -> &'static [&'static str] {
        match self {
            NameScope::Message => &[
                "from",
                "sender",
                "to",
                "cc",
                "bcc",
                "replyTo",
                "inReplyTo",
                "references",
                "subject",
                "text",
                "html",
                "watchHtml",
                "amp",
                "icalEvent",
                "alternatives",
                "attachments",
                "headers",
                "list",
                "envelope",
                "messageId",
                "date",
                "encoding",
                "textEncoding",
                "raw",
                "priority",
                "xMailer",
                "normalizeHeaderKey",
                "attachDataUrls",
                "disableUrlAccess",
                "disableFileAccess",
                "dsn",
                // nodemailer's multipart boundary choices: boundaries are this package's own.
                "baseBoundary",
                "boundaryPrefix",
            ],
            NameScope::Attachment => &[
                "filename",
                "content",
                "path",
                "href",
                "httpHeaders",
                "contentType",
                "contentDisposition",
                "cid",
                "encoding",
                "headers",
                "raw",
                "contentTransferEncoding",
            ],
            NameScope::Config => &[
                "host",
                "port",
                "secure",
                "name",
                "type",
                "auth",
                "oauth2",
                "tls",
                "connectionTimeout",
                "greetingTimeout",
                "socketTimeout",
                "debug",
                "logger",
                "pool",
                "maxConnections",
                "maxMessages",
                "rateLimit",
                "rateDelta",
                "idleTimeout",
                "maxRetries",
                "disableFileAccess",
                "disableUrlAccess",
                "maxFileSize",
                "proxy",
                "localAddress",
                "dnsTimeout",
                "maxRecipientsPerMessage",
                "chunking",
                "api",
                "graphUrl",
                "saveToSentItems",
                "service",
                "requireTLS",
                "ignoreTLS",
                "opportunisticTLS",
                "authMethod",
            ],
            NameScope::OAuth2 => &[
                "grantType",
                "clientId",
                "tenantId",
                "host",
                "cloud",
                "scope",
                "renewBeforeSeconds",
                "proxy",
                "timeout",
                "clientSecret",
                "privateKey",
                "certificate",
                "thumbprintSha256",
                "thumbprint",
                "clientAssertionFile",
                "clientAssertion",
                "clientAssertionTimeout",
                "managedIdentity",
                "managedIdentityEndpoint",
                "ca",
                "failureCacheSeconds",
                "rbac",
            ],
            NameScope::Tls => &[
                "ca",
                "rejectUnauthorized",
                "servername",
                "minVersion",
                "cert",
                "key",
            ],
        }
    }

    /// nodemailer's names that this package accepts but does not act on (yet), and why.
    fn not_acted_on(self) -> &'static [(&'static str, &'static str)] {
        match self {
            NameScope::Message => &[
                ("newline", "line breaks are always CRLF on the wire"),
                ("dkim", "DKIM signing is not supported; sign with nodemailer and send through this transport's plugin API"),
                ("otp", "OTP-Token headers are not supported"),
                ("auth", "per-message credentials are not supported; the transport's OAuth2 identity sends every message"),
            ],
            NameScope::Attachment => &[("tls", "attachment URLs are fetched with the default TLS checks")],
            NameScope::Config => &[
                ("dkim", "DKIM signing is not supported"),
                ("attachDataUrls", "set it on the message or the defaults"),
                ("transactionLog", "the logger receives every line already"),
                ("lmtp", "LMTP is not supported"),
            ],
            NameScope::OAuth2 => &[],
            NameScope::Tls => &[
                ("ciphers", "rustls chooses its cipher suites"),
            ],
        }
    }
}

/// What to tell the caller about one name.
#[derive(Debug, Clone, PartialEq)]
pub struct NameWarning {
    pub name: String,
    pub text: String,
}

/// A warning for each name in `names` that `scope` does not know or does not act on.
pub fn name_warnings(scope: NameScope, names: &[String]) -> Vec<NameWarning> {
    let mut warnings = Vec::new();
    for name in names {
        if scope.known().contains(&name.as_str()) {
            continue;
        }
        let text = match scope.not_acted_on().iter().find(|(known, _)| known == name) {
            Some((_, why)) => format!("`{name}` is a nodemailer option this package ignores: {why}"),
            None => match closest(scope, name) {
                Some(suggestion) => {
                    format!(
                        "`{name}` is not {}; did you mean `{suggestion}`?",
                        scope.describe()
                    )
                }
                None => format!("`{name}` is not {}; it is ignored", scope.describe()),
            },
        };
        warnings.push(NameWarning {
            name: name.clone(),
            text,
        });
    }
    warnings
}

/// The known name nearest to `name` (case-insensitive edit distance), when near enough.
fn closest(scope: NameScope, name: &str) -> Option<&'static str> {
    let wanted = name.to_ascii_lowercase();
    let candidates = scope
        .known()
        .iter()
        .copied()
        .chain(scope.not_acted_on().iter().map(|(known, _)| *known));
    let (distance, best) = candidates
        .map(|known| (edit_distance(&wanted, &known.to_ascii_lowercase()), known))
        .min_by_key(|(distance, _)| *distance)?;
    let allowed = (wanted.chars().count() / 3).max(2);
    (distance <= allowed).then_some(best)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warn(scope: NameScope, name: &str) -> Option<String> {
        name_warnings(scope, &[name.to_string()]).pop().map(|w| w.text)
    }

    #[test]
    fn typos_get_the_closest_known_name() {
        assert_eq!(
            warn(NameScope::Message, "attachements").unwrap(),
            "`attachements` is not a message field; did you mean `attachments`?"
        );
        assert_eq!(
            warn(NameScope::Config, "maxConnection").unwrap(),
            "`maxConnection` is not a config key; did you mean `maxConnections`?"
        );
        assert_eq!(
            warn(NameScope::Attachment, "fileName").unwrap(),
            "`fileName` is not an attachment field; did you mean `filename`?"
        );
        assert_eq!(
            warn(NameScope::Message, "zzzzzzzz").unwrap(),
            "`zzzzzzzz` is not a message field; it is ignored"
        );
    }

    #[test]
    fn known_names_are_silent_and_ignored_nodemailer_options_say_why() {
        assert_eq!(warn(NameScope::Message, "icalEvent"), None);
        assert_eq!(warn(NameScope::Tls, "servername"), None);
        assert!(warn(NameScope::Config, "transactionLog")
            .unwrap()
            .starts_with("`transactionLog` is a nodemailer option this package ignores"));
    }

    /// Every key the config parser reads (`root.child("…")` for `mail.smtp`, `field.child("…")`
    /// for `oauth2` and `tls`, taken from the parser's own source) is a known name of its
    /// scope: a key added to the parser and forgotten here would be warned about as unknown.
    #[test]
    fn every_key_the_config_reads_is_known() {
        let sources = [
            (NameScope::Config, "root", include_str!("config/mod.rs")),
            (NameScope::Config, "root", include_str!("config/auth.rs")),
            (NameScope::Config, "root", include_str!("config/graph.rs")),
            (NameScope::Config, "root", include_str!("config/network.rs")),
            (NameScope::Config, "root", include_str!("config/pool.rs")),
            (NameScope::Config, "root", include_str!("config/starttls.rs")),
            (NameScope::Config, "root", include_str!("content_access.rs")),
            (NameScope::OAuth2, "field", include_str!("config/oauth2.rs")),
            (NameScope::OAuth2, "field", include_str!("config/credential.rs")),
            (NameScope::Tls, "field", include_str!("config/tls.rs")),
        ];
        let mut checked = 0;
        for (scope, receiver, source) in sources {
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            let call = format!("{receiver}.child(\"");
            for (at, _) in code.match_indices(&call) {
                let rest = &code[at + call.len()..];
                let name = &rest[..rest.find('"').expect("a closing quote")];
                assert_eq!(warn(scope, name), None, "{name}");
                checked += 1;
            }
        }
        assert!(
            checked > 40,
            "only {checked} keys found: has the parser's shape changed?"
        );
        assert_eq!(warn(NameScope::Message, "dsn"), None);
    }
}
