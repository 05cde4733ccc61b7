//! Strategies: the generated configs, addresses, token answers and messages.

use crate::harness::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use smtp_oauth_core::Value;

/// Never produced by the generators below: finding it in output means a secret leaked.
pub(crate) const CANARY_SECRET: &str = "CANARY-secret~Zq9.x_7";
pub(crate) const CANARY_PASSWORD: &str = "CANARY-password~p@ss";
pub(crate) const CANARY_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nQ0FOQVJZLWtleS1ib2R5LWJ5dGVz\n-----END PRIVATE KEY-----\n";
pub(crate) const CANARY_KEY_BODY: &str = "Q0FOQVJZLWtleS1ib2R5LWJ5dGVz";

/// Strings that break things: line breaks aimed at headers and commands, Unicode, controls,
/// very long runs without whitespace, and the shapes the parsers look for.
pub(crate) fn any_string() -> BoxedStrategy<String> {
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

pub(crate) fn any_short() -> BoxedStrategy<String> {
    "[a-zA-Z0-9@. ]{0,12}".boxed()
}

pub(crate) fn any_number() -> BoxedStrategy<f64> {
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

pub(crate) const CONFIG_KEYS: &[&str] = &[
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

pub(crate) const MESSAGE_KEYS: &[&str] = &[
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

pub(crate) fn any_key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => select(CONFIG_KEYS).prop_map(str::to_string),
        2 => select(MESSAGE_KEYS).prop_map(str::to_string),
        1 => any_string(),
    ]
    .boxed()
}

pub(crate) fn any_leaf() -> BoxedStrategy<Value> {
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
pub(crate) fn any_value() -> BoxedStrategy<Value> {
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
pub(crate) fn field(key: &'static str, good: BoxedStrategy<Value>) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_leaf_or_value(), [3, 2, 1])
}

/// Mostly a leaf, sometimes a whole tree (trees are slow to generate, leaves find as much).
pub(crate) fn any_leaf_or_value() -> BoxedStrategy<Value> {
    prop_oneof![3 => any_leaf(), 1 => any_value()].boxed()
}

/// `(key, value)` or nothing, with weights for `[good, other, absent]`.
pub(crate) fn weighted_field(
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

pub(crate) fn string_of(options: Vec<&'static str>) -> BoxedStrategy<Value> {
    select(options).prop_map(Value::str).boxed()
}

pub(crate) fn number_of(options: Vec<f64>) -> BoxedStrategy<Value> {
    select(options).prop_map(Value::Number).boxed()
}

/// An object of `fields` (each present or not) plus the `extra` keys, in a random order.
pub(crate) fn shuffled_object(
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
pub(crate) fn object(fields: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    shuffled_object(fields, vec((any_key(), any_leaf_or_value()), 0..3).boxed())
}

/// A TAS `mail.smtp` object: every real key, each good, random or absent; the secrets are
/// canaries.
pub(crate) fn any_config() -> BoxedStrategy<Value> {
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
pub(crate) fn any_address_value() -> BoxedStrategy<Value> {
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
pub(crate) fn display_name() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z][A-Za-z ,.'()@<>]{0,20}",
        2 => "\\PC{1,16}",
        1 => (select(vec!['x', 'é', '"']), 900usize..1600).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => any_string().prop_filter("empty names are refused", |s| !s.trim().is_empty()),
    ]
    .boxed()
}

/// One valid mailbox, in every form nodemailer accepts: plain, `"Name" <addr>`, `{ name, address }`.
pub(crate) fn good_mailbox() -> BoxedStrategy<Value> {
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
pub(crate) fn good_mailboxes() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => good_mailbox(),
        1 => vec(select(vec!["a@example.com", "b@example.org", "Name <c@example.net>"]), 1..4).prop_map(|list| Value::String(list.join(", "))),
        1 => vec(good_mailbox(), 1..4).prop_map(Value::Array),
    ]
    .boxed()
}

/// How often a message field holds a good value, any value at all, or is absent.
#[derive(Clone, Copy)]
pub(crate) struct Mix {
    good: u32,
    any: u32,
    absent: u32,
}

/// An address field of a message: valid, hostile or absent as `mix` says.
pub(crate) fn address_field(
    key: &'static str,
    single: bool,
    mix: Mix,
) -> BoxedStrategy<Option<(String, Value)>> {
    let good = if single { good_mailbox() } else { good_mailboxes() };
    weighted_field(key, good, any_address_value(), [mix.good, mix.any, mix.absent])
}

/// A message field: good, anything or absent as `mix` says.
pub(crate) fn message_field(
    key: &'static str,
    good: BoxedStrategy<Value>,
    mix: Mix,
) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_value(), [mix.good, mix.any, mix.absent])
}

/// A rarely present field.
pub(crate) fn rare_field(
    key: &'static str,
    good: BoxedStrategy<Value>,
    mix: Mix,
) -> BoxedStrategy<Option<(String, Value)>> {
    weighted_field(key, good, any_value(), [1, mix.any.min(1), 10])
}

/// An object of `fields` plus up to two keys no parser knows (ignored), in a random order.
pub(crate) fn message_object(fields: Vec<BoxedStrategy<Option<(String, Value)>>>) -> BoxedStrategy<Value> {
    shuffled_object(fields, vec(("x-[a-z]{1,8}", any_value()), 0..2).boxed())
}

/// A nodemailer message object: the real fields with hostile strings (injections, long
/// values, Unicode) where strings belong; or with values of any type here and there; now and
/// then anything at all.
pub(crate) fn any_message() -> BoxedStrategy<Value> {
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

pub(crate) fn message_with(mix: Mix) -> BoxedStrategy<Value> {
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
pub(crate) fn any_token_response() -> BoxedStrategy<(u16, Vec<u8>)> {
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
pub(crate) fn any_json_number() -> BoxedStrategy<serde_json::Value> {
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
pub(crate) fn any_json() -> BoxedStrategy<serde_json::Value> {
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
pub(crate) fn any_claims_payload() -> BoxedStrategy<Vec<u8>> {
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
pub(crate) fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
