//! The client's side of a relayed connection read as RFC 6455 frames, without I/O: bytes in as
//! the socket gives them, decisions asked of a [`ClientSink`], bytes out for the gateway.
//!
//! - Each complete frame is unmasked in place for inspection and masked back with the client's
//!   own key, so what is forwarded is the exact bytes that arrived; the frames of one read that
//!   are forwarded go out in one [`ClientSink::forward`] call.
//! - A fragmented message is collected and judged whole (fragmenting a request does not slip it
//!   past the policy), then forwarded as one frame under a fresh mask.
//! - Every rule RFC 6455 sets for a client frame is checked on its header, before its payload
//!   is read; a message longer than the limit is refused on the header that would make it so.
//!   Lengths are the peer's: every sum involving one is checked, so a 64-bit length near 2^64
//!   is a message too big (1009), never an overflow.
//! - Bytes of an unfinished frame are kept until the rest arrives ([`ClientCodec::held`] says how
//!   many, for the caller's deadline and memory budget); nothing else is kept between reads.

use crate::wire::{self, Header, MAX_CONTROL_PAYLOAD};
use crate::wire::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};

/// Close codes this module closes with (RFC 6455 §7.4.1).
const PROTOCOL_ERROR: u16 = 1002;
const TOO_LARGE: u16 = 1009;
/// Most a cut frame's header makes the codec reserve ahead.
pub const PARTIAL_RESERVE_BYTES: usize = 1024 * 1024;

/// The client broke the protocol: close with this code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broke {
    /// Close code.
    pub code: u16,
    /// Close reason.
    pub reason: &'static str,
}

impl Broke {
    fn protocol(reason: &'static str) -> Self {
        Self {
            code: PROTOCOL_ERROR,
            reason,
        }
    }
}

/// A complete message or control frame, for the sink to decide on.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message's payload, unmasked (not yet checked as UTF-8).
    Text(&'a [u8]),
    /// A binary message.
    Binary,
    /// A ping.
    Ping,
    /// A pong.
    Pong,
}

