//! One gateway: its connection supervisor, socket reader and shared state.
//!
//! The supervisor connects in the background as soon as the gateway is configured (lazy for
//! callers, warm in practice), publishes the live [`Link`] through a watch channel, and
//! reconnects with backoff when the socket ends. The reader is the only task reading a socket:
//! it completes responses by id, routes `chat` events by runId into the run table, and never
//! waits on a consumer. A watchdog reconnects when nothing arrived for 2 x `tickIntervalMs`;
//! the writer pings; a periodic `health` request never touches the breaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde::Serialize;
use shared_protocol::frame::Frame;
use shared_protocol::methods::names as methods;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{LogLevel, ReconnectSchedule, log_level};
use super::breaker::{BreakerState, CircuitBreaker, Permit, Verdict};
use super::link::{Link, OUTBOUND_QUEUE, Response};
use super::metrics::GatewayMetrics;
use super::reply::RunReply;
use super::run::{Admitted, InFlight, RunHost, WaitError};
use super::runs::RunTable;
use super::session_gate::{Entry, SessionGates, SessionTurn};
use super::status::{ConnectionState, GatewayStatus};
use super::transport::{Dialer, Established};
use crate::config::GatewayConfig;
use crate::error::{ConnectError, Error};

/// Bounds on the ping period (half the tick interval, within these).
const MIN_PING_INTERVAL: Duration = Duration::from_secs(1);
const MAX_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Budget of one `health` request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Budget for sending our close frame on shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Most queued frames the writer sends in one write.
const WRITE_BATCH: usize = 64;

/// What callers waiting for a connection can see.
#[derive(Clone, Default)]
struct Slot {
    link: Option<Arc<Link>>,
    fatal: Option<Error>,
    breaker_open: bool,
    closed: bool,
}

#[derive(Default)]
struct Info {
    state: Option<ConnectionState>,
    server_version: Option<String>,
    granted_scopes: Vec<String>,
    last_error: Option<String>,
}

/// One configured gateway: its connection, the runs on it and everything that decides whether
/// a run may start. Runs see it only through [`RunHost`].
pub struct Gateway {
    /// Configured name (metric label, logs).
    name: String,
    /// Its configuration.
    config: GatewayConfig,
    /// Opens sockets; the configuration error when the config is unusable.
    dialer: Result<Dialer, Error>,
    /// Its metric series.
    metrics: GatewayMetrics,
    /// Cancelled when the gateway is removed, reconfigured or the pool closes.
    cancel: CancellationToken,
    /// Owner of every task of this gateway (shared with the pool).
    tracker: TaskTracker,
    /// The join: runs by runId.
    runs: RunTable,
    /// Per-session serialisation.
    sessions: Arc<SessionGates>,
    /// Decides whether runs may start after repeated failures.
    breaker: Mutex<CircuitBreaker>,
    /// Runs sent or being sent (bounded by `max_in_flight`).
    in_flight: AtomicUsize,
    /// The live link (or why there is none), watched by waiting runs.
    slot: watch::Sender<Slot>,
    /// What `status` reports.
    info: Mutex<Info>,
}

impl Gateway {
    /// Creates the gateway and starts its supervisor.
    pub fn start(
        name: &str,
        config: GatewayConfig,
        metrics: GatewayMetrics,
        parent: &CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let dialer = Dialer::new(&config);
        let gateway = Arc::new(Self {
            name: name.to_string(),
            breaker: Mutex::new(CircuitBreaker::new(config.breaker.clone())),
            config,
            dialer,
            metrics,
            cancel: parent.child_token(),
            tracker: tracker.clone(),
            runs: RunTable::default(),
            sessions: Arc::new(SessionGates::default()),
            in_flight: AtomicUsize::new(0),
            slot: watch::Sender::new(Slot::default()),
            info: Mutex::new(Info::default()),
        });
        if let Err(e) = &gateway.dialer {
            tracing::error!(gateway = %gateway.name, error = %e, "gateway not started: invalid configuration");
            gateway.set_error(e.to_string());
            gateway.slot.send_modify(|s| s.fatal = Some(e.clone()));
        }
        tracker.spawn(gateway.clone().supervise());
        gateway
    }

