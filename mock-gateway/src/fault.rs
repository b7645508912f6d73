//! Run faults: what the next chat run does wrong, queued by tests or by a fault script.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::error::MockError;

/// A fault applied to the next `chat.send` that starts a run (FIFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunFault {
    /// The ack is sent this late (the run's events are not held back).
    DelayAck(Duration),
    /// No ack at all; the run still streams.
    DropAck,
    /// Status events and every delta, but no terminal event.
    NeverFinish,
    /// After this many deltas the run goes silent (no more deltas, no terminal).
    StallAfterDeltas(usize),
    /// After this many deltas the socket that sent the chat.send is dropped without a close frame.
    DropConnectionAfterDeltas(usize),
    /// After the status events the run ends with `state: "error"` and this `errorMessage`.
    Error {
        /// `errorMessage` of the error event.
        message: String,
    },
    /// After the first delta the run ends `aborted` (stopReason `rpc`) with the partial text.
    Abort,
    /// The normal `final`, then a second terminal (`error`), as the real gateway does on failure.
    DoubleTerminal,
}

/// The serialisable form of a [`RunFault`], as written in a fault script.
///
/// JSON: `[{"fault":"delay_ack","ms":500},{"fault":"stall_after_deltas","deltas":2}]`;
/// TOML: `[[fault]]` tables with the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// [`RunFault::DelayAck`].
    DelayAck {
        /// Delay in milliseconds.
        ms: u64,
    },
    /// [`RunFault::DropAck`].
    DropAck,
    /// [`RunFault::NeverFinish`].
    NeverFinish,
    /// [`RunFault::StallAfterDeltas`].
    StallAfterDeltas {
        /// Deltas sent before the stall.
        deltas: usize,
    },
    /// [`RunFault::DropConnectionAfterDeltas`].
    DropConnectionAfterDeltas {
        /// Deltas sent before the drop.
        deltas: usize,
    },
    /// [`RunFault::Error`].
    Error {
        /// `errorMessage`.
        message: String,
    },
    /// [`RunFault::Abort`].
    Abort,
    /// [`RunFault::DoubleTerminal`].
    DoubleTerminal,
}

impl From<FaultSpec> for RunFault {
    fn from(spec: FaultSpec) -> Self {
        match spec {
            FaultSpec::DelayAck { ms } => RunFault::DelayAck(Duration::from_millis(ms)),
            FaultSpec::DropAck => RunFault::DropAck,
            FaultSpec::NeverFinish => RunFault::NeverFinish,
            FaultSpec::StallAfterDeltas { deltas } => RunFault::StallAfterDeltas(deltas),
            FaultSpec::DropConnectionAfterDeltas { deltas } => {
                RunFault::DropConnectionAfterDeltas(deltas)
            }
            FaultSpec::Error { message } => RunFault::Error { message },
            FaultSpec::Abort => RunFault::Abort,
            FaultSpec::DoubleTerminal => RunFault::DoubleTerminal,
        }
    }
}

/// A list of faults queued when the mock starts (`mock-gateway --fault-script FILE`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultScript {
    /// The faults, in the order runs will consume them.
    #[serde(default)]
    pub fault: Vec<FaultSpec>,
}

impl FaultScript {
    /// Parses a script: a JSON array of faults, or TOML with `[[fault]]` tables.
    ///
    /// # Errors
    /// [`MockError::Parse`] (with `path` as given) when neither form parses.
    pub fn parse(text: &str, path: &str) -> Result<Self, MockError> {
        let trimmed = text.trim_start();
        let parsed = if trimmed.starts_with('[') && !trimmed.starts_with("[[") {
            serde_json::from_str::<Vec<FaultSpec>>(text)
                .map(|fault| Self { fault })
                .map_err(|e| e.to_string())
        } else {
            toml::from_str::<Self>(text).map_err(|e| e.to_string())
        };
        parsed.map_err(|detail| MockError::Parse {
            path: path.to_string(),
            detail,
        })
    }

    /// Reads and parses a script file.
    ///
    /// # Errors
    /// [`MockError::Io`] or [`MockError::Parse`].
    pub fn load(path: &Path) -> Result<Self, MockError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MockError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// The faults as the handle takes them.
    pub fn into_faults(self) -> Vec<RunFault> {
        self.fault.into_iter().map(RunFault::from).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_toml_scripts_parse_to_the_same_faults() {
        let json = r#"[{"fault":"delay_ack","ms":250},{"fault":"error","message":"boom"},{"fault":"abort"}]"#;
        let toml = "[[fault]]\nfault = \"delay_ack\"\nms = 250\n[[fault]]\nfault = \"error\"\nmessage = \"boom\"\n[[fault]]\nfault = \"abort\"\n";
        let expected = vec![
            RunFault::DelayAck(Duration::from_millis(250)),
            RunFault::Error {
                message: "boom".into(),
            },
            RunFault::Abort,
        ];
        assert_eq!(
            FaultScript::parse(json, "j").unwrap().into_faults(),
            expected
        );
        assert_eq!(
            FaultScript::parse(toml, "t").unwrap().into_faults(),
            expected
        );
        let err = FaultScript::parse(r#"[{"fault":"explode"}]"#, "bad").unwrap_err();
        assert_eq!(err.kind(), "parse");
    }
}
