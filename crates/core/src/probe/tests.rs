//! The probe against a scripted SMTP server on a real socket.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::input::Value;
use crate::transport::Environment;

fn transport(port: u16) -> Transport {
    let smtp = Value::object([
        ("host", Value::str("127.0.0.1")),
        ("port", Value::Number(f64::from(port))),
        ("connectionTimeout", Value::Number(5000.0)),
    ]);
    Transport::new(&smtp, None, Environment::default()).unwrap()
}

/// Answers one session: greeting, EHLO, QUIT.
async fn serve_one(listener: TcpListener) {
    let (socket, _) = listener.accept().await.unwrap();
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 scripted.test ESMTP\r\n").await.unwrap();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer: &[u8] = match line.split_whitespace().next().unwrap_or_default() {
            "EHLO" => b"250-scripted.test\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
            "QUIT" => b"221 bye\r\n",
            _ => b"502 no\r\n",
        };
        write.write_all(answer).await.unwrap();
    }
}

#[tokio::test]
async fn the_smtp_step_reports_what_the_transports_connect_path_saw() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_one(listener));
    let report = transport(port).probe(&ProbeOptions::default()).await;
    server.await.unwrap();
    let statuses: Vec<_> = report.steps.iter().map(|s| s.status).collect();
    // No credentials: no token, no claims, no AUTH; nothing asked to be sent.
    assert_eq!(statuses, ["pass", "skip", "skip", "pass", "skip", "skip"]);
    assert!(report.ok);
    let smtp = &report.steps[3].details;
    assert_eq!(smtp["greeting"], "220 scripted.test ESMTP");
    assert_eq!(smtp["ehlo"], serde_json::json!(["SIZE 1000", "8BITMIME"]));
    assert_eq!(smtp["starttls"], false);
    assert_eq!(smtp["dns"]["a"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(smtp["tcp"]["address"], format!("127.0.0.1:{port}"));
    assert_eq!(smtp["tcp"]["family"], "IPv4");
    assert!(
        report.steps[3].finding.contains("no TLS"),
        "{}",
        report.steps[3].finding
    );
}

#[tokio::test]
async fn a_closed_port_is_named_as_refused_and_the_later_steps_are_skipped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let report = transport(port)
        .probe(&ProbeOptions {
            send_to: Some("rcpt@example.com".into()),
            from: None,
        })
        .await;
    assert!(!report.ok);
    let smtp = &report.steps[3];
    assert_eq!(smtp.ok, Some(false));
    assert!(
        smtp.finding
            .contains(&format!("127.0.0.1:{port} refused the connection")),
        "{}",
        smtp.finding
    );
    assert_eq!(smtp.hint.as_ref().unwrap().id, "net.refused");
    assert_eq!(smtp.fix.as_deref(), smtp.hint.as_ref().map(|h| h.text.as_str()));
    assert_eq!(report.steps[5].finding, "skipped (step 4 failed)");
}