/// What the codec asks of its owner.
pub trait ClientSink {
    /// The owner's error; the codec's own refusals convert into it.
    type Error: From<Broke>;
    /// Called once for every complete frame, before anything else is done with it (a frame
    /// budget goes here).
    ///
    /// # Errors
    /// Stops reading; the connection ends.
    fn frame(&mut self, header: &Header) -> Result<(), Self::Error>;
    /// Decides a complete message or control frame: true forwards it, false drops it.
    ///
    /// # Errors
    /// Stops reading; the connection ends (what was decided before is still forwarded).
    fn message(&mut self, message: Message<'_>) -> Result<bool, Self::Error>;
    /// Bytes for the gateway, in order.
    ///
    /// # Errors
    /// Stops reading.
    fn forward(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
    /// A fresh masking key for a reassembled message.
    fn mask(&mut self) -> [u8; 4];
}

/// What one [`ClientCodec::read`] came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Messages and control frames forwarded.
    pub forwarded: u64,
    /// The client's close frame was forwarded: read nothing more from it.
    pub closed: bool,
    /// The stream passed a point where nothing was held (a frame boundary outside any
    /// fragmented message): what is held now, if anything, began in this read.
    pub boundary: bool,
}

/// A fragmented message being collected.
#[derive(Debug)]
struct Fragmented {
    text: bool,
    /// Unmasked payload so far.
    payload: Vec<u8>,
}

/// What to do with one complete frame.
enum Action {
    Forward,
    ForwardOwned(Vec<u8>),
    ForwardClose,
    Drop,
}

/// The client stream's state between reads.
#[derive(Debug)]
pub struct ClientCodec {
    /// Bytes read but not yet a whole frame.
    partial: Vec<u8>,
    message: Option<Fragmented>,
    max_message: u64,
}

impl ClientCodec {
    /// A stream at a frame boundary, refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            partial: Vec::new(),
            message: None,
            max_message: max_message as u64,
        }
    }

    /// Nothing is held: no cut frame, no unfinished message.
    pub fn is_idle(&self) -> bool {
        self.partial.is_empty() && self.message.is_none()
    }

    /// Bytes of memory held for unfinished frames and messages.
    pub fn held(&self) -> usize {
        self.partial
            .capacity()
            .saturating_add(self.message.as_ref().map_or(0, |m| m.payload.capacity()))
    }

    /// Frees what is held (the connection is ending).
    pub fn clear(&mut self) {
        self.partial = Vec::new();
        self.message = None;
    }

    /// Takes the next bytes of the stream (`data`, which it may rewrite: frames are unmasked and
    /// compacted in place).
    ///
    /// # Errors
    /// The sink's error, or the codec's [`Broke`] converted into it.
    pub fn read<S: ClientSink>(
        &mut self,
        data: &mut [u8],
        sink: &mut S,
    ) -> Result<Progress, S::Error> {
        let mut progress = Progress {
            boundary: self.is_idle(),
            ..Progress::default()
        };
        if self.partial.is_empty() {
            let used = self.process(data, sink, &mut progress)?;
            self.partial
                .extend_from_slice(data.get(used..).unwrap_or_default());
        } else {
            let mut partial = std::mem::take(&mut self.partial);
            partial.extend_from_slice(data);
            let used = self.process(&mut partial, sink, &mut progress)?;
            if used >= partial.len() {
                // Freed, not kept: an idle connection holds no buffer.
                partial = Vec::new();
            } else {
                partial.drain(..used);
            }
            self.partial = partial;
        }
        if let Some(h) = Header::parse(&self.partial) {
            // Room for the cut frame at once (up to a bound; past it the buffer grows as
            // bytes arrive, so a header alone cannot make the proxy allocate much).
            let want = h
                .frame_len()
                .and_then(|n| usize::try_from(n).ok())
                .map_or(PARTIAL_RESERVE_BYTES, |n| n.min(PARTIAL_RESERVE_BYTES));
            self.partial
                .reserve_exact(want.saturating_sub(self.partial.len()));
        }
        Ok(progress)
    }

    /// Handles every complete frame at the start of `buf`; returns the bytes used. Forwarded
    /// frames are compacted to the front of `buf` and forwarded in one go.
    fn process<S: ClientSink>(
        &mut self,
        buf: &mut [u8],
        sink: &mut S,
        progress: &mut Progress,
    ) -> Result<usize, S::Error> {
        let mut pos = 0;
        let mut out = 0;
        let verdict = loop {
            let Some(h) = buf.get(pos..).and_then(Header::parse) else {
                break Ok(pos);
            };
            let key = match self.check_header(&h) {
                Ok(key) => key,
                Err(e) => break Err(S::Error::from(e)),
            };
            // Checked against the message limit, so it fits; checked anyway.
            let end = h
                .frame_len()
                .and_then(|n| usize::try_from(n).ok())
                .and_then(|n| pos.checked_add(n));
            let Some(end) = end else {
                break Err(S::Error::from(Broke {
                    code: TOO_LARGE,
                    reason: "message too big",
                }));
            };
            let Some(frame) = buf.get_mut(pos..end) else {
                break Ok(pos);
            };
            let action = match sink.frame(&h) {
                Ok(()) => self.frame(&h, key, frame, sink),
                Err(e) => Err(e),
            };
            let range = pos..end;
            pos = end;
            if self.message.is_none() {
                progress.boundary = true;
            }
            match action {
                Ok(Action::Forward) => {
                    compact(buf, range, &mut out);
                    progress.forwarded += 1;
                }
                Ok(Action::ForwardClose) => {
                    compact(buf, range, &mut out);
                    progress.closed = true;
                    break Ok(pos);
                }
                Ok(Action::ForwardOwned(bytes)) => {
                    if let Err(e) = sink.forward(buf.get(..out).unwrap_or_default()) {
                        break Err(e);
                    }
                    if let Err(e) = sink.forward(&bytes) {
                        break Err(e);
                    }
                    out = 0;
                    progress.forwarded += 1;
                }
                Ok(Action::Drop) => {}
                Err(e) => break Err(e),
            }
        };
        // What was decided before an error still goes out, in order.
        sink.forward(buf.get(..out).unwrap_or_default())?;
        verdict
    }

    /// RFC 6455 rules for a client frame, checked on its header (before its payload is read);
    /// gives the frame's masking key.
    fn check_header(&self, h: &Header) -> Result<[u8; 4], Broke> {
        let Some(key) = h.mask else {
            return Err(Broke::protocol("unmasked client frame"));
        };
        if h.rsv != 0 {
            return Err(Broke::protocol("reserved bits set"));
        }
        match h.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !h.fin || h.payload_len > MAX_CONTROL_PAYLOAD {
                    return Err(Broke::protocol("invalid control frame"));
                }
            }
            OP_TEXT | OP_BINARY if self.message.is_some() => {
                return Err(Broke::protocol("new message inside a fragmented one"));
            }
            OP_CONTINUATION if self.message.is_none() => {
                return Err(Broke::protocol("continuation without a message"));
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {}
            _ => return Err(Broke::protocol("unknown opcode")),
        }
        let so_far = self.message.as_ref().map_or(0, |m| m.payload.len() as u64);
        if so_far
            .checked_add(h.payload_len)
            .is_none_or(|total| total > self.max_message)
        {
            return Err(Broke {
                code: TOO_LARGE,
                reason: "message too big",
            });
        }
        Ok(key)
    }

    /// Decides one complete frame that passed [`Self::check_header`] (`frame` is header plus
    /// payload, `key` its masking key).
    fn frame<S: ClientSink>(
        &mut self,
        h: &Header,
        key: [u8; 4],
        frame: &mut [u8],
        sink: &mut S,
    ) -> Result<Action, S::Error> {
        let payload = frame.get_mut(h.len..).unwrap_or_default();
        let forward = |yes: bool| if yes { Action::Forward } else { Action::Drop };
        match h.opcode {
            OP_CLOSE => Ok(Action::ForwardClose),
            OP_PING => sink.message(Message::Ping).map(forward),
            OP_PONG => sink.message(Message::Pong).map(forward),
            OP_TEXT if h.fin => {
                wire::apply_mask(payload, key);
                let verdict = sink.message(Message::Text(payload));
                wire::apply_mask(payload, key);
                verdict.map(forward)
            }
            OP_BINARY if h.fin => sink.message(Message::Binary).map(forward),
            OP_TEXT | OP_BINARY => {
                wire::apply_mask(payload, key);
                self.message = Some(Fragmented {
                    text: h.opcode == OP_TEXT,
                    payload: payload.to_vec(),
                });
                Ok(Action::Drop)
            }
            // A continuation: the header check guarantees a message is open.
            _ => {
                let Some(mut message) = self.message.take() else {
                    return Ok(Action::Drop);
                };
                wire::apply_mask(payload, key);
                message.payload.extend_from_slice(payload);
                if !h.fin {
                    self.message = Some(message);
                    return Ok(Action::Drop);
                }
                let Fragmented { text, payload } = message;
                let decided = if text {
                    sink.message(Message::Text(&payload))?
                } else {
                    sink.message(Message::Binary)?
                };
                if !decided {
                    return Ok(Action::Drop);
                }
                let mut bytes = Vec::with_capacity(payload.len() + wire::MAX_HEADER_BYTES);
                let opcode = if text { OP_TEXT } else { OP_BINARY };
                wire::encode(&mut bytes, opcode, &payload, Some(sink.mask()));
                Ok(Action::ForwardOwned(bytes))
            }
        }
    }
}

