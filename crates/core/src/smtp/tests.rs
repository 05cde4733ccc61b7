//! The session and transaction state machines against a scripted server on
//! `tokio::io::duplex`: every reply path, without a socket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::reply::{judge, Reply, Step};
use super::session::SmtpConnection;
use super::transaction::{wire_address, PIPELINE_GROUP_BYTES};
use super::{Delivery, Login};
use crate::config::TransportConfig;
use crate::dsn::Dsn;
use crate::error::{ErrorKind, Result};
use crate::input::{ByteBuf, Value};
use crate::log::Logger;
use crate::message::{MessageBody, OutgoingMessage};
use crate::secret::Secret;

/// What the scripted server received: command lines, and each message's content.
#[derive(Default)]
struct Received {
    lines: Vec<String>,
    contents: Vec<Vec<u8>>,
}

type Script = Box<dyn FnMut(&str) -> String + Send>;

/// A server that reads one line, writes its whole reply (waiting until the client has
/// room for it, as a server with a full send buffer does), then reads the next. After a
/// `354` it reads content up to the final `.`; after `BDAT n` it reads `n` bytes. The
/// script's answer to each line (and to `.` and `BDAT`) is sent as is; "" sends nothing.
fn scripted(
    buffer: usize,
    ehlo: &str,
    mut script: impl FnMut(&str) -> String + Send + 'static,
) -> (DuplexStream, Arc<Mutex<Received>>) {
    let (client, server) = tokio::io::duplex(buffer);
    let received = Arc::new(Mutex::new(Received::default()));
    let log = Arc::clone(&received);
    let ehlo = ehlo.to_string();
    let mut script: Script = Box::new(move |line: &str| {
        if line.starts_with("EHLO") {
            return ehlo.clone();
        }
        script(line)
    });
    tokio::spawn(async move {
        let (read, mut write) = tokio::io::split(server);
        let mut reader = BufReader::new(read);
        let _ = write.write_all(b"220 scripted ESMTP\r\n").await;
        loop {
            let mut raw = Vec::new();
            if reader.read_until(b'\n', &mut raw).await.unwrap_or(0) == 0 {
                return;
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_string();
            log.lock().unwrap().lines.push(line.clone());
            let mut answer = script(&line);
            if let Some(size) = line.strip_prefix("BDAT ") {
                let size: usize = size.split(' ').next().unwrap().parse().unwrap();
                let mut content = vec![0; size];
                if reader.read_exact(&mut content).await.is_err() {
                    return;
                }
                log.lock().unwrap().contents.push(content);
            } else if answer.starts_with("354") {
                write_reply(&mut write, &answer).await;
                let mut content = Vec::new();
                loop {
                    let mut raw = Vec::new();
                    if reader.read_until(b'\n', &mut raw).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if raw == b".\r\n" {
                        break;
                    }
                    content.extend_from_slice(&raw);
                }
                log.lock().unwrap().contents.push(content);
                answer = script(".");
            }
            if !answer.is_empty() {
                write_reply(&mut write, &answer).await;
            }
            if line == "QUIT" {
                return;
            }
        }
    });
    (client, received)
}

async fn write_reply(write: &mut (impl AsyncWriteExt + Unpin), answer: &str) {
    let _ = write.write_all(format!("{answer}\r\n").as_bytes()).await;
}

/// The usual answers: 250 to MAIL/RCPT/RSET, 354 to DATA, 250 to the end of data and to
/// BDAT, 221 to QUIT.
fn usual(line: &str) -> String {
    match line {
        "DATA" => "354 go ahead".into(),
        "QUIT" => "221 bye".into(),
        "." => "250 2.0.0 queued".into(),
        _ => "250 OK".into(),
    }
}

const PLAIN_EHLO: &str = "250-scripted\r\n250-AUTH XOAUTH2 PLAIN LOGIN\r\n250 8BITMIME";
const PIPELINING_EHLO: &str = "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME";

fn config(extra: &[(&str, Value)]) -> TransportConfig {
    let mut pairs = vec![("host", Value::str("scripted")), ("port", Value::Number(25.0))];
    pairs.extend(extra.iter().cloned());
    TransportConfig::from_value(&Value::object(pairs), None).unwrap()
}

async fn session(stream: DuplexStream, config: &TransportConfig) -> Result<SmtpConnection<DuplexStream>> {
    let mut connection = SmtpConnection::new(stream, "scripted:25".into(), true, config, &Logger::default());
    connection.greet(Duration::from_secs(5), "client.test").await?;
    Ok(connection)
}

async fn connected(
    ehlo: &str,
    script: impl FnMut(&str) -> String + Send + 'static,
) -> (SmtpConnection<DuplexStream>, Arc<Mutex<Received>>) {
    let (stream, received) = scripted(64 * 1024, ehlo, script);
    (session(stream, &config(&[])).await.unwrap(), received)
}

fn message(to: &[&str], body: &[u8]) -> OutgoingMessage {
    OutgoingMessage {
        message_id: "<id@test>".into(),
        envelope_from: Some("sender@example.com".parse().unwrap()),
        envelope_to: to.iter().map(|a| a.parse().unwrap()).collect(),
        body: MessageBody::from_bytes(ByteBuf::from(body.to_vec())),
        dsn: None,
    }
}

fn lines(received: &Arc<Mutex<Received>>) -> Vec<String> {
    received.lock().unwrap().lines.clone()
}

/// A deadlock shows as this timeout, not as a hung test run.
async fn within_a_minute<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("the dialogue is stuck (deadlock)")
}

