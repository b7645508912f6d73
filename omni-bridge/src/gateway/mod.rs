//! The OpenClaw gateway client: one pooled, self-healing WebSocket per configured gateway.
//!
//! Layout: `pool` (gateways by name) -> `handle` (what the service calls) -> `run` (one agent
//! run: send, accumulate, re-send after a reconnect; it sees its gateway only through
//! `run::RunHost`) and `runs` (the join: runs by idempotency key, their waiters and replies)
//! over `connection` (the gateway: supervisor, reader, watchdog, health, admission) and `link`
//! (one live socket, request/response correlation). [`reply`] is what a run is asked and
//! answers, `session_gate` serialises runs per session, [`breaker`] and [`backoff`] decide when
//! to stop trying and when to try again, [`transport`] opens sockets and handshakes, [`pin`]
//! verifies `wss://` certificates, `device_store` keeps the device identity, [`metrics`] exports
//! it all. The configuration is [`crate::config::GatewayConfig`]; errors are
//! [`crate::error::Error`].

pub mod backoff;
pub mod breaker;
mod connection;
mod device_store;
mod handle;
mod link;
pub mod metrics;
pub mod pin;
mod pool;
pub mod reply;
mod run;
mod runs;
mod session_gate;
pub mod status;
pub mod transport;

pub use breaker::BreakerState;
pub use handle::GatewayHandle;
pub use pin::CertPin;
pub use pool::GatewayPool;
pub use reply::{ReplyOutcome, RunReply, RunRequest, RunStats};
pub use runs::RunWaiter;
pub use status::{ConnectionState, GatewayCheck, GatewayStatus};

/// Re-exported so that callers without their own `prometheus` dependency can build a pool.
pub use prometheus::Registry;
/// Re-exported so that callers without their own `tokio-util` dependency can build a pool.
pub use tokio_util::sync::CancellationToken;
