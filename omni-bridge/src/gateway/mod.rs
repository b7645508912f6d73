//! The OpenClaw gateway client: one pooled, self-healing WebSocket per configured gateway.
//!
//! Layout: `pool` (gateways by name) -> `handle` (what the service calls) -> [`run`] (one
//! agent run: send, accumulate, re-send after a reconnect) over `connection` (supervisor,
//! reader, watchdog, health) and `link` (one live socket, request/response correlation).
//! `runs` correlates `chat` events to runs, `session_gate` serialises runs per session,
//! [`breaker`] and [`backoff`] decide when to stop trying and when to try again,
//! [`transport`] opens sockets and handshakes, [`pin`] verifies `wss://` certificates,
//! `device_store` keeps the device identity, [`metrics`] exports it all.

pub mod backoff;
pub mod breaker;
pub mod config;
mod connection;
mod device_store;
pub mod error;
mod handle;
mod link;
pub mod metrics;
pub mod pin;
mod pool;
pub mod run;
mod runs;
mod session_gate;
pub mod status;
pub mod transport;

pub use breaker::BreakerState;
pub use config::{BackoffConfig, BreakerConfig, GatewayConfig};
pub use error::{ConnectError, ErrorKind, GatewayError};
pub use handle::GatewayHandle;
pub use pin::CertPin;
pub use pool::GatewayPool;
pub use run::{ReplyOutcome, RunReply, RunRequest, RunStats};
pub use status::{ConnectionState, GatewayCheck, GatewayStatus};

/// Re-exported so that callers without their own `prometheus` dependency can build a pool.
pub use prometheus::Registry;
/// Re-exported so that callers without their own `tokio-util` dependency can build a pool.
pub use tokio_util::sync::CancellationToken;
