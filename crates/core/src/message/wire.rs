//! The message's bytes as they go on the wire, with large attachment bodies left in the
//! caller's buffers until they are written.

use base64::Engine;

use crate::input::ByteBuf;

/// Attachments at least this large are not encoded in memory: their base64 is produced
/// while they are written to the socket, from the caller's own buffer.
pub(super) const STREAM_THRESHOLD: usize = 64 * 1024;
/// Input bytes per base64 line (76 characters), as MIME wants them.
pub const BASE64_LINE_INPUT: usize = 57;
/// The message's bytes, in order, with large attachment bodies left
/// in the caller's buffers and base64-encoded only as they are written. Peak memory for a
/// 25 MB attachment is then a few chunks, not three encoded copies.
#[derive(Debug, Clone, Default)]
pub struct MessageBody {
    segments: Vec<Segment>,
}

#[derive(Clone)]
pub enum Segment {
    /// Bytes as they go on the wire (before dot-stuffing).
    Bytes(ByteBuf),
    /// Raw bytes whose base64 lines (76 characters, CRLF between lines, none after the
    /// last) go on the wire.
    Base64(ByteBuf),
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Segment::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            Segment::Base64(bytes) => write!(f, "Base64({} bytes)", bytes.len()),
        }
    }
}

impl MessageBody {
    pub fn from_bytes(bytes: impl Into<ByteBuf>) -> Self {
        MessageBody {
            segments: vec![Segment::Bytes(bytes.into())],
        }
    }

    pub(super) fn from_segments(segments: Vec<Segment>) -> Self {
        MessageBody { segments }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The size on the wire, before dot-stuffing (what SIZE limits).
    pub fn len(&self) -> usize {
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Bytes(bytes) => bytes.len(),
                Segment::Base64(bytes) => base64_lines_len(bytes.len()),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_ascii(&self) -> bool {
        self.segments.iter().all(|segment| match segment {
            Segment::Bytes(bytes) => bytes.is_ascii(),
            Segment::Base64(_) => true,
        })
    }

    /// The whole message in one buffer (for tests and small messages).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for segment in &self.segments {
            match segment {
                Segment::Bytes(bytes) => out.extend_from_slice(bytes),
                Segment::Base64(bytes) => encode_base64_lines(bytes, &mut out),
            }
        }
        out
    }
}

/// Length of the base64 lines of `n` bytes: 76-character lines, CRLF between them.
fn base64_lines_len(n: usize) -> usize {
    let encoded = n.div_ceil(3) * 4;
    let lines = encoded.div_ceil(76);
    encoded + 2 * lines.saturating_sub(1)
}

/// Appends the base64 lines of `input` (see [`Segment::Base64`]); when `input` is a
/// multiple of [`BASE64_LINE_INPUT`] bytes, every line is complete, so a long input can
/// be encoded chunk by chunk with a CRLF between the chunks.
pub fn encode_base64_lines(input: &[u8], out: &mut Vec<u8>) {
    for (index, line) in input.chunks(BASE64_LINE_INPUT).enumerate() {
        if index > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let start = out.len();
        out.resize(start + line.len().div_ceil(3) * 4, 0);
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(line, &mut out[start..])
            .expect("the buffer was sized for the encoding");
        out.truncate(start + written);
    }
}
