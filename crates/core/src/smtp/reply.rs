//! SMTP replies: reading them (bounded), and turning refusals into errors by the step that
//! failed.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::error::{Error, ErrorKind, SmtpReply};
use crate::hints::smtp_hint;

/// RFC 5321 allows 512 bytes per reply line; be generous, but a hostile server cannot
/// make the client buffer without bound.
const MAX_LINE_BYTES: u64 = 8 * 1024;
const MAX_REPLY_LINES: usize = 128;

/// The step of the SMTP dialogue: which replies count as success, and the error kind of
/// the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Greeting,
    Ehlo,
    StartTls,
    /// AUTH, or its last response, with the command as sent (`AUTH XOAUTH2`, ...).
    Auth(&'static str),
    /// An AUTH step after which the server must ask for more (`AUTH LOGIN`, the user name).
    AuthContinue(&'static str),
    MailFrom,
    RcptTo,
    Data,
    /// A BDAT chunk that is not the last.
    Chunk,
    /// The message content and its final `.` (or the last BDAT chunk).
    Message,
    Reset,
    Quit,
}

/// What RFC 5321 §4.3.2 (and RFC 4954, RFC 3030 for AUTH and BDAT) lets a step answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRule {
    /// The only replies that mean the command succeeded.
    pub success: &'static [u16],
    /// The kind of a 4xx (transient) or 5xx (permanent) reply. Any other code is
    /// `EPROTOCOL`: the dialogue is out of step, and the connection is closed.
    pub refusal: ErrorKind,
}

impl Step {
    /// Every step, in dialogue order (the rows of the reply-code table).
    #[cfg(test)]
    pub const ALL: [Step; 12] = [
        Step::Greeting,
        Step::Ehlo,
        Step::StartTls,
        Step::Auth("AUTH"),
        Step::AuthContinue("AUTH"),
        Step::MailFrom,
        Step::RcptTo,
        Step::Data,
        Step::Chunk,
        Step::Message,
        Step::Reset,
        Step::Quit,
    ];

    /// The reply-code table: one row per step. The README shows it (a test keeps the two
    /// equal).
    pub fn rule(self) -> ReplyRule {
        use ErrorKind::*;
        let (success, refusal): (&'static [u16], ErrorKind) = match self {
            Step::Greeting => (&[220], Connection),
            Step::Ehlo => (&[250], Connection),
            Step::StartTls => (&[220], Tls),
            Step::Auth(_) => (&[235], Auth),
            Step::AuthContinue(_) => (&[334], Auth),
            Step::MailFrom => (&[250], Envelope),
            Step::RcptTo => (&[250, 251], Envelope),
            Step::Data => (&[354], Message),
            Step::Chunk | Step::Message => (&[250], Message),
            Step::Reset => (&[250], Connection),
            Step::Quit => (&[221], Connection),
        };
        ReplyRule { success, refusal }
    }

    /// The command as `err.command` reports it (nodemailer's names).
    pub fn command(self) -> &'static str {
        match self {
            Step::Greeting => "CONN",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Auth(command) | Step::AuthContinue(command) => command,
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data | Step::Message => "DATA",
            Step::Chunk => "BDAT",
            Step::Reset => "RSET",
            Step::Quit => "QUIT",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::Greeting => "the greeting",
            Step::Ehlo => "EHLO",
            Step::StartTls => "STARTTLS",
            Step::Auth(_) | Step::AuthContinue(_) => "authentication",
            Step::MailFrom => "MAIL FROM",
            Step::RcptTo => "RCPT TO",
            Step::Data => "DATA",
            Step::Chunk => "BDAT",
            Step::Message => "the message",
            Step::Reset => "RSET",
            Step::Quit => "QUIT",
        }
    }
}

/// A whole (possibly multi-line) reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The text of each line, without the code and separator.
    pub lines: Vec<String>,
}

impl Reply {
    pub fn to_smtp_reply(&self) -> SmtpReply {
        SmtpReply {
            code: self.code,
            text: self.lines.join(" "),
        }
    }
}

/// Why no reply could be read.
pub enum ReadFailure {
    Io(std::io::Error),
    /// The server closed the connection.
    Closed,
    /// Not SMTP, or over the size limits.
    Malformed(String),
}

