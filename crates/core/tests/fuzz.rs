//! Property-based fuzzing of everything that parses input an attacker or a careless config
//! can control: the config parser, the address parser, the token-response parser, the
//! token's claims (`inspect`, and placing a token in time by its `exp`) and the message
//! builder. Properties: no panic, every call returns within a bounded time, errors
//! have the right code and name their field, no secret appears in any error or `Debug`
//! output, and messages that build carry no injected header and no header line longer than
//! RFC 5322's 998 bytes.
//!
//! `cargo test` runs each target with 64 cases (`PROPTEST_CASES` overrides it). With
//! `FUZZ_SECONDS=n` a target runs until it has done `PROPTEST_CASES` cases or `n` seconds
//! have passed, whichever comes first, and prints how many executions it ran (see
//! `scripts/fuzz.sh`, `npm run fuzz`). `FUZZ_SHOW_ERRORS=1` prints why each generated
//! message was refused (to check that the generators still reach the header checks).
//!
//! The last section checks, without randomness, that `Debug` output and panic messages of a
//! parsed config never show its secrets.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestError, TestRunner};
use smtp_oauth_core::address::parse_mailboxes;
use smtp_oauth_core::config::TransportConfig;
use smtp_oauth_core::content_access::ContentAccess;
use smtp_oauth_core::input::Field;
use smtp_oauth_core::message::build_message;
use smtp_oauth_core::oauth::{inspect, parse_token_response, Expectations, Freshness, SentAt, TokenGrant};
use smtp_oauth_core::secret::Secret;
use smtp_oauth_core::{ErrorKind, Value};

// ---------------------------------------------------------------------------------------
// The harness