    /// Snapshot for status endpoints.
    pub fn status(&self) -> GatewayStatus {
        let info = self.info.lock();
        GatewayStatus {
            state: info.state.unwrap_or(ConnectionState::Connecting),
            breaker: self.breaker.lock().state(Instant::now()),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.sessions.queued(),
            server_version: info.server_version.clone(),
            granted_scopes: info.granted_scopes.clone(),
            last_error: info.last_error.clone(),
        }
    }

    /// The dialer (for `check`).
    ///
    /// # Errors
    /// The configuration error when the config is invalid.
    pub fn dialer(&self) -> Result<&Dialer, Error> {
        self.dialer.as_ref().map_err(Clone::clone)
    }

    /// Remembers an error for status.
    fn set_error(&self, message: String) {
        self.info.lock().last_error = Some(message);
    }

    fn set_state(&self, state: ConnectionState) {
        self.info.lock().state = Some(state);
        self.metrics.set_state(state);
    }

    /// Waits until a link is ready, the deadline passes, or waiting cannot help any more.
    async fn wait_link_until(&self, deadline: Instant) -> Result<Arc<Link>, WaitError> {
        let mut rx = self.slot.subscribe();
        loop {
            {
                let slot = rx.borrow_and_update();
                if slot.closed || self.cancel.is_cancelled() {
                    return Err(WaitError::Failed(Error::Closed));
                }
                if let Some(link) = slot.link.as_ref().filter(|l| !l.is_closed()) {
                    return Ok(link.clone());
                }
                if let Some(fatal) = &slot.fatal {
                    return Err(WaitError::Failed(fatal.clone()));
                }
                if slot.breaker_open {
                    return Err(WaitError::Failed(self.circuit_open_error()));
                }
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() {
                    return Err(WaitError::Failed(Error::Closed));
                },
                () = tokio::time::sleep_until(deadline) => return Err(WaitError::Timeout),
                () = self.cancel.cancelled() => return Err(WaitError::Failed(Error::Closed)),
            }
        }
    }

