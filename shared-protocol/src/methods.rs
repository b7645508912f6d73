//! Method names and the small results we read: `agents.list`, `health`.

use serde::{Deserialize, Serialize};

/// Method names used across the workspace.
pub mod names {
    /// Handshake.
    pub const CONNECT: &str = "connect";
    /// Start or replay a run.
    pub const CHAT_SEND: &str = "chat.send";
    /// Abort a run.
    pub const CHAT_ABORT: &str = "chat.abort";
    /// History of a session.
    pub const CHAT_HISTORY: &str = "chat.history";
    /// Describe a session.
    pub const SESSIONS_DESCRIBE: &str = "sessions.describe";
    /// Patch a session.
    pub const SESSIONS_PATCH: &str = "sessions.patch";
    /// Delete a session.
    pub const SESSIONS_DELETE: &str = "sessions.delete";
    /// Reset a session (admin).
    pub const SESSIONS_RESET: &str = "sessions.reset";
    /// List agents.
    pub const AGENTS_LIST: &str = "agents.list";
    /// Health.
    pub const HEALTH: &str = "health";
}

/// `agents.list` result (only what we use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentsListResult {
    /// Default agent id.
    pub default_id: String,
    /// Main session key suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub main_key: Option<String>,
    /// `per-sender` or `global`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Agents.
    pub agents: Vec<AgentSummary>,
}

/// One agent in `agents.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AgentSummary {
    /// Agent id.
    pub id: String,
}

/// `health` result (only what we use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthResult {
    /// Healthy.
    pub ok: bool,
    /// Server time.
    pub ts: u64,
    /// Time the check took.
    pub duration_ms: u64,
}