const DEFAULT_CASES: u32 = 64;
/// One call of a target must return within this (debug build, a loaded CI machine).
const MAX_CALL_TIME: Duration = Duration::from_secs(5);

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs `test` on values of `strategy`: `PROPTEST_CASES` cases (64 by default), in batches
/// with fresh random seeds, stopping early after `FUZZ_SECONDS` if set. A failure panics
/// with proptest's minimal failing input.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let total = env_number("PROPTEST_CASES").unwrap_or(u64::from(DEFAULT_CASES));
    let deadline = env_number("FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    let mut cases_done = 0u64;
    while cases_done < total {
        let batch = (total - cases_done).min(1024) as u32;
        let config = ProptestConfig {
            cases: batch,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        let mut runner = TestRunner::new(config);
        let outcome = runner.run(&strategy, |value| {
            executions.fetch_add(1, Ordering::Relaxed);
            let call = Instant::now();
            let result = test(value);
            let took = call.elapsed();
            prop_assert!(took < MAX_CALL_TIME, "one call took {took:?}");
            result
        });
        if outcome.is_err() {
            eprintln!(
                "fuzz {name}: {} executions in {:.1} s, then a failure",
                executions.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
        match outcome {
            Ok(()) => {}
            Err(TestError::Fail(why, value)) => {
                panic!("fuzz target {name} failed: {why}\nminimal failing input: {value:#?}")
            }
            Err(TestError::Abort(why)) => panic!("fuzz target {name} aborted: {why}"),
        }
        cases_done += u64::from(batch);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "fuzz {name}: {} executions ({cases_done} cases) in {:.1} s",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// A `Buffer` value holding `bytes`.
fn bytes_value(bytes: Vec<u8>) -> Value {
    Value::Bytes(bytes.into())
}

/// A generated value, shown in full when a case fails (`Value`'s own `Debug` is a summary
/// written for error messages).
#[derive(Clone)]
struct Input(Value);

impl Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        fn show(value: &Value) -> String {
            match value {
                Value::Undefined => "undefined".into(),
                Value::Null => "null".into(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => format!("Number({n:?})"),
                Value::String(s) => format!("{s:?}"),
                Value::Bytes(b) => format!("Bytes({:?})", String::from_utf8_lossy(b)),
                Value::Date(d) => format!("Date({d:?})"),
                Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
                Value::Object(pairs) => format!(
                    "{{{}}}",
                    pairs
                        .iter()
                        .map(|(k, v)| format!("{k:?}: {}", show(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Value::Other(name) => format!("Other({name:?})"),
            }
        }
        f.write_str(&show(&self.0))
    }
}

/// A token endpoint answer, its body shown as text.
#[derive(Clone)]
struct Answer(u16, Vec<u8>);

impl Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?}", self.0, String::from_utf8_lossy(&self.1))
    }
}

// ---------------------------------------------------------------------------------------
// Strategies

/// Never produced by the generators below: finding it in output means a secret leaked.
const CANARY_SECRET: &str = "CANARY-secret~Zq9.x_7";
const CANARY_PASSWORD: &str = "CANARY-password~p@ss";
const CANARY_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nQ0FOQVJZLWtleS1ib2R5LWJ5dGVz\n-----END PRIVATE KEY-----\n";
const CANARY_KEY_BODY: &str = "Q0FOQVJZLWtleS1ib2R5LWJ5dGVz";

/// Strings that break things: line breaks aimed at headers and commands, Unicode, controls,
/// very long runs without whitespace, and the shapes the parsers look for.
fn any_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 @.<>\",;:()\\[\\]\\\\_~+=/-]{0,30}",
        2 => vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => "\\PC{0,24}",
        2 => select(vec![
            "",
            " ",
            "a@b.c",
            "Name <a@b.c>",
            "\"john doe\"@example.com",
            "user@bücher.example",
            "Žluťoučký kůň <kun@example.com>",
            "<>",
            "a@b.c, x@y.z; \"Doe, Jane\" <j@d.e>",
            "587",
            "oauth2",
            "TLSv1.3",
            "client_credentials",
            "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            "http://127.0.0.1:1/t/oauth2/v2.0/token",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "=?utf-8?B?QmNjOiBldmlsQGV4YW1wbGUuY29t?=",
            "\u{0}",
            "\u{202e}rtl",
            "high",
        ])
        .prop_map(str::to_string),
        2 => (any_short(), select(vec!["\r\n", "\n", "\r", "\r\n ", "\r\n\r\n"]), select(vec![
            "Bcc: evil@example.com",
            "X-Injected: 1",
            "RCPT TO:<evil@example.com>",
            "MAIL FROM:<evil@example.com>",
            ".",
        ]))
            .prop_map(|(head, br, tail)| format!("{head}{br}{tail}")),
        1 => (select(vec!['x', 'é', '=', '<', '"']), 900usize..1600).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

fn any_short() -> BoxedStrategy<String> {
    "[a-zA-Z0-9@. ]{0,12}".boxed()
}

fn any_number() -> BoxedStrategy<f64> {
    prop_oneof![
        3 => any::<f64>(),
        2 => (0u32..70_000).prop_map(f64::from),
        2 => select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            0.5,
            1.0,
            465.0,
            587.0,
            65_535.0,
            65_536.0,
            86_400_000.0,
            1e12,
            1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
        ]),
    ]
    .boxed()
}

const CONFIG_KEYS: &[&str] = &[
    "type",
    "host",
    "port",
    "secure",
    "name",
    "auth",
    "user",
    "pass",
    "oauth2",
    "grantType",
    "clientId",
    "clientSecret",
    "scope",
    "tenantId",
    "cloud",
    "renewBeforeSeconds",
    "timeout",
    "proxy",
    "privateKey",
    "certificate",
    "thumbprint",
    "thumbprintSha256",
    "tls",
    "ca",
    "rejectUnauthorized",
    "servername",
    "minVersion",
    "connectionTimeout",
    "greetingTimeout",
    "socketTimeout",
    "debug",
    "pool",
    "maxConnections",
    "maxMessages",
    "rateLimit",
    "rateDelta",
    "idleTimeout",
    "maxRetries",
    "logger",
];

const MESSAGE_KEYS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "text",
    "html",
    "attachments",
    "headers",
    "messageId",
    "date",
    "inReplyTo",
    "references",
    "priority",
    "envelope",
    "name",
    "address",
    "filename",
    "content",
    "encoding",
    "path",
    "contentType",
    "cid",
    "contentDisposition",
    "key",
    "value",
];

fn any_key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(CONFIG_KEYS).prop_map(str::to_string),
        2 => select(MESSAGE_KEYS).prop_map(str::to_string),
        1 => any_string(),
    ]
    .boxed()
}

