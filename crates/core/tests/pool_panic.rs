//! A panic inside a pooled send (a bug) fails that send alone: more panics than
//! `maxConnections` leave the queue running and `close()` finishing. The panic is injected
//! through the one seam the core takes from outside, the log sink, at a chosen transcript
//! line: before the message left (`EINTERNAL`) or right after its final `.`
//! (`EUNKNOWN_DELIVERY`, never resent).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_oauth_core::log::{Level, LogSink};
use smtp_oauth_core::{Environment, Transport, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A plain SMTP server (no STARTTLS, no AUTH) that accepts everything and counts the
/// messages it received.
async fn start_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 test ESMTP\r\n").await;
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply: &[u8] = if in_data {
                        if line != "." {
                            continue;
                        }
                        in_data = false;
                        counter.fetch_add(1, Ordering::SeqCst);
                        b"250 queued\r\n"
                    } else if line.starts_with("EHLO") {
                        b"250-test\r\n250 8BITMIME\r\n"
                    } else if line == "DATA" {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if line == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, received)
}

/// A log sink that panics once on the next transcript line starting with the armed prefix.
#[derive(Clone, Default)]
struct PanicOnLine(Arc<Mutex<Option<&'static str>>>);

impl PanicOnLine {
    fn arm(&self, prefix: &'static str) {
        *self.0.lock().unwrap() = Some(prefix);
    }

    fn sink(&self) -> LogSink {
        let armed = Arc::clone(&self.0);
        Arc::new(move |_level: Level, line: &str| {
            let hit = {
                let mut armed = armed.lock().unwrap();
                match *armed {
                    Some(prefix) if line.starts_with(prefix) => armed.take().is_some(),
                    _ => false,
                }
            };
            if hit {
                panic!("injected panic at {line:?}");
            }
        })
    }
}

fn message(n: usize) -> Value {
    Value::object([
        ("from", Value::str("sender@example.com")),
        ("to", Value::str("rcpt@example.com")),
        ("subject", Value::str(format!("message {n}"))),
        ("text", Value::str("hello")),
    ])
}

#[tokio::test]
async fn a_panicking_pooled_send_fails_alone_and_the_pool_goes_on() {
    let (port, received) = start_server().await;
    let config = Value::object([
        ("host", Value::str("127.0.0.1")),
        ("port", Value::Number(port.into())),
        ("pool", Value::Bool(true)),
        ("maxConnections", Value::Number(1.0)),
        ("maxRetries", Value::Number(0.0)),
        ("debug", Value::Bool(true)),
    ]);
    let panics = PanicOnLine::default();
    let environment = Environment {
        log: Some(panics.sink()),
        ..Environment::default()
    };
    let transport = Transport::new(&config, None, environment).unwrap();
    let limit = Duration::from_secs(10);

    // More panics than maxConnections, each before the message left.
    for n in 0..3 {
        panics.arm("C: MAIL FROM");
        let err = tokio::time::timeout(limit, transport.send(&message(n)))
            .await
            .expect("a send hung after a panic in the pool")
            .unwrap_err();
        assert_eq!(err.code(), "EINTERNAL", "{}", err.message());
        assert!(err.is_permanent());
        assert!(err.message().contains("before the message was sent"));
    }
    assert_eq!(received.load(Ordering::SeqCst), 0);

    // A panic right after the final `.`: the server has the message.
    panics.arm("C: .");
    let err = tokio::time::timeout(limit, transport.send(&message(3)))
        .await
        .expect("a send hung after a panic in the pool")
        .unwrap_err();
    assert_eq!(err.code(), "EUNKNOWN_DELIVERY", "{}", err.message());
    assert!(err.is_permanent());
    assert_eq!(err.attempts(), 1, "never resent");

    let info = tokio::time::timeout(limit, transport.send(&message(4)))
        .await
        .expect("a send hung after a panic in the pool")
        .expect("the pool still sends after the panics");
    assert!(info.response.starts_with("250"));
    tokio::time::timeout(limit, transport.close(false))
        .await
        .expect("close() hung after panics in the pool");
    assert_eq!(received.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_panicking_unpooled_send_after_the_final_dot_is_unknown_delivery() {
    let (port, received) = start_server().await;
    let config = Value::object([
        ("host", Value::str("127.0.0.1")),
        ("port", Value::Number(port.into())),
        ("maxRetries", Value::Number(2.0)),
        ("debug", Value::Bool(true)),
    ]);
    let panics = PanicOnLine::default();
    let environment = Environment {
        log: Some(panics.sink()),
        ..Environment::default()
    };
    let transport = Transport::new(&config, None, environment).unwrap();
    panics.arm("C: .");
    let err = transport.send(&message(0)).await.unwrap_err();
    assert_eq!(err.code(), "EUNKNOWN_DELIVERY", "{}", err.message());
    assert_eq!(err.attempts(), 1, "never resent");
    panics.arm("C: RCPT TO");
    let err = transport.send(&message(1)).await.unwrap_err();
    assert_eq!(err.code(), "EINTERNAL", "{}", err.message());
    transport.send(&message(2)).await.expect("later sends work");
    // Messages 0 (its final `.` had left) and 2; the server may still be reading message 0.
    for _ in 0..100 {
        if received.load(Ordering::SeqCst) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(received.load(Ordering::SeqCst), 2);
}
