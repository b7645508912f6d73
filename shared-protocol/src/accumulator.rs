//! The reply of one run, accumulated from its `chat` events.
//!
//! Rules (`openclaw-protocol.md` §5): `deltaText` is incremental, or the whole text when
//! `replace`; `message` is the cumulative snapshot and wins when present, which repairs a delta
//! the gateway dropped for a slow socket; the first terminal event wins (a failing run can emit
//! two `error`s); the text is capped so a runaway agent cannot exhaust memory.

use crate::chat::{ChatEvent, ChatState};

/// Default cap on one reply (Omni's provider used 1 MiB).
pub const DEFAULT_REPLY_CAP_BYTES: usize = 1024 * 1024;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// `final`: the full reply (may be empty: nothing to say).
    Completed {
        /// The reply.
        text: String,
        /// e.g. `stop`.
        stop_reason: Option<String>,
    },
    /// `aborted`: what was written before the abort.
    Aborted {
        /// Partial reply.
        partial: String,
        /// e.g. `rpc`.
        stop_reason: Option<String>,
    },
    /// `error`: the agent failed.
    Failed {
        /// The gateway's message (user-facing prose, may contain emoji).
        error_message: Option<String>,
        /// `refusal`, `timeout`, `rate_limit`, `context_length`, `unknown`.
        error_kind: Option<String>,
        /// Text written before the failure.
        partial: String,
    },
}

/// What one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A `status` event: the agent is working.
    Status,
    /// Text changed.
    Delta {
        /// True when the cumulative `message` corrected the delta-built text (a lost delta).
        repaired: bool,
    },
    /// The run ended; see [`ReplyAccumulator::outcome`].
    Terminal,
    /// Ignored: after the first terminal event, or a state this build does not know.
    Ignored,
}

/// The reply is over the cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccumulatorError {
    /// Text exceeded the byte cap; the run should be treated as failed.
    #[error("reply exceeds {cap_bytes} bytes")]
    CapExceeded {
        /// The cap.
        cap_bytes: usize,
    },
}

/// Accumulates one run's reply.
#[derive(Debug, Clone)]
pub struct ReplyAccumulator {
    text: String,
    cap_bytes: usize,
    deltas: u32,
    repairs: u32,
    outcome: Option<RunOutcome>,
    overflowed: bool,
}

impl Default for ReplyAccumulator {
    fn default() -> Self {
        Self::new(DEFAULT_REPLY_CAP_BYTES)
    }
}

impl ReplyAccumulator {
    /// An empty accumulator with a byte cap.
    pub fn new(cap_bytes: usize) -> Self {
        Self {
            text: String::new(),
            cap_bytes,
            deltas: 0,
            repairs: 0,
            outcome: None,
            overflowed: false,
        }
    }

