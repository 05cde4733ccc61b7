//! Secrets in `Debug` output and panic messages (deterministic).

use crate::harness::*;
use crate::strategies::*;
use smtp_oauth_core::config::TransportConfig;
use smtp_oauth_core::secret::Secret;
use smtp_oauth_core::Value;

/// A throwaway 2048-bit RSA key made for this test only (`openssl genpkey`); it protects
/// nothing. Its body must never show in `Debug` output.
const TEST_ONLY_RSA_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDHRyvmZULwoSLA
3S7cDxr4LFBaHNfPRVVvYTumIe4b5kqWvFKCEmwnghHzKyEA6g23/6na3TtjJ34V
1Ca3AQzfZJfnXgLA3NFRoh/pLtNjYSvDaEstajSIxTeby1n0otyTH0+yxEyI39qZ
ThNrGHgT7ej9IW0yen7Uge6nsbmczIo/hkLBZC5NA551pwAN0M1Lpc0XIsurRtfc
86gSh3BKTMox6GESdQz8aNRdPStJJJURG+rlKGUnh84qGEauadEss9kevag+Q/KR
Rk4O98eQXb09qgR5TapYbm/FobvR7XJTHMsejQJE5wJjpxBJDTInCN05Ikdhhsyx
rkfms2ibAgMBAAECggEAKkGsTHHCjRYOMYl1a1KErIVxEHq3RIt2P2UF6ged3yqp
PGd4s35GkuYg+kh1+iSnfhHnqbJp6m+wa96Nyxac7S3+jCBCQzVP6ZiQXbkBODyd
tBUEg//WXf47+XxYeeijD0t/ce/wLsIRL5r/wSDyLX+wfSS+bArPpC5dNhAYxOe2
RAgBKNkybAdRoE1tbtBED0CsYqcgDhgW+BvvPgLu8PaXLW3mHmvKNpbXlRDRu28C
pN/Ssl+0wc6Gy5Qfq3M2SxvAjHzm3R95rsUACTrnM9+u1RSaaNjebCWe7qW3vJwM
7/LaQJtZkneh0Hr+w7e6QeyUy1KFzUQvUtNqNkgtMQKBgQD60orgsMACYNNVlqDJ
NZ+n2zk/ftOeRIaosy2hiaSk8/KcIiNK6t4yyr6ZvBovjlrhStisRJgG9l0fRIqm
NH+dJ+4byF6NI8cYT/G0jnIoA5MR322ICW8xx+KYXJUGC7Nxpqw75c4IvC3lcUuI
MX/LYq2vdnIxD8p78c7kX9/80wKBgQDLZD7NIcjvdb6rNfQAIQRGQZonAET1fSX1
3pRt149PYfddpK+PeJbSfKgk7lBzXvZ25PZYBsanJi60046irRwTAHq8D9jA1sPV
S52Ia9q9ZYBTodDXfCHn+dwVOiMfI0a0BdeDF47pEaBB8/H95rCttrDJlmpvJoBO
e8YrXapoGQKBgGfNDjBitXPGgm9fQPdEO+iJry153TYYgen7DR1XC05ArtyyvAxb
Gs3GXg7da7DWpwGpqfXRBWGMP4mbIg4al92AEuhoici7T7/eBdeFQ/UPVaQF5Rxx
WxUs9be8SOgRm5ejNJAtUJEI362er3WTlqGjGuIMkMGBGXkl30tf6iCFAoGBAKH1
DzUVRAW6Qrve2I8Ju3eeYXvQ8RhyMToZpSPaVFmn7uv4aXvbUG4HqXTO9+0Gn0eJ
hsgNjT4oX2TKWXgcVJCk/xaln7neyk4cSjMJf0L1gjwWTFBqni00fxXAF5uB4ZkU
Vcojhj79NBmQgQ/nFKUfJqM/TT148Q6N7P03NqxxAoGAXJJGs5atR+WTCCKyMa1N
xAKuFzO+FWCuIg6V7mvyzZlIlQlWDoZxg1r5PQoFW40Qx10epxvZ70Zl4E56ALA3
7F/qkNTF7TIJv/gqmcGL6QkJelWfepF55jZbRBskPHJOnlkXHnbb9PNBSa/4dzjT
vkz7PYvREwsGXpu/9thhA4Y=
-----END PRIVATE KEY-----
";

fn seed_config(credential: Vec<(&str, Value)>) -> Value {
    let mut oauth2 = vec![
        (
            "host",
            Value::str("https://login.microsoftonline.com/t/oauth2/v2.0/token"),
        ),
        ("clientId", Value::str("00000000-0000-0000-0000-000000000001")),
        ("scope", Value::str("https://outlook.office365.com/.default")),
    ];
    oauth2.extend(credential);
    Value::object([
        ("type", Value::str("oauth2")),
        ("host", Value::str("smtp.office365.com")),
        ("port", Value::Number(587.0)),
        ("auth", Value::object([("user", Value::str("tas@contoso.com"))])),
        ("oauth2", Value::object(oauth2)),
    ])
}

fn key_body_lines() -> Vec<&'static str> {
    TEST_ONLY_RSA_KEY
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

