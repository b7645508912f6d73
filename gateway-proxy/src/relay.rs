//! The relay: one proxied connection's state machine, moving frames both ways, in order, with
//! bounded buffers, on the raw sockets (the handshake ran on tokio-tungstenite; see
//! [`frame_gate`](crate::frame_gate)). A [relay loop](crate::relay_loop) drives it on socket
//! events and deadlines; nothing here blocks or waits.
//!
//! - **Client → gateway.** The [client codec](crate::client_codec) reads the client's frames;
//!   each message is checked by the [inspector](crate::inspector) and forwarded as the exact
//!   bytes that arrived; the frames of one read go out in one write. Refused requests are
//!   answered by the proxy and never reach the gateway.
//! - **Hostile clients.** Every client frame, control frames included, counts against the
//!   connection's frame budget; a connection over it, or one that keeps sending requests the
//!   policy refuses, is closed 1008. A message must be complete within the message timeout, and
//!   bytes held for unfinished messages count against one budget for the whole process (over
//!   it, the connection that asked for more is closed 1013).
//! - **Gateway → client.** Bytes are forwarded as read, never parsed; a [`FrameCursor`] follows
//!   the frame headers so that the proxy's own answers and close frames go in only between two
//!   messages.
//! - **Control frames** pass through both ways (within the frame budget): pings reach the
//!   gateway, which answers them, so a client's liveness check covers the whole path.
//! - **Memory.** Reads land in one scratch buffer per relay loop; a connection holds a buffer
//!   only for bytes in flight (a frame cut by a read, bytes its peer has not taken yet), so an
//!   idle connection holds none. While bytes wait for a socket, nothing more is read from the
//!   other one: a client that stops reading stalls the gateway → client direction, and after the
//!   slow-consumer timeout it is closed 1008 "slow consumer", as the gateway would (a gateway
//!   that stops reading for as long ends the connection too). A close frame can only go in
//!   between two messages: if the cut falls inside one of the gateway's frames, the socket is
//!   just shut down.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::clock::LoopInstant as Instant;

use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use shared_protocol::close_code;
use tracing::Span;

use crate::audit::{AuditEvent, AuditKind};
use crate::client_codec::{Broke, ClientCodec, ClientSink, Message};
use crate::frame_cursor::FrameCursor;
use crate::inspector::{
    Session, Verdict, error_response_json, inspect, invalid_request_error, rate_limited_error,
};
use crate::metrics::{ClientClose, ForwardedFrames, UpstreamError};
use crate::outbox::{Drain, Outbox};
use crate::server::Shared;
use crate::socket::Socket;
use crate::wire::{self, Header, OP_TEXT};
use crate::ws::MAX_MESSAGE_BYTES;

