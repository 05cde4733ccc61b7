//! The doctor's Graph checks (`Transport::probe_graph`) against a local endpoint that answers
//! both the token request and `GET /v1.0/users/{user}`, over plain http on loopback.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use smtp_oauth_core::graph::MailboxCheck;
use smtp_oauth_core::{Environment, Transport, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Endpoint {
    origin: String,
    /// Request lines received, in order.
    requests: Arc<Mutex<Vec<String>>>,
}

/// Tokens carry `roles`; `GET /v1.0/users/...` is answered with `user_status`.
async fn start(roles: &'static [&'static str], user_status: u16) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                let head = loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break text[..end].to_string();
                        }
                    }
                };
                let line = head.lines().next().unwrap_or("").to_string();
                seen.lock().unwrap().push(line.clone());
                let (status, body) = if line.contains("/oauth2/v2.0/token") {
                    let claims = serde_json::json!({ "aud": "https://graph.microsoft.com", "roles": roles, "appid": "client", "exp": 4_000_000_000u64 });
                    let jwt = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()));
                    (
                        200,
                        format!(r#"{{"token_type":"Bearer","expires_in":3599,"access_token":"{jwt}"}}"#),
                    )
                } else if user_status == 200 {
                    (200, r#"{"userPrincipalName":"tas@contoso.com"}"#.to_string())
                } else {
                    (user_status, r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#.to_string())
                };
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\nrequest-id: 11111111-2222-3333-4444-555555555555\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Endpoint { origin, requests }
}

fn graph_transport(endpoint: &Endpoint) -> Transport {
    let config = Value::object([
        ("type", Value::str("oauth2")),
        ("api", Value::str("graph")),
        ("graphUrl", Value::str(format!("{}/v1.0", endpoint.origin))),
        ("auth", Value::object([("user", Value::str("tas@contoso.com"))])),
        (
            "oauth2",
            Value::object([
                (
                    "host",
                    Value::str(format!("{}/tenant/oauth2/v2.0/token", endpoint.origin)),
                ),
                ("clientId", Value::str("client")),
                ("clientSecret", Value::str("secret")),
            ]),
        ),
    ]);
    Transport::new(&config, None, Environment::default()).unwrap()
}

#[tokio::test]
async fn a_graph_token_and_a_found_mailbox_pass() {
    let endpoint = start(&["Mail.Send"], 200).await;
    let probe = graph_transport(&endpoint).probe_graph().await.unwrap();
    assert!(probe.token.problems.is_empty(), "{:?}", probe.token.problems);
    assert_eq!(probe.token.aud.as_deref(), Some("https://graph.microsoft.com"));
    match probe.mailbox {
        MailboxCheck::Found(line) => assert!(line.starts_with("HTTP/1.1 200 OK request-id: 1111"), "{line}"),
        other => panic!("{other:?}"),
    }
    let requests = endpoint.requests.lock().unwrap().clone();
    assert_eq!(requests[1], "GET /v1.0/users/tas@contoso.com HTTP/1.1");
}

#[tokio::test]
async fn a_refused_user_lookup_says_user_read_all_and_a_token_without_mail_send_is_flagged() {
    let endpoint = start(&[], 403).await;
    let probe = graph_transport(&endpoint).probe_graph().await.unwrap();
    let codes: Vec<&str> = probe.token.problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, ["ROLE_MISSING"]);
    assert!(probe.token.problems[0].message.contains("Mail.Send"));
    match probe.mailbox {
        MailboxCheck::NeedsUserReadAll(text) => assert!(text.contains("User.Read.All"), "{text}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_mailbox_is_a_failure_with_the_send_error() {
    let endpoint = start(&["Mail.Send"], 404).await;
    let probe = graph_transport(&endpoint).probe_graph().await.unwrap();
    match probe.mailbox {
        MailboxCheck::Failed(err) => assert_eq!((err.code(), err.http_status()), ("EAUTH", Some(404))),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_smtp_transport_has_no_graph_path() {
    let config = Value::object([
        ("host", Value::str("smtp.example.com")),
        ("port", Value::Number(587.0)),
    ]);
    let transport = Transport::new(&config, None, Environment::default()).unwrap();
    assert_eq!(transport.probe_graph().await.unwrap_err().code(), "ECONFIG");
}