// ---- the reply-code table ----

#[test]
fn every_code_of_every_step_maps_to_one_kind() {
    let reply = |code| Reply {
        code,
        lines: vec!["x".into()],
    };
    for step in Step::ALL {
        let rule = step.rule();
        for code in [
            200, 220, 221, 235, 250, 251, 334, 354, 421, 450, 452, 454, 500, 535, 550, 554,
        ] {
            let verdict = judge(step, &reply(code));
            match verdict {
                Ok(()) => assert!(rule.success.contains(&code), "{step:?} {code}"),
                Err(err) => {
                    assert!(!rule.success.contains(&code), "{step:?} {code}");
                    assert_eq!(err.reply().unwrap().code, code);
                    assert_eq!(err.command(), Some(step.command()));
                    if (400..500).contains(&code) {
                        assert_eq!(err.kind(), rule.refusal, "{step:?} {code}");
                        assert!(err.is_transient(), "{step:?} {code}");
                    } else if code >= 500 {
                        assert_eq!(err.kind(), rule.refusal, "{step:?} {code}");
                        assert!(err.is_permanent(), "{step:?} {code}");
                    } else {
                        assert_eq!(err.kind(), ErrorKind::Protocol, "{step:?} {code}");
                        assert!(err.is_permanent(), "{step:?} {code}");
                    }
                }
            }
        }
    }
    let success = |step: Step| step.rule().success.to_vec();
    assert_eq!(success(Step::Greeting), [220]);
    assert_eq!(success(Step::StartTls), [220]);
    assert_eq!(success(Step::Ehlo), [250]);
    assert_eq!(success(Step::MailFrom), [250]);
    assert_eq!(success(Step::Reset), [250]);
    assert_eq!(success(Step::RcptTo), [250, 251]);
    assert_eq!(success(Step::Data), [354]);
    assert_eq!(success(Step::Message), [250]);
    assert_eq!(success(Step::Auth("AUTH")), [235]);
    assert_eq!(success(Step::AuthContinue("AUTH")), [334]);
}

/// The README shows the table from the code.
#[test]
fn the_readme_shows_the_reply_code_table() {
    let mut table =
        String::from("| Command | Success | 4xx | 5xx | Any other code |\n|---|---|---|---|---|\n");
    for step in Step::ALL {
        let rule = step.rule();
        let success: Vec<String> = rule.success.iter().map(u16::to_string).collect();
        let name = match step {
            Step::Greeting => "greeting (`CONN`)",
            Step::AuthContinue(_) => "`AUTH` step that continues (`AUTH LOGIN`, user name)",
            Step::Auth(_) => "`AUTH` (final)",
            Step::Chunk => "`BDAT` (not last)",
            Step::Message => "end of data (`.` or `BDAT LAST`)",
            other => other.command(),
        };
        let name = if name.contains('`') || name.contains('(') {
            name.to_string()
        } else {
            format!("`{name}`")
        };
        let code = rule.refusal.code();
        table.push_str(&format!(
            "| {name} | {} | `{code}`, transient | `{code}`, permanent | `EPROTOCOL`, permanent |\n",
            success.join(", ")
        ));
    }
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    assert!(
        readme.contains(&table),
        "README.md must contain this table:\n{table}"
    );
}

// ---- strict replies ----