/// Longest the close handshake and the final flushes may take at the end of a connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one rate-limit audit record per connection per this interval (a client hammering a
/// limit must not turn into disk writes per request).
pub const RATE_LIMIT_AUDIT_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read per socket read (one buffer per relay loop, never per connection).
pub const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Most reads of 4 KiB spent dropping a closed client's unread input (1 MiB).
const DISCARD_READS: usize = 256;
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
pub(crate) enum Event {
    /// The client's socket failed, or it closed TCP without a close frame.
    ClientGone,
    /// The client broke the protocol: close with this code and reason.
    ClientBroke(u16, &'static str),
    /// The client overstepped a limit of the proxy's: close, and count why.
    ClientLimit(ClientClose),
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

impl From<Broke> for Event {
    fn from(b: Broke) -> Self {
        Event::ClientBroke(b.code, b.reason)
    }
}

/// A connection's budget of client frames (every frame counts, control frames included).
type FrameBudget = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<Instant>>;

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
    /// The client's frames, and the bytes of an unfinished one.
    codec: ClientCodec,
    /// Bytes of `codec` counted against the process's budget for unfinished messages.
    held_counted: usize,
    /// When the message the client has started must be complete (none while it holds none).
    message_deadline: Option<Instant>,
    frame_budget: Option<FrameBudget>,
    /// Requests refused by policy since the last one forwarded.
    denials_in_a_row: u32,
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
        let limits = &shared.config.limits;
        let frame_budget = NonZeroU32::new(limits.frames_per_second_per_connection)
            .map(|n| RateLimiter::direct_with_clock(Quota::per_second(n), MonotonicClock));
        Self {
            slow: Duration::from_millis(limits.slow_consumer_timeout_ms),
            frame_budget,
            codec: ClientCodec::new(MAX_MESSAGE_BYTES),
            held_counted: 0,
            message_deadline: None,
            denials_in_a_row: 0,
            shared,
            peer,
            conn_id,
            span,
            session,
            client,
            upstream,
            to_client: Outbox::default(),
            to_upstream: Outbox::default(),
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
    /// deadline, the end of the close handshake, or the client's message timeout.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Open => self.message_deadline,
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
                Phase::Open if self.message_deadline.is_some_and(|d| Instant::now() >= d) => {
                    self.transition(Event::ClientLimit(ClientClose::MessageTimeout));
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
        // The codec asks this relay (as its sink) for every decision.
        let mut codec = std::mem::replace(&mut self.codec, ClientCodec::new(0));
        let read = codec.read(&mut scratch[..n], self);
        self.codec = codec;
        let progress = read?;
        forwarded.client += progress.forwarded;
        self.release_held()?;
        if progress.closed {
            return Err(Event::ClientClosed);
        }
        self.arm_message_deadline(progress.boundary);
        self.count_held()?;
        Ok(true)
    }

    /// Arms the message deadline when the client starts holding bytes of a message (after a
    /// point where it held none: `boundary`), and disarms it when it holds none.
    fn arm_message_deadline(&mut self, boundary: bool) {
        if self.codec.is_idle() {
            self.message_deadline = None;
        } else if boundary || self.message_deadline.is_none() {
            let timeout = Duration::from_millis(self.shared.config.limits.message_timeout_ms);
            self.message_deadline = Some(Instant::now() + timeout);
        }
    }

    /// Keeps the codec's unfinished bytes counted against the process's budget. Costs nothing
    /// while none are held (the usual case).
    fn count_held(&mut self) -> Result<(), Event> {
        let held = self.codec.held();
        if held == self.held_counted {
            return Ok(());
        }
        let total = &self.shared.partial_bytes;
        if held < self.held_counted {
            total.fetch_sub(self.held_counted - held, Ordering::Relaxed);
        } else {
            let grown = held - self.held_counted;
            let now = total
                .fetch_add(grown, Ordering::Relaxed)
                .saturating_add(grown);
            if now > self.shared.config.limits.partial_message_budget_bytes {
                self.held_counted = held;
                return Err(Event::ClientLimit(ClientClose::Busy));
            }
        }
        self.held_counted = held;
        Ok(())
    }

    /// Frees what the codec holds and its count in the process's budget (the connection ends).
    fn release_codec(&mut self) {
        self.codec.clear();
        self.message_deadline = None;
        let counted = std::mem::take(&mut self.held_counted);
        self.shared
            .partial_bytes
            .fetch_sub(counted, Ordering::Relaxed);
    }

    fn forward(&mut self, bytes: &[u8]) -> Result<(), Event> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.to_upstream
            .send(&mut self.upstream, bytes)
            .map_err(|_| Event::UpstreamGone)
    }

    /// Queues one of the proxy's own answers for the client (it waits for a message boundary
    /// in the gateway's stream).
    fn answer(&mut self, text: &str) {
        wire::encode(&mut self.held, OP_TEXT, text.as_bytes(), None);
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
        let shared = Arc::clone(&self.shared);
        let m = &shared.metrics;
        let reply = match inspect(text, &self.session, &shared.limits) {
            Verdict::Forward => {
                self.denials_in_a_row = 0;
                return Ok(true);
            }
            Verdict::Deny {
                id_json,
                method,
                denial,
            } => {
                m.frames_client_denied.inc();
                m.denial(denial);
                shared.denials.record(
                    &shared.audit,
                    &self.session.credential.id,
                    &method,
                    denial.as_str(),
                    (self.peer, self.conn_id),
                );
                self.answer(&error_response_json(id_json, &denial.to_error(&method)));
                self.denials_in_a_row = self.denials_in_a_row.saturating_add(1);
                let max = shared.config.limits.max_consecutive_denials;
                if max != 0 && self.denials_in_a_row > max {
                    return Err(Event::ClientLimit(ClientClose::RepeatedDenials));
                }
                return Ok(false);
            }
            Verdict::Limited {
                id_json,
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
                        credential: Some(&self.session.credential.id),
                        method: Some(&method),
                        reason: Some(limited.kind.as_str()),
                        ..AuditEvent::new(AuditKind::RateLimited, self.peer, self.conn_id)
                    });
                }
                error_response_json(id_json, &rate_limited_error(limited))
            }
            Verdict::NotRequest { id_json } => {
                m.frames_client_invalid.inc();
                error_response_json(id_json.unwrap_or(r#""invalid""#), &invalid_request_error())
            }
            Verdict::NotJson => {
                m.frames_client_invalid.inc();
                self.span.in_scope(|| {
                    tracing::debug!(len = text.len(), "dropped a client frame that is not JSON");
                });
                return Ok(false);
            }
        };
        self.answer(&reply);
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
            Event::ClientLimit(why) => {
                m.client_close(why);
                let (code, reason) = why.close();
                self.span.in_scope(|| {
                    tracing::info!(reason = why.as_str(), code, "closing a client over a limit");
                });
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
                    Some(rand::random()),
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
            wire::encode_close(&mut frame, code, reason, None);
            self.to_client.queue(&frame);
        }
    }

