//! gateway-proxy: the only door to an OpenClaw gateway.
//!
//! Terminates TLS (or plain WebSocket on loopback), authenticates clients with proxy-issued
//! credentials (or checks their own handshake in passthrough mode), clamps and enforces operator
//! scopes per method, rate-limits, audits, and relays everything allowed unchanged and in order.
//! Module map:
//!
//! - [`config`]: the TOML file, defaults, validation.
//! - [`credential`], [`policy`]: who may connect and what they may call.
//! - [`admission`]: pending and admitted connections; [`upgrade`] with [`upgrade_request`]: the
//!   HTTP upgrade; [`handshake`]: admitting a client (exchange / passthrough), with
//!   [`client_hello`] (what an exchange-mode client sees of the gateway's hello);
//!   [`upstream`]: the gateway side.
//! - [`inspector`]: the per-frame decision on the frame as the gateway reads it
//!   ([`request_read`], with [`request_scan`] its fast path), [`chat_session`] (which session a
//!   `chat.send` addresses); [`relay`]: moving frames with backpressure on the raw sockets, with
//!   [`client_codec`] (the client's frames), [`wire`] (framing),
//!   [`frame_cursor`] (following the gateway's frames),
//!   `outbox` (a socket's bounded write queue) and `socket` (a relayed socket, plain or TLS);
//!   [`relay_loop`]: the event-loop threads that drive the relays;
//!   [`frame_gate`], [`ws`]: the handshake's WebSocket settings and the hand-over to the relay.
//! - [`rate_limit`], [`audit`] with [`denial_log`], [`metrics`], [`admin`]: limits and
//!   observability.
//! - [`tls`], [`pin`]: certificates, reload, upstream pinning.
//! - [`server`]: listeners, admission, handshake tasks, shutdown; [`cli`]: the commands.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod audit;
pub mod chat_session;
pub mod cli;
pub mod client_codec;
pub mod client_hello;
pub mod clock;
pub mod config;
pub mod credential;
pub mod denial_log;
pub mod error;
pub mod frame_cursor;
pub mod frame_gate;
pub mod handshake;
pub mod inspector;
pub mod metrics;
mod outbox;
pub mod policy;
pub mod rate_limit;
pub mod relay;
pub mod relay_loop;
pub mod request_read;
pub mod request_scan;
pub mod server;
mod socket;
pub mod tls;
pub mod upgrade;
pub mod upgrade_request;
pub mod upstream;
pub mod wire;
pub mod ws;

/// Certificate pins and the pinned-certificate verifier (the workspace's one implementation, in
/// `shared-protocol`), kept at `gateway_proxy::pin`.
pub use shared_protocol::pin;

pub use config::Config;
pub use error::{ErrorKind, ProxyError};
pub use server::{Listeners, Proxy, Shutdown};
