//! The relay: one proxied connection's state machine, moving frames both ways, in order, with
//! bounded buffers, on the raw sockets (the handshake ran on tokio-tungstenite; see
//! [`frame_gate`](crate::frame_gate)). A [relay loop](crate::relay_loop) drives it on socket
//! events and deadlines; nothing here blocks or waits.
//!
//! - **Client → gateway.** Each frame is unmasked in place, checked by the
//!   [inspector](crate::inspector), masked back with the client's own key and forwarded as the
//!   exact bytes that arrived; the frames of one read go out in one write. Refused requests are
//!   answered by the proxy and never reach the gateway.
//! - **Gateway → client.** Bytes are forwarded as read, never parsed; a [`FrameCursor`] follows
//!   the frame headers so that the proxy's own answers and close frames go in only between two
//!   messages.
//! - **Control frames** pass through both ways: pings reach the gateway, which answers them, so
//!   a client's liveness check covers the whole path, not just the proxy.
//! - **Memory.** Reads land in one scratch buffer per relay loop; a connection holds a buffer
//!   only for bytes in flight (a frame cut by a read, bytes its peer has not taken yet), so an
//!   idle connection holds none. While bytes wait for a socket, nothing more is read from the
//!   other one: a client that stops reading stalls the gateway → client direction, and after the
//!   slow-consumer timeout it is closed 1008 "slow consumer", as the gateway would (a gateway
//!   that stops reading for as long ends the connection too). A close frame can only go in
//!   between two messages: if the cut falls inside one of the gateway's frames, the socket is
//!   just shut down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::LoopInstant as Instant;

use shared_protocol::close_code;
use tracing::Span;

use crate::audit::{AuditEvent, AuditKind};
use crate::frame_cursor::FrameCursor;
use crate::inspector::{Session, Verdict, error_response, inspect, rate_limited_error};
use crate::metrics::{ForwardedFrames, UpstreamError};
use crate::outbox::{Drain, Outbox};
use crate::server::Shared;
use crate::socket::Socket;
use crate::wire::{self, Header, MAX_CONTROL_PAYLOAD};
use crate::wire::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT};
use crate::ws::MAX_MESSAGE_BYTES;

/// Longest the close handshake and the final flushes may take at the end of a connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one rate-limit audit record per connection per this interval (a client hammering a
/// limit must not turn into disk writes per request).
pub const RATE_LIMIT_AUDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read per socket read (one buffer per relay loop, never per connection).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Most a cut client frame's header makes the proxy reserve ahead.
const PARTIAL_RESERVE_BYTES: usize = 1024 * 1024;
/// Rounds per drive before the connection lets the loop's other connections go first.
const ROUNDS_PER_DRIVE: usize = 32;

/// Why a relay ended (closed set, for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed or went away.
    Client,
    /// The gateway closed or went away.
    Upstream,
    /// The client did not read in time.
    SlowConsumer,
    /// The proxy is shutting down.
    Shutdown,
}

impl End {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Upstream => "upstream",
            End::SlowConsumer => "slow_consumer",
            End::Shutdown => "shutdown",
        }
    }
}

/// What a drive of the relay came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drive {
    /// Nothing more can move until a socket event or the [deadline](Relay::deadline).
    Idle,
    /// Still busy: drive again after the loop's other connections.
    Busy,
    /// Over: both sockets are done with.
    Done(End),
}

/// What ended the open phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The client's socket failed, or it closed TCP without a close frame.
    ClientGone,
    /// The client broke the protocol: close with this code and reason.
    ClientBroke(u16, &'static str),
    /// The client's close frame was forwarded.
    ClientClosed,
    /// The gateway's socket failed or stopped taking bytes.
    UpstreamGone,
    /// The gateway's close frame was forwarded.
    UpstreamClosed,
    /// The client did not take bytes within the slow-consumer timeout.
    SlowConsumer,
    /// The proxy is shutting down.
    Shutdown,
}

/// The connection's stage.
enum Phase {
    /// Relaying both ways.
    Open,
    /// One side's close frame was forwarded; relaying until the other side's close passes.
    Closing {
        end: End,
        /// The client sent the first close (else the gateway did).
        by_client: bool,
        deadline: Instant,
    },
    /// Writing what is queued, then shutting both sockets down.
    Finishing {
        end: End,
        deadline: Instant,
        client_done: bool,
        upstream_done: bool,
    },
}

