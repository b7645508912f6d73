//! What a run is asked and what it answers: [`RunRequest`] in, [`RunReply`] out.

use std::time::Duration;

use shared_protocol::SessionKey;

/// A message for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Canonical session key (`agent:<id>:<rest>`).
    pub session_key: SessionKey,
    /// The message text (logged only at debug level).
    pub message: String,
    /// Becomes the runId and keys the join: a second `run()` with the same key while the first
    /// is in flight joins it, and the gateway deduplicates it for 5 minutes.
    pub idempotency_key: String,
}

/// How a run that produced a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// `final`.
    Completed,
    /// `aborted` (the text is what was written before).
    Aborted,
}

impl ReplyOutcome {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }
}

/// Timing and size of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// From `run()` to the `chat.send` ack (queue and connection wait included).
    pub time_to_ack: Duration,
    /// From the first `chat.send` to the first text delta.
    pub time_to_first_delta: Option<Duration>,
    /// Text deltas received.
    pub deltas: u32,
    /// Reply size in bytes.
    pub bytes: usize,
    /// From `run()` to the end.
    pub duration: Duration,
}

/// The reply of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReply {
    /// The runId (= idempotency key).
    pub run_id: String,
    /// The full reply text.
    pub text: String,
    /// Completed or aborted.
    pub outcome: ReplyOutcome,
    /// Timing and size.
    pub stats: RunStats,
}
