//! The seam between the HTTP service and whatever runs agents.
//!
//! The service only needs "run this message (or join the run of this idempotency key)", "join
//! it if it is in flight", "reset this session" and "how are the gateways". Putting that behind
//! a small trait lets unit tests drive the service with a deterministic in-memory fake, while
//! production (and the end-to-end tests) use [`super::pool_backend::PoolBackend`] over the real
//! pooled WebSocket layer, where the join lives (`crate::gateway`'s run table).

use futures_util::future::BoxFuture;
use shared_protocol::SessionKey;

use crate::error::Error;
use crate::gateway::{RunReply, RunRequest};

/// The reply of a run, when it comes.
pub type ReplyFuture = BoxFuture<'static, Result<RunReply, Error>>;

/// A run started, or joined because a run with the same idempotency key was in flight.
pub struct Started {
    /// True when this call joined a run in flight instead of starting one.
    pub joined: bool,
    /// The run's result (an immediate error when the run was refused).
    pub reply: ReplyFuture,
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
    /// Starts `request` on `gateway`, or joins the run in flight with its idempotency key. The
    /// run goes on if the returned future is dropped.
    fn run(&self, gateway: &str, request: RunRequest) -> Started;
    /// Joins the run in flight with this idempotency key, if there is one; never starts one.
    fn attach(&self, gateway: &str, idempotency_key: &str) -> Option<ReplyFuture>;
    /// Clears a session (write scope only: archive + delete archived).
    fn reset(&self, gateway: &str, key: &SessionKey) -> BoxFuture<'static, Result<(), Error>>;
    /// Every configured gateway's state.
    fn health(&self) -> Vec<GatewayHealth>;
    /// Runs admitted and not finished, over every gateway.
    fn runs_in_flight(&self) -> usize;
}
