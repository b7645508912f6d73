//! Handshake-phase socket wrapper, so that the relay can take over the raw sockets once a
//! connection is admitted.
//!
//! The handshake runs on tokio-tungstenite; the relay then works on the raw sockets with its own
//! codec ([`crate::wire`]), which keeps no buffer per idle connection. Taking a socket out of a
//! `WebSocketStream` ([`into_raw`]) is only lossless when tungstenite holds no unread bytes. While
//! [armed](GatedIo::arm), [`GatedIo`] therefore hands tungstenite at most the rest of the
//! current WebSocket frame per read (it follows the frame headers as the bytes pass), so after a
//! complete message nothing beyond it has been read from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;

use crate::frame_cursor::FrameCursor;

/// A socket that, while armed, never reads past the end of the current WebSocket frame.
#[derive(Debug)]
pub struct GatedIo<S> {
    inner: S,
    cursor: Option<FrameCursor>,
    /// Bytes already read from `inner` (after the upgrade request), given out first.
    early: Vec<u8>,
}

impl<S> GatedIo<S> {
    /// Wraps a socket, disarmed (the HTTP upgrade is not framed).
    pub fn new(inner: S) -> Self {
        Self::with_early_bytes(inner, Vec::new())
    }

    /// Wraps a socket from which `early` was already read: those bytes come first.
    pub fn with_early_bytes(inner: S, early: Vec<u8>) -> Self {
        Self {
            inner,
            cursor: None,
            early,
        }
    }

    /// Starts following frames; call at a frame boundary (after the upgrade, before the peer
    /// sends its first frame, or right after a complete message).
    pub fn arm(&mut self) {
        self.cursor = Some(FrameCursor::new());
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
        let limit = this.cursor.as_ref().map_or(usize::MAX, |c| {
            usize::try_from(c.allowance()).unwrap_or(usize::MAX)
        });
        if !this.early.is_empty() {
            let n = limit.min(buf.remaining()).min(this.early.len());
            let taken: Vec<u8> = this.early.drain(..n).collect();
            if let Some(cursor) = &mut this.cursor {
                cursor.follow(&taken);
            }
            buf.put_slice(&taken);
            if this.early.is_empty() {
                this.early = Vec::new();
            }
            return Poll::Ready(Ok(()));
        }
        let Some(cursor) = &mut this.cursor else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let limit = limit.min(buf.remaining());
        let dst = buf.initialize_unfilled_to(limit);
        let mut part = ReadBuf::new(dst);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        cursor.follow(part.filled());
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

/// Ends the handshake phase of a socket: flushes what tungstenite still holds (a pending pong)
/// and hands back the raw socket, with tungstenite's buffers freed. Call it right after a
/// complete message was read or written, with the gate armed since a boundary.
///
/// # Errors
/// The flush failed (the socket is gone), or early bytes are still unread (a client that sent
/// frames ahead of the handshake it was answering: it broke the protocol).
pub async fn into_raw<S>(
    mut ws: WebSocketStream<GatedIo<S>>,
) -> Result<S, tokio_tungstenite::tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    futures_util::SinkExt::flush(&mut ws).await?;
    let gated = ws.into_inner();
    if !gated.early.is_empty() {
        return Err(tokio_tungstenite::tungstenite::Error::Io(
            std::io::ErrorKind::InvalidData.into(),
        ));
    }
    Ok(gated.inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketContext};

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
    /// gives out nothing past the messages read, so the raw socket still holds the rest intact.
    #[tokio::test]
    async fn reads_stop_at_message_boundaries_and_taking_the_socket_loses_nothing() {
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
                let raw = into_raw(ws).await.unwrap();
                let mut ws = WebSocketStream::from_raw_socket(raw, reader, None).await;
                assert_eq!(texts(&mut ws, 2).await, ["after", big.as_str()]);
            }
        })
        .await
        .unwrap();
    }
}