/// Reads one reply. Lines are `NNN-text` (more follow) or `NNN text` (last).
pub async fn read_reply<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Reply, ReadFailure> {
    let mut lines = Vec::new();
    let mut code = 0;
    loop {
        let mut raw = Vec::new();
        let read = (&mut *reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut raw)
            .await
            .map_err(ReadFailure::Io)?;
        if read == 0 {
            return Err(ReadFailure::Closed);
        }
        if !raw.ends_with(b"\n") {
            return Err(ReadFailure::Malformed(format!(
                "a reply line longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let line_code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (200..600).contains(c));
        let Some(line_code) = line_code else {
            let shown: String = line.chars().take(80).collect();
            return Err(ReadFailure::Malformed(format!("not an SMTP reply: {shown:?}")));
        };
        if code != 0 && line_code != code {
            return Err(ReadFailure::Malformed(
                "a multi-line reply changed its code".into(),
            ));
        }
        code = line_code;
        lines.push(line.get(4..).unwrap_or("").to_string());
        if lines.len() > MAX_REPLY_LINES {
            return Err(ReadFailure::Malformed(format!(
                "a reply of more than {MAX_REPLY_LINES} lines"
            )));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, lines });
        }
    }
}

/// Judges `reply` by the table: the reply itself when it is a success code of `step`, else
/// the error it means.
pub fn judge(step: Step, reply: &Reply) -> Result<(), Error> {
    let rule = step.rule();
    if rule.success.contains(&reply.code) {
        Ok(())
    } else if (400..600).contains(&reply.code) {
        Err(refused(step, reply.to_smtp_reply()))
    } else {
        Err(out_of_step(step, reply.to_smtp_reply()))
    }
}

/// A negative reply at `step`, with its kind, the reply, the command and a hint.
pub fn refused(step: Step, reply: SmtpReply) -> Error {
    let message = format!("{} refused: {reply}", step.describe());
    let hint = smtp_hint(reply.code, &reply.text);
    let mut err = Error::new(step.rule().refusal, message).with_reply(step.command(), reply);
    if let Some(hint) = hint {
        err = err.with_hint(hint);
    }
    err
}

/// A 2xx or 3xx reply that `step` does not allow (a 334 to AUTH PLAIN, a 250 to DATA).
fn out_of_step(step: Step, reply: SmtpReply) -> Error {
    let allowed: Vec<String> = step.rule().success.iter().map(u16::to_string).collect();
    Error::new(
        ErrorKind::Protocol,
        format!(
            "the server answered {} with {reply}, where only {} means success: the connection is closed",
            step.command(),
            allowed.join(" or ")
        ),
    )
    .with_reply(step.command(), reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(input: &[u8]) -> Result<Reply, String> {
        let mut reader = tokio::io::BufReader::new(input);
        read_reply(&mut reader).await.map_err(|failure| match failure {
            ReadFailure::Io(err) => err.to_string(),
            ReadFailure::Closed => "closed".into(),
            ReadFailure::Malformed(why) => why,
        })
    }

    #[tokio::test]
    async fn multi_line_replies() {
        let reply = parse(b"250-smtp.example.com\r\n250-SIZE 157286400\r\n250 AUTH LOGIN XOAUTH2\r\n")
            .await
            .unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines,
            ["smtp.example.com", "SIZE 157286400", "AUTH LOGIN XOAUTH2"]
        );
        assert_eq!(
            parse(b"535 5.7.3 Authentication unsuccessful\r\n")
                .await
                .unwrap()
                .to_smtp_reply()
                .to_string(),
            "535 5.7.3 Authentication unsuccessful"
        );
    }

    #[tokio::test]
    async fn hostile_or_broken_replies() {
        assert_eq!(parse(b"").await.unwrap_err(), "closed");
        assert!(parse(b"HTTP/1.1 400 Bad Request\r\n")
            .await
            .unwrap_err()
            .starts_with("not an SMTP reply"));
        let endless = vec![b'2'; 100_000];
        assert!(parse(&endless).await.unwrap_err().contains("longer than"));
        let many = b"250-x\r\n".repeat(200);
        assert!(parse(&many).await.unwrap_err().contains("more than"));
    }

    #[test]
    fn refusals_take_the_kind_of_their_step() {
        let reply = SmtpReply {
            code: 535,
            text: "5.7.3 Authentication unsuccessful".into(),
        };
        let err = refused(Step::Auth("AUTH XOAUTH2"), reply);
        assert_eq!(err.code(), "EAUTH");
        assert_eq!(err.command(), Some("AUTH XOAUTH2"));
        assert_eq!(
            err.message(),
            "authentication refused: 535 5.7.3 Authentication unsuccessful"
        );
        assert!(err.hint().unwrap().contains("Add-MailboxPermission"));
        let rcpt = refused(
            Step::RcptTo,
            SmtpReply {
                code: 550,
                text: "5.1.1 unknown".into(),
            },
        );
        assert_eq!(rcpt.code(), "EENVELOPE");
        let data = refused(
            Step::Message,
            SmtpReply {
                code: 552,
                text: "5.3.4 too big".into(),
            },
        );
        assert_eq!(data.code(), "EMESSAGE");
    }
}