fn any_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Undefined),
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any_number().prop_map(Value::Number),
        4 => any_string().prop_map(Value::String),
        1 => vec(any::<u8>(), 0..48).prop_map(bytes_value),
        1 => any_number().prop_map(Value::Date),
        1 => select(vec!["function", "symbol", "bigint", "a stream"]).prop_map(|s| Value::Other(s.into())),
    ]
    .boxed()
}

/// Any value tree: objects (real key names mixed with random ones), arrays, every leaf.
fn any_value() -> BoxedStrategy<Value> {
    any_leaf()
        .prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((any_key(), inner), 0..8).prop_map(Value::Object),
            ]
        })
        .boxed()
}

/// `(key, value)` or nothing: a good value (3 in 6), any value (2 in 6), absent (1 in 6).
fn field(key: &'static str, good: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_leaf_or_value(), [3, 2, 1])
}

/// Mostly a leaf, sometimes a whole tree (trees are slow to generate, leaves find as much).
fn any_leaf_or_value() -> BoxedStrategy<Value> {
    prop_oneof![3 => any_leaf(), 1 => any_value()].boxed()
}

/// `(key, value)` or nothing, with weights for `[good, other, absent]`.
fn weighted_field(
    key: &'static str,
    good: BoxedStrategy<Value>,
    other: BoxedStrategy<Value>,
    [w_good, w_other, w_absent]: [u32; 3],
) -> BoxedStrategy<Option<(String, Value)>> {
    prop_oneof![
        w_good => good.prop_map(move |v| Some((key.to_string(), v))),
        w_other => other.prop_map(move |v| Some((key.to_string(), v))),
        w_absent => Just(None),
    ]
    .boxed()
}

fn string_of(options: Vec<&'static str>) -> BoxedStrategy<Value> {
    select(options).prop_map(Value::str).boxed()
}

fn number_of(options: Vec<f64>) -> BoxedStrategy<Value> {
    select(options).prop_map(Value::Number).boxed()
}

/// An object of `fields` (each present or not) plus the `extra` keys, in a random order.
fn shuffled_object(
    fields: Vec<BoxedStrategy<Option<(String, Value)>>>,
    extra: BoxedStrategy<Vec<(String, Value)>>,
) -> BoxedStrategy<Value> {
    (fields, extra, any::<u64>())
        .prop_map(|(fields, extra, seed)| {
            let mut pairs: Vec<(String, Value)> = fields.into_iter().flatten().chain(extra).collect();
            let shift = (seed % pairs.len().max(1) as u64) as usize;
            pairs.rotate_left(shift);
            Value::Object(pairs)
        })
        .boxed()
}

/// An object of `fields`, plus a few random keys, in a random order.
fn object(fields: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    shuffled_object(fields, vec((any_key(), any_leaf_or_value()), 0..3).boxed())
}

