//! `chat.send`, `chat.abort` and the `chat` event.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::string_enum;

/// `chat.send` params. Outbound we set only what we use; inbound (mock, proxy) the closed schema
/// is enforced, with the advanced fields accepted opaquely.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatSendParams {
    /// Required, 1–512 chars; the gateway canonicalises it.
    pub session_key: String,
    /// Required (may be empty when attachments carry the content).
    pub message: String,
    /// Required; becomes the `runId`. Reusing it replays instead of starting a second run.
    pub idempotency_key: String,
    /// Pin the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Expected session generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Thinking level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    /// bool or `"auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_mode: Option<Value>,
    /// With `fastMode: "auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_auto_on_seconds: Option<u64>,
    /// What a send does while a run is active on the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_mode: Option<QueueMode>,
    /// Also deliver the reply to the session's external channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver: Option<bool>,
    /// Run timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Attachments (open objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<Value>>,
    /// Send `/reset` and friends literally instead of as commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress_command_interpretation: Option<bool>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to_id: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_channel: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_to: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_account_id: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub originating_thread_id: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_context: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_bindings: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_input_provenance: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_provenance_receipt: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_leaf_entry_id: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_session_routing_contract: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_permission_mode: Option<Value>,
    /// Advanced, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_tool_overrides: Option<Value>,
}

impl ChatSendParams {
    /// The three required fields, nothing else.
    pub fn new(
        session_key: impl Into<String>,
        message: impl Into<String>,
        idempotency_key: impl Into<String>,
    ) -> Self {
        Self {
            session_key: session_key.into(),
            message: message.into(),
            idempotency_key: idempotency_key.into(),
            ..Self::default()
        }
    }
}

/// `queueMode`: what a send does while another run is active on the same session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    /// Default: the new message joins the active run (its own runId gets an empty final).
    Steer,
    /// Runs afterwards under a new, unannounced runId.
    Followup,
    /// Like followup.
    Collect,
    /// Cancels the active run; the reply streams under the new runId.
    Interrupt,
}

string_enum! {
    /// `chat.send` ack status.
    ChatSendStatus {
        /// A new run was admitted.
        Started = "started",
        /// Same idempotency key, still running.
        InFlight = "in_flight",
        /// Same idempotency key, already finished (no events follow).
        Ok = "ok",
        /// Setup failed (with an error).
        Error = "error",
    }
}

/// `chat.send` response payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSendAck {
    /// Equals the idempotency key.
    pub run_id: String,
    /// What happened.
    pub status: ChatSendStatus,
    /// Set when `queueMode: interrupt` cancelled an active run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted_active_run: Option<bool>,
    /// Setup-failure summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

string_enum! {
    /// `chat` event `state`.
    ChatState {
        /// Progress phase; no text.
        Status = "status",
        /// Text: incremental `deltaText`, cumulative `message`.
        Delta = "delta",
        /// Terminal: the full text.
        Final = "final",
        /// Terminal: aborted, partial text.
        Aborted = "aborted",
        /// Terminal: failed.
        Error = "error",
    }
}

impl ChatState {
    /// `final`, `aborted` and `error` end a run.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Final | Self::Aborted | Self::Error)
    }
}

/// The `chat` event payload, read tolerantly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatEvent {
    /// The run (= idempotency key of the send that started it).
    pub run_id: String,
    /// Canonical (lower-cased) session key: match on this, not on the key you sent.
    #[serde(default)]
    pub session_key: String,
    /// Which state this event reports.
    pub state: ChatState,
    /// Agent id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The run's agent-event sequence (increases, skips, may repeat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// `status` phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `delta`: the new suffix (or the whole text when `replace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_text: Option<String>,
    /// `delta`: `deltaText` replaces everything so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
    /// Cumulative snapshot of the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessage>,
    /// `error`/`aborted`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// `error`: `refusal`, `timeout`, `rate_limit`, `context_length`, `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// e.g. `stop`, `rpc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

impl ChatEvent {
    /// An event with just the required fields; the mock fills in the rest.
    pub fn new(run_id: &str, session_key: &str, state: ChatState) -> Self {
        Self {
            run_id: run_id.into(),
            session_key: session_key.into(),
            state,
            agent_id: None,
            seq: None,
            phase: None,
            delta_text: None,
            replace: None,
            message: None,
            error_message: None,
            error_kind: None,
            stop_reason: None,
        }
    }
}

/// `{role, content, timestamp}`; content is a string or text blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `assistant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// String or blocks.
    #[serde(default)]
    pub content: Value,
    /// Epoch ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

impl ChatMessage {
    /// An assistant message with one text block (the shape the gateway sends).
    pub fn assistant_text(text: &str, timestamp: u64) -> Self {
        Self {
            role: Some("assistant".into()),
            content: serde_json::json!([{ "type": "text", "text": text }]),
            timestamp: Some(timestamp),
        }
    }

    /// The text: the string content, or the concatenation of `type:"text"` blocks.
    pub fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(blocks) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        }
    }
}

/// `chat.abort` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatAbortParams {
    /// Session of the run.
    pub session_key: String,
    /// The run; all runs of the session when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Keep side runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_side_runs: Option<bool>,
}

/// `chat.abort` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatAbortResult {
    /// Request handled.
    pub ok: bool,
    /// A run was actually aborted.
    pub aborted: bool,
    /// Which runs.
    pub run_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_observed_delta_and_final() {
        let delta = r#"{"runId":"r","sessionKey":"agent:main:demo","agentId":"main","seq":6,"state":"delta","deltaText":"FAKE-REPLY:","message":{"role":"assistant","content":[{"type":"text","text":"FAKE-REPLY:"}],"timestamp":1}}"#;
        let e: ChatEvent = serde_json::from_str(delta).unwrap();
        assert_eq!(e.state, ChatState::Delta);
        assert_eq!(e.message.unwrap().text(), "FAKE-REPLY:");
        let future = r#"{"runId":"r","state":"thinking","newField":1}"#;
        let e: ChatEvent = serde_json::from_str(future).unwrap();
        assert_eq!(e.state, ChatState::Unknown("thinking".into()));
        assert!(!e.state.is_terminal());
    }

    #[test]
    fn send_params_are_strict_inbound_and_minimal_outbound() {
        let p = ChatSendParams::new("k", "hi", "id-1");
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"sessionKey":"k","message":"hi","idempotencyKey":"id-1"}"#
        );
        assert!(
            serde_json::from_str::<ChatSendParams>(
                r#"{"sessionKey":"k","message":"m","idempotencyKey":"i","bogus":1}"#
            )
            .is_err()
        );
        let ack: ChatSendAck =
            serde_json::from_str(r#"{"runId":"i","status":"in_flight","messageSeq":3}"#).unwrap();
        assert_eq!(ack.status, ChatSendStatus::InFlight);
    }

    #[test]
    fn message_text_accepts_string_or_blocks() {
        let m: ChatMessage = serde_json::from_str(r#"{"content":"plain"}"#).unwrap();
        assert_eq!(m.text(), "plain");
        let m: ChatMessage = serde_json::from_str(r#"{"content":[{"type":"text","text":"a"},{"type":"image"},{"type":"text","text":"b"}]}"#).unwrap();
        assert_eq!(m.text(), "ab");
    }
}
