//! What became of one trigger, and the one place that decides what Omni and the person get.
//!
//! Every trigger ends in an [`Outcome`]. [`Outcome::status`] is the HTTP status Omni receives and
//! [`Outcome::text`] the localised sentence the person reads in the chat. Both are decided here
//! and nowhere else, so the rule "nobody is left in silence" is one table:
//!
//! - Omni (the snapshot this bridge is tested against) turns any non-2xx answer into silence: its
//!   webhook provider throws, the dispatcher falls back to a legacy runner that throws for webhook
//!   providers, and nothing reaches the chat. With `schemaConfig.retries: 0` (what `register`
//!   sets) there is not even a retry. So every failure a person can be told about is answered
//!   `200 {"reply": <text>}`: breaker open, gateway unreachable, timeouts, agent errors, a message
//!   too long, too many runs at once, the bridge shutting down, an agent this bridge does not
//!   serve.
//! - Non-2xx stays only where no person is behind the request or nothing could be said safely: a
//!   wrong or missing bearer token (401) and a body that is not an Omni trigger (400, 413, 415).
//!
//! Metrics and the log line keep the true outcome ([`Outcome::as_str`]), so operators still see
//! every failure that the person was told about.

use std::time::Duration;

use http::StatusCode;

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
    /// The agent run failed (or its reply was too large).
    Failed,
    /// Too many runs at once.
    Backpressure,
    /// The bridge is shutting down and starts no new run.
    ShuttingDown,
    /// The trigger path names an agent this bridge does not serve (a misrouted provider).
    UnknownAgent,
    /// The request is not an Omni trigger.
    Invalid(Malformed),
    /// Bad or missing bearer token.
    Unauthorized,
}

/// How a request failed to be an Omni trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not the expected JSON, or no instance / chat.
    Body,
    /// Over the body size limit.
    TooLarge,
    /// A content type other than JSON.
    NotJson,
}

impl Outcome {
    /// Stable label for metrics and logs.
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
            Self::UnknownAgent => "unknown_agent",
            Self::Invalid(_) => "invalid",
            Self::Unauthorized => "unauthorized",
        }
    }

    /// The HTTP status Omni gets (see the module docs for why almost everything is 200).
    pub fn status(self) -> StatusCode {
        match self {
            Self::Invalid(Malformed::Body) => StatusCode::BAD_REQUEST,
            Self::Invalid(Malformed::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(Malformed::NotJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        }
    }

    /// The sentence the person reads for this outcome, if it is not the agent's own reply.
    pub fn text(self, texts: &Texts) -> Option<&str> {
        let text = match self {
            Self::Reset => &texts.session_cleared,
            Self::ResetFailed => &texts.reset_failed,
            Self::TooLong => &texts.message_too_long,
            Self::Timeout => &texts.taking_too_long,
            Self::CircuitOpen | Self::Unavailable | Self::UnknownAgent => &texts.unavailable,
            Self::Failed => &texts.agent_error,
            Self::Backpressure => &texts.busy,
            Self::ShuttingDown => &texts.restarting,
            Self::Replied
            | Self::NoReply
            | Self::Aborted
            | Self::Empty
            | Self::Invalid(_)
            | Self::Unauthorized => return None,
        };
        Some(text)
    }

    /// The outcome of a failed run or reset.
    pub fn of_error(kind: BackendErrorKind) -> Self {
        match kind {
            BackendErrorKind::CircuitOpen => Self::CircuitOpen,
            BackendErrorKind::Unavailable
            | BackendErrorKind::Rejected
            | BackendErrorKind::UnknownGateway => Self::Unavailable,
            BackendErrorKind::Timeout => Self::Timeout,
            BackendErrorKind::AgentFailed | BackendErrorKind::TooLarge => Self::Failed,
            BackendErrorKind::Backpressure => Self::Backpressure,
            BackendErrorKind::Closed => Self::ShuttingDown,
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
    /// Nothing reached the agent, so a repeat of this trace may start it: never cached.
    pub repeatable: bool,
    /// Error detail for the log line.
    pub detail: Option<String>,
}

impl Answer {
    /// The answer for an outcome without a run: its text from `texts` ([`Outcome::text`]).
    pub fn of(outcome: Outcome, texts: &Texts) -> Self {
        Self {
            outcome,
            run_id: None,
            reply: outcome.text(texts).map(str::to_string),
            ttfd: None,
            repeatable: false,
            detail: None,
        }
    }

    /// [`Answer::of`] with a detail for the log line.
    pub fn failed(outcome: Outcome, texts: &Texts, detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::of(outcome, texts)
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
                    repeatable: false,
                    detail: None,
                }
            }
            Err(e) => Self::from_error(&e, texts),
        }
    }

    /// The answer for a failed run.
    pub fn from_error(e: &BackendError, texts: &Texts) -> Self {
        Self {
            repeatable: e.kind.nothing_started(),
            ..Self::failed(Outcome::of_error(e.kind), texts, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_a_person_can_be_told_about_is_a_200_with_its_own_text() {
        let t = Texts::english();
        let told = [
            (BackendErrorKind::CircuitOpen, &t.unavailable),
            (BackendErrorKind::Unavailable, &t.unavailable),
            (BackendErrorKind::Rejected, &t.unavailable),
            (BackendErrorKind::Timeout, &t.taking_too_long),
            (BackendErrorKind::AgentFailed, &t.agent_error),
            (BackendErrorKind::TooLarge, &t.agent_error),
            (BackendErrorKind::Backpressure, &t.busy),
            (BackendErrorKind::Closed, &t.restarting),
        ];
        for (kind, text) in told {
            let a = Answer::from_error(&BackendError::new(kind, "x"), &t);
            assert_eq!(a.outcome.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(a.reply.as_deref(), Some(text.as_str()), "{kind:?}");
        }
        for o in [
            Outcome::TooLong,
            Outcome::ShuttingDown,
            Outcome::UnknownAgent,
        ] {
            assert_eq!(o.status(), StatusCode::OK);
            assert!(o.text(&t).is_some(), "{o:?}");
        }
        assert_eq!(Outcome::Unauthorized.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            Outcome::Invalid(Malformed::TooLarge).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(Outcome::Invalid(Malformed::Body).text(&t), None);
        // Distinct texts: "taking longer" is said only for a timeout.
        let texts = [
            &t.unavailable,
            &t.taking_too_long,
            &t.agent_error,
            &t.busy,
            &t.restarting,
        ];
        let distinct: std::collections::HashSet<_> = texts.iter().collect();
        assert_eq!(distinct.len(), texts.len());
    }
}