/// Which of a relay's two sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The proxy's client.
    Client,
    /// The gateway.
    Upstream,
}

impl Side {
    /// The event for this side's socket failing or ending.
    fn gone(self) -> Event {
        match self {
            Side::Client => Event::ClientGone,
            Side::Upstream => Event::UpstreamGone,
        }
    }
}

/// Reads `side` once: `None` when nothing is ready. The end of the stream, like any other way
/// for the peer to go, ends the open phase.
fn read_chunk(
    socket: &mut Socket,
    buf: &mut [u8],
    span: &Span,
    side: Side,
) -> Result<Option<usize>, Event> {
    let gone = side.gone();
    match socket.read(buf) {
        Ok(0) => {
            span.in_scope(|| tracing::debug!(?side, "peer closed the connection"));
            Err(gone)
        }
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => {
            span.in_scope(|| tracing::debug!(?side, error = %e, "read failed"));
            Err(gone)
        }
    }
}

/// Writes what `side`'s queue holds. A failed socket ends the open phase; so do bytes left
/// waiting past the slow-consumer timeout: a slow client is closed as the gateway would close it,
/// a gateway that stops reading is treated as gone.
fn drain(
    outbox: &mut Outbox,
    socket: &mut Socket,
    slow: Duration,
    span: &Span,
    side: Side,
) -> Result<(), Event> {
    let gone = side.gone();
    match outbox.drain(socket, slow) {
        Drain::Done | Drain::Waiting => Ok(()),
        Drain::Failed(e) => {
            span.in_scope(|| tracing::debug!(?side, error = %e, "write failed"));
            Err(gone)
        }
        Drain::TooSlow if side == Side::Client => Err(Event::SlowConsumer),
        Drain::TooSlow => {
            span.in_scope(|| tracing::info!(?slow, "the gateway did not take bytes in time"));
            Err(gone)
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

/// A fragmented client message being collected.
struct Fragmented {
    text: bool,
    /// Unmasked payload so far.
    payload: Vec<u8>,
}

/// What to do with one complete client frame.
enum Action {
    /// Forward the frame as it arrived.
    Forward,
    /// Forward these bytes instead (a reassembled message, one frame).
    ForwardOwned(Vec<u8>),
    /// Forward the frame, then the client is closing.
    ForwardClose,
    /// Nothing goes upstream.
    Drop,
}

/// One proxied connection in the relay phase: both sockets and everything in flight between
/// them. Driven by a [relay loop](crate::relay_loop).
pub(crate) struct Relay {
    shared: Arc<Shared>,
    peer: SocketAddr,
    conn_id: u64,
    /// The connection's span, entered only to log (not on every drive).
    span: Span,
    session: Session,
    slow: Duration,
    client: Socket,
    upstream: Socket,
    to_client: Outbox,
    to_upstream: Outbox,
    /// Client bytes read but not yet a whole frame.
    client_partial: Vec<u8>,
    client_message: Option<Fragmented>,
    /// Position in the gateway's stream (the end of what was queued to the client).
    upstream_cursor: FrameCursor,
    /// The proxy's own frames for the client, waiting for a message boundary in the gateway's
    /// stream. While any wait, the client is not read.
    held: Vec<u8>,
    phase: Phase,
    last_limit_audit: Option<Instant>,
}

impl Relay {
    /// A relay for an admitted connection (`peer`, `conn_id` and `span` identify it in logs and
    /// the audit log).
    pub(crate) fn new(
        shared: Arc<Shared>,
        (peer, conn_id, span): (SocketAddr, u64, Span),
        session: Session,
        client: Socket,
        upstream: Socket,
    ) -> Self {
        Self {
            slow: Duration::from_millis(shared.config.limits.slow_consumer_timeout_ms),
            shared,
            peer,
            conn_id,
            span,
            session,
            client,
            upstream,
            to_client: Outbox::default(),
            to_upstream: Outbox::default(),
            client_partial: Vec::new(),
            client_message: None,
            upstream_cursor: FrameCursor::new(),
            held: Vec::new(),
            phase: Phase::Open,
            last_limit_audit: None,
        }
    }

    /// One of the two sockets (for the loop's registrations and events).
    pub(crate) fn socket(&mut self, side: Side) -> &mut Socket {
        match side {
            Side::Client => &mut self.client,
            Side::Upstream => &mut self.upstream,
        }
    }

    /// The proxy is shutting down: both sides get 1012 (once; a closing relay just finishes).
    pub(crate) fn stop(&mut self) {
        if matches!(self.phase, Phase::Open) {
            self.transition(Event::Shutdown);
        }
    }

    /// When the relay must be driven even without a socket event: a queue's slow-consumer
    /// deadline, or the end of the close handshake.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Open => None,
            Phase::Closing { deadline, .. } | Phase::Finishing { deadline, .. } => Some(*deadline),
        };
        [
            phase,
            self.to_client.deadline(),
            self.to_upstream.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Moves what can move now. `scratch` is the loop's read buffer; frames forwarded are
    /// counted in `forwarded`, which the loop adds to the metrics.
    pub(crate) fn drive(&mut self, scratch: &mut [u8], forwarded: &mut ForwardedFrames) -> Drive {
        for _ in 0..ROUNDS_PER_DRIVE {
            match &self.phase {
                Phase::Finishing { .. } => return self.drive_finish(),
                Phase::Closing { end, deadline, .. } if Instant::now() >= *deadline => {
                    let end = *end;
                    self.finish(end);
                    continue;
                }
                _ => {}
            }
            match self.step(scratch, forwarded) {
                Ok(true) => {}
                Ok(false) => return Drive::Idle,
                Err(event) => self.transition(event),
            }
        }
        Drive::Busy
    }

    /// One round: drain queues, read each side once. True when anything moved.
    fn step(&mut self, scratch: &mut [u8], forwarded: &mut ForwardedFrames) -> Result<bool, Event> {
        let mut moved = false;
        drain(
            &mut self.to_client,
            &mut self.client,
            self.slow,
            &self.span,
            Side::Client,
        )?;
        drain(
            &mut self.to_upstream,
            &mut self.upstream,
            self.slow,
            &self.span,
            Side::Upstream,
        )?;
        let (read_upstream, read_client) = match self.phase {
            Phase::Closing { by_client, .. } => (by_client, !by_client),
            _ => (true, true),
        };
        if read_upstream && self.upstream.may_read() && self.to_client.is_idle(&self.client) {
            moved |= self.pump_upstream(scratch, forwarded)?;
        }
        if read_client
            && self.client.may_read()
            && self.to_upstream.is_idle(&self.upstream)
            && self.held.is_empty()
        {
            moved |= self.pump_client(scratch, forwarded)?;
        }
        Ok(moved)
    }

    /// Reads the gateway once and passes the bytes to the client.
    fn pump_upstream(
        &mut self,
        scratch: &mut [u8],
        forwarded: &mut ForwardedFrames,
    ) -> Result<bool, Event> {
        let Some(n) = read_chunk(&mut self.upstream, scratch, &self.span, Side::Upstream)? else {
            return Ok(false);
        };
        let data = &scratch[..n];
        let passed = self.upstream_cursor.follow(data);
        self.to_client
            .send(&mut self.client, data)
            .map_err(|_| Event::ClientGone)?;
        forwarded.upstream += passed.messages;
        self.release_held()?;
        if passed.close {
            return Err(Event::UpstreamClosed);
        }
        Ok(true)
    }

    /// Queues the proxy's held frames for the client once the gateway's stream is between
    /// two messages.
    fn release_held(&mut self) -> Result<(), Event> {
        if !self.held.is_empty() && self.upstream_cursor.at_message_boundary() {
            let held = std::mem::take(&mut self.held);
            self.to_client
                .send(&mut self.client, &held)
                .map_err(|_| Event::ClientGone)?;
        }
        Ok(())
    }

    /// Reads the client once and forwards what the inspector allows.
    fn pump_client(
        &mut self,
        scratch: &mut [u8],
        forwarded: &mut ForwardedFrames,
    ) -> Result<bool, Event> {
        let Some(n) = read_chunk(&mut self.client, scratch, &self.span, Side::Client)? else {
            return Ok(false);
        };
        if self.client_partial.is_empty() {
            let data = &mut scratch[..n];
            let used = self.process_client(data, forwarded)?;
            self.client_partial.extend_from_slice(&data[used..]);
        } else {
            let mut partial = std::mem::take(&mut self.client_partial);
            partial.extend_from_slice(&scratch[..n]);
            let used = self.process_client(&mut partial, forwarded)?;
            if used == partial.len() {
                // Freed, not kept: an idle connection holds no buffer.
                partial = Vec::new();
            } else {
                partial.drain(..used);
            }
            self.client_partial = partial;
        }
        if let Some(h) = Header::parse(&self.client_partial) {
            // Room for the cut frame at once (up to a bound; past it the buffer grows as
            // bytes arrive, so a header alone cannot make the proxy allocate much).
            let want = usize::try_from(h.frame_len())
                .map_or(PARTIAL_RESERVE_BYTES, |n| n.min(PARTIAL_RESERVE_BYTES));
            self.client_partial
                .reserve_exact(want.saturating_sub(self.client_partial.len()));
        }
        Ok(true)
    }

    /// Handles every complete frame at the start of `buf`; returns the bytes used. Forwarded
    /// frames are compacted to the front of `buf` and written in one go.
    fn process_client(
        &mut self,
        buf: &mut [u8],
        forwarded: &mut ForwardedFrames,
    ) -> Result<usize, Event> {
        let mut pos = 0;
        let mut out = 0;
        let verdict = loop {
            let Some(h) = Header::parse(&buf[pos..]) else {
                break Ok(pos);
            };
            let key = match self.check_client_header(&h) {
                Ok(key) => key,
                Err(e) => break Err(e),
            };
            // Checked against MAX_MESSAGE_BYTES, so it fits.
            let len = usize::try_from(h.frame_len()).unwrap_or(usize::MAX);
            if buf.len() - pos < len {
                break Ok(pos);
            }
            let frame = pos..pos + len;
            pos += len;
            match self.client_frame(&h, key, &mut buf[frame.clone()]) {
                Ok(Action::Forward) => {
                    compact(buf, frame, &mut out);
                    forwarded.client += 1;
                }
                Ok(Action::ForwardClose) => {
                    compact(buf, frame, &mut out);
                    break Err(Event::ClientClosed);
                }
                Ok(Action::ForwardOwned(bytes)) => {
                    self.forward(&buf[..out])?;
                    self.forward(&bytes)?;
                    out = 0;
                    forwarded.client += 1;
                }
                Ok(Action::Drop) => {}
                Err(e) => break Err(e),
            }
        };
        // What was decided before an error still goes out, in order.
        self.forward(&buf[..out])?;
        self.release_held()?;
        verdict
    }

    fn forward(&mut self, bytes: &[u8]) -> Result<(), Event> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.to_upstream
            .send(&mut self.upstream, bytes)
            .map_err(|_| Event::UpstreamGone)
    }

    /// RFC 6455 rules for a client frame, checked on its header (before its payload is read);
    /// gives the frame's masking key.
    fn check_client_header(&self, h: &Header) -> Result<[u8; 4], Event> {
        let broke = |reason| Err(Event::ClientBroke(close_code::PROTOCOL_ERROR, reason));
        let Some(key) = h.mask else {
            return broke("unmasked client frame");
        };
        if h.rsv != 0 {
            return broke("reserved bits set");
        }
        match h.opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !h.fin || h.payload_len > MAX_CONTROL_PAYLOAD {
                    return broke("invalid control frame");
                }
            }
            OP_TEXT | OP_BINARY if self.client_message.is_some() => {
                return broke("new message inside a fragmented one");
            }
            OP_CONTINUATION if self.client_message.is_none() => {
                return broke("continuation without a message");
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {}
            _ => return broke("unknown opcode"),
        }
        let so_far = self.client_message.as_ref().map_or(0, |m| m.payload.len()) as u64;
        if so_far + h.payload_len > MAX_MESSAGE_BYTES as u64 {
            return Err(Event::ClientBroke(close_code::TOO_LARGE, "message too big"));
        }
        Ok(key)
    }

    /// Decides one complete client frame that passed [`Self::check_client_header`] (`frame` is
    /// header plus payload, `key` its masking key).
    fn client_frame(
        &mut self,
        h: &Header,
        key: [u8; 4],
        frame: &mut [u8],
    ) -> Result<Action, Event> {
        let payload = &mut frame[h.len..];
        match h.opcode {
            OP_CLOSE => Ok(Action::ForwardClose),
            OP_PING | OP_PONG => Ok(Action::Forward),
            OP_TEXT if h.fin => {
                wire::apply_mask(payload, key);
                let forward = self.decide(payload)?;
                wire::apply_mask(payload, key);
                Ok(if forward {
                    Action::Forward
                } else {
                    Action::Drop
                })
            }
            OP_BINARY if h.fin => {
                self.shared.metrics.frames_client_invalid.inc();
                Ok(Action::Drop)
            }
            OP_TEXT | OP_BINARY => {
                wire::apply_mask(payload, key);
                self.client_message = Some(Fragmented {
                    text: h.opcode == OP_TEXT,
                    payload: payload.to_vec(),
                });
                Ok(Action::Drop)
            }
            // A continuation: the header check guarantees a message is open.
            _ => {
                let Some(mut message) = self.client_message.take() else {
                    return Ok(Action::Drop);
                };
                wire::apply_mask(payload, key);
                message.payload.extend_from_slice(payload);
                if !h.fin {
                    self.client_message = Some(message);
                    return Ok(Action::Drop);
                }
                let Fragmented { text, payload } = message;
                if !text {
                    self.shared.metrics.frames_client_invalid.inc();
                    return Ok(Action::Drop);
                }
                if !self.decide(&payload)? {
                    return Ok(Action::Drop);
                }
                let mut bytes = Vec::with_capacity(payload.len() + wire::MAX_HEADER_BYTES);
                wire::encode(&mut bytes, OP_TEXT, &payload, Some(rand::random()));
                Ok(Action::ForwardOwned(bytes))
            }
        }
    }

    /// Runs the inspector on one complete text message; true to forward it. A refusal is
    /// answered (held for the client), counted and audited here.
    fn decide(&mut self, payload: &[u8]) -> Result<bool, Event> {
        let Ok(text) = std::str::from_utf8(payload) else {
            return Err(Event::ClientBroke(
                close_code::INVALID_PAYLOAD,
                "invalid UTF-8",
            ));
        };
        let shared = &*self.shared;
        let m = &shared.metrics;
        let session = &self.session;
        let reply = match inspect(text, session, &shared.limits) {
            Verdict::Forward => return Ok(true),
            Verdict::Deny { id, method, denial } => {
                m.frames_client_denied.inc();
                m.denial(denial);
                shared.audit.record(AuditEvent {
                    credential: Some(&session.credential.id),
                    method: Some(&method),
                    reason: Some(denial.as_str()),
                    ..AuditEvent::new(AuditKind::Denied, self.peer, self.conn_id)
                });
                error_response(&id, &denial.to_error(&method))
            }
            Verdict::Limited {
                id,
                method,
                limited,
            } => {
                m.frames_client_limited.inc();
                m.limited(limited.kind);
                let now = Instant::now();
                if self
                    .last_limit_audit
                    .is_none_or(|t| now - t >= RATE_LIMIT_AUDIT_INTERVAL)
                {
                    self.last_limit_audit = Some(now);
                    shared.audit.record(AuditEvent {
                        credential: Some(&session.credential.id),
                        method: Some(&method),
                        reason: Some(limited.kind.as_str()),
                        ..AuditEvent::new(AuditKind::RateLimited, self.peer, self.conn_id)
                    });
                }
                error_response(&id, &rate_limited_error(limited))
            }
            Verdict::Invalid => {
                m.frames_client_invalid.inc();
                self.span.in_scope(|| {
                    tracing::debug!(
                        len = text.len(),
                        "dropped a client frame that is not a request"
                    );
                });
                return Ok(false);
            }
        };
        wire::encode(&mut self.held, OP_TEXT, reply.as_bytes(), None);
        Ok(false)
    }

    /// Leaves the open phase (or, from closing, finishes).
    fn transition(&mut self, event: Event) {
        if let Phase::Closing { end, .. } = self.phase
            && !matches!(event, Event::ClientClosed | Event::UpstreamClosed)
        {
            // A close handshake is under way: whatever else happens, it ends here.
            self.finish(end);
            return;
        }
        let m = &self.shared.metrics;
        let end = match event {
            Event::ClientClosed | Event::UpstreamClosed => {
                let by_client = event == Event::ClientClosed;
                match &self.phase {
                    // The answer to the first close has passed: the handshake is complete.
                    Phase::Closing { end, .. } => self.finish(*end),
                    _ => {
                        self.phase = Phase::Closing {
                            end: if by_client {
                                End::Client
                            } else {
                                End::Upstream
                            },
                            by_client,
                            deadline: Instant::now() + CLOSE_TIMEOUT,
                        };
                    }
                }
                return;
            }
            Event::ClientGone => {
                self.close_upstream();
                End::Client
            }
            Event::ClientBroke(code, reason) => {
                self.span
                    .in_scope(|| tracing::debug!(code, reason, "client broke the protocol"));
                self.close_client(code, reason);
                self.close_upstream();
                End::Client
            }
            Event::UpstreamGone => {
                m.upstream_error(UpstreamError::Closed);
                self.close_client(close_code::SERVICE_RESTART, "upstream lost");
                End::Upstream
            }
            Event::SlowConsumer => {
                m.slow_consumers.inc();
                self.span
                    .in_scope(|| tracing::info!("closing a slow consumer"));
                self.close_client(close_code::POLICY_VIOLATION, "slow consumer");
                self.close_upstream();
                End::SlowConsumer
            }
            Event::Shutdown => {
                self.close_client(close_code::SERVICE_RESTART, "service restart");
                let mut frame = Vec::new();
                wire::encode_close(
                    &mut frame,
                    close_code::SERVICE_RESTART,
                    "service restart",
                    true,
                );
                self.to_upstream.queue(&frame);
                End::Shutdown
            }
        };
        self.finish(end);
    }

    /// Queues a close frame for the client if the gateway's stream is between messages (in the
    /// middle of a frame none can be sent; the socket is then just shut down).
    fn close_client(&mut self, code: u16, reason: &'static str) {
        if self.upstream_cursor.at_message_boundary() {
            let mut frame = std::mem::take(&mut self.held);
            wire::encode_close(&mut frame, code, reason, false);
            self.to_client.queue(&frame);
        }
    }

    /// Queues a "going away" close for the gateway (client frames are always whole, so this is
    /// always at a boundary).
    fn close_upstream(&mut self) {
        let mut frame = Vec::new();
        wire::encode_close(&mut frame, close_code::GOING_AWAY, "client gone", true);
        self.to_upstream.queue(&frame);
    }

    fn finish(&mut self, end: End) {
        let deadline = match std::mem::replace(&mut self.phase, Phase::Open) {
            Phase::Closing { deadline, .. } | Phase::Finishing { deadline, .. } => deadline,
            Phase::Open => Instant::now() + CLOSE_TIMEOUT,
        };
        self.phase = Phase::Finishing {
            end,
            deadline,
            client_done: false,
            upstream_done: false,
        };
    }

    /// Flushes both queues and shuts both sockets down, each side on its own, within the
    /// close deadline.
    fn drive_finish(&mut self) -> Drive {
        let Phase::Finishing {
            end,
            deadline,
            client_done,
            upstream_done,
        } = &mut self.phase
        else {
            return Drive::Idle;
        };
        let span = &self.span;
        let closed = |side: &str, done: &mut bool, result: std::io::Result<()>| match result {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                span.in_scope(|| tracing::debug!(side, error = %e, "final write failed"));
                *done = true;
            }
            Ok(()) => *done = true,
        };
        if !*client_done {
            closed(
                "client",
                client_done,
                self.to_client.close(&mut self.client),
            );
        }
        if !*upstream_done {
            closed(
                "gateway",
                upstream_done,
                self.to_upstream.close(&mut self.upstream),
            );
        }
        if (*client_done && *upstream_done) || Instant::now() >= *deadline {
            return Drive::Done(*end);
        }
        Drive::Idle
    }
}
