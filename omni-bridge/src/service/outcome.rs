//! What became of one trigger, and the one place that decides what Omni and the person get.
//!
//! Every trigger ends in an [`Outcome`]. [`Outcome::status`] is the HTTP status Omni receives and
//! [`Outcome::text`] the localised sentence the person reads in the chat. Both are decided here
//! and nowhere else, so the rule "nobody is left in silence" is one table; for a failed run both
//! branch on the one error classification, [`crate::error::ErrorKind`], which is also the
//! outcome's metric label (and [`Error::is_retryable`] decides whether the answer is cached):
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
//! Metrics and the log line keep the true outcome ([`Outcome::as_str`]: the error's kind for a
//! failed run), so operators still see every failure that the person was told about.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::texts::Texts;
use crate::error::{Error, ErrorKind, Side};
use crate::gateway::{ReplyOutcome, RunReply};

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
    /// Message over the size limit.
    TooLong,
    /// The trigger path names an agent this bridge does not serve (a misrouted provider).
    UnknownAgent,
    /// The request is not an Omni trigger.
    Invalid(Malformed),
    /// Bad or missing bearer token.
    Unauthorized,
    /// The run failed: the error's kind decides the label and the text.
    Failed(ErrorKind),
    /// The session reset failed (the error's kind is in the log line).
    ResetFailed(ErrorKind),
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
    /// Every outcome (for pre-resolving metric series).
    pub fn all() -> impl Iterator<Item = Outcome> {
        [
            Self::Replied,
            Self::NoReply,
            Self::Aborted,
            Self::Empty,
            Self::Reset,
            Self::TooLong,
            Self::UnknownAgent,
            Self::Invalid(Malformed::Body),
            Self::Unauthorized,
        ]
        .into_iter()
        .chain(ErrorKind::ALL.into_iter().map(Self::Failed))
        .chain([Self::ResetFailed(ErrorKind::Unavailable)])
    }

    /// Stable label for metrics and logs: for a failed run, the error's kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Replied => "replied",
            Self::NoReply => "no_reply",
            Self::Aborted => "aborted",
            Self::Empty => "empty",
            Self::Reset => "reset",
            Self::TooLong => "too_long",
            Self::UnknownAgent => "unknown_agent",
            Self::Invalid(_) => "invalid",
            Self::Unauthorized => "unauthorized",
            Self::Failed(kind) => kind.as_str(),
            Self::ResetFailed(_) => "reset_failed",
        }
    }

    /// The HTTP status Omni gets (see the module docs for why almost everything is 200).
    pub fn status(self) -> StatusCode {
        match self {
            Self::Invalid(Malformed::Body) => StatusCode::BAD_REQUEST,
            Self::Invalid(Malformed::TooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(Malformed::NotJson) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Failed(kind) | Self::ResetFailed(kind) => failure_status(kind),
            Self::Replied
            | Self::NoReply
            | Self::Aborted
            | Self::Empty
            | Self::Reset
            | Self::TooLong
            | Self::UnknownAgent => StatusCode::OK,
        }
    }

    /// The sentence the person reads for this outcome, if it is not the agent's own reply.
    pub fn text(self, texts: &Texts) -> Option<&str> {
        let text = match self {
            Self::Reset => &texts.session_cleared,
            Self::ResetFailed(_) => &texts.reset_failed,
            Self::TooLong => &texts.message_too_long,
            Self::UnknownAgent => &texts.unavailable,
            Self::Failed(kind) => failure_text(kind, texts),
            Self::Replied
            | Self::NoReply
            | Self::Aborted
            | Self::Empty
            | Self::Invalid(_)
            | Self::Unauthorized => return None,
        };
        Some(text)
    }
}

/// Every failure a person can be told about is answered 200 with its text (module docs).
fn failure_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Timeout
        | ErrorKind::WsError
        | ErrorKind::Tls
        | ErrorKind::Auth
        | ErrorKind::CircuitOpen
        | ErrorKind::AccumulationCap
        | ErrorKind::Backpressure
        | ErrorKind::Rejected
        | ErrorKind::AgentError
        | ErrorKind::Unavailable
        | ErrorKind::RateLimited
        | ErrorKind::Closed
        | ErrorKind::Config => StatusCode::OK,
    }
}

