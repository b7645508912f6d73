//! The seam between the HTTP service and whatever runs agents.
//!
//! The service only needs "run this message in this session", "reset this session" and "how are
//! the gateways". Putting that behind a small trait lets unit tests drive the service with a
//! deterministic in-memory fake, while production (and the end-to-end tests) use
//! [`super::pool_backend::PoolBackend`] over the real pooled WebSocket layer.

use std::time::Duration;

use futures_util::future::BoxFuture;
use shared_protocol::SessionKey;

/// One run to start (or join, when `idempotency_key` is already in flight).
#[derive(Debug, Clone)]
pub struct BackendRun {
    /// Gateway name (a key of the config's `gateways`).
    pub gateway: String,
    /// Canonical session key.
    pub session_key: SessionKey,
    /// Text for the agent.
    pub message: String,
    /// Stable per Omni trace: the gateway's run id.
    pub idempotency_key: String,
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct BackendReply {
    /// The gateway's run id.
    pub run_id: String,
    /// Full reply text.
    pub text: String,
    /// The run was aborted (the text is what was produced before).
    pub aborted: bool,
    /// From the call to the first delta, when one came.
    pub time_to_first_delta: Option<Duration>,
}

/// Why a run or reset failed, classified for the user-facing answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The circuit breaker is open.
    CircuitOpen,
    /// Not connected / connect failed / gateway starting.
    Unavailable,
    /// Ack or run deadline passed.
    Timeout,
    /// Too many runs in flight or queued: a retry later may succeed.
    Backpressure,
    /// The gateway refused the request (bad agent, bad key, missing scope).
    Rejected,
    /// The agent run ended in an error.
    AgentFailed,
    /// Reply over the accumulation cap.
    TooLarge,
    /// The pool is shutting down.
    Closed,
    /// No gateway of that name.
    UnknownGateway,
}

impl BackendErrorKind {
    /// Stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CircuitOpen => "circuit_open",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Backpressure => "backpressure",
            Self::Rejected => "rejected",
            Self::AgentFailed => "agent_error",
            Self::TooLarge => "accumulation_cap",
            Self::Closed => "closed",
            Self::UnknownGateway => "config",
        }
    }

    /// True when the request never reached the agent, so a retry can start it cleanly.
    pub fn nothing_started(self) -> bool {
        matches!(self, Self::Backpressure | Self::Closed)
    }
}

/// A classified failure with a detail for the logs (never message text or secrets).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {detail}", kind.as_str())]
pub struct BackendError {
    /// Classification.
    pub kind: BackendErrorKind,
    /// Human-readable detail for logs.
    pub detail: String,
}

impl BackendError {
    /// A new error.
    pub fn new(kind: BackendErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// State of one gateway as `/health` and `/ready` show it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayHealth {
    /// Gateway name.
    pub name: String,
    /// Connection state label (`connected`, `connecting`, `backoff`, ...).
    pub state: String,
    /// Connected right now.
    pub connected: bool,
    /// Completed a handshake at least once since start.
    pub ever_connected: bool,
    /// Circuit breaker open.
    pub breaker_open: bool,
    /// Runs in flight.
    pub in_flight: usize,
    /// Runs queued behind a busy session.
    pub queued: usize,
    /// Last error, if any.
    pub last_error: Option<String>,
}

/// What the service needs from the agent side.
pub trait AgentBackend: Send + Sync + 'static {
    /// Runs one message; a second call with the same idempotency key while the first is in
    /// flight joins it.
    fn run(&self, run: BackendRun) -> BoxFuture<'static, Result<BackendReply, BackendError>>;
    /// Clears a session (write scope only: archive + delete archived).
    fn reset(
        &self,
        gateway: &str,
        key: &SessionKey,
    ) -> BoxFuture<'static, Result<(), BackendError>>;
    /// Every configured gateway's state.
    fn health(&self) -> Vec<GatewayHealth>;
}