/// A TAS `mail.smtp` object: every real key, each good, random or absent; the secrets are
/// canaries.
fn any_config() -> BoxedStrategy<Value> {
    let oauth2 = object(vec![
        field(
            "host",
            string_of(vec![
                "https://login.microsoftonline.com/t/oauth2/v2.0/token",
                "http://127.0.0.1:1/t/oauth2/v2.0/token",
                "http://login.example.com/t",
                "https://[::1]/t/oauth2/v2.0/token",
            ]),
        ),
        field("grantType", string_of(vec!["client_credentials", "password"])),
        field(
            "clientId",
            string_of(vec!["00000000-0000-0000-0000-000000000001"]),
        ),
        field("clientSecret", string_of(vec![CANARY_SECRET])),
        field("scope", string_of(vec!["https://outlook.office365.com/.default"])),
        field("tenantId", string_of(vec!["contoso", "t"])),
        field(
            "cloud",
            string_of(vec![
                "global",
                "usgov",
                "china",
                "mars",
                "https://login.example.com",
                "http://login.example.com",
            ]),
        ),
        field(
            "renewBeforeSeconds",
            number_of(vec![0.0, 300.0, 86_400.0, 86_401.0]),
        ),
        field("timeout", number_of(vec![1.0, 300.0, 30_000.0])),
        field("proxy", string_of(vec!["http://proxy:3128", "not a url"])),
        field("privateKey", string_of(vec![CANARY_KEY])),
        field(
            "thumbprint",
            string_of(vec![
                "AB:CD:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
            ]),
        ),
        field("thumbprintSha256", string_of(vec!["00"])),
    ]);
    let auth = object(vec![
        field("user", string_of(vec!["tas@contoso.com"])),
        field("pass", string_of(vec![CANARY_PASSWORD])),
    ]);
    let tls = object(vec![
        field(
            "ca",
            string_of(vec![
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                "not a pem",
            ]),
        ),
        field("rejectUnauthorized", any::<bool>().prop_map(Value::Bool).boxed()),
        field("servername", string_of(vec!["localhost", "smtp.office365.com"])),
        field("minVersion", string_of(vec!["TLSv1.2", "TLSv1.3", "TLSv1"])),
    ]);
    let config = object(vec![
        field("type", string_of(vec!["oauth2", "OAuth2", "login"])),
        field("host", string_of(vec!["smtp.office365.com", "127.0.0.1"])),
        field(
            "port",
            prop_oneof![
                number_of(vec![25.0, 465.0, 587.0]),
                string_of(vec!["587", " 465 "])
            ]
            .boxed(),
        ),
        field("secure", any::<bool>().prop_map(Value::Bool).boxed()),
        field("name", string_of(vec!["client.example.com"])),
        field("auth", auth),
        field("oauth2", oauth2),
        field("tls", tls),
        field("connectionTimeout", number_of(vec![1.0, 1500.0, 86_400_000.0])),
        field("greetingTimeout", number_of(vec![1500.0])),
        field("socketTimeout", number_of(vec![1500.0])),
        field("debug", any::<bool>().prop_map(Value::Bool).boxed()),
        field("pool", any::<bool>().prop_map(Value::Bool).boxed()),
        field("maxConnections", number_of(vec![1.0, 3.0, 100.0])),
        field("maxMessages", number_of(vec![1.0, 100.0])),
        field("rateLimit", number_of(vec![1.0, 10.0])),
        field("rateDelta", number_of(vec![1000.0])),
        field("idleTimeout", number_of(vec![10_000.0])),
        field("maxRetries", number_of(vec![0.0, 3.0, 20.0])),
    ]);
    prop_oneof![9 => config, 1 => any_value()].boxed()
}

/// What an address field may hold: strings (lists, names, injections), objects, arrays.
fn any_address_value() -> BoxedStrategy<Value> {
    let part = prop_oneof![
        3 => select(vec![
            "a@b.c",
            "Name <a@b.c>",
            "\"Doe, Jane\" <jane@d.e>",
            "\"john doe\"@example.com",
            "user@bücher.example",
            "x@[127.0.0.1]",
            "<a@b.c>",
            "a@b.c>",
            "a b@c.d",
            "\"unterminated@b.c",
            "Evil\r\nBcc: x@y.z <a@b.c>",
            "a@b.c\r\nRCPT TO:<evil@example.com>",
            "=?utf-8?Q?x?= <a@b.c>",
        ])
        .prop_map(str::to_string),
        2 => any_string(),
        1 => ("[a-z.\"\\\\ ]{0,10}", "[a-z0-9.\\-\\[\\]]{0,12}").prop_map(|(l, d)| format!("{l}@{d}")),
    ];
    let list = vec(part, 1..4).prop_map(|parts| Value::String(parts.join(", ")));
    let object = (any_string(), any_string()).prop_map(|(name, address)| {
        Value::object([("name", Value::String(name)), ("address", Value::String(address))])
    });
    let one = prop_oneof![4 => list, 2 => object, 1 => any_value()];
    prop_oneof![3 => one.clone(), 1 => vec(one, 0..4).prop_map(Value::Array)].boxed()
}