    /// Applies one event of this run.
    ///
    /// # Errors
    /// [`AccumulatorError::CapExceeded`] once the text grows past the cap; later events are
    /// then ignored.
    pub fn apply(&mut self, event: &ChatEvent) -> Result<Step, AccumulatorError> {
        if self.outcome.is_some() || self.overflowed {
            return Ok(Step::Ignored);
        }
        let snapshot = event.message.as_ref().map(|m| m.text());
        let step = match &event.state {
            ChatState::Status => Step::Status,
            ChatState::Delta => {
                self.deltas += 1;
                let delta = event.delta_text.as_deref().unwrap_or("");
                if event.replace == Some(true) {
                    self.text.clear();
                }
                self.text.push_str(delta);
                let mut repaired = false;
                if let Some(snapshot) = snapshot
                    && snapshot != self.text
                {
                    repaired = true;
                    self.repairs += 1;
                    self.text = snapshot;
                }
                Step::Delta { repaired }
            }
            ChatState::Final => {
                if let Some(snapshot) = snapshot {
                    self.text = snapshot;
                }
                let text = self.text.clone();
                self.outcome = Some(RunOutcome::Completed {
                    text,
                    stop_reason: event.stop_reason.clone(),
                });
                Step::Terminal
            }
            ChatState::Aborted => {
                let partial = snapshot.unwrap_or_else(|| self.text.clone());
                self.outcome = Some(RunOutcome::Aborted {
                    partial,
                    stop_reason: event.stop_reason.clone(),
                });
                Step::Terminal
            }
            ChatState::Error => {
                let partial = snapshot.unwrap_or_else(|| self.text.clone());
                self.outcome = Some(RunOutcome::Failed {
                    error_message: event.error_message.clone(),
                    error_kind: event.error_kind.clone(),
                    partial,
                });
                Step::Terminal
            }
            ChatState::Unknown(_) => Step::Ignored,
        };
        if self.text.len() > self.cap_bytes {
            self.overflowed = true;
            self.outcome = None;
            self.text.clear();
            return Err(AccumulatorError::CapExceeded {
                cap_bytes: self.cap_bytes,
            });
        }
        Ok(step)
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<&RunOutcome> {
        self.outcome.as_ref()
    }

    /// Takes the outcome, leaving the accumulator finished.
    pub fn take_outcome(&mut self) -> Option<RunOutcome> {
        self.outcome.take().inspect(|_| self.overflowed = true)
    }

    /// `delta` events seen.
    pub fn deltas(&self) -> u32 {
        self.deltas
    }

    /// Deltas corrected from the cumulative snapshot.
    pub fn repairs(&self) -> u32 {
        self.repairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatMessage;
    use proptest::prelude::*;

    fn delta(text: &str, cumulative: Option<&str>) -> ChatEvent {
        ChatEvent {
            delta_text: Some(text.into()),
            message: cumulative.map(|c| ChatMessage::assistant_text(c, 0)),
            ..ChatEvent::new("r", "agent:main:k", ChatState::Delta)
        }
    }

    fn terminal(state: ChatState, text: Option<&str>) -> ChatEvent {
        ChatEvent {
            message: text.map(|c| ChatMessage::assistant_text(c, 0)),
            ..ChatEvent::new("r", "agent:main:k", state)
        }
    }

    #[test]
    fn incremental_deltas_then_final() {
        let mut acc = ReplyAccumulator::default();
        assert_eq!(
            acc.apply(&ChatEvent::new("r", "k", ChatState::Status))
                .unwrap(),
            Step::Status
        );
        acc.apply(&delta("Hello", Some("Hello"))).unwrap();
        acc.apply(&delta(", world", Some("Hello, world"))).unwrap();
        assert_eq!(
            acc.apply(&terminal(ChatState::Final, Some("Hello, world")))
                .unwrap(),
            Step::Terminal
        );
        assert_eq!(
            acc.outcome(),
            Some(&RunOutcome::Completed {
                text: "Hello, world".into(),
                stop_reason: None
            })
        );
        assert_eq!((acc.deltas(), acc.repairs()), (2, 0));
    }

    #[test]
    fn replace_and_lost_delta_repair() {
        let mut acc = ReplyAccumulator::default();
        acc.apply(&delta("draft", None)).unwrap();
        let replace = ChatEvent {
            replace: Some(true),
            ..delta("Better", None)
        };
        acc.apply(&replace).unwrap();
        assert_eq!(acc.text(), "Better");
        // " text" was dropped for a slow socket; the snapshot repairs it.
        assert_eq!(
            acc.apply(&delta(" end", Some("Better text end"))).unwrap(),
            Step::Delta { repaired: true }
        );
        assert_eq!(acc.text(), "Better text end");
    }

    #[test]
    fn first_terminal_wins() {
        let mut acc = ReplyAccumulator::default();
        let first = ChatEvent {
            error_message: Some("provider failed".into()),
            ..terminal(ChatState::Error, None)
        };
        acc.apply(&first).unwrap();
        let second = ChatEvent {
            error_message: Some("Agent failed before reply".into()),
            ..terminal(ChatState::Error, None)
        };
        assert_eq!(acc.apply(&second).unwrap(), Step::Ignored);
        assert!(
            matches!(acc.outcome(), Some(RunOutcome::Failed { error_message: Some(m), .. }) if m == "provider failed")
        );
    }

    #[test]
    fn aborted_keeps_partial_and_final_without_message_keeps_text() {
        let mut acc = ReplyAccumulator::default();
        acc.apply(&delta("FAKE", None)).unwrap();
        acc.apply(&terminal(ChatState::Aborted, None)).unwrap();
        assert_eq!(
            acc.outcome(),
            Some(&RunOutcome::Aborted {
                partial: "FAKE".into(),
                stop_reason: None
            })
        );
        let mut acc = ReplyAccumulator::default();
        acc.apply(&terminal(ChatState::Final, None)).unwrap();
        assert_eq!(
            acc.outcome(),
            Some(&RunOutcome::Completed {
                text: String::new(),
                stop_reason: None
            })
        );
    }

    #[test]
    fn cap_is_enforced() {
        let mut acc = ReplyAccumulator::new(8);
        acc.apply(&delta("12345", None)).unwrap();
        assert_eq!(
            acc.apply(&delta("6789", None)),
            Err(AccumulatorError::CapExceeded { cap_bytes: 8 })
        );
        assert_eq!(
            acc.apply(&terminal(ChatState::Final, Some("x"))).unwrap(),
            Step::Ignored
        );
        assert_eq!(acc.outcome(), None);
    }

    proptest! {
        #[test]
        fn concatenated_deltas_equal_the_final_text(chunks in proptest::collection::vec(".{0,12}", 0..20)) {
            let full: String = chunks.concat();
            let mut acc = ReplyAccumulator::default();
            let mut so_far = String::new();
            for c in &chunks {
                so_far.push_str(c);
                acc.apply(&delta(c, Some(&so_far))).unwrap();
                prop_assert_eq!(acc.text(), so_far.as_str());
            }
            acc.apply(&terminal(ChatState::Final, Some(&full))).unwrap();
            prop_assert_eq!(acc.outcome(), Some(&RunOutcome::Completed { text: full, stop_reason: None }));
            prop_assert_eq!(acc.repairs(), 0);
        }

        #[test]
        fn dropped_deltas_are_repaired_by_the_snapshot(chunks in proptest::collection::vec("[a-z ]{1,8}", 1..20), drop_mask in any::<u32>()) {
            let mut acc = ReplyAccumulator::default();
            let mut so_far = String::new();
            for (i, c) in chunks.iter().enumerate() {
                so_far.push_str(c);
                if drop_mask & (1 << (i % 32)) != 0 && i + 1 < chunks.len() {
                    continue; // the gateway dropped this delta for a slow socket
                }
                acc.apply(&delta(c, Some(&so_far))).unwrap();
            }
            prop_assert_eq!(acc.text(), so_far.as_str());
        }
    }
}
