//! The fuzz targets (`scripts/fuzz.sh` runs each by name).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::*;
use crate::strategies::*;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use smtp_oauth_core::address::parse_mailboxes;
use smtp_oauth_core::config::TransportConfig;
use smtp_oauth_core::content_access::ContentAccess;
use smtp_oauth_core::input::Field;
use smtp_oauth_core::message::build_message;
use smtp_oauth_core::oauth::{inspect, parse_token_response, Expectations, Freshness, SentAt, TokenGrant};
use smtp_oauth_core::secret::Secret;
use smtp_oauth_core::{ErrorKind, Value};

#[test]
fn fuzz_config_parser() {
    fuzz("config", any_config().prop_map(Input), |Input(config)| {
        let parsed = TransportConfig::from_value(&config, None);
        let shown = format!("{parsed:?}");
        for secret in [CANARY_SECRET, CANARY_PASSWORD, CANARY_KEY_BODY] {
            prop_assert!(!shown.contains(secret), "Debug output shows a secret: {shown}");
        }
        if let Err(err) = &parsed {
            prop_assert_eq!(err.code(), "ECONFIG");
            prop_assert!(
                err.message().starts_with("mail.smtp"),
                "the error names no field: {}",
                err.message()
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_address_parser() {
    fuzz("address", any_address_value().prop_map(Input), |Input(value)| {
        let field = Field::root("message.to", &value, ErrorKind::Message);
        match parse_mailboxes(&field) {
            Ok(mailboxes) => {
                for mailbox in mailboxes {
                    let shown = mailbox.to_string();
                    prop_assert!(
                        !shown.contains(['\r', '\n']),
                        "a mailbox with a line break: {shown:?}"
                    );
                    // RFC 5321 allows '<', '>' and spaces inside a quoted local part
                    // ("john doe"@example.com); control characters never.
                    let address = mailbox.email.to_string();
                    prop_assert!(
                        !address.chars().any(|c| c.is_control()),
                        "an envelope address that could break an SMTP command: {address:?}"
                    );
                }
            }
            Err(err) => {
                prop_assert_eq!(err.code(), "EMESSAGE");
                prop_assert!(err.message().starts_with("message.to"), "{}", err.message());
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_token_response_parser() {
    let secret = Secret::new(CANARY_SECRET);
    fuzz(
        "token response",
        any_token_response().prop_map(|(s, b)| Answer(s, b)),
        |Answer(status, body)| {
            match parse_token_response(status, &body, &secret) {
                Ok(grant) => {
                    prop_assert!((200..300).contains(&status), "a token from HTTP {status}");
                    prop_assert!(!grant.access_token.expose().is_empty());
                    // The token must not influence the Debug output at all.
                    let other = TokenGrant {
                        access_token: Secret::new("another-token"),
                        expires_in: grant.expires_in,
                        refresh_in: grant.refresh_in,
                        refresh_token: grant
                            .refresh_token
                            .as_ref()
                            .map(|_| Secret::new("another-refresh")),
                    };
                    prop_assert_eq!(
                        format!("{grant:?}"),
                        format!("{other:?}"),
                        "Debug shows the token"
                    );
                }
                Err(err) => {
                    prop_assert_eq!(err.code(), "EOAUTH2");
                    prop_assert_eq!(err.http_status(), Some(status));
                    let mut exposed = format!("{} {:?}", err.message(), err);
                    if let Some(oauth) = err.oauth_error() {
                        exposed.push_str(&format!(" {} {:?}", oauth.error, oauth.description));
                    }
                    if let Some(hint) = err.hint() {
                        exposed.push_str(hint);
                    }
                    for form in [CANARY_SECRET.to_string(), form_encode(CANARY_SECRET)] {
                        prop_assert!(
                            !exposed.contains(&form),
                            "the secret ({form}) leaks into the error: {exposed}"
                        );
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_token_claims() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let tenants = select(vec![
        Some("0c3e7d2a-5b1f-4e8a-9d6c-2f4b8a1e7c30"),
        Some("contoso.onmicrosoft.com"),
        Some("organizations"),
        None,
    ]);
    let expires_in = prop_oneof![Just(0u64), 0u64..100_000, Just(1_000_000_000)];
    fuzz(
        "token claims",
        (any_claims_payload(), tenants, expires_in),
        |(payload, tenant_id, expires_in)| {
            let token = format!("eyJhbGciOiJub25lIn0.{}.sig", URL_SAFE_NO_PAD.encode(&payload));
            let expected = Expectations {
                scope: "https://outlook.office365.com/.default",
                tenant_id,
                client_id: Some("0c3e7d2a-5b1f-4e8a-9d6c-2f4b8a1e7c30"),
                role: Some("SMTP.SendAsApp"),
            };
            let report = inspect(&token, &expected);
            let is_object = matches!(serde_json::from_slice(&payload), Ok(serde_json::Value::Object(_)));
            prop_assert_eq!(report.is_jwt, is_object);
            for problem in &report.problems {
                prop_assert!(
                    ["AUDIENCE", "ROLE_MISSING", "TENANT_MISMATCH", "APP_MISMATCH"].contains(&problem.code)
                );
                if problem.code == "TENANT_MISMATCH" {
                    prop_assert_eq!(
                        tenant_id,
                        Some("0c3e7d2a-5b1f-4e8a-9d6c-2f4b8a1e7c30"),
                        "a tenant that is no id compared"
                    );
                }
            }
            // The same token placed in time: its exp never makes it usable for longer.
            let sent = SentAt::now();
            let placed = TokenGrant {
                access_token: Secret::new(token),
                expires_in: Duration::from_secs(expires_in),
                refresh_in: None,
                refresh_token: None,
            }
            .into_token(sent, Duration::from_secs(300));
            prop_assert!(placed.expires_at <= sent.instant + Duration::from_secs(expires_in));
            if let Some(exp) = report.exp {
                prop_assert!(placed.expires_at_wall <= exp.max(sent.wall));
            }
            let far = sent.wall + Duration::from_secs(2_000_000_000);
            prop_assert_eq!(placed.freshness(sent.instant, far), Freshness::Stale);
            Ok(())
        },
    );
}

/// Header lines of `raw`: the top header block and those of the MIME parts (found through
/// the `boundary=` parameters the headers declare). Lines are split at CR and at LF alike,
/// so a bare CR or LF inside a header shows as a line of its own.
fn header_lines(raw: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut boundaries: Vec<Vec<u8>> = Vec::new();
    let mut in_header = true;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header && line.is_empty() {
            in_header = false;
        } else if in_header {
            if let Some(at) = find(line, b"boundary=") {
                let value = &line[at + 9..];
                let value = value.strip_prefix(b"\"").unwrap_or(value);
                let end = value
                    .iter()
                    .position(|&b| b == b'"' || b == b';')
                    .unwrap_or(value.len());
                boundaries.push(value[..end].to_vec());
            }
            out.extend(line.split(|&b| b == b'\r'));
        } else if let Some(rest) = line.strip_prefix(b"--") {
            // `--boundary` starts a part (its headers follow); `--boundary--` ends them all.
            if boundaries.iter().any(|b| b.as_slice() == rest) {
                in_header = true;
            }
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn starts_with_ignore_case(line: &[u8], prefix: &str) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[test]
fn fuzz_message_builder() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let built_count = AtomicU64::new(0);
    let refused_count = AtomicU64::new(0);
    fuzz("message", any_message().prop_map(Input), |Input(message)| {
        // A `Bcc` the caller set as a custom header is theirs; any other Bcc line is a leak.
        let custom_bcc = match message.get("headers") {
            Some(Value::Object(pairs)) => pairs.iter().any(|(k, _)| k.trim().eq_ignore_ascii_case("bcc")),
            Some(Value::Array(items)) => items
                .iter()
                .any(|item| matches!(item.get("key"), Some(Value::String(k)) if k.trim().eq_ignore_ascii_case("bcc"))),
            _ => false,
        };
        let built = runtime.block_on(async {
            tokio::time::timeout(
                MAX_CALL_TIME,
                build_message(&message, None, Some("tas@contoso.com"), &ContentAccess::default()),
            )
            .await
        });
        let Ok(built) = built else {
            return Err(TestCaseError::fail(
                "build_message did not return within the time bound",
            ));
        };
        match built {
            Ok(out) => {
                built_count.fetch_add(1, Ordering::Relaxed);
                let raw = &out.body.to_vec();
                for line in header_lines(raw) {
                    prop_assert!(
                        line.len() <= 998,
                        "a header line of {} bytes: {}...",
                        line.len(),
                        String::from_utf8_lossy(&line[..80])
                    );
                    prop_assert!(
                        !starts_with_ignore_case(line, "X-Injected:")
                            && (custom_bcc || !starts_with_ignore_case(line, "Bcc:")),
                        "an injected header line: {:?}",
                        String::from_utf8_lossy(line)
                    );
                }
                for address in out.envelope_to.iter().chain(out.envelope_from.iter()) {
                    let address = address.to_string();
                    prop_assert!(
                        !address.chars().any(|c| c.is_control()),
                        "envelope address {address:?}"
                    );
                }
                prop_assert!(!out.envelope_to.is_empty());
            }
            Err(err) => {
                refused_count.fetch_add(1, Ordering::Relaxed);
                if std::env::var_os("FUZZ_SHOW_ERRORS").is_some() {
                    eprintln!(
                        "refused: {} {}",
                        err.code(),
                        err.message().chars().take(100).collect::<String>()
                    );
                }
                prop_assert!(
                    matches!(err.code(), "EMESSAGE" | "EENVELOPE"),
                    "unexpected code {}: {}",
                    err.code(),
                    err.message()
                );
                prop_assert!(
                    err.message().starts_with("message")
                        || err.message().starts_with("no recipients")
                        || err.message().starts_with("the message cannot be built")
                        || err.message().starts_with("invalid envelope"),
                    "the error names no field: {}",
                    err.message()
                );
            }
        }
        Ok(())
    });
    eprintln!(
        "fuzz message: {} messages built, {} refused with an error",
        built_count.load(Ordering::Relaxed),
        refused_count.load(Ordering::Relaxed)
    );
}