#[test]
fn debug_output_of_parsed_configs_shows_no_secret() {
    let secret = seed_config(vec![("clientSecret", Value::str(CANARY_SECRET))]);
    let parsed = TransportConfig::from_value(&secret, None).expect("the seed config is valid");
    let shown = format!("{parsed:?} {parsed:#?}");
    assert!(!shown.contains(CANARY_SECRET), "{shown}");
    assert!(shown.contains("<redacted>"));

    let password = Value::object([
        ("host", Value::str("smtp.example.com")),
        (
            "auth",
            Value::object([
                ("user", Value::str("u@example.com")),
                ("pass", Value::str(CANARY_PASSWORD)),
            ]),
        ),
    ]);
    let parsed = TransportConfig::from_value(&password, None).expect("a basic config is valid");
    let shown = format!("{parsed:?} {parsed:#?}");
    assert!(!shown.contains(CANARY_PASSWORD), "{shown}");

    let key = seed_config(vec![
        ("privateKey", Value::str(TEST_ONLY_RSA_KEY)),
        ("thumbprint", Value::str("00".repeat(20))),
    ]);
    let parsed = TransportConfig::from_value(&key, None).expect("the key parses");
    let shown = format!("{parsed:?} {parsed:#?}");
    for line in key_body_lines() {
        assert!(!shown.contains(line), "the private key shows in Debug output");
    }
    let bytes_key = seed_config(vec![
        ("privateKey", bytes_value(TEST_ONLY_RSA_KEY.as_bytes().to_vec())),
        ("thumbprint", Value::str("00".repeat(20))),
    ]);
    let shown = format!("{:?}", TransportConfig::from_value(&bytes_key, None));
    for line in key_body_lines() {
        assert!(
            !shown.contains(line),
            "the private key (Buffer) shows in Debug output"
        );
    }
}

#[test]
fn config_errors_near_secrets_do_not_show_them() {
    // Every way a credential field can be wrong, next to a canary in the other fields.
    let cases = vec![
        vec![("clientSecret", Value::Number(12345.0))],
        vec![("clientSecret", Value::Array(vec![Value::str(CANARY_SECRET)]))],
        vec![(
            "clientSecret",
            Value::object([("value", Value::str(CANARY_SECRET))]),
        )],
        vec![
            ("clientSecret", Value::str(CANARY_SECRET)),
            ("grantType", Value::str("password")),
        ],
        vec![
            ("clientSecret", Value::str(CANARY_SECRET)),
            ("timeout", Value::Number(-1.0)),
        ],
        vec![
            ("privateKey", Value::str(CANARY_KEY)),
            ("thumbprint", Value::str("00".repeat(20))),
        ],
        vec![
            ("privateKey", Value::str(TEST_ONLY_RSA_KEY)),
            ("thumbprint", Value::str("zz")),
        ],
        vec![
            ("privateKey", Value::str(TEST_ONLY_RSA_KEY)),
            ("certificate", Value::str(CANARY_KEY)),
        ],
        vec![("privateKey", Value::Number(1.0))],
    ];
    for credential in cases {
        let config = seed_config(credential);
        let err = TransportConfig::from_value(&config, None).expect_err("an invalid credential");
        let shown = format!("{} {:?}", err.message(), err);
        assert_eq!(err.code(), "ECONFIG");
        assert!(
            err.message().starts_with("mail.smtp.oauth2."),
            "{}",
            err.message()
        );
        for secret in [CANARY_SECRET, CANARY_KEY_BODY, "12345"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        for line in key_body_lines() {
            assert!(!shown.contains(line), "the private key shows in the error");
        }
    }
}

#[test]
fn panic_messages_that_format_a_config_or_secret_show_no_secret() {
    use std::panic::AssertUnwindSafe;
    use std::sync::{Arc, Mutex};
    let config = TransportConfig::from_value(
        &seed_config(vec![("clientSecret", Value::str(CANARY_SECRET))]),
        None,
    )
    .expect("valid");
    let secret = Secret::new(CANARY_SECRET);
    let bad = TransportConfig::from_value(&seed_config(vec![("clientSecret", Value::Number(1.0))]), None)
        .unwrap_err();

    // What the panic hook would print (location and message), for panics on this thread only;
    // other threads' panics go to the previous hook as usual.
    let printed = Arc::new(Mutex::new(Vec::<String>::new()));
    let previous: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
        Arc::from(std::panic::take_hook());
    let this_thread = std::thread::current().id();
    {
        let printed = Arc::clone(&printed);
        let previous = Arc::clone(&previous);
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == this_thread {
                printed.lock().unwrap().push(info.to_string());
            } else {
                previous(info);
            }
        }));
    }
    let outcomes = [
        std::panic::catch_unwind(AssertUnwindSafe(|| panic!("config: {config:?}"))),
        std::panic::catch_unwind(AssertUnwindSafe(|| panic!("secret: {secret:?} / {secret}"))),
        std::panic::catch_unwind(AssertUnwindSafe(|| panic!("error: {bad:?} {bad}"))),
    ];
    std::panic::set_hook(Box::new(move |info| previous(info)));

    assert!(
        outcomes.iter().all(|outcome| outcome.is_err()),
        "every closure panicked"
    );
    let printed = printed.lock().unwrap();
    assert_eq!(printed.len(), 3, "{printed:?}");
    for message in printed.iter() {
        assert!(!message.contains(CANARY_SECRET), "{message}");
    }
    assert!(printed[0].contains("TransportConfig"), "{}", printed[0]);
    assert!(printed[1].contains("<redacted>"), "{}", printed[1]);
}