    /// One request on the current link: waits for the connection, then the response, both
    /// within `budget`.
    ///
    /// # Errors
    /// [`Error`]: closed, unavailable, timeout or the gateway's refusal.
    pub async fn request<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        budget: Duration,
    ) -> Result<Response, Error> {
        let deadline = Instant::now() + budget;
        let link = match self.wait_link_until(deadline).await {
            Ok(link) => link,
            Err(WaitError::Failed(e)) => return Err(e),
            Err(WaitError::Timeout) => {
                return Err(Error::Unavailable {
                    message: format!("{method}: no connection to the gateway"),
                    retry_after: None,
                });
            }
        };
        link.request(method, params, deadline)
            .await
            .map_err(|e| e.into_error(method))
    }

    fn circuit_open_error(&self) -> Error {
        Error::CircuitOpen {
            retry_after: self.breaker.lock().open_remaining(Instant::now()),
        }
    }

    fn breaker_admit(&self) -> Result<Permit, Error> {
        let now = Instant::now();
        let result = self.breaker.lock().admit(now);
        match result {
            Ok((permit, change)) => {
                if let Some(to) = change {
                    self.breaker_changed(to);
                }
                Ok(permit)
            }
            Err(retry_after) => Err(Error::CircuitOpen { retry_after }),
        }
    }

    fn breaker_changed(&self, to: BreakerState) {
        match to {
            BreakerState::Open => tracing::warn!(
                gateway = %self.name,
                open_for = ?self.config.breaker.open_for,
                "circuit breaker opened after repeated failures"
            ),
            BreakerState::HalfOpen => {
                tracing::info!(gateway = %self.name, "circuit breaker half-open: probing");
            }
            BreakerState::Closed => {
                tracing::info!(gateway = %self.name, "circuit breaker closed");
            }
        }
        self.metrics.breaker_transition(to);
        self.slot
            .send_modify(|s| s.breaker_open = to == BreakerState::Open);
    }

    /// Takes the session's turn: at once, or after the runs before it, at most
    /// `send_ack_timeout + run_timeout` (resets wait their turn like runs).
    ///
    /// # Errors
    /// `SessionQueueFull`, `QueueTimeout` or `Closed`.
    pub async fn session_turn(&self, session_key: &str) -> Result<SessionTurn, Error> {
        let entry = self
            .sessions
            .enter(session_key, self.config.max_queued_per_session)?;
        self.wait_turn(entry).await
    }

    async fn wait_turn(&self, entry: Entry) -> Result<SessionTurn, Error> {
        match entry {
            Entry::Now(turn) => Ok(turn),
            Entry::Queued(rx) => {
                self.refresh_queued();
                let budget = self.config.run_budget();
                let turn = tokio::select! {
                    turn = rx => turn.map_err(|_| Error::Closed),
                    () = tokio::time::sleep(budget) => Err(Error::QueueTimeout),
                    () = self.cancel.cancelled() => Err(Error::Closed),
                };
                self.refresh_queued();
                turn
            }
        }
    }

    fn refresh_queued(&self) {
        self.metrics.set_queued(self.sessions.queued());
    }

    /// Deletes this gateway's metric series (it was removed from the pool).
    pub fn forget_metrics(&self) {
        self.metrics.remove();
    }

    /// Stops everything of this gateway.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        self.slot.send_modify(|s| {
            s.closed = true;
            s.link = None;
        });
    }

    async fn supervise(self: Arc<Self>) {
        let mut schedule = ReconnectSchedule::new(self.config.backoff.clone());
        let mut first = true;
        while !self.cancel.is_cancelled() {
            let Ok(dialer) = self.dialer.as_ref() else {
                break;
            };
            self.set_state(ConnectionState::Connecting);
            if !first {
                self.metrics.reconnect();
            }
            first = false;
            let attempt = tokio::select! {
                r = dialer.dial() => r,
                () = self.cancel.cancelled() => break,
            };
            let retry_after = match attempt {
                Ok(established) => {
                    schedule.reset();
                    self.serve(established).await;
                    None
                }
                Err(e) => self.connect_failed(&e, schedule.attempt() + 1),
            };
            if self.cancel.is_cancelled() {
                break;
            }
            self.set_state(ConnectionState::Backoff);
            let delay = schedule.next_delay(retry_after);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => break,
            }
        }
        self.set_state(ConnectionState::Closed);
        self.slot.send_modify(|s| {
            s.closed = true;
            s.link = None;
        });
    }

    fn connect_failed(&self, e: &ConnectError, attempt: u32) -> Option<Duration> {
        let url = self.config.url.as_str();
        match log_level(attempt) {
            LogLevel::Warn => {
                tracing::warn!(gateway = %self.name, url, attempt, error = %e, "gateway connect failed");
            }
            LogLevel::Info => {
                tracing::info!(gateway = %self.name, url, attempt, error = %e, "gateway connect failed");
            }
            LogLevel::Debug => {
                tracing::debug!(gateway = %self.name, url, attempt, error = %e, "gateway connect failed");
            }
        }
        self.set_error(e.to_string());
        let fatal = e.is_fatal().then(|| Error::Connect(e.clone()));
        self.slot.send_modify(|s| s.fatal = fatal);
        match e {
            ConnectError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Runs one established socket until it ends.
    async fn serve(self: &Arc<Self>, established: Established) {
        let Established { ws, hello, latency } = established;
        let tick = Duration::from_millis(hello.policy.tick_interval_ms.max(1));
        let watchdog = tick * 2;
        let ping_every = (tick / 2).clamp(MIN_PING_INTERVAL, MAX_PING_INTERVAL);
        tracing::info!(
            gateway = %self.name,
            server_version = %hello.server.version,
            scopes = ?hello.auth.scopes,
            latency_ms = latency.as_millis() as u64,
            "gateway connected"
        );
        {
            let mut info = self.info.lock();
            info.server_version = Some(hello.server.version.clone());
            info.granted_scopes = hello.auth.scopes.clone();
        }
        let (mut sink, mut stream) = ws.split();
        let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTBOUND_QUEUE);
        let link_closed = self.cancel.child_token();
        let link = Arc::new(Link::new(out_tx, link_closed.clone()));
        self.set_state(ConnectionState::Connected);
        self.slot.send_modify(|s| {
            s.link = Some(link.clone());
            s.fatal = None;
        });

        let writer_link = link.clone();
        self.tracker.spawn(async move {
            let mut ping = tokio::time::interval(ping_every);
            ping.tick().await;
            loop {
                let message = tokio::select! {
                    m = out_rx.recv() => match m { Some(m) => m, None => break },
                    _ = ping.tick() => Message::Ping(Vec::new().into()),
                    () = link_closed.cancelled() => {
                        let close = Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }));
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(close)).await;
                        break;
                    }
                };
                // Whatever else is queued goes out with it, in one write: after draining the
                // queue, let the runs that are ready add theirs (one yield), then drain again.
                let mut batch = Ok(());
                let mut next = Some(message);
                let mut fed = 0;
                let mut yielded = false;
                loop {
                    while let Some(m) = next.take() {
                        batch = sink.feed(m).await;
                        fed += 1;
                        if batch.is_err() || fed >= WRITE_BATCH {
                            break;
                        }
                        next = out_rx.try_recv().ok();
                    }
                    if yielded || batch.is_err() || fed >= WRITE_BATCH {
                        break;
                    }
                    tokio::task::yield_now().await;
                    yielded = true;
                    next = out_rx.try_recv().ok();
                }
                if batch.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
            writer_link.close();
        });

        let mut last_seen = Instant::now();
        let mut health = tokio::time::interval(self.config.health_interval);
        health.tick().await;
        let reason = loop {
            tokio::select! {
                message = stream.next() => {
                    last_seen = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => self.on_text(&link, text.as_str(), last_seen),
                        Some(Ok(Message::Close(frame))) => {
                            break match frame {
                                Some(f) => format!("closed by gateway: {} {}", u16::from(f.code), f.reason),
                                None => "closed by gateway".to_string(),
                            };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break format!("websocket error: {e}"),
                        None => break "connection lost".to_string(),
                    }
                }
                () = tokio::time::sleep_until(last_seen + watchdog) => {
                    break format!("no frame from the gateway for {watchdog:?}");
                }
                _ = health.tick() => self.spawn_health(),
                () = link.closed() => break "connection closed".to_string(),
            }
        };
        link.close();
        self.slot.send_modify(|s| {
            if s.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, &link)) {
                s.link = None;
            }
        });
        if !self.cancel.is_cancelled() {
            tracing::warn!(gateway = %self.name, reason = %reason, "gateway connection ended; reconnecting");
            self.set_error(reason);
        }
    }

    fn on_text(&self, link: &Link, text: &str, now: Instant) {
        match Frame::parse(text) {
            Ok(Frame::Response(r)) => {
                let response = Response {
                    ok: r.ok,
                    payload: r.payload.map_or("null", |p| p.get()).to_string(),
                    error: if r.ok { None } else { r.error() },
                };
                link.complete(&r.id, response);
            }
            Ok(Frame::Event(e)) => match e.event.as_ref() {
                shared_protocol::events::names::CHAT => {
                    if let Some(payload) = e.payload {
                        let dropped = self.runs.on_chat_event(payload.get(), now);
                        if dropped > 0 {
                            self.metrics.unmatched_dropped(dropped);
                        }
                    }
                }
                shared_protocol::events::names::SHUTDOWN => {
                    link.mark_draining();
                    tracing::info!(gateway = %self.name, "gateway announced shutdown");
                }
                _ => {}
            },
            Ok(Frame::Request(_)) => {}
            Err(e) => tracing::debug!(gateway = %self.name, error = %e, "unreadable frame ignored"),
        }
    }

    fn spawn_health(self: &Arc<Self>) {
        let gateway = self.clone();
        self.tracker.spawn(async move {
            let params = serde_json::json!({});
            let result = tokio::select! {
                r = gateway.request(methods::HEALTH, &params, HEALTH_TIMEOUT) => r,
                () = gateway.cancel.cancelled() => return,
            };
            match result.and_then(|r| r.into_payload::<serde_json::Value>()) {
                Ok(_) => tracing::debug!(gateway = %gateway.name, "health ok"),
                Err(e) => {
                    tracing::warn!(gateway = %gateway.name, error = %e, "health check failed")
                }
            }
        });
    }
}

