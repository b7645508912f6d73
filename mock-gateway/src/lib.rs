//! A faithful, fault-injecting fake of the OpenClaw gateway (protocol v4), for tests and demos.
//!
//! It speaks the real handshake (challenge, strict connect params, token or device auth, the
//! gateway's scope-clearing rules), streams chat runs exactly as the real gateway fronting the fake
//! LLM does (`FAKE-REPLY: you said <<M>>. chunk-a chunk-b chunk-c`), keeps sessions, idempotency
//! and steer/interrupt semantics, and lets tests inject faults (delayed or lost acks, stalls,
//! dropped connections, errors, restarts, slow consumers). Every difference from the real gateway
//! found by the conformance suite (`tests/tests/conformance_protocol.rs`) is listed in
//! `docs/protocol-verification.md`.
//!
//! Beyond the shared contract the handle also offers `wait_for_open_connections`,
//! `slow_consumer_closes`/`wait_for_slow_consumer_closes`, the builder `agents`, `preauth_timeout`
//! and `start_on(listener)`, and the crate exports [`fake_reply`] (the exact reply text) and
//! [`FaultScript`] (faults from a JSON/TOML file, as the binary's `--fault-script`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let gw = mock_gateway::MockGateway::builder().token("t").start().await?;
//! println!("connect to {}", gw.url());
//! gw.stop().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod chat;
mod config;
mod connect_schema;
mod connection;
mod dedupe;
mod dispatch;
mod error;
mod fault;
mod handle;
mod handshake;
mod outbound;
mod record;
mod reply;
mod run;
mod server;
mod sessions;
mod state;

pub use builder::{MockGateway, MockGatewayBuilder};
pub use config::{
    DEFAULT_DELTA_INTERVAL, DEFAULT_TOKEN, MOCK_SERVER_VERSION, OUTBOUND_QUEUE_FRAMES,
    SLOW_DELTA_INTERVAL,
};
pub use error::MockError;
pub use fault::{FaultScript, FaultSpec, RunFault};
pub use handle::MockGatewayHandle;
pub use record::ReceivedRequest;
pub use reply::fake_reply;
