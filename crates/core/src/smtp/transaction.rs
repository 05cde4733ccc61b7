//! Mail transactions: MAIL FROM, RCPT TO, then the content after DATA or in BDAT chunks;
//! pipelined (RFC 2920) in bounded groups when the server offers PIPELINING; recipients
//! split over several transactions at `maxRecipientsPerMessage` or when the server answers
//! `452 4.5.3 Too many recipients` (RFC 5321 §4.5.3.1.10).

use std::collections::{HashMap, VecDeque};

use lettre::Address;
use tokio::io::{AsyncRead, AsyncWrite};

use super::data::{Framing, WireEncoder};
use super::reply::{Reply, Step};
use super::session::{describe_failure, SmtpConnection};
use crate::error::{Error, ErrorKind, RejectedRecipient, Result, SmtpReply};
use crate::message::{MessageBody, OutgoingMessage};

/// What the server did with one message.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub accepted: Vec<String>,
    pub rejected: Vec<RejectedRecipient>,
    /// The final reply to the (last) transaction, e.g. `250 2.0.0 OK <id> [Hostname=...]`.
    pub response: String,
}

/// The most command bytes written as one pipelined group before its replies are read
/// (RFC 2920 §3.1). A group this small always fits in the socket's send buffer, so writing
/// it never waits for the server to read; a server that stops reading while its replies
/// pile up then cannot deadlock with a client that is still writing.
pub const PIPELINE_GROUP_BYTES: usize = 4096;
/// Message bytes written per write call after DATA.
const DATA_WRITE_BYTES: usize = 64 * 1024;
/// Bytes per BDAT chunk.
const BDAT_CHUNK_BYTES: usize = 1024 * 1024;

/// The envelope of one transaction, as the server answered it.
enum Envelope {
    Ready {
        accepted: Vec<String>,
        rejected: Vec<RejectedRecipient>,
        /// Recipients for a following transaction (452 too many recipients).
        deferred: Vec<String>,
    },
    Refused(Error),
}

/// One RCPT TO reply.
enum Recipient {
    Accepted,
    /// Too many recipients: try again in the next transaction.
    Deferred(SmtpReply),
    Rejected(SmtpReply),
}

/// What one transaction's RCPT replies said so far.
#[derive(Default)]
struct RecipientTally {
    accepted: Vec<String>,
    rejected: Vec<RejectedRecipient>,
    /// For a following transaction: deferred by a 452, or never sent after it.
    deferred: Vec<String>,
    /// The 452 that ended this transaction's recipients.
    too_many: Option<SmtpReply>,
}

impl RecipientTally {
    fn record(&mut self, recipient: &str, outcome: Recipient) {
        match outcome {
            Recipient::Accepted => self.accepted.push(recipient.to_string()),
            Recipient::Deferred(reply) => {
                self.deferred.push(recipient.to_string());
                self.too_many = Some(reply);
            }
            Recipient::Rejected(reply) => self.rejected.push(RejectedRecipient {
                recipient: recipient.to_string(),
                reply,
            }),
        }
    }

    fn into_ready(self) -> Envelope {
        Envelope::Ready {
            accepted: self.accepted,
            rejected: self.rejected,
            deferred: self.deferred,
        }
    }
}