impl RunHost for Gateway {
    fn name(&self) -> &str {
        &self.name
    }

    fn config(&self) -> &GatewayConfig {
        &self.config
    }

    fn runs(&self) -> &RunTable {
        &self.runs
    }

    fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    fn admit(&self, session_key: &str) -> Result<Admitted, Error> {
        if self.in_flight.load(Ordering::Relaxed) >= self.config.max_in_flight {
            return Err(Error::Backpressure);
        }
        let turn = self
            .sessions
            .enter(session_key, self.config.max_queued_per_session)?;
        let permit = self.breaker_admit()?;
        Ok(Admitted { permit, turn })
    }

    fn take_turn(
        &self,
        turn: Entry,
    ) -> impl std::future::Future<Output = Result<SessionTurn, Error>> + Send {
        self.wait_turn(turn)
    }

    fn reserve(self: &Arc<Self>) -> Result<InFlight<Self>, Error> {
        let max = self.config.max_in_flight;
        let n = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Error::Backpressure)?;
        self.metrics.set_in_flight(n + 1);
        Ok(InFlight::new(self.clone()))
    }

    fn release(&self) {
        let n = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        self.metrics.set_in_flight(n);
    }

    fn wait_link(
        &self,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Result<Arc<Link>, WaitError>> + Send {
        self.wait_link_until(deadline)
    }

    fn request<P: Serialize + Sync>(
        &self,
        method: &str,
        params: &P,
        budget: Duration,
    ) -> impl std::future::Future<Output = Result<Response, Error>> + Send {
        Gateway::request(self, method, params, budget)
    }

    fn last_error(&self) -> Option<String> {
        self.info.lock().last_error.clone()
    }

    fn finished(&self, permit: Permit, result: &Result<RunReply, Error>, elapsed: Duration) {
        let verdict = match result {
            Ok(_) => Verdict::Success,
            Err(e) if e.trips_breaker() => Verdict::Failure,
            Err(_) => Verdict::Neutral,
        };
        let change = self.breaker.lock().record(Instant::now(), permit, verdict);
        if let Some(to) = change {
            self.breaker_changed(to);
        }
        let seconds = elapsed.as_secs_f64();
        match result {
            Ok(reply) => {
                self.metrics.run_finished(reply.outcome.as_str(), seconds);
                if let Some(ttfd) = reply.stats.time_to_first_delta {
                    self.metrics.first_delta(ttfd.as_secs_f64());
                }
                tracing::debug!(
                    outcome = reply.outcome.as_str(),
                    deltas = reply.stats.deltas,
                    bytes = reply.stats.bytes,
                    duration_ms = reply.stats.duration.as_millis() as u64,
                    "run finished"
                );
            }
            Err(e) => {
                self.metrics.error(e.kind());
                self.metrics.run_finished(e.kind().as_str(), seconds);
                self.set_error(e.to_string());
            }
        }
    }

    fn refused(&self, error: &Error) {
        self.metrics.error(error.kind());
        tracing::debug!(gateway = %self.name, kind = error.kind().as_str(), error = %error, "run refused");
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }
}
