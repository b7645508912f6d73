//! A socket's outgoing queue in the relay: bytes the socket has not taken yet, written as soon as
//! it takes them, with the deadline that turns a peer that stopped reading into a slow consumer.
//!
//! The common case costs nothing: a write the socket takes at once is never copied and arms no
//! timer. The queue is freed, not kept, once empty, so an idle connection holds no buffer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Sleep;

/// How a queue's drain went.
pub(crate) enum Drain {
    /// Nothing left.
    Done,
    /// Bytes wait, within their time.
    Waiting,
    /// The socket failed.
    Failed(io::Error),
    /// Bytes waited longer than allowed.
    TooSlow,
}

/// Bytes queued for one socket that it has not taken yet.
#[derive(Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    sent: usize,
    /// Bytes were written that the socket may still hold (TLS records): a flush is owed.
    unflushed: bool,
    /// Armed while bytes wait: the peer's time to take them.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Outbox {
    /// Nothing waits (flushes included).
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.buf.len() && !self.unflushed
    }

    /// Writes `data` at once if nothing is queued, queueing whatever the socket does not take.
    pub(crate) fn send<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        mut data: &[u8],
    ) -> io::Result<()> {
        if self.sent == self.buf.len() {
            while !data.is_empty() {
                match Pin::new(&mut *io).poll_write(cx, data) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        data = &data[n..];
                        self.unflushed = true;
                    }
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => break,
                }
            }
            if self.unflushed && data.is_empty() {
                match Pin::new(&mut *io).poll_flush(cx) {
                    Poll::Ready(Ok(())) => self.unflushed = false,
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => {}
                }
            }
        }
        self.queue(data);
        Ok(())
    }

    /// Appends bytes behind whatever is queued, without writing.
    pub(crate) fn queue(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Writes queued bytes; arms the deadline while some wait, and reports it once passed.
    pub(crate) fn poll_drain<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
        limit: Duration,
    ) -> Drain {
        match self.poll_write_all(io, cx) {
            Poll::Ready(Ok(())) => {
                self.deadline = None;
                Drain::Done
            }
            Poll::Ready(Err(e)) => Drain::Failed(e),
            Poll::Pending => {
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if deadline.as_mut().poll(cx).is_ready() {
                    Drain::TooSlow
                } else {
                    Drain::Waiting
                }
            }
        }
    }

    fn poll_write_all<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n;
                    self.unflushed = true;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if !self.buf.is_empty() {
            // Freed, not kept: an idle connection holds no buffer.
            self.buf = Vec::new();
            self.sent = 0;
        }
        if self.unflushed {
            ready!(Pin::new(&mut *io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued, then shuts the socket down (TLS close_notify, TCP FIN).
    pub(crate) fn poll_close<W: AsyncWrite + Unpin>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_all(io, cx))?;
        Pin::new(io).poll_shutdown(cx)
    }
}