    /// Queues a "going away" close for the gateway (client frames are always whole, so this is
    /// always at a boundary).
    fn close_upstream(&mut self) {
        let mut frame = Vec::new();
        wire::encode_close(
            &mut frame,
            close_code::GOING_AWAY,
            "client gone",
            Some(rand::random()),
        );
        self.to_upstream.queue(&frame);
    }

    fn finish(&mut self, end: End) {
        // No more client frames are read: what was held for them goes now.
        self.release_codec();
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
            let end = *end;
            self.discard_client_input();
            return Drive::Done(end);
        }
        Drive::Idle
    }

    /// Reads and drops what the client sent that will never be read (bounded): a socket closed
    /// with unread bytes is reset, and a reset can cost the client the close frame that says
    /// why it was closed (nginx's lingering close, in its simplest form).
    fn discard_client_input(&mut self) {
        let mut sink = [0u8; 4096];
        for _ in 0..DISCARD_READS {
            match self.client.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
    }
}

/// The relay is its codec's sink: each frame against the frame budget, each message through the
/// inspector, forwarded bytes to the gateway's queue.
impl ClientSink for Relay {
    type Error = Event;

    fn frame(&mut self, _: &Header) -> Result<(), Event> {
        match &self.frame_budget {
            Some(budget) if budget.check().is_err() => {
                Err(Event::ClientLimit(ClientClose::TooManyFrames))
            }
            _ => Ok(()),
        }
    }

    fn message(&mut self, message: Message<'_>) -> Result<bool, Event> {
        match message {
            Message::Text(payload) => self.decide(payload),
            Message::Ping | Message::Pong => Ok(true),
            Message::Binary => {
                self.shared.metrics.frames_client_invalid.inc();
                Ok(false)
            }
        }
    }

    fn forward(&mut self, bytes: &[u8]) -> Result<(), Event> {
        Relay::forward(self, bytes)
    }

    fn mask(&mut self) -> [u8; 4] {
        rand::random()
    }
}

impl Drop for Relay {
    /// However the relay ends (a loop that stops drops its relays), its unfinished bytes leave
    /// the process's budget.
    fn drop(&mut self) {
        self.release_codec();
    }
}
