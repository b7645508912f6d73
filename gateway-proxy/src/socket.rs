//! One side of a relayed connection as the [relay loop](crate::relay_loop) drives it: a
//! non-blocking TCP socket registered with the loop's epoll instance, optionally carrying TLS
//! (rustls driven by hand, the way tokio-rustls drives it under tokio), plus the readiness the
//! loop last saw for it.
//!
//! Readiness is edge-triggered: an event sets a flag, and the flag is cleared when the socket
//! answers `WouldBlock` (or, for a plain read, returns less than asked: the receive queue is then
//! empty and new bytes bring a new event). A closed or failed socket stays readable for good, so
//! the end of the stream is never missed after a short read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::BorrowedFd;

use rustix::event::epoll::{self, EventData, EventFlags};

/// A relayed socket.
pub(crate) struct Socket {
    tcp: TcpStream,
    /// The TLS session, when this side speaks TLS (boxed: most upstreams are plain).
    tls: Option<Box<rustls::Connection>>,
    readable: bool,
    writable: bool,
    /// The peer closed or the socket failed: reads go on until they report it.
    closed: bool,
    /// TLS: the peer's TCP stream ended (no more records will come).
    eof: bool,
}

impl Socket {
    /// A plain TCP socket (must be in non-blocking mode, as tokio leaves it).
    pub(crate) fn plain(tcp: std::net::TcpStream) -> Self {
        Self::new(tcp, None)
    }

    /// A TCP socket carrying the TLS session established on it.
    pub(crate) fn tls(tcp: std::net::TcpStream, session: rustls::Connection) -> Self {
        Self::new(tcp, Some(Box::new(session)))
    }

    fn new(tcp: std::net::TcpStream, tls: Option<Box<rustls::Connection>>) -> Self {
        Self {
            tcp,
            tls,
            // Bytes may already wait: the first drive tries both ways.
            readable: true,
            writable: true,
            closed: false,
            eof: false,
        }
    }

    /// Registers the socket with `epoll` for both directions, edge-triggered, under `token`.
    pub(crate) fn register(&self, epoll: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let interest = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        epoll::add(epoll, &self.tcp, EventData::new_u64(token), interest).map_err(io::Error::from)
    }

    /// Removes the socket from the loop (closing it would too; this keeps the order explicit).
    pub(crate) fn deregister(&self, epoll: BorrowedFd<'_>) {
        let _ = epoll::delete(epoll, &self.tcp);
    }

    /// Records what an event reported: input, room for output, or an end. The peer's FIN, a
    /// hang-up or an error leave the socket readable for good, so the next read reports it; a
    /// hang-up or an error also leave it writable, so the next write reports it (after a FIN
    /// alone the socket can still send).
    pub(crate) fn on_event(&mut self, flags: EventFlags) {
        if flags.intersects(EventFlags::ERR | EventFlags::HUP | EventFlags::RDHUP) {
            self.closed = true;
        }
        if flags.intersects(EventFlags::IN | EventFlags::PRI) {
            self.readable = true;
        }
        if flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
            self.writable = true;
        }
    }

    /// A read could find something: the last event said so and no read has said otherwise (a
    /// TLS side always answers yes: its session may hold decrypted bytes).
    pub(crate) fn may_read(&self) -> bool {
        self.readable || self.closed || self.tls.is_some()
    }

    /// Reads bytes (decrypted on a TLS side). `Ok(0)` is the end of the stream; `WouldBlock`
    /// means nothing is ready until the next event.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.tls.as_deref_mut() {
            None => {
                if !self.readable && !self.closed {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = retry(|| recv(&self.tcp, buf)).inspect_err(|e| {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.readable = false;
                    }
                })?;
                if n > 0 && n < buf.len() {
                    self.readable = false;
                }
                Ok(n)
            }
            Some(tls) => loop {
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.eof {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if !self.readable && !self.closed {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                match retry(|| tls.read_tls(&mut self.tcp)) {
                    Ok(0) => self.eof = true,
                    Ok(_) => {}
                    Err(e) => {
                        if e.kind() == io::ErrorKind::WouldBlock {
                            self.readable = false;
                        }
                        return Err(e);
                    }
                }
                if let Err(e) = tls.process_new_packets() {
                    // The alert describing the failure, if the socket takes it.
                    let _ = tls.write_tls(&mut self.tcp);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            },
        }
    }

    /// Writes bytes (encrypted on a TLS side, where they count as written once the session has
    /// them; [`Self::has_pending`] tells whether the socket still owes some). `WouldBlock`
    /// means the socket takes nothing until the next event.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if !self.writable {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.tls.is_none() {
            return retry(|| send(&self.tcp, data)).inspect_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.writable = false;
                }
            });
        }
        // Records already made go first; while they wait, the session takes nothing more (the
        // caller's queue holds the rest, under its deadline).
        self.flush()?;
        let n = match self.tls.as_deref_mut() {
            Some(tls) => tls.writer().write(data)?,
            None => 0,
        };
        match self.flush() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }

    /// TLS records made but not yet taken by the socket.
    pub(crate) fn has_pending(&self) -> bool {
        self.tls.as_deref().is_some_and(|tls| tls.wants_write())
    }

    /// Writes pending TLS records (nothing to do on a plain side).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        while tls.wants_write() {
            if !self.writable {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            match retry(|| tls.write_tls(&mut self.tcp)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.writable = false;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Ends the sending direction: TLS close_notify, then TCP FIN. Call again after
    /// `WouldBlock`.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
        }
        self.flush()?;
        match self.tcp.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
            _ => Ok(()),
        }
    }
}

/// `recv(2)` as a raw system call (rustix), without libc's cancellation-point bookkeeping
/// around it: the relay's two syscalls per frame are most of its userland time after the frame
/// work itself.
fn recv(tcp: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(tcp, buf, rustix::net::RecvFlags::empty())
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

/// `send(2)` as a raw system call (see [`recv`]); never raises SIGPIPE.
fn send(tcp: &TcpStream, data: &[u8]) -> io::Result<usize> {
    rustix::net::send(tcp, data, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
}

/// Runs a socket call again when a signal interrupted it.
fn retry<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A handshake-phase (tokio) socket taken out of tokio for the relay loop. Any bytes a TLS
/// session has already decrypted stay in the session and are read first.
pub(crate) trait IntoSocket {
    /// Deregisters from tokio's reactor and wraps the socket for a relay loop.
    fn into_socket(self) -> io::Result<Socket>;
}

impl IntoSocket for tokio::net::TcpStream {
    fn into_socket(self) -> io::Result<Socket> {
        Ok(Socket::plain(self.into_std()?))
    }
}

impl IntoSocket for Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    fn into_socket(self) -> io::Result<Socket> {
        let (tcp, session) = self.into_inner();
        Ok(Socket::tls(tcp.into_std()?, session.into()))
    }
}

impl IntoSocket for tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream> {
    fn into_socket(self) -> io::Result<Socket> {
        match self {
            Self::Plain(tcp) => tcp.into_socket(),
            Self::Rustls(tls) => {
                let (tcp, session) = tls.into_inner();
                Ok(Socket::tls(tcp.into_std()?, session.into()))
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "upstream stream kind not supported by the relay",
            )),
        }
    }
}