/// Moves a forwarded frame down to the end of the frames kept so far (`out`), so that all of a
/// read's forwarded frames go out in one write; in place (the usual case: nothing dropped
/// before it) nothing moves.
fn compact(buf: &mut [u8], frame: std::ops::Range<usize>, out: &mut usize) {
    let len = frame.len();
    if frame.start != *out {
        buf.copy_within(frame, *out);
    }
    *out += len;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Forwards texts that start with `ok`, everything else dropped; records all it is asked.
    #[derive(Default)]
    struct Sink {
        frames: usize,
        texts: Vec<Vec<u8>>,
        out: Vec<u8>,
        frame_budget: Option<usize>,
    }

    impl ClientSink for Sink {
        type Error = Broke;
        fn frame(&mut self, _: &Header) -> Result<(), Broke> {
            self.frames += 1;
            match self.frame_budget {
                Some(n) if self.frames > n => Err(Broke {
                    code: 1008,
                    reason: "too many frames",
                }),
                _ => Ok(()),
            }
        }
        fn message(&mut self, m: Message<'_>) -> Result<bool, Broke> {
            Ok(match m {
                Message::Text(t) => {
                    self.texts.push(t.to_vec());
                    t.starts_with(b"ok")
                }
                Message::Ping | Message::Pong => true,
                Message::Binary => false,
            })
        }
        fn forward(&mut self, bytes: &[u8]) -> Result<(), Broke> {
            self.out.extend_from_slice(bytes);
            Ok(())
        }
        fn mask(&mut self) -> [u8; 4] {
            [9, 9, 9, 9]
        }
    }

    fn frames(parts: &[(u8, bool, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (op, fin, payload) in parts {
            let start = out.len();
            encode(&mut out, *op, payload, Some(KEY));
            if !fin {
                out[start] &= 0x7f;
            }
        }
        out
    }

    /// The same stream gives the same decisions and the same forwarded bytes, however it is cut.
    #[test]
    fn any_split_gives_the_same_result() {
        let stream = frames(&[
            (OP_TEXT, true, b"ok one"),
            (OP_TEXT, true, b"no two"),
            (OP_PING, true, b"p"),
            (OP_TEXT, false, b"ok frag"),
            (OP_PING, true, b"inside"),
            (OP_CONTINUATION, true, b"mented"),
            (OP_BINARY, true, b"bin"),
            (OP_TEXT, true, &[b'o'; 70_000]),
        ]);
        let whole = {
            let mut sink = Sink::default();
            let mut codec = ClientCodec::new(1 << 20);
            codec.read(&mut stream.clone(), &mut sink).unwrap();
            (sink.texts, sink.out)
        };
        assert_eq!(whole.0.len(), 4);
        for chunk in [1, 2, 3, 5, 13, 4096] {
            let mut sink = Sink::default();
            let mut codec = ClientCodec::new(1 << 20);
            for piece in stream.chunks(chunk) {
                codec.read(&mut piece.to_vec(), &mut sink).unwrap();
            }
            assert!(codec.is_idle());
            assert_eq!(
                (&sink.texts, &sink.out),
                (&whole.0, &whole.1),
                "chunk {chunk}"
            );
        }
        // Forwarded: "ok one" as it arrived, both pings, the reassembled "ok fragmented".
        let mut want = frames(&[
            (OP_TEXT, true, b"ok one"),
            (OP_PING, true, b"p"),
            (OP_PING, true, b"inside"),
        ]);
        encode(&mut want, OP_TEXT, b"ok fragmented", Some([9, 9, 9, 9]));
        assert_eq!(whole.1, want);
    }

    /// A FIN continuation whose 64-bit length is close to 2^64, after a text fragment: refused
    /// as too big (1009), with no wrap-around anywhere.
    #[test]
    fn a_length_near_two_to_the_64_is_too_big_not_an_overflow() {
        for len in [u64::MAX, u64::MAX - 5, u64::MAX - 14, 1 << 63] {
            let mut stream = frames(&[(OP_TEXT, false, b"ok start")]);
            stream.extend_from_slice(&[0x80, 0x80 | 127]);
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend_from_slice(&KEY);
            stream.extend_from_slice(b"tail");
            let mut codec = ClientCodec::new(25 << 20);
            let err = codec.read(&mut stream, &mut Sink::default()).unwrap_err();
            assert_eq!(err.code, 1009, "{len}");
        }
        // Without an open message, the same header on its own.
        let mut h = vec![0x81, 0x80 | 127];
        h.extend_from_slice(&u64::MAX.to_be_bytes());
        h.extend_from_slice(&KEY);
        let err = ClientCodec::new(25 << 20)
            .read(&mut h, &mut Sink::default())
            .unwrap_err();
        assert_eq!(err.code, 1009);
    }

    #[test]
    fn protocol_violations_are_closed_with_the_rfc_codes() {
        let mut unmasked = Vec::new();
        encode(&mut unmasked, OP_TEXT, b"x", None);
        for (bytes, code) in [
            (unmasked, 1002),
            (frames(&[(OP_CONTINUATION, true, b"x")]), 1002),
            (
                frames(&[(OP_TEXT, false, b"x"), (OP_TEXT, true, b"y")]),
                1002,
            ),
            (frames(&[(OP_PING, false, b"x")]), 1002),
            (frames(&[(0x3, true, b"x")]), 1002),
            (
                frames(&[
                    (OP_TEXT, false, &[0; 600]),
                    (OP_CONTINUATION, true, &[0; 600]),
                ]),
                1009,
            ),
        ] {
            let err = ClientCodec::new(1000)
                .read(&mut bytes.clone(), &mut Sink::default())
                .unwrap_err();
            assert_eq!(err.code, code, "{bytes:?}");
        }
    }

    /// The sink's frame budget sees every frame once (fragments and control frames too), and
    /// what was decided before it ran out is still forwarded.
    #[test]
    fn every_frame_is_counted_once() {
        let stream = frames(&[
            (OP_TEXT, true, b"ok 1"),
            (OP_PING, true, b""),
            (OP_TEXT, false, b"ok"),
            (OP_CONTINUATION, true, b"2"),
            (OP_PONG, true, b""),
        ]);
        let mut sink = Sink::default();
        let mut codec = ClientCodec::new(1 << 20);
        for piece in stream.chunks(3) {
            codec.read(&mut piece.to_vec(), &mut sink).unwrap();
        }
        assert_eq!(sink.frames, 5);
        let mut sink = Sink {
            frame_budget: Some(2),
            ..Sink::default()
        };
        let err = ClientCodec::new(1 << 20)
            .read(&mut stream.clone(), &mut sink)
            .unwrap_err();
        assert_eq!(err.reason, "too many frames");
        assert_eq!(
            sink.out,
            frames(&[(OP_TEXT, true, b"ok 1"), (OP_PING, true, b"")])
        );
    }

    /// A read that finishes one message and starts the next says so (the caller restarts the
    /// message deadline); one that only adds to a fragmented message does not.
    #[test]
    fn a_new_message_is_told_from_more_of_the_same() {
        let one = frames(&[(OP_TEXT, true, b"ok 1")]);
        let two = frames(&[(OP_TEXT, true, b"ok 2 is longer")]);
        let mut codec = ClientCodec::new(1 << 20);
        let mut sink = Sink::default();
        let p = codec.read(&mut one[..3].to_vec(), &mut sink).unwrap();
        assert!(p.boundary && !codec.is_idle(), "began idle");
        let mut rest = one[3..].to_vec();
        rest.extend_from_slice(&two[..5]);
        let p = codec.read(&mut rest, &mut sink).unwrap();
        assert!(p.boundary && !codec.is_idle(), "one ended, two began");
        let p = codec.read(&mut two[5..8].to_vec(), &mut sink).unwrap();
        assert!(!p.boundary, "more of two");
        let fragmented = frames(&[
            (OP_TEXT, false, b"ok"),
            (OP_PING, true, b""),
            (OP_CONTINUATION, false, b"x"),
        ]);
        let mut codec = ClientCodec::new(1 << 20);
        codec
            .read(&mut fragmented[..4].to_vec(), &mut sink)
            .unwrap();
        let p = codec
            .read(&mut fragmented[4..].to_vec(), &mut sink)
            .unwrap();
        assert!(!p.boundary, "a fragment and a ping inside one message");
    }

    /// What is held while a frame or message is unfinished, and nothing once it is done.
    #[test]
    fn held_bytes_are_released_at_the_message_end() {
        let stream = frames(&[
            (OP_TEXT, false, &[b'o'; 5000]),
            (OP_CONTINUATION, true, b"k"),
        ]);
        let mut codec = ClientCodec::new(1 << 20);
        let mut sink = Sink::default();
        codec.read(&mut stream[..100].to_vec(), &mut sink).unwrap();
        assert!(!codec.is_idle() && codec.held() >= 5000);
        codec.read(&mut stream[100..].to_vec(), &mut sink).unwrap();
        assert!(codec.is_idle());
        assert_eq!(codec.held(), 0);
    }
}
