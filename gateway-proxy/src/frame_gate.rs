//! Handshake-phase socket wrapper, so both WebSockets can start the relay with fresh, small
//! buffers.
//!
//! tungstenite never shrinks a socket's buffers: after the real gateway's ~16 KB hello-ok the
//! upstream read buffer and the client write buffer would stay that large for the connection's
//! life. The fix is to rebuild each `WebSocketStream` on its raw socket once the handshake is
//! over ([`into_relay`]), which is only lossless when tungstenite holds no unread bytes. While
//! [armed](GatedIo::arm), [`GatedIo`] therefore hands tungstenite at most the rest of the
//! current WebSocket frame per read (it follows the frame headers as the bytes pass), so after a
//! complete message nothing beyond it has been read from the socket. Disarmed (the relay phase)
//! it is a plain pass-through.
//!
//! Rebuilding also switches the client socket from the pre-auth config (64 KiB message cap,
//! enforced by tungstenite on the frame header before it buffers anything) to the relay config.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Longest WebSocket frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER_BYTES: usize = 14;

/// Where the reader is inside the frame stream.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Collecting a frame header: the bytes so far.
    Header {
        bytes: [u8; MAX_HEADER_BYTES],
        have: usize,
    },
    /// Inside a payload: bytes still to come.
    Payload { left: u64 },
}

impl Cursor {
    const START: Self = Cursor::Header {
        bytes: [0; MAX_HEADER_BYTES],
        have: 0,
    };

    /// Bytes that may be read without crossing the end of the current frame (always ≥ 1).
    fn allowance(&self) -> u64 {
        match *self {
            Cursor::Header { bytes, have } => (header_len(&bytes[..have]) - have) as u64,
            Cursor::Payload { left } => left,
        }
    }

    /// Advances over bytes that were read (at most [`allowance`](Self::allowance) of them).
    fn advance(&mut self, data: &[u8]) {
        match self {
            Cursor::Header { bytes, have } => {
                bytes[*have..*have + data.len()].copy_from_slice(data);
                *have += data.len();
                if *have == header_len(&bytes[..*have]) {
                    let left = payload_len(&bytes[..*have]);
                    *self = if left == 0 {
                        Cursor::START
                    } else {
                        Cursor::Payload { left }
                    };
                }
            }
            Cursor::Payload { left } => {
                *left -= data.len() as u64;
                if *left == 0 {
                    *self = Cursor::START;
                }
            }
        }
    }
}

/// Total header length implied by its first bytes (2 until the second byte is known).
fn header_len(h: &[u8]) -> usize {
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
fn payload_len(h: &[u8]) -> u64 {
    match h[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
        127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
        n => u64::from(n),
    }
}

/// A socket that, while armed, never reads past the end of the current WebSocket frame.
#[derive(Debug)]
pub struct GatedIo<S> {
    inner: S,
    cursor: Option<Cursor>,
}

impl<S> GatedIo<S> {
    /// Wraps a socket, disarmed (the HTTP upgrade is not framed).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            cursor: None,
        }
    }

    /// Starts following frames; call at a frame boundary (after the upgrade, before the peer
    /// sends its first frame, or right after a complete message).
    pub fn arm(&mut self) {
        self.cursor = Some(Cursor::START);
    }

    /// The wrapped socket.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GatedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(cursor) = &mut this.cursor else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let limit = usize::try_from(cursor.allowance())
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let dst = buf.initialize_unfilled_to(limit);
        let mut part = ReadBuf::new(dst);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        cursor.advance(part.filled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GatedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Ends the handshake phase of a socket: flushes what tungstenite still holds (a pending pong),
/// disarms the gate and rebuilds the WebSocket with the relay config and fresh buffers. Call it
/// right after a complete message was read or written, with the gate armed since a boundary.
///
/// # Errors
/// The flush failed (the socket is gone).
pub async fn into_relay<S>(
    mut ws: WebSocketStream<GatedIo<S>>,
    role: Role,
) -> Result<WebSocketStream<GatedIo<S>>, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    futures_util::SinkExt::flush(&mut ws).await?;
    let mut io = ws.into_inner();
    io.cursor = None;
    Ok(WebSocketStream::from_raw_socket(io, role, Some(crate::ws::config())).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::WebSocketContext;

    /// Wire bytes of `msgs` as `role` writes them (masked when it is a client).
    fn wire(role: Role, msgs: &[Message]) -> Vec<u8> {
        let mut ctx = WebSocketContext::new(role, None);
        let mut out = std::io::Cursor::new(Vec::new());
        for m in msgs {
            ctx.write(&mut out, m.clone()).unwrap();
        }
        ctx.flush(&mut out).unwrap();
        out.into_inner()
    }

    async fn texts<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &mut WebSocketStream<S>,
        n: usize,
    ) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            if let Message::Text(t) = ws.next().await.unwrap().unwrap() {
                got.push(t.to_string());
            }
        }
        got
    }

    /// Every frame shape (7-bit, 16-bit and 64-bit lengths, masked or not, a control frame in
    /// between) is followed exactly: with all bytes already in the socket, the armed reader
    /// gives out nothing past the messages read, so the rebuilt WebSocket reads the rest intact.
    #[tokio::test]
    async fn reads_stop_at_message_boundaries_and_a_rebuild_loses_nothing() {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            for (writer, reader) in [(Role::Client, Role::Server), (Role::Server, Role::Client)] {
                let big = "b".repeat(70_000);
                let mid = "m".repeat(300);
                let mut bytes = wire(
                    writer,
                    &[
                        Message::text("short"),
                        Message::Ping(vec![1, 2, 3].into()),
                        Message::text(mid.clone()),
                        Message::text(big.clone()),
                    ],
                );
                bytes.extend(wire(
                    writer,
                    &[Message::text("after"), Message::text(big.clone())],
                ));
                let (mut near, far) = tokio::io::duplex(1 << 20);
                near.write_all(&bytes).await.unwrap();
                let mut io = GatedIo::new(far);
                io.arm();
                let mut ws = WebSocketStream::from_raw_socket(io, reader, None).await;
                assert_eq!(
                    texts(&mut ws, 3).await,
                    ["short", mid.as_str(), big.as_str()]
                );
                let mut ws = into_relay(ws, reader).await.unwrap();
                assert_eq!(texts(&mut ws, 2).await, ["after", big.as_str()]);
            }
        })
        .await
        .unwrap();
    }

    #[test]
    fn header_lengths() {
        assert_eq!(header_len(&[0x81]), 2);
        assert_eq!(header_len(&[0x81, 5]), 2);
        assert_eq!(header_len(&[0x81, 0x80 | 5]), 6);
        assert_eq!(header_len(&[0x81, 126]), 4);
        assert_eq!(header_len(&[0x81, 0x80 | 127]), 14);
        assert_eq!(payload_len(&[0x81, 126, 1, 0]), 256);
    }
}
