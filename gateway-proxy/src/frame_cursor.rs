//! Follows WebSocket frame boundaries in a byte stream as it passes, without holding the stream.
//!
//! The gateway's frames are relayed to the client as opaque bytes, in whatever chunks the socket
//! gives; the relay still has to know where messages end (the proxy's own answers and close
//! frames may only go in between two messages) and when the gateway's close frame has passed.
//! The handshake's [`GatedIo`](crate::frame_gate::GatedIo) uses the same cursor to never read
//! past the end of a frame. Only header bytes are looked at, payloads never.

use crate::wire::{MAX_HEADER_BYTES, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT};
use crate::wire::{header_len, payload_len};

/// Where the stream is inside the frame sequence.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// Collecting a frame header: the bytes so far.
    Header {
        bytes: [u8; MAX_HEADER_BYTES],
        have: usize,
    },
    /// Inside a payload: bytes still to come, and the frame's first byte.
    Payload { left: u64, first: u8 },
}

const START: Part = Part::Header {
    bytes: [0; MAX_HEADER_BYTES],
    have: 0,
};

/// What completed in the bytes followed by one [`FrameCursor::follow`] call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Data messages that ended (final frames of text, binary or continuation).
    pub messages: u64,
    /// A close frame ended.
    pub close: bool,
}

/// The position in a frame stream.
#[derive(Debug, Clone, Copy)]
pub struct FrameCursor {
    part: Part,
    /// A data frame without FIN has passed and its final continuation has not.
    in_message: bool,
}

impl Default for FrameCursor {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameCursor {
    /// At the start of a stream (a frame boundary).
    pub const fn new() -> Self {
        Self {
            part: START,
            in_message: false,
        }
    }

    /// Bytes that can pass without crossing the end of the current header or payload (≥ 1).
    pub fn allowance(&self) -> u64 {
        match self.part {
            Part::Header { bytes, have } => (header_len(&bytes[..have]) - have) as u64,
            Part::Payload { left, .. } => left,
        }
    }

    /// Between two messages: a frame may be inserted here without breaking the stream.
    pub fn at_message_boundary(&self) -> bool {
        matches!(self.part, Part::Header { have: 0, .. }) && !self.in_message
    }

    /// Follows `data`, the next bytes of the stream.
    pub fn follow(&mut self, mut data: &[u8]) -> Passed {
        let mut passed = Passed::default();
        while !data.is_empty() {
            let n = usize::try_from(self.allowance())
                .unwrap_or(usize::MAX)
                .min(data.len());
            let (now, rest) = data.split_at(n);
            self.step(now, &mut passed);
            data = rest;
        }
        passed
    }

    /// Advances over at most [`allowance`](Self::allowance) bytes.
    fn step(&mut self, data: &[u8], passed: &mut Passed) {
        match &mut self.part {
            Part::Header { bytes, have } => {
                bytes[*have..*have + data.len()].copy_from_slice(data);
                *have += data.len();
                let h = &bytes[..*have];
                if *have == header_len(h) {
                    let (left, first) = (payload_len(h), h[0]);
                    self.part = Part::Payload { left, first };
                    if left == 0 {
                        self.frame_done(first, passed);
                    }
                }
            }
            Part::Payload { left, first } => {
                *left -= data.len() as u64;
                if *left == 0 {
                    let first = *first;
                    self.frame_done(first, passed);
                }
            }
        }
    }

    fn frame_done(&mut self, first: u8, passed: &mut Passed) {
        self.part = START;
        match first & 0x0f {
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                self.in_message = first & 0x80 == 0;
                passed.messages += u64::from(!self.in_message);
            }
            OP_CLOSE => passed.close = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{OP_PING, encode};

    /// Any split of a stream gives the same result, and boundaries are seen only between
    /// messages (a ping inside a fragmented message is not one).
    #[test]
    fn follows_messages_across_any_split() {
        let mut stream = Vec::new();
        encode(&mut stream, OP_TEXT, b"one", None);
        encode(&mut stream, OP_TEXT, &[b'x'; 300], Some([1, 2, 3, 4]));
        stream.extend_from_slice(&[0x01, 2, b'a', b'b']); // text, no FIN
        encode(&mut stream, OP_PING, b"p", None);
        let fragmented_end = stream.len();
        stream.extend_from_slice(&[0x80, 1, b'c']); // final continuation
        encode(&mut stream, OP_BINARY, &vec![0; 70_000], None);
        encode(&mut stream, OP_CLOSE, &[0x03, 0xe8], None);
        for chunk in [1, 2, 3, 7, 64, 4096, stream.len()] {
            let mut cursor = FrameCursor::new();
            let mut total = Passed::default();
            let mut offset = 0;
            for piece in stream.chunks(chunk) {
                let p = cursor.follow(piece);
                total.messages += p.messages;
                total.close |= p.close;
                offset += piece.len();
                if offset == fragmented_end {
                    assert!(!cursor.at_message_boundary());
                }
            }
            assert_eq!(
                total,
                Passed {
                    messages: 4,
                    close: true
                },
                "chunk {chunk}"
            );
            assert!(cursor.at_message_boundary());
        }
    }
}