/// The text of a failed run, by the error's kind.
fn failure_text(kind: ErrorKind, texts: &Texts) -> &String {
    match kind {
        ErrorKind::Timeout => &texts.taking_too_long,
        ErrorKind::AgentError | ErrorKind::AccumulationCap => &texts.agent_error,
        ErrorKind::Backpressure | ErrorKind::RateLimited => &texts.busy,
        ErrorKind::Closed => &texts.restarting,
        ErrorKind::CircuitOpen
        | ErrorKind::Unavailable
        | ErrorKind::WsError
        | ErrorKind::Tls
        | ErrorKind::Auth
        | ErrorKind::Rejected
        | ErrorKind::Config => &texts.unavailable,
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
    pub reply: Option<Arc<str>>,
    /// Time to first delta of the run.
    pub ttfd: Option<Duration>,
    /// The failure may go away if the trace is tried again ([`Error::is_retryable`]): such an
    /// answer is never replayed from the cache, so Omni's retry tries again.
    pub retryable: bool,
    /// Which side failed, for the log line.
    pub side: Option<Side>,
    /// Error detail for the log line.
    pub detail: Option<String>,
}

impl Answer {
    /// The answer for an outcome without a run: its text from `texts` ([`Outcome::text`]).
    pub fn of(outcome: Outcome, texts: &Texts) -> Self {
        Self {
            outcome,
            run_id: None,
            reply: outcome.text(texts).map(Arc::from),
            ttfd: None,
            retryable: false,
            side: None,
            detail: None,
        }
    }

    /// [`Answer::of`] with a detail for the log line.
    pub fn refused(outcome: Outcome, texts: &Texts, detail: impl Into<String>) -> Self {
        Self {
            detail: Some(detail.into()),
            ..Self::of(outcome, texts)
        }
    }

    /// The answer for a finished run.
    pub fn from_run(result: Result<RunReply, Error>, texts: &Texts) -> Self {
        match result {
            Ok(reply) => {
                let text = reply.text.trim();
                let aborted = reply.outcome == ReplyOutcome::Aborted;
                let outcome = match (aborted, text.is_empty()) {
                    (_, true) => Outcome::NoReply,
                    (true, false) => Outcome::Aborted,
                    (false, false) => Outcome::Replied,
                };
                Self {
                    outcome,
                    reply: (!text.is_empty()).then(|| Arc::from(text)),
                    run_id: Some(reply.run_id),
                    ttfd: reply.stats.time_to_first_delta,
                    retryable: false,
                    side: None,
                    detail: None,
                }
            }
            Err(e) => Self::failed(Outcome::Failed(e.kind()), &e, texts),
        }
    }

    /// The answer for a failure classified as `outcome` (a failed run or reset).
    pub fn failed(outcome: Outcome, e: &Error, texts: &Texts) -> Self {
        Self {
            retryable: e.is_retryable(),
            side: Some(e.side()),
            ..Self::refused(outcome, texts, e.to_string())
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
            (
                Error::CircuitOpen {
                    retry_after: Duration::ZERO,
                },
                &t.unavailable,
            ),
            (
                Error::Unavailable {
                    message: "x".into(),
                    retry_after: None,
                },
                &t.unavailable,
            ),
            (
                Error::Rejected(shared_protocol::ErrorShape::new(
                    shared_protocol::ErrorCode::InvalidRequest,
                    "x",
                )),
                &t.unavailable,
            ),
            (
                Error::SendAckTimeout(Duration::from_secs(1)),
                &t.taking_too_long,
            ),
            (
                Error::AgentFailed {
                    message: None,
                    kind: None,
                },
                &t.agent_error,
            ),
            (Error::AccumulationCap, &t.agent_error),
            (Error::Backpressure, &t.busy),
            (Error::Closed, &t.restarting),
            (Error::ShuttingDown, &t.restarting),
            (Error::UnknownGateway("g".into()), &t.unavailable),
        ];
        for (e, text) in told {
            let a = Answer::from_run(Err(e.clone()), &t);
            assert_eq!(a.outcome, Outcome::Failed(e.kind()), "{e}");
            assert_eq!(
                a.outcome.as_str(),
                e.kind().as_str(),
                "the label is the kind"
            );
            assert_eq!(a.outcome.status(), StatusCode::OK, "{e}");
            assert_eq!(a.reply.as_deref(), Some(text.as_str()), "{e}");
            assert_eq!(a.retryable, e.is_retryable(), "{e}");
        }
        for kind in ErrorKind::ALL {
            let o = Outcome::Failed(kind);
            assert_eq!(o.status(), StatusCode::OK);
            assert!(o.text(&t).is_some(), "{kind:?}");
        }
        for o in [Outcome::TooLong, Outcome::UnknownAgent] {
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
        let labels: std::collections::HashSet<_> = Outcome::all().map(Outcome::as_str).collect();
        assert_eq!(labels.len(), Outcome::all().count(), "labels are distinct");
    }
}