#[tokio::test]
async fn a_334_to_auth_plain_is_not_authenticated() {
    let (mut connection, _) = connected(
        PLAIN_EHLO.replace("XOAUTH2 PLAIN LOGIN", "PLAIN").as_str(),
        |line| match line.starts_with("AUTH") {
            true => "334 ".into(),
            false => usual(line),
        },
    )
    .await;
    let password = Secret::new("hunter2");
    let err = connection
        .authenticate(&Login::Password {
            user: "u",
            password: &password,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EPROTOCOL");
    assert_eq!(err.command(), Some("AUTH PLAIN"));
    assert!(!connection.is_usable());
}

#[tokio::test]
async fn a_250_to_auth_xoauth2_is_not_authenticated() {
    let (mut connection, _) = connected(PLAIN_EHLO, usual).await;
    let token = Secret::new("token");
    let err = connection
        .authenticate(&Login::XOAuth2 {
            user: "u",
            token: &token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EPROTOCOL");
    assert_eq!(err.reply().unwrap().code, 250);
}

#[tokio::test]
async fn a_4xx_after_the_xoauth2_challenge_stays_transient() {
    let (mut connection, _) = connected(PLAIN_EHLO, |line| match line {
        l if l.starts_with("AUTH XOAUTH2") => "334 eyJzdGF0dXMiOiI0MDEifQ==".into(),
        "" => "454 4.7.0 Temporary authentication failure".into(),
        l => usual(l),
    })
    .await;
    let token = Secret::new("token");
    let err = connection
        .authenticate(&Login::XOAuth2 {
            user: "u",
            token: &token,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EAUTH");
    assert_eq!(err.reply().unwrap().code, 454);
    assert!(err.is_transient());
    assert!(err.message().contains(r#"{"status":"401"}"#), "{}", err.message());
}

#[tokio::test]
async fn auth_login_goes_through_its_continuations() {
    let (mut connection, received) = connected(
        PLAIN_EHLO.replace("XOAUTH2 PLAIN LOGIN", "LOGIN").as_str(),
        |line| match line {
            "AUTH LOGIN" | "dQ==" => "334 next".into(),
            l if l.starts_with("aHVudGVy") => "235 2.7.0 OK".into(),
            l => usual(l),
        },
    )
    .await;
    let password = Secret::new("hunter2");
    connection
        .authenticate(&Login::Password {
            user: "u",
            password: &password,
        })
        .await
        .unwrap();
    assert_eq!(lines(&received)[1..], ["AUTH LOGIN", "dQ==", "aHVudGVyMg=="]);
}

#[tokio::test]
async fn a_250_to_data_sends_no_content() {
    let (mut connection, received) = connected(PLAIN_EHLO, |line| match line {
        "DATA" => "250 OK".into(),
        l => usual(l),
    })
    .await;
    let err = connection
        .send(&message(
            &["a@example.com"],
            b"Subject: x\r\n\r\nMAIL FROM:<evil@x>\r\n",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EPROTOCOL");
    assert_eq!(err.command(), Some("DATA"));
    assert_eq!(lines(&received).last().unwrap(), "DATA");
    assert!(!connection.is_usable());
}

#[tokio::test]
async fn a_3xx_to_rcpt_is_not_accepted() {
    for ehlo in [PLAIN_EHLO, PIPELINING_EHLO] {
        let (mut connection, received) = connected(ehlo, |line| match line {
            l if l.starts_with("RCPT") => "354 what".into(),
            l => usual(l),
        })
        .await;
        let err = connection
            .send(&message(&["a@example.com"], b"x\r\n"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "EPROTOCOL", "{ehlo}");
        assert_eq!(err.command(), Some("RCPT TO"));
        assert!(received.lock().unwrap().contents.is_empty());
    }
}

#[tokio::test]
async fn a_251_to_rcpt_is_accepted() {
    let (mut connection, _) = connected(PLAIN_EHLO, |line| match line {
        l if l.starts_with("RCPT") => "251 2.1.5 will forward".into(),
        l => usual(l),
    })
    .await;
    let delivery = connection
        .send(&message(&["a@example.com"], b"x\r\n"))
        .await
        .unwrap();
    assert_eq!(delivery.accepted, ["a@example.com"]);
}

#[tokio::test]
async fn a_refused_transaction_is_reset_before_the_next() {
    for ehlo in [PLAIN_EHLO, PIPELINING_EHLO] {
        let mut accepted = 0;
        let (mut connection, received) = connected(ehlo, move |line| match line {
            l if l.starts_with("MAIL") => {
                accepted = 0;
                usual(l)
            }
            l if l.starts_with("RCPT TO:<gone") => "550 5.1.1 unknown".into(),
            l if l.starts_with("RCPT") => {
                accepted += 1;
                usual(l)
            }
            "DATA" if accepted == 0 => "554 5.5.1 no valid recipients".into(),
            l => usual(l),
        })
        .await;
        let err = connection
            .send(&message(&["gone@example.com"], b"x\r\n"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "EENVELOPE");
        connection
            .send(&message(&["a@example.com"], b"x\r\n"))
            .await
            .unwrap();
        let sent = lines(&received);
        let rset = sent
            .iter()
            .position(|l| l == "RSET")
            .expect("RSET after the refusal");
        let second_mail = sent.iter().rposition(|l| l.starts_with("MAIL")).unwrap();
        assert!(rset < second_mail, "{sent:?}");
    }
}

// ---- pipelining ----

#[tokio::test]
async fn two_thousand_pipelined_recipients_do_not_deadlock() {
    // Buffers as small as a pipelined group: a client that wrote everything before
    // reading would wait for a server that waits for it.
    let (stream, received) = scripted(PIPELINE_GROUP_BYTES, PIPELINING_EHLO, |line| match line {
        l if l.starts_with("RCPT") => {
            "250 2.1.5 Recipient OK, a reply long enough to fill the buffer quickly".into()
        }
        l => usual(l),
    });
    let config = config(&[("maxRecipientsPerMessage", Value::Number(2000.0))]);
    let mut connection = session(stream, &config).await.unwrap();
    let recipients: Vec<String> = (0..2000).map(|i| format!("recipient{i}@example.com")).collect();
    let to: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let delivery = within_a_minute(connection.send(&message(&to, b"x\r\n")))
        .await
        .unwrap();
    assert_eq!(delivery.accepted.len(), 2000);
    let sent = lines(&received);
    assert_eq!(sent.iter().filter(|l| l.starts_with("MAIL")).count(), 1);
}

// ---- recipients ----

/// Accepts `limit` recipients per transaction, then answers 452 4.5.3.
fn limited(limit: usize) -> impl FnMut(&str) -> String + Send + 'static {
    let mut taken = 0;
    move |line: &str| match line {
        l if l.starts_with("MAIL") => {
            taken = 0;
            usual(l)
        }
        l if l.starts_with("RCPT") => {
            taken += 1;
            match taken > limit {
                true => "452 4.5.3 Too many recipients".into(),
                false => usual(l),
            }
        }
        l => usual(l),
    }
}

#[tokio::test]
async fn too_many_recipients_go_in_a_following_transaction() {
    for ehlo in [PLAIN_EHLO, PIPELINING_EHLO] {
        let (mut connection, received) = connected(ehlo, limited(3)).await;
        let to = [
            "a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test", "f@x.test", "g@x.test",
        ];
        let delivery: Delivery = connection.send(&message(&to, b"x\r\n")).await.unwrap();
        assert_eq!(delivery.accepted, to, "{ehlo}");
        assert!(delivery.rejected.is_empty());
        assert_eq!(received.lock().unwrap().contents.len(), 3, "{ehlo}");
        assert_eq!(connection.messages_sent(), 1);
    }
}

#[tokio::test]
async fn recipients_are_split_at_max_recipients_per_message() {
    let (stream, received) = scripted(64 * 1024, PIPELINING_EHLO, usual);
    let config = config(&[("maxRecipientsPerMessage", Value::Number(2.0))]);
    let mut connection = session(stream, &config).await.unwrap();
    let to = ["a@x.test", "b@x.test", "c@x.test", "d@x.test", "e@x.test"];
    let delivery = connection.send(&message(&to, b"x\r\n")).await.unwrap();
    assert_eq!(delivery.accepted, to);
    let sent = lines(&received);
    assert_eq!(sent.iter().filter(|l| l.starts_with("MAIL")).count(), 3);
    assert_eq!(received.lock().unwrap().contents.len(), 3);
}

#[tokio::test]
async fn a_later_refused_transaction_rejects_its_recipients_and_resends_nothing() {
    let (mut transactions, mut in_transaction) = (0, false);
    let (stream, received) = scripted(64 * 1024, PIPELINING_EHLO, move |line| match line {
        l if l.starts_with("MAIL") => {
            transactions += 1;
            in_transaction = transactions != 2;
            match in_transaction {
                false => "451 4.3.0 try later".into(),
                true => usual(l),
            }
        }
        l if l.starts_with("RCPT") || l == "DATA" => match in_transaction {
            false => "503 5.5.1 MAIL first".into(),
            true => usual(l),
        },
        l => usual(l),
    });
    let config = config(&[("maxRecipientsPerMessage", Value::Number(1.0))]);
    let mut connection = session(stream, &config).await.unwrap();
    let delivery = connection
        .send(&message(&["a@x.test", "b@x.test", "c@x.test"], b"x\r\n"))
        .await
        .unwrap();
    assert_eq!(delivery.accepted, ["a@x.test", "c@x.test"]);
    assert_eq!(delivery.rejected[0].recipient, "b@x.test");
    assert_eq!(delivery.rejected[0].reply.code, 451);
    assert_eq!(received.lock().unwrap().contents.len(), 2);
}

// ---- a connection that is not reused ----

#[tokio::test]
async fn a_reply_sent_while_idle_makes_the_connection_not_reusable() {
    let (client, server) = tokio::io::duplex(4096);
    let (read, mut write) = tokio::io::split(server);
    write.write_all(b"220 hi\r\n").await.unwrap();
    let mut reader = BufReader::new(read);
    let mut connection = SmtpConnection::new(client, "s:25".into(), true, &config(&[]), &Logger::default());
    let greeting = connection.greet(Duration::from_secs(5), "client.test");
    let answer = async {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        write.write_all(b"250 ok\r\n").await.unwrap();
    };
    let (greeted, ()) = tokio::join!(greeting, answer);
    greeted.unwrap();
    assert!(connection.is_reusable());
    write
        .write_all(b"421 4.4.2 idle timeout, closing\r\n")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    assert!(!connection.is_reusable());
    assert!(!connection.is_usable());
}

// ---- extensions ----

#[tokio::test]
async fn without_smtputf8_domains_go_as_punycode_and_utf8_local_parts_are_refused() {
    let (mut connection, received) = connected(PLAIN_EHLO, usual).await;
    let mut idn = message(&["user@bücher.example"], b"x\r\n");
    idn.envelope_from = Some("sender@straße.example".parse().unwrap());
    let delivery = connection.send(&idn).await.unwrap();
    assert_eq!(delivery.accepted, ["user@bücher.example"], "reported as given");
    let sent = lines(&received);
    assert!(
        sent.contains(&"RCPT TO:<user@xn--bcher-kva.example>".to_string()),
        "{sent:?}"
    );
    // IDNA 2008: ß is kept (IDNA 2003 mapped it to "ss").
    assert!(
        sent.iter()
            .any(|l| l.starts_with("MAIL FROM:<sender@xn--strae-oqa.example>")),
        "{sent:?}"
    );
    assert!(!sent.iter().any(|l| l.contains("SMTPUTF8")));

    let err = connection
        .send(&message(&["jürgen@example.com"], b"x\r\n"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EENVELOPE");
    assert!(err.message().contains("jürgen@example.com"), "{}", err.message());
    assert_eq!(lines(&received).len(), sent.len(), "nothing was sent");
}

#[tokio::test]
async fn with_smtputf8_addresses_go_as_utf8() {
    let (mut connection, received) = connected(
        &format!("{PLAIN_EHLO}\r\n250 SMTPUTF8").replace("250 8BITMIME", "250-8BITMIME"),
        usual,
    )
    .await;
    connection
        .send(&message(&["jürgen@bücher.example"], b"x\r\n"))
        .await
        .unwrap();
    let sent = lines(&received);
    assert!(
        sent.contains(&"MAIL FROM:<sender@example.com> SMTPUTF8".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(&"RCPT TO:<jürgen@bücher.example>".to_string()),
        "{sent:?}"
    );
}

#[test]
fn ascii_addresses_are_left_alone() {
    let address = "a@example.com".parse().unwrap();
    assert_eq!(wire_address(&address, false).unwrap(), "a@example.com");
}

#[tokio::test]
async fn eight_bit_content_needs_8bitmime() {
    let (mut connection, received) = connected("250-scripted\r\n250 PIPELINING", usual).await;
    let err = connection
        .send(&message(&["a@example.com"], "Grüße\r\n".as_bytes()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EMESSAGE");
    assert!(err.message().contains("8BITMIME"));
    assert!(lines(&received).iter().all(|l| !l.starts_with("MAIL")));

    let (mut connection, received) = connected(PLAIN_EHLO, usual).await;
    connection
        .send(&message(&["a@example.com"], "Grüße\r\n".as_bytes()))
        .await
        .unwrap();
    assert!(lines(&received).contains(&"MAIL FROM:<sender@example.com> BODY=8BITMIME".to_string()));
}

fn with_dsn(mut outgoing: OutgoingMessage) -> OutgoingMessage {
    outgoing.dsn = Some(Dsn {
        ret: Some("HDRS"),
        envid: Some("id-1".into()),
        notify: Some("SUCCESS,FAILURE".into()),
        orcpt: Some("rfc822;a@example.com".into()),
    });
    outgoing
}

#[tokio::test]
async fn dsn_parameters_go_on_mail_and_rcpt() {
    let (mut connection, received) = connected(
        &format!("{PLAIN_EHLO}\r\n250 DSN").replace("250 8BITMIME", "250-8BITMIME"),
        usual,
    )
    .await;
    connection
        .send(&with_dsn(message(&["a@example.com"], b"x\r\n")))
        .await
        .unwrap();
    let sent = lines(&received);
    assert!(
        sent.contains(&"MAIL FROM:<sender@example.com> RET=HDRS ENVID=id-1".to_string()),
        "{sent:?}"
    );
    assert!(
        sent.contains(
            &"RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.com".to_string()
        ),
        "{sent:?}"
    );
}

#[tokio::test]
async fn dsn_to_a_server_without_dsn_is_emessage() {
    let (mut connection, received) = connected(PLAIN_EHLO, usual).await;
    let err = connection
        .send(&with_dsn(message(&["a@example.com"], b"x\r\n")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EMESSAGE");
    assert!(err.message().contains("DSN"));
    assert!(lines(&received).iter().all(|l| !l.starts_with("MAIL")));
}

const CHUNKING_EHLO: &str = "250-scripted\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 CHUNKING";

/// A session with `chunking: true`.
async fn chunking(
    script: impl FnMut(&str) -> String + Send + 'static,
) -> (SmtpConnection<DuplexStream>, Arc<Mutex<Received>>) {
    let (stream, received) = scripted(64 * 1024, CHUNKING_EHLO, script);
    let config = config(&[("chunking", Value::Bool(true))]);
    (session(stream, &config).await.unwrap(), received)
}

#[tokio::test]
async fn chunking_is_used_only_when_asked_for() {
    let (mut connection, received) = connected(CHUNKING_EHLO, usual).await;
    connection
        .send(&message(&["a@example.com"], b"x\r\n"))
        .await
        .unwrap();
    let sent = lines(&received);
    assert!(sent.contains(&"DATA".to_string()), "{sent:?}");
    assert!(!sent.iter().any(|l| l.starts_with("BDAT")), "{sent:?}");
}

#[tokio::test]
async fn chunking_sends_bdat_without_dot_stuffing() {
    let (mut connection, received) = chunking(usual).await;
    let mut body = b"Subject: x\r\n\r\n.dot\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
    connection
        .send(&message(&["a@example.com"], &body))
        .await
        .unwrap();
    let sent = lines(&received);
    assert!(!sent.contains(&"DATA".to_string()), "{sent:?}");
    let bdat: Vec<&String> = sent.iter().filter(|l| l.starts_with("BDAT")).collect();
    assert!(bdat.len() >= 3, "{bdat:?}");
    assert!(bdat.last().unwrap().ends_with(" LAST"));
    let content = received.lock().unwrap().contents.concat();
    body.extend_from_slice(b"\r\n");
    assert_eq!(content, body);
}

#[tokio::test]
async fn a_refused_bdat_chunk_resets_the_transaction() {
    let (mut connection, received) = chunking(|line| match line {
        l if l.starts_with("BDAT") => "552 5.3.4 too big".into(),
        l => usual(l),
    })
    .await;
    let body = vec![b'a'; 2 * 1024 * 1024];
    let err = connection
        .send(&message(&["a@example.com"], &body))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EMESSAGE");
    assert_eq!(err.command(), Some("BDAT"));
    assert_eq!(lines(&received).last().unwrap(), "RSET");
    assert!(connection.is_usable());
}

#[tokio::test]
async fn a_connection_lost_after_bdat_last_is_an_unknown_delivery() {
    let (mut connection, _) = chunking(|line| match line {
        l if l.ends_with("LAST") => "".into(),
        l => usual(l),
    })
    .await;
    connection.socket_timeout = Duration::from_millis(200);
    let err = connection
        .send(&message(&["a@example.com"], b"x\r\n"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "EUNKNOWN_DELIVERY");
}