/// Display names: mostly ordinary (ASCII punctuation, any printable Unicode, long runs),
/// sometimes hostile (line breaks aimed at headers).
fn display_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z ,.'()@<>]{0,20}",
        2 => "\\PC{1,16}",
        1 => (select(vec!['x', 'é', '"']), 900usize..1600).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => any_string().prop_filter("empty names are refused", |s| !s.trim().is_empty()),
    ]
    .boxed()
}

/// One valid mailbox, in every form nodemailer accepts: plain, `"Name" <addr>`, `{ name, address }`.
fn good_mailbox() -> BoxedStrategy<Value> {
    let address = select(vec![
        "a@example.com",
        "user@bücher.example",
        "\"john doe\"@example.com",
        "x@[127.0.0.1]",
        "first.last+tag@sub.example.co.uk",
    ]);
    prop_oneof![
        2 => address.clone().prop_map(Value::str),
        2 => (display_name(), address.clone()).prop_map(|(name, address)| Value::object([("name", Value::String(name)), ("address", Value::str(address))])),
        1 => ("[A-Za-z ]{0,12}", address).prop_map(|(name, address)| Value::String(format!("\"{name}\" <{address}>"))),
    ]
    .boxed()
}

/// One or more valid mailboxes: a single one, a comma list, an array.
fn good_mailboxes() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => good_mailbox(),
        1 => vec(select(vec!["a@example.com", "b@example.org", "Name <c@example.net>"]), 1..4).prop_map(|list| Value::String(list.join(", "))),
        1 => vec(good_mailbox(), 1..4).prop_map(Value::Array),
    ]
    .boxed()
}

/// How often a message field holds a good value, any value at all, or is absent.
#[derive(Clone, Copy)]
struct Mix {
    good: u32,
    any: u32,
    absent: u32,
}

/// An address field of a message: valid, hostile or absent as `mix` says.
fn address_field(key: &'static str, single: bool, mix: Mix) -> BoxedStrategy<Option<(String, Value)>> {
    let good = if single { good_mailbox() } else { good_mailboxes() };
    weighted_field(key, good, any_address_value(), [mix.good, mix.any, mix.absent])
}

/// A message field: good, anything or absent as `mix` says.
fn message_field(
    key: &'static str,
    good: BoxedStrategy<Value>,
    mix: Mix,
) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_value(), [mix.good, mix.any, mix.absent])
}

/// A rarely present field.
fn rare_field(
    key: &'static str,
    good: BoxedStrategy<Value>,
    mix: Mix,
) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_value(), [1, mix.any.min(1), 10])
}

/// An object of `fields` plus up to two keys no parser knows (ignored), in a random order.
fn message_object(fields: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    shuffled_object(fields, vec(("x-[a-z]{1,8}", any_value()), 0..2).boxed())
}

/// A nodemailer message object: the real fields with hostile strings (injections, long
/// values, Unicode) where strings belong; or with values of any type here and there; now and
/// then anything at all.
fn any_message() -> BoxedStrategy<Value> {
    let typed = Mix {
        good: 8,
        any: 0,
        absent: 3,
    };
    let mixed = Mix {
        good: 8,
        any: 1,
        absent: 3,
    };
    prop_oneof![6 => message_with(typed), 3 => message_with(mixed), 1 => any_value()].boxed()
}

