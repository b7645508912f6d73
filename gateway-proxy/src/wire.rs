//! WebSocket framing (RFC 6455 §5.2) for the relay phase.
//!
//! The handshake runs on tokio-tungstenite; once a connection is admitted the relay works on the
//! raw sockets with this codec, so that frames are forwarded as the bytes that arrived (client
//! frames are unmasked in place for inspection and masked back with the client's own key; gateway
//! frames are not touched at all) and no per-socket buffer stays allocated while a connection is
//! idle. No extension is ever negotiated (neither tungstenite nor the gateway offer
//! permessage-deflate to us), so every RSV bit must be zero.
//!
//! Lengths come from the peer: a 64-bit payload length may be anything up to 2^64 - 1, so every
//! sum involving one is checked ([`Header::frame_len`] is `None` when it would overflow).

/// Continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_BYTES: usize = 14;
/// Largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A complete frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last frame of its message.
    pub fin: bool,
    /// The three RSV bits (must be zero without extensions).
    pub rsv: u8,
    /// Opcode (low nibble of the first byte).
    pub opcode: u8,
    /// Masking key, present on every client frame.
    pub mask: Option<[u8; 4]>,
    /// Bytes of the header itself.
    pub len: usize,
    /// Bytes of payload after it.
    pub payload_len: u64,
}

impl Header {
    /// Parses the header at the start of `buf`; `None` while it is incomplete.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        let (&b0, rest) = buf.split_first()?;
        let &b1 = rest.first()?;
        let len = header_len(buf);
        let h = buf.get(..len)?;
        let payload_len = payload_len(h);
        let mask = (b1 & 0x80 != 0).then(|| {
            let k = &h[len - 4..];
            [k[0], k[1], k[2], k[3]]
        });
        Some(Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0f,
            mask,
            len,
            payload_len,
        })
    }

    /// Close, ping or pong.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// Header plus payload; `None` when that does not fit in 64 bits (a hostile length).
    pub fn frame_len(&self) -> Option<u64> {
        self.payload_len.checked_add(self.len as u64)
    }
}

/// Total header length implied by its first bytes (2 until the second byte is known).
pub fn header_len(h: &[u8]) -> usize {
    let Some(&b1) = h.get(1) else {
        return 2;
    };
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Payload length of a complete header.
pub fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        n => u64::from(n),
    }
}

/// XORs `buf` with the masking key (masking and unmasking are the same operation). `buf` must
/// start at payload offset 0. Eight bytes at a time: this runs on every client frame.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Appends one complete (FIN) frame. With `mask` the payload is masked, as a client must send it.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(mask_bit | n as u8);
    } else if let Ok(n16) = u16::try_from(n) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&n16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    let start = out.len();
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend_from_slice(payload);
            apply_mask(&mut out[start + 4..], key);
        }
        None => out.extend_from_slice(payload),
    }
}

/// Appends a close frame with `code` and `reason` (server side: no mask; client side: a fresh
/// random key).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(out, OP_CLOSE, &payload, mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketContext};

    /// Wire bytes of one message as tungstenite writes it for `role`.
    fn tungstenite_wire(role: Role, msg: Message) -> Vec<u8> {
        let mut ctx = WebSocketContext::new(role, None);
        let mut out = std::io::Cursor::new(Vec::new());
        ctx.write(&mut out, msg).unwrap();
        ctx.flush(&mut out).unwrap();
        out.into_inner()
    }

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(&[0x81]), 2);
        assert_eq!(header_len(&[0x81, 5]), 2);
        assert_eq!(header_len(&[0x81, 0x80 | 5]), 6);
        assert_eq!(header_len(&[0x81, 126]), 4);
        assert_eq!(header_len(&[0x81, 0x80 | 127]), 14);
        assert_eq!(payload_len(&[0x81, 126, 1, 0]), 256);
        assert_eq!(Header::parse(&[0x81, 126, 1]), None);
    }

    /// A 64-bit length near 2^64 parses, and its frame length is refused, not wrapped.
    #[test]
    fn hostile_lengths_do_not_wrap() {
        let mut h = vec![0x80, 0x80 | 127];
        h.extend_from_slice(&(u64::MAX - 3).to_be_bytes());
        h.extend_from_slice(&[1, 2, 3, 4]);
        let parsed = Header::parse(&h).unwrap();
        assert_eq!(parsed.payload_len, u64::MAX - 3);
        assert_eq!(parsed.frame_len(), None);
    }

    proptest! {
        /// Our encoder and parser agree with tungstenite on every length class, both roles:
        /// what tungstenite writes we parse and unmask to the same text, and what we write
        /// tungstenite reads back.
        #[test]
        fn agrees_with_tungstenite(text in "\\PC{0,70000}", client in any::<bool>()) {
            let role = if client { Role::Client } else { Role::Server };
            let mut theirs = tungstenite_wire(role, Message::text(text.clone()));
            let h = Header::parse(&theirs).unwrap();
            prop_assert!(h.fin);
            prop_assert_eq!(h.opcode, OP_TEXT);
            prop_assert_eq!(h.mask.is_some(), client);
            prop_assert_eq!(h.frame_len(), Some(theirs.len() as u64));
            if let Some(key) = h.mask {
                apply_mask(&mut theirs[h.len..], key);
            }
            prop_assert_eq!(&theirs[h.len..], text.as_bytes());

            let mut ours = Vec::new();
            encode(&mut ours, OP_TEXT, text.as_bytes(), client.then(rand::random));
            let reader = if client { Role::Server } else { Role::Client };
            let mut ctx = WebSocketContext::new(reader, None);
            let mut io = std::io::Cursor::new(ours);
            prop_assert_eq!(ctx.read(&mut io).unwrap(), Message::text(text));
        }

        /// Masking twice with the same key restores the bytes, whatever the length.
        #[test]
        fn mask_is_an_involution(mut bytes in proptest::collection::vec(any::<u8>(), 0..100), key in any::<[u8; 4]>()) {
            let original = bytes.clone();
            apply_mask(&mut bytes, key);
            apply_mask(&mut bytes, key);
            prop_assert_eq!(bytes, original);
        }
    }

    #[test]
    fn mask_cycles_the_key_across_the_wide_path_and_the_tail() {
        let mut bytes = [0u8; 11];
        apply_mask(&mut bytes, [1, 2, 3, 4]);
        assert_eq!(bytes, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]);
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut out = Vec::new();
        encode_close(&mut out, 1012, "service restart", Some(rand::random()));
        let mut ctx = WebSocketContext::new(Role::Server, None);
        let mut io = std::io::Cursor::new(out);
        match ctx.read(&mut io).unwrap() {
            Message::Close(Some(f)) => {
                assert_eq!(u16::from(f.code), 1012);
                assert_eq!(f.reason.as_str(), "service restart");
            }
            other => panic!("{other:?}"),
        }
    }
}
