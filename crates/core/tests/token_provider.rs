//! The token provider against a real (local) HTTP token endpoint: request counts under
//! concurrency, retries, throttling. The endpoint answers from a script of responses and
//! counts requests, like lancedb's OAuth tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_oauth_core::config::{Auth, TransportConfig};
use smtp_oauth_core::oauth::TokenProvider;
use smtp_oauth_core::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Endpoint {
    url: String,
    requests: Arc<AtomicUsize>,
}

/// Serves `responses` in order (the last one repeats), each after `delay`.
async fn start_endpoint(responses: Vec<(u16, &'static str, &'static str)>, delay: Duration) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/tenant/oauth2/v2.0/token",
        listener.local_addr().unwrap()
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Mutex::new(responses));
    let counter = Arc::clone(&requests);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (counter, script) = (Arc::clone(&counter), Arc::clone(&script));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Read the head and the form body (small) until the body length is reached.
                loop {
                    let n = socket.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let length = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= head_end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let (status, extra_header, body) = {
                    let mut script = script.lock().unwrap();
                    if script.len() > 1 {
                        script.remove(0)
                    } else {
                        script[0]
                    }
                };
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{extra_header}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Endpoint { url, requests }
}

fn provider(url: &str) -> Arc<TokenProvider> {
    provider_with(url, Vec::new())
}

/// A provider for `url` with `extra` fields in `oauth2`.
fn provider_with(url: &str, extra: Vec<(&str, Value)>) -> Arc<TokenProvider> {
    let mut oauth2 = vec![
        ("host", Value::str(url)),
        ("clientId", Value::str("client")),
        ("clientSecret", Value::str("canary-secret")),
        ("scope", Value::str("https://outlook.office365.com/.default")),
    ];
    oauth2.extend(extra);
    let config = Value::object([
        ("type", Value::str("oauth2")),
        ("host", Value::str("127.0.0.1")),
        ("port", Value::Number(587.0)),
        ("auth", Value::object([("user", Value::str("tas@contoso.com"))])),
        ("oauth2", Value::object(oauth2)),
    ]);
    let config = TransportConfig::from_value(&config, None).unwrap();
    let Auth::OAuth2 { oauth2, .. } = config.auth else {
        unreachable!()
    };
    Arc::new(TokenProvider::new(*oauth2, &config.tls, None).unwrap())
}

const TOKEN: (u16, &str, &str) = (
    200,
    "",
    r#"{"token_type":"Bearer","expires_in":3599,"access_token":"t1"}"#,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_cause_one_request() {
    let endpoint = start_endpoint(vec![TOKEN], Duration::from_millis(200)).await;
    let tokens = provider(&endpoint.url);
    let calls = (0..50).map(|_| {
        let tokens = Arc::clone(&tokens);
        tokio::spawn(async move { tokens.token().await.map(|t| t.value.expose().to_string()) })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap().unwrap(), "t1");
    }
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
    tokens.token().await.unwrap();
    assert_eq!(
        endpoint.requests.load(Ordering::SeqCst),
        1,
        "the cached token is reused"
    );
}

#[tokio::test]
async fn outages_are_retried_but_credential_errors_are_not() {
    let outage = (503, "", "Service Unavailable");
    let endpoint = start_endpoint(vec![outage, outage, TOKEN], Duration::ZERO).await;
    provider(&endpoint.url).token().await.unwrap();
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 3);

    let refused = (401, "", r#"{"error":"invalid_client","error_codes":[7000215]}"#);
    let endpoint = start_endpoint(vec![refused], Duration::ZERO).await;
    let err = provider(&endpoint.url).token().await.unwrap_err();
    assert_eq!(
        (err.code(), err.oauth_error().unwrap().error.as_str()),
        ("EOAUTH2", "invalid_client")
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn throttled_callers_fail_fast_until_retry_after() {
    let throttled = (
        429,
        "retry-after: 30\r\n",
        r#"{"error":"temporarily_unavailable"}"#,
    );
    let endpoint = start_endpoint(vec![throttled, TOKEN], Duration::ZERO).await;
    let tokens = provider(&endpoint.url);
    let first = tokens.token().await.unwrap_err();
    assert_eq!(first.retry_after().map(|d| d.as_secs() >= 29), Some(true));
    assert!(
        first.message().contains("no token request before"),
        "{}",
        first.message()
    );
    let second = tokens.token().await.unwrap_err();
    assert_eq!(second.http_status(), Some(429));
    assert_eq!(
        endpoint.requests.load(Ordering::SeqCst),
        1,
        "no request while throttled"
    );
}

#[tokio::test]
async fn a_credential_refusal_is_remembered_for_failure_cache_seconds() {
    let refused = (401, "", r#"{"error":"invalid_client","error_codes":[7000215]}"#);
    let endpoint = start_endpoint(vec![refused, TOKEN], Duration::ZERO).await;
    let tokens = provider_with(&endpoint.url, vec![("failureCacheSeconds", Value::Number(1.0))]);
    let first = tokens.token().await.unwrap_err();
    assert!(
        tokens.fail_fast().is_err(),
        "no SMTP connection while the refusal stands"
    );
    let second = tokens.token().await.unwrap_err();
    assert_eq!(second.message(), first.message());
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
    // Once the refusal is forgotten, the (fixed) endpoint is asked again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(tokens.fail_fast().is_ok());
    assert_eq!(tokens.token().await.unwrap().value.expose(), "t1");
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn outages_and_throttling_are_not_remembered_as_refusals() {
    let outage = (503, "", "Service Unavailable");
    let endpoint = start_endpoint(vec![outage, outage, outage, TOKEN], Duration::ZERO).await;
    let tokens = provider(&endpoint.url);
    tokens.token().await.unwrap_err();
    assert!(tokens.fail_fast().is_ok());
    tokens.token().await.unwrap();
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let elsewhere = start_endpoint(vec![TOKEN], Duration::ZERO).await;
    let location: &'static str = Box::leak(format!("location: {}\r\n", elsewhere.url).into_boxed_str());
    let endpoint = start_endpoint(vec![(307, location, "")], Duration::ZERO).await;
    let err = provider(&endpoint.url).token().await.unwrap_err();
    assert_eq!((err.code(), err.http_status()), ("EOAUTH2", Some(307)));
    assert!(
        err.message().contains("a redirect to 127.0.0.1"),
        "{}",
        err.message()
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        elsewhere.requests.load(Ordering::SeqCst),
        0,
        "the form was not re-sent"
    );
}
