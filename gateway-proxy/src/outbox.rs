//! A socket's outgoing queue in the relay: bytes the socket has not taken yet, written as soon as
//! it takes them, with the deadline that turns a peer that stopped reading into a slow consumer.
//!
//! The common case costs nothing: a write the socket takes at once is never copied, reads no
//! clock and arms no deadline. The queue is freed, not kept, once empty, so an idle connection
//! holds no buffer.

use std::io;
use std::time::Duration;

use crate::clock::LoopInstant as Instant;

use crate::socket::Socket;

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
    /// Armed while bytes wait: the peer's time to take them.
    deadline: Option<Instant>,
}

impl Outbox {
    /// Nothing waits, in this queue or in the socket's TLS session.
    pub(crate) fn is_idle(&self, socket: &Socket) -> bool {
        self.sent == self.buf.len() && !socket.has_pending()
    }

    /// When the bytes waiting must have been taken.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Writes `data` at once if nothing is queued, queueing whatever the socket does not take.
    pub(crate) fn send(&mut self, socket: &mut Socket, mut data: &[u8]) -> io::Result<()> {
        if self.sent == self.buf.len() {
            while !data.is_empty() {
                match socket.write(data) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
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
    pub(crate) fn drain(&mut self, socket: &mut Socket, limit: Duration) -> Drain {
        if self.is_idle(socket) {
            // The common case, checked before any call into the socket.
            self.deadline = None;
            return Drain::Done;
        }
        match self.write_all(socket) {
            Ok(()) => {
                self.deadline = None;
                Drain::Done
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let now = Instant::now();
                let deadline = *self.deadline.get_or_insert(now + limit);
                if now >= deadline {
                    Drain::TooSlow
                } else {
                    Drain::Waiting
                }
            }
            Err(e) => Drain::Failed(e),
        }
    }

    /// Writes everything queued; `WouldBlock` while the socket takes no more.
    fn write_all(&mut self, socket: &mut Socket) -> io::Result<()> {
        socket.flush()?;
        while self.sent < self.buf.len() {
            match socket.write(&self.buf[self.sent..])? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => self.sent += n,
            }
        }
        if !self.buf.is_empty() {
            // Freed, not kept: an idle connection holds no buffer.
            self.buf = Vec::new();
            self.sent = 0;
        }
        socket.flush()
    }

    /// Writes what is queued, then ends the socket's sending direction (TLS close_notify, TCP
    /// FIN); `WouldBlock` until done.
    pub(crate) fn close(&mut self, socket: &mut Socket) -> io::Result<()> {
        self.write_all(socket)?;
        socket.shutdown()
    }
}