fn message_with(mix: Mix) -> BoxedStrategy<Value> {
    let text = || any_string().prop_map(Value::String).boxed();
    let utf8 = || any_string().prop_map(|s| bytes_value(s.into_bytes())).boxed();
    let attachment = message_object(vec![
        message_field("filename", text(), mix),
        weighted_field(
            "content",
            prop_oneof![text(), vec(any::<u8>(), 0..256).prop_map(bytes_value)].boxed(),
            any_value(),
            [12, mix.any, 0],
        ),
        rare_field(
            "encoding",
            string_of(vec!["base64", "hex", "binary", "utf8", "latin1"]),
            mix,
        ),
        rare_field(
            "contentType",
            prop_oneof![
                string_of(vec!["text/plain", "image/png", "application/pdf; name=x"]),
                text()
            ]
            .boxed(),
            mix,
        ),
        rare_field("cid", text(), mix),
        rare_field("contentDisposition", string_of(vec!["inline", "attachment"]), mix),
        rare_field(
            "path",
            string_of(vec!["/nonexistent/file.pdf", "/", "https://example.com/x.pdf"]),
            mix,
        ),
    ]);
    let header_value = || prop_oneof![3 => text(), 1 => vec(text(), 0..3).prop_map(Value::Array)].boxed();
    let header_name = || {
        prop_oneof![3 => "X-[A-Za-z0-9-]{1,12}", 1 => select(vec!["Bcc", "bcc", "Subject", "Content-Type", "List-Unsubscribe"]).prop_map(str::to_string), 1 => any_string()].boxed()
    };
    let headers = prop_oneof![
        vec((header_name(), header_value()), 0..4).prop_map(Value::Object),
        vec((header_name(), any_string()), 0..3).prop_map(|pairs| {
            Value::Array(
                pairs
                    .into_iter()
                    .map(|(k, v)| Value::object([("key", Value::String(k)), ("value", Value::String(v))]))
                    .collect(),
            )
        }),
    ]
    .boxed();
    let date = prop_oneof![
        6 => (0u64..4_102_444_800_000).prop_map(|ms| Value::Date(ms as f64)),
        1 => any_number().prop_map(Value::Date),
        1 => string_of(vec!["2026-01-02T03:04:05.000Z", "Tue, 01 Jan 2030 00:00:00 GMT", "yesterday"]),
    ]
    .boxed();
    let envelope = message_object(vec![
        address_field("from", true, mix),
        address_field("to", false, mix),
    ]);
    message_object(vec![
        address_field("from", true, mix),
        address_field("sender", true, mix),
        weighted_field("to", good_mailboxes(), any_address_value(), [12, mix.any, 1]),
        address_field("cc", false, mix),
        address_field("bcc", false, mix),
        address_field("replyTo", false, mix),
        message_field("subject", text(), mix),
        message_field("text", prop_oneof![text(), utf8()].boxed(), mix),
        message_field("html", text(), mix),
        weighted_field(
            "attachments",
            vec(attachment, 0..3).prop_map(Value::Array).boxed(),
            any_value(),
            [3, mix.any, 6],
        ),
        message_field("headers", headers, mix),
        message_field("messageId", text(), mix),
        message_field("date", date, mix),
        message_field("inReplyTo", text(), mix),
        message_field(
            "references",
            prop_oneof![text(), vec(text(), 0..3).prop_map(Value::Array)].boxed(),
            mix,
        ),
        rare_field(
            "priority",
            string_of(vec!["high", "normal", "low", "urgent"]),
            mix,
        ),
        rare_field("envelope", envelope, mix),
    ])
}

/// Token endpoint answers: Entra-shaped successes and errors with random fields, bodies that
/// echo the secret (raw and form-encoded), and arbitrary bytes.
fn any_token_response() -> BoxedStrategy<(u16, Vec<u8>)> {
    let status = prop_oneof![
        3 => select(vec![200u16, 400, 401, 429, 500, 503]),
        1 => 100u16..600,
        1 => any::<u16>(),
    ];
    let json_number = || {
        prop_oneof![
            any_number().prop_map(|n| serde_json::json!(n)),
            any_string().prop_map(|s| serde_json::json!(s)),
            Just(serde_json::Value::Null),
        ]
    };
    let success = (any_string(), json_number(), json_number(), any::<bool>()).prop_map(
        |(token, expires, refresh, with_refresh)| {
            let mut body =
                serde_json::json!({ "token_type": "Bearer", "access_token": token, "expires_in": expires });
            if with_refresh {
                body["refresh_in"] = refresh;
            }
            body.to_string().into_bytes()
        },
    );
    let echoed = select(vec![
        CANARY_SECRET.to_string(),
        form_encode(CANARY_SECRET),
        format!("client_secret={}", form_encode(CANARY_SECRET)),
    ]);
    let error = (any_string(), any_string(), vec(any::<u64>(), 0..3), echoed.clone()).prop_map(|(error, description, codes, echo)| {
        serde_json::json!({ "error": error, "error_description": format!("{description} {echo}"), "error_codes": codes })
            .to_string()
            .into_bytes()
    });
    let text_echo = (any_string(), echoed).prop_map(|(text, echo)| format!("{text} {echo}").into_bytes());
    let body = prop_oneof![
        3 => success,
        3 => error,
        2 => text_echo,
        1 => vec(any::<u8>(), 0..512),
        1 => any_value().prop_map(|v| format!("{v:?}").into_bytes()),
    ];
    (status, body).boxed()
}

