//! The message as it goes on the wire: line endings made CRLF, and for DATA a `.` doubled
//! at the start of a line and the final `.`; for BDAT (RFC 3030) the bytes as they are.
//! Produced in chunks, large attachments base64-encoded on the way, never copied whole.

use crate::message::{encode_base64_lines, MessageBody, Segment, BASE64_LINE_INPUT};

/// How the content is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// After DATA: dot-stuffed, ended by `.` on a line of its own.
    Dot,
    /// In BDAT chunks: counted, so no stuffing and no end marker.
    Counted,
}

/// Reads `body` out in wire form, a chunk at a time.
pub struct WireEncoder<'a> {
    segments: &'a [Segment],
    /// The segment being encoded, and how far.
    segment: usize,
    offset: usize,
    lines: WireLines,
    finished: bool,
}

/// Message bytes taken per step (before stuffing).
const STEP: usize = 64 * 1024;
/// A multiple of 57 input bytes encodes to whole 76-character lines.
const BASE64_STEP: usize = BASE64_LINE_INPUT * 1024;

impl<'a> WireEncoder<'a> {
    pub fn new(body: &'a MessageBody, framing: Framing) -> Self {
        WireEncoder {
            segments: body.segments(),
            segment: 0,
            offset: 0,
            lines: WireLines {
                stuff_dots: framing == Framing::Dot,
                ..WireLines::default()
            },
            finished: false,
        }
    }

    /// Appends wire bytes to `out` until it holds at least `target` bytes or the message
    /// ends. Returns `false` once the whole message (with its end) is in `out`.
    pub fn fill(&mut self, out: &mut Vec<u8>, target: usize) -> bool {
        while out.len() < target {
            let Some(segment) = self.segments.get(self.segment) else {
                if !self.finished {
                    self.lines.finish(out);
                    self.finished = true;
                }
                return false;
            };
            match segment {
                Segment::Bytes(bytes) => {
                    let end = (self.offset + STEP).min(bytes.len());
                    self.lines.push(&bytes[self.offset..end], out);
                    self.offset = end;
                    if end == bytes.len() {
                        self.next_segment();
                    }
                }
                Segment::Base64(bytes) => {
                    if self.offset == 0 {
                        self.lines.end_line(out);
                    } else {
                        out.extend_from_slice(b"\r\n");
                    }
                    let end = (self.offset + BASE64_STEP).min(bytes.len());
                    encode_base64_lines(&bytes[self.offset..end], out);
                    self.offset = end;
                    if end == bytes.len() {
                        self.lines.after_base64();
                        self.next_segment();
                    }
                }
            }
        }
        !self.finished
    }

    fn next_segment(&mut self) {
        self.segment += 1;
        self.offset = 0;
    }
}

/// CRLF line endings (a bare CR or LF becomes CRLF, as nodemailer does) and, when
/// stuffing, a `.` doubled at the start of a line.
#[derive(Default)]
struct WireLines {
    stuff_dots: bool,
    /// The last byte written ended a line.
    at_line_start: bool,
    started: bool,
    pending_cr: bool,
}

impl WireLines {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &byte in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                }
                _ => {
                    if self.stuff_dots && byte == b'.' && (self.at_line_start || !self.started) {
                        out.push(b'.');
                    }
                    out.push(byte);
                    self.at_line_start = false;
                }
            }
            self.started = true;
        }
    }

    /// Completes a CR left pending at the end of a segment.
    fn end_line(&mut self, out: &mut Vec<u8>) {
        if self.pending_cr {
            self.pending_cr = false;
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
    }

    /// Base64 lines end without a line break and never start with a dot.
    fn after_base64(&mut self) {
        self.started = true;
        self.at_line_start = false;
    }

    /// The last line ended; with stuffing, the end-of-data marker on a line of its own.
    fn finish(&mut self, out: &mut Vec<u8>) {
        self.end_line(out);
        if !self.at_line_start && self.started {
            out.extend_from_slice(b"\r\n");
            self.at_line_start = true;
        }
        if self.stuff_dots {
            out.extend_from_slice(b".\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::ByteBuf;

    fn wire(body: &MessageBody, framing: Framing, target: usize) -> String {
        let mut encoder = WireEncoder::new(body, framing);
        let mut out = Vec::new();
        let mut all = Vec::new();
        while encoder.fill(&mut out, target) {
            all.append(&mut out);
        }
        all.append(&mut out);
        String::from_utf8(all).unwrap()
    }

    fn body(text: &[u8]) -> MessageBody {
        MessageBody::from_bytes(ByteBuf::from(text.to_vec()))
    }

    #[test]
    fn dots_are_stuffed_and_line_endings_made_crlf() {
        let dot = |text: &[u8]| wire(&body(text), Framing::Dot, 1 << 20);
        assert_eq!(dot(b".a\r\n.b\nc\rd"), "..a\r\n..b\r\nc\r\nd\r\n.\r\n");
        assert_eq!(dot(b"a\r\nb\r\n"), "a\r\nb\r\n.\r\n");
        assert_eq!(dot(b""), ".\r\n");
    }

    #[test]
    fn counted_framing_keeps_dots_and_adds_no_marker() {
        let counted = |text: &[u8]| wire(&body(text), Framing::Counted, 1 << 20);
        assert_eq!(counted(b".a\n.b"), ".a\r\n.b\r\n");
        assert_eq!(counted(b""), "");
    }

    #[test]
    fn small_chunks_give_the_same_bytes() {
        let text: Vec<u8> = b".line\r\n".repeat(30_000);
        let whole = wire(&body(&text), Framing::Dot, usize::MAX);
        assert_eq!(wire(&body(&text), Framing::Dot, 1000), whole);
        assert!(whole.ends_with("..line\r\n.\r\n"));
    }
}
