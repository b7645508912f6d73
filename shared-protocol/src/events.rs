//! Event names and the payloads of `tick` and `shutdown`.

use serde::{Deserialize, Serialize};

/// Event names.
pub mod names {
    /// Pre-auth challenge.
    pub const CONNECT_CHALLENGE: &str = "connect.challenge";
    /// Chat run progress.
    pub const CHAT: &str = "chat";
    /// Agent run stream.
    pub const AGENT: &str = "agent";
    /// Keepalive every `tickIntervalMs`.
    pub const TICK: &str = "tick";
    /// The gateway is stopping; a close 1012 follows.
    pub const SHUTDOWN: &str = "shutdown";
    /// Health broadcast.
    pub const HEALTH: &str = "health";
}

/// `tick` payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tick {
    /// Server epoch ms.
    pub ts: u64,
}

/// `shutdown` payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Shutdown {
    /// `gateway stopping`.
    pub reason: String,
    /// When the gateway expects to be back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_expected_ms: Option<u64>,
}