/// A JSON number as JSON text, also beyond what an f64 holds (`1e999`, 30-digit integers).
fn any_json_number() -> BoxedStrategy<serde_json::Value> {
    prop_oneof![
        3 => any_number().prop_map(|n| serde_json::json!(n)),
        2 => any::<i64>().prop_map(|n| serde_json::json!(n)),
        2 => any::<u64>().prop_map(|n| serde_json::json!(n)),
        2 => select(vec!["1e300", "-1e300", "1e999", "-0", "123456789012345678901234567890", "1.5e19", "9.3e18"])
            .prop_map(|text| serde_json::from_str(text).unwrap_or(serde_json::Value::Null)),
        1 => select(vec!["NaN", "Infinity", "-1", "1e300", ""]).prop_map(|s| serde_json::json!(s)),
    ]
    .boxed()
}

/// Any JSON value, shallow: what a claim may hold.
fn any_json() -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        any_json_number(),
        any_string().prop_map(serde_json::Value::String),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            vec((any_short(), inner), 0..4)
                .prop_map(|pairs| serde_json::Value::Object(pairs.into_iter().collect())),
        ]
    })
    .boxed()
}

/// The payload of an access token: Exchange-shaped claims with random values (absurd `exp`
/// above all), any JSON at all, or bytes that are not JSON.
fn any_claims_payload() -> BoxedStrategy<Vec<u8>> {
    let claim = |name: &'static str, good: BoxedStrategy<serde_json::Value>| prop_oneof![2 => good.prop_map(move |v| Some((name.to_string(), v))), 1 => any_json().prop_map(move |v| Some((name.to_string(), v))), 1 => Just(None)];
    let guid = || {
        select(vec![
            "0c3e7d2a-5b1f-4e8a-9d6c-2f4b8a1e7c30",
            "9B1F0C2E-0000-4000-8000-000000000001",
            "contoso.onmicrosoft.com",
        ])
        .prop_map(|s| serde_json::json!(s))
        .boxed()
    };
    let claims = (
        claim("exp", any_json_number()),
        claim(
            "aud",
            select(vec![
                "https://outlook.office365.com",
                "00000002-0000-0ff1-ce00-000000000000",
                "https://graph.microsoft.com",
            ])
            .prop_map(|s| serde_json::json!(s))
            .boxed(),
        ),
        claim(
            "roles",
            vec(select(vec!["SMTP.SendAsApp", "Mail.Send"]), 0..3)
                .prop_map(|r| serde_json::json!(r))
                .boxed(),
        ),
        claim("tid", guid()),
        claim("appid", guid()),
        claim("azp", guid()),
        vec((any_short(), any_json()), 0..3),
    )
        .prop_map(|(exp, aud, roles, tid, appid, azp, extra)| {
            let map: serde_json::Map<_, _> = [exp, aud, roles, tid, appid, azp]
                .into_iter()
                .flatten()
                .chain(extra)
                .collect();
            serde_json::Value::Object(map).to_string().into_bytes()
        });
    prop_oneof![
        6 => claims,
        2 => any_json().prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

/// application/x-www-form-urlencoded, as the token request body carries the secret.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Targets

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

// ---------------------------------------------------------------------------------------
// Secrets in Debug output and panic messages (deterministic)

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
