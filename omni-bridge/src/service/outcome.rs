//! What became of one trigger: the label for logs and metrics, and the answer Omni gets.

use std::time::Duration;

use super::agent_backend::{BackendError, BackendErrorKind, BackendReply};
use super::texts::Texts;

/// Outcome of a request, as a closed set of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The agent answered.
    Replied,
    /// The agent answered with nothing, or the run was aborted without text.
    NoReply,
    /// The run was aborted; the partial text was returned.
    Aborted,
    /// No text and no emoji.
    Empty,
    /// Session reset done.
    Reset,
    /// Session reset failed.
    ResetFailed,
    /// Message over the size limit.
    TooLong,
    /// The run did not finish in time.
    Timeout,
    /// Circuit breaker open.
    CircuitOpen,
    /// Gateway not connected or refusing the request.
    Unavailable,
    /// The agent run failed.
    Failed,
    /// Too many runs: Omni is asked to retry (503).
    Backpressure,
    /// Shutting down: Omni is asked to retry (503).
    ShuttingDown,
    /// Bad request (400/404/413/415).
    Invalid,
    /// Bad or missing bearer token (401).
    Unauthorized,
}

impl Outcome {
    /// Stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::NoReply => "no_reply",
            Self::Aborted => "aborted",
            Self::Empty => "empty",
            Self::Reset => "reset",
            Self::ResetFailed => "reset_failed",
            Self::TooLong => "too_long",
            Self::Timeout => "timeout",
            Self::CircuitOpen => "circuit_open",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
            Self::Backpressure => "backpressure",
            Self::ShuttingDown => "shutting_down",
            Self::Invalid => "invalid",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// The answer to one trace, shared by the original request and its retries.
#[derive(Debug, Clone)]
pub struct Answer {
    /// What happened.
    pub outcome: Outcome,
    /// Gateway run id, when a run was started.
    pub run_id: Option<String>,
    /// Text for the chat; `None` sends nothing (`{"parts": []}`).
    pub reply: Option<String>,
    /// Time to first delta of the run.
    pub ttfd: Option<Duration>,
    /// Ask Omni to retry (503): nothing reached the agent.
    pub retry: bool,
    /// Error detail for the log line.
    pub detail: Option<String>,
}

impl Answer {
    /// An answer with just an outcome and a text.
    pub fn text(outcome: Outcome, reply: Option<String>) -> Self {
        Self {
            outcome,
            run_id: None,
            reply,
            ttfd: None,
            retry: false,
            detail: None,
        }
    }

    /// The answer for a finished run.
    pub fn from_run(result: Result<BackendReply, BackendError>, texts: &Texts) -> Self {
        match result {
            Ok(reply) => {
                let text = reply.text.trim();
                let outcome = match (reply.aborted, text.is_empty()) {
                    (_, true) => Outcome::NoReply,
                    (true, false) => Outcome::Aborted,
                    (false, false) => Outcome::Replied,
                };
                Self {
                    outcome,
                    run_id: Some(reply.run_id),
                    reply: (!text.is_empty()).then(|| text.to_string()),
                    ttfd: reply.time_to_first_delta,
                    retry: false,
                    detail: None,
                }
            }
            Err(e) => Self::from_error(&e, texts),
        }
    }

    /// The answer for a failed run.
    pub fn from_error(e: &BackendError, texts: &Texts) -> Self {
        let (outcome, reply) = match e.kind {
            BackendErrorKind::CircuitOpen => (Outcome::CircuitOpen, Some(&texts.unavailable)),
            BackendErrorKind::Unavailable
            | BackendErrorKind::Rejected
            | BackendErrorKind::UnknownGateway => (Outcome::Unavailable, Some(&texts.unavailable)),
            BackendErrorKind::Timeout => (Outcome::Timeout, Some(&texts.taking_too_long)),
            BackendErrorKind::AgentFailed | BackendErrorKind::TooLarge => {
                (Outcome::Failed, Some(&texts.taking_too_long))
            }
            BackendErrorKind::Backpressure => (Outcome::Backpressure, None),
            BackendErrorKind::Closed => (Outcome::ShuttingDown, None),
        };
        Self {
            outcome,
            run_id: None,
            reply: reply.cloned(),
            ttfd: None,
            retry: e.kind.nothing_started(),
            detail: Some(e.to_string()),
        }
    }
}
