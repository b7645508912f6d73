//! The OpenClaw gateway protocol v4 as types and rules, with no I/O.
//!
//! Every crate in the workspace speaks the gateway protocol through this one: the bridge as a
//! client, the proxy as an inspector, the mock as a server. Outbound types serialise exactly the
//! fields the gateway accepts (its schemas reject unknown fields); inbound types are tolerant
//! (unknown fields and enum values are kept or ignored, never an error).
//!
//! Source of truth: `../shared/reference/openclaw-protocol.md`, checked on the wire against
//! openclaw 2026.9.6. Divergences found since are in `docs/protocol-verification.md`.
#![forbid(unsafe_code)]

pub mod accumulator;
pub mod chat;
pub mod close_code;
pub mod connect;
pub mod device;
pub mod error;
pub mod events;
pub mod frame;
pub mod js_json;
pub mod js_string;
pub mod limits;
#[cfg(feature = "log-filter")]
pub mod log_filter;
mod method_table;
pub mod methods;
#[cfg(feature = "tls-pin")]
pub mod pin;
pub mod scopes;
pub mod secret;
pub mod session_key;
pub mod sessions;

pub use accumulator::{AccumulatorError, ReplyAccumulator, RunOutcome, Step};
pub use error::{DetailCode, ErrorCode, ErrorShape};
pub use frame::{Frame, FrameError};
pub use scopes::{MethodPolicy, Scope, ScopeSet};
pub use secret::Secret;
pub use session_key::{AgentId, SessionKey, SessionKeyError};