/// The parts of the envelope every transaction of a message shares.
struct EnvelopeCommands {
    mail: String,
    /// DSN parameters appended to each RCPT TO.
    rcpt_parameters: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpConnection<S> {
    /// Sends `message` in as many transactions as its recipients need. Refused recipients
    /// are reported, not fatal, unless every one is refused (`EENVELOPE`). If the
    /// connection breaks after the final `.` and before the server's reply, the error is
    /// `EUNKNOWN_DELIVERY`: the message may have been delivered. Once one transaction was
    /// accepted the message is never resent: a later refusal puts its recipients among
    /// the rejected.
    pub async fn send(&mut self, message: &OutgoingMessage) -> Result<Delivery> {
        let (commands, recipients_on_wire) = self.envelope_commands(message)?;
        let mut pending: VecDeque<String> = recipients_on_wire.iter().cloned().collect();
        let mut delivery = Delivery::default();
        while !pending.is_empty() {
            let take = pending.len().min(self.max_recipients.max(1));
            let batch: Vec<String> = pending.drain(..take).collect();
            match self.transaction(&commands, &batch, &message.body).await {
                Ok((accepted, rejected, deferred, response)) => {
                    for recipient in deferred.into_iter().rev() {
                        pending.push_front(recipient);
                    }
                    delivery.accepted.extend(accepted);
                    delivery.rejected.extend(rejected);
                    delivery.response = response;
                }
                Err(err) if delivery.accepted.is_empty() => return Err(err),
                Err(err) => {
                    let Some(reply) = err.reply().cloned() else {
                        return Err(partly_delivered(&err, &delivery, &batch, &pending));
                    };
                    let mut unsent: Vec<String> = batch;
                    if !self.usable {
                        unsent.extend(pending.drain(..));
                    }
                    delivery.rejected.extend(err.rejected().iter().cloned());
                    for recipient in unsent {
                        if !err.rejected().iter().any(|r| r.recipient == recipient) {
                            delivery.rejected.push(RejectedRecipient {
                                recipient,
                                reply: reply.clone(),
                            });
                        }
                    }
                }
            }
        }
        self.messages_sent += 1;
        // Reported as the caller wrote them, not as punycode.
        let as_given: HashMap<String, String> = recipients_on_wire
            .into_iter()
            .zip(message.envelope_to.iter().map(Address::to_string))
            .filter(|(wire, given)| wire != given)
            .collect();
        let given = |recipient: &mut String| {
            if let Some(original) = as_given.get(recipient.as_str()) {
                recipient.clone_from(original);
            }
        };
        delivery.accepted.iter_mut().for_each(given);
        delivery.rejected.iter_mut().for_each(|r| given(&mut r.recipient));
        Ok(delivery)
    }

    /// MAIL FROM (with its parameters) and the recipients as they go on the wire; fails
    /// before any command when the server lacks an extension the message needs.
    fn envelope_commands(&self, message: &OutgoingMessage) -> Result<(EnvelopeCommands, Vec<String>)> {
        let caps = &self.capabilities;
        let size = message.body.len() as u64;
        if let Some(limit) = caps.size.filter(|&limit| limit > 0 && size > limit) {
            return Err(Error::message_error(format!(
                "the message is {size} bytes but the server accepts at most {limit} bytes (its SIZE): nothing was sent"
            )));
        }
        // An address the server cannot take is the first thing to name.
        let from = match &message.envelope_from {
            Some(address) => wire_address(address, caps.smtputf8)?,
            None => String::new(),
        };
        let recipients = message
            .envelope_to
            .iter()
            .map(|address| wire_address(address, caps.smtputf8))
            .collect::<Result<Vec<_>>>()?;
        let eight_bit = !message.body.is_ascii();
        if eight_bit && !caps.eight_bit_mime {
            return Err(Error::message_error(
                "the message has 8-bit content and the server does not offer 8BITMIME: nothing was sent (messages this transport builds are 7-bit unless an address has a non-ASCII local part, `encoding` or `contentTransferEncoding` asks for 8bit, or a raw part or message/* attachment has 8-bit bytes; a raw message must be encoded as 7-bit for this server)",
            ));
        }
        if message.dsn.is_some() && !caps.dsn {
            return Err(Error::message_error(
                "message.dsn is set but the server does not offer DSN (RFC 3461): nothing was sent",
            ));
        }
        let mut mail = format!("MAIL FROM:<{from}>");
        if caps.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if !from.is_ascii() || recipients.iter().any(|r| !r.is_ascii()) {
            mail.push_str(" SMTPUTF8");
        }
        let dsn = message.dsn.as_ref();
        mail.push_str(&dsn.map(|dsn| dsn.mail_parameters()).unwrap_or_default());
        let rcpt_parameters = dsn.map(|dsn| dsn.rcpt_parameters()).unwrap_or_default();
        Ok((
            EnvelopeCommands {
                mail,
                rcpt_parameters,
            },
            recipients,
        ))
    }

    /// One transaction: the envelope for `batch`, then the content. Returns the accepted,
    /// rejected and deferred recipients and the final reply.
    async fn transaction(
        &mut self,
        commands: &EnvelopeCommands,
        batch: &[String],
        body: &MessageBody,
    ) -> Result<(Vec<String>, Vec<RejectedRecipient>, Vec<String>, String)> {
        // BDAT only when asked for: against Postfix it did not beat DATA (README, Performance).
        let chunking = self.chunking && self.capabilities.chunking;
        let envelope = if self.capabilities.pipelining {
            self.envelope_pipelined(commands, batch, !chunking).await?
        } else {
            self.envelope_one_by_one(commands, batch, !chunking).await?
        };
        let (accepted, rejected, deferred) = match envelope {
            Envelope::Ready {
                accepted,
                rejected,
                deferred,
            } => (accepted, rejected, deferred),
            Envelope::Refused(err) => {
                self.reset().await;
                return Err(err);
            }
        };
        let reply = match chunking {
            true => self.write_chunks(body).await?,
            false => {
                self.write_data(body).await?;
                self.final_reply().await?
            }
        };
        if let Err(err) = self.judged(Step::Message, reply.clone()) {
            self.reset().await;
            return Err(err);
        }
        Ok((accepted, rejected, deferred, reply.to_smtp_reply().to_string()))
    }

    /// MAIL, the RCPTs and DATA in groups of at most [`PIPELINE_GROUP_BYTES`], each group's
    /// replies read before the next is written. Stops early when MAIL is refused or the
    /// server has taken as many recipients as it will.
    async fn envelope_pipelined(
        &mut self,
        commands: &EnvelopeCommands,
        batch: &[String],
        data: bool,
    ) -> Result<Envelope> {
        let mut lines: Vec<(Step, String)> = vec![(Step::MailFrom, commands.mail.clone())];
        for recipient in batch {
            lines.push((
                Step::RcptTo,
                format!("RCPT TO:<{recipient}>{}", commands.rcpt_parameters),
            ));
        }
        if data {
            lines.push((Step::Data, "DATA".to_string()));
        }
        let mut tally = RecipientTally::default();
        let mut mail_refusal = None;
        let mut data_refusal = None;
        let mut data_open = false;
        let mut next = 0;
        while next < lines.len() {
            // A group: at least one command, DATA always with the last RCPT.
            let mut end = next;
            let mut bytes = 0;
            while end < lines.len()
                && (end == next
                    || bytes + lines[end].1.len() + 2 <= PIPELINE_GROUP_BYTES
                    || lines[end].0 == Step::Data)
            {
                bytes += lines[end].1.len() + 2;
                end += 1;
            }
            let mut group = Vec::with_capacity(bytes);
            for (_, line) in &lines[next..end] {
                self.logger.transcript(|| format!("C: {line}"));
                group.extend_from_slice(line.as_bytes());
                group.extend_from_slice(b"\r\n");
            }
            self.write(lines[next].0, &group).await?;
            for (index, (step, _)) in lines.iter().enumerate().take(end).skip(next) {
                let reply = self.read(*step).await?;
                match step {
                    Step::MailFrom => {
                        if let Err(err) = self.judged(Step::MailFrom, reply) {
                            refusal_or_fail(&err)?;
                            mail_refusal = Some(err);
                        }
                    }
                    Step::RcptTo => {
                        let outcome = self.recipient_outcome(reply, !tally.accepted.is_empty())?;
                        tally.record(&batch[index - 1], outcome);
                    }
                    _ => match self.judged(Step::Data, reply) {
                        Ok(_) => data_open = true,
                        Err(err) => {
                            refusal_or_fail(&err)?;
                            data_refusal = Some(err);
                        }
                    },
                }
            }
            next = end;
            if mail_refusal.is_some() {
                break;
            }
            if tally.too_many.is_some() {
                // The rest waits for the next transaction; DATA (if due) goes alone.
                while next < lines.len() && lines[next].0 == Step::RcptTo {
                    tally.deferred.push(batch[next - 1].clone());
                    next += 1;
                }
                if tally.accepted.is_empty() {
                    break;
                }
            }
        }
        let refusal = if let Some(err) = mail_refusal {
            Some(err)
        } else if tally.accepted.is_empty() {
            Some(all_refused(
                tally.rejected.clone(),
                tally.deferred.clone(),
                tally.too_many.clone(),
            ))
        } else {
            data_refusal
        };
        match refusal {
            None => Ok(tally.into_ready()),
            Some(err) => {
                // A server that still said 354 is waiting for content: end it empty.
                if data_open {
                    self.write(Step::Message, b".\r\n").await?;
                    self.read(Step::Message).await?;
                }
                Ok(Envelope::Refused(err))
            }
        }
    }

    async fn envelope_one_by_one(
        &mut self,
        commands: &EnvelopeCommands,
        batch: &[String],
        data: bool,
    ) -> Result<Envelope> {
        if let Err(err) = self.command(Step::MailFrom, &commands.mail, None).await {
            refusal_or_fail(&err)?;
            return Ok(Envelope::Refused(err));
        }
        let mut tally = RecipientTally::default();
        for recipient in batch {
            if tally.too_many.is_some() {
                tally.deferred.push(recipient.clone());
                continue;
            }
            let line = format!("RCPT TO:<{recipient}>{}", commands.rcpt_parameters);
            let reply = self.exchange(Step::RcptTo, &line, None).await?;
            let outcome = self.recipient_outcome(reply, !tally.accepted.is_empty())?;
            tally.record(recipient, outcome);
        }
        if tally.accepted.is_empty() {
            return Ok(Envelope::Refused(all_refused(
                tally.rejected,
                tally.deferred,
                tally.too_many,
            )));
        }
        if data {
            if let Err(err) = self.command(Step::Data, "DATA", None).await {
                refusal_or_fail(&err)?;
                return Ok(Envelope::Refused(err));
            }
        }
        Ok(tally.into_ready())
    }

    /// A RCPT reply: accepted (250, 251), deferred (452 once the transaction has a
    /// recipient, or `4.5.3`), rejected (other 4xx/5xx); any other code is an error.
    fn recipient_outcome(&mut self, reply: Reply, has_accepted: bool) -> Result<Recipient> {
        let too_many = reply.code == 452
            && (has_accepted || reply.lines.first().is_some_and(|l| l.starts_with("4.5.3")));
        if too_many {
            return Ok(Recipient::Deferred(reply.to_smtp_reply()));
        }
        match self.judged(Step::RcptTo, reply) {
            Ok(_) => Ok(Recipient::Accepted),
            Err(err) => {
                refusal_or_fail(&err)?;
                Ok(Recipient::Rejected(
                    err.reply().cloned().expect("a refusal has a reply"),
                ))
            }
        }
    }

    /// The content after DATA's 354: dot-stuffed, CRLF, then the final `.`.
    async fn write_data(&mut self, body: &MessageBody) -> Result<()> {
        let mut encoder = WireEncoder::new(body, Framing::Dot);
        let mut out = Vec::with_capacity(DATA_WRITE_BYTES * 2);
        while encoder.fill(&mut out, DATA_WRITE_BYTES) {
            self.write_unflushed(Step::Message, &out).await?;
            out.clear();
        }
        self.write(Step::Message, &out).await?;
        self.awaiting_final_reply = true;
        self.logger
            .transcript(|| format!("C: <message, {} bytes>", body.len()));
        self.logger.transcript(|| "C: .".to_string());
        Ok(())
    }

    /// The content in BDAT chunks (RFC 3030): each but the last answered by 250; returns
    /// the reply to the last (`BDAT n LAST`). With PIPELINING the chunks go without waiting
    /// for each 250 (the replies are a few bytes each and read at the end).
    async fn write_chunks(&mut self, body: &MessageBody) -> Result<Reply> {
        let pipelined = self.capabilities.pipelining;
        let mut encoder = WireEncoder::new(body, Framing::Counted);
        let mut chunk = Vec::with_capacity(BDAT_CHUNK_BYTES + DATA_WRITE_BYTES * 2);
        let mut unanswered = 0;
        loop {
            let more = encoder.fill(&mut chunk, BDAT_CHUNK_BYTES);
            let command = match more {
                true => format!("BDAT {}", chunk.len()),
                false => format!("BDAT {} LAST", chunk.len()),
            };
            self.logger
                .transcript(|| format!("C: {command} <{} bytes>", chunk.len()));
            self.write_unflushed(Step::Chunk, format!("{command}\r\n").as_bytes())
                .await?;
            let step = if more { Step::Chunk } else { Step::Message };
            self.write(step, &chunk).await?;
            chunk.clear();
            if !more {
                self.awaiting_final_reply = true;
                break;
            }
            unanswered += 1;
            if !pipelined {
                if let Err(err) = self.chunk_replies(&mut unanswered).await {
                    self.reset().await;
                    return Err(err);
                }
            }
        }
        let chunks = self.chunk_replies(&mut unanswered).await;
        let last = self.final_reply().await;
        match chunks {
            Ok(()) => last,
            Err(err) => {
                self.reset().await;
                Err(err)
            }
        }
    }

    /// Reads the replies to the chunks sent so far: the first refusal, once all are read.
    async fn chunk_replies(&mut self, unanswered: &mut usize) -> Result<()> {
        let mut refusal = None;
        while *unanswered > 0 {
            *unanswered -= 1;
            let reply = self.read(Step::Chunk).await?;
            if let Err(err) = self.judged(Step::Chunk, reply) {
                refusal_or_fail(&err)?;
                refusal.get_or_insert(err);
            }
        }
        match refusal {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }

    /// The reply to the end of the content: a broken connection now is an unknown outcome.
    async fn final_reply(&mut self) -> Result<Reply> {
        let read = super::reply::read_reply(&mut self.stream);
        let outcome = tokio::time::timeout(self.socket_timeout, read).await;
        self.awaiting_final_reply = false;
        let reply = match outcome {
            Ok(Ok(reply)) => reply,
            Ok(Err(failure)) => return Err(self.unknown_delivery(describe_failure(&failure))),
            Err(_) => {
                let limit = self.socket_timeout.as_millis();
                return Err(self.unknown_delivery(format!("no reply within {limit} ms (socketTimeout)")));
            }
        };
        self.logger.transcript(|| format!("S: {}", reply.to_smtp_reply()));
        Ok(reply)
    }

    /// RSET after a failed transaction, so that the next one starts clean; if that fails,
    /// the connection is marked unusable.
    async fn reset(&mut self) {
        if self.usable && self.command(Step::Reset, "RSET", None).await.is_err() {
            self.usable = false;
        }
    }
}

/// A refusal (a 4xx/5xx reply) is handled by the caller; anything else (a reply out of
/// step, a broken connection) ends the send.
fn refusal_or_fail(err: &Error) -> Result<()> {
    match err.kind() {
        ErrorKind::Protocol => Err(err.clone()),
        _ => Ok(()),
    }
}

/// `address` as MAIL/RCPT write it: UTF-8 when the server offers SMTPUTF8; else an
/// internationalised domain as punycode (IDNA 2008) and a non-ASCII local part refused.
pub(super) fn wire_address(address: &Address, smtputf8: bool) -> Result<String> {
    let text = address.to_string();
    if text.is_ascii() || smtputf8 {
        return Ok(text);
    }
    if !address.user().is_ascii() {
        return Err(Error::new(
            ErrorKind::Envelope,
            format!(
                "{text} has a non-ASCII local part and the server does not offer SMTPUTF8: nothing was sent"
            ),
        ));
    }
    let domain = idna::domain_to_ascii(address.domain()).map_err(|_| {
        Error::new(
            ErrorKind::Envelope,
            format!("{text} has a domain that is not a valid internationalised domain name"),
        )
    })?;
    Ok(format!("{}@{domain}", address.user()))
}

fn all_refused(
    mut rejected: Vec<RejectedRecipient>,
    deferred: Vec<String>,
    too_many: Option<SmtpReply>,
) -> Error {
    if let Some(reply) = too_many {
        rejected.extend(deferred.into_iter().map(|recipient| RejectedRecipient {
            recipient,
            reply: reply.clone(),
        }));
    }
    let list: Vec<String> = rejected
        .iter()
        .map(|r| format!("{} ({})", r.recipient, r.reply))
        .collect();
    let mut err = Error::new(
        ErrorKind::Envelope,
        format!("all recipients were refused: {}", list.join(", ")),
    );
    if let Some(first) = rejected.first() {
        err = err.with_reply(Step::RcptTo.command(), first.reply.clone());
    }
    err.with_rejected(rejected)
}

/// The connection failed after some transactions of a message were accepted: those
/// recipients have it, so it is not resent to anyone.
fn partly_delivered(err: &Error, delivery: &Delivery, batch: &[String], pending: &VecDeque<String>) -> Error {
    let rest: Vec<&str> = batch.iter().chain(pending).map(String::as_str).collect();
    let mut partial = Error::new(
        ErrorKind::UnknownDelivery,
        format!(
            "the message was accepted for {} but not sent to {}: {}; it was not resent",
            delivery.accepted.join(", "),
            rest.join(", "),
            err.message()
        ),
    );
    if let Some(command) = err.command() {
        partial = partial.with_command(command);
    }
    partial
}
