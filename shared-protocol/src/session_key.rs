//! Session keys: `agent:<agentId>:<rest>`, built safely and canonicalised as the gateway does.
//!
//! The gateway lower-cases keys (`packages/session-url-contract/src/session-key-normalization.ts`)
//! and reports the canonical form in every `chat` event, so events must be matched against the
//! canonical key, never against the key that was sent.

use std::fmt;

use crate::limits::MAX_SESSION_KEY_LEN;

/// The longest `rest` we build (Omni's provider cut at 256 characters).
pub const MAX_REST_CHARS: usize = 256;
/// Agent ids: `^[a-z0-9][a-z0-9_-]{0,63}$`, case-insensitive.
pub const MAX_AGENT_ID_LEN: usize = 64;
/// The gateway's default agent and main key.
pub const DEFAULT_AGENT_ID: &str = "main";

/// Why a key or agent id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// Agent id does not match `^[a-z0-9][a-z0-9_-]{0,63}$`.
    #[error(
        "invalid agent id {0:?}: use 1-64 of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    InvalidAgentId(String),
    /// Nothing left of the conversation id after sanitising.
    #[error("the conversation id is empty after removing control characters")]
    EmptyRest,
    /// `agent:` prefix without an agent id or a rest.
    #[error("malformed session key {0:?}")]
    Malformed(String),
    /// Empty key.
    #[error("empty session key")]
    Empty,
    /// Over the gateway's 512-character limit.
    #[error("session key is longer than {MAX_SESSION_KEY_LEN} characters")]
    TooLong,
}

/// A validated, lower-cased agent id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Validates and lower-cases an agent id.
    ///
    /// # Errors
    /// [`SessionKeyError::InvalidAgentId`].
    pub fn parse(raw: &str) -> Result<Self, SessionKeyError> {
        let trimmed = raw.trim();
        let mut bytes = trimmed.bytes();
        let valid = trimmed.len() <= MAX_AGENT_ID_LEN
            && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(trimmed.to_ascii_lowercase()))
        } else {
            Err(SessionKeyError::InvalidAgentId(raw.to_string()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A canonical session key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(String);

impl SessionKey {
    /// Builds `agent:<agent>:<rest>` from untrusted parts: `rest` is sanitised (control characters
    /// removed; `:`, `/`, `\` replaced by `-`; cut to [`MAX_REST_CHARS`] and to the gateway's
    /// 512-character limit) and the result canonicalised.
    ///
    /// # Errors
    /// [`SessionKeyError::EmptyRest`] when nothing is left of `rest`.
    pub fn build(agent: &AgentId, rest: &str) -> Result<Self, SessionKeyError> {
        let prefix_len = "agent:".len() + agent.0.len() + 1;
        let mut budget = MAX_SESSION_KEY_LEN - prefix_len; // in UTF-16 units, as the gateway counts
        let mut clean = String::with_capacity(rest.len().min(MAX_REST_CHARS * 4));
        for c in rest
            .trim()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REST_CHARS)
        {
            let c = if matches!(c, ':' | '/' | '\\') {
                '-'
            } else {
                c
            };
            let Some(left) = budget.checked_sub(c.len_utf16()) else {
                break;
            };
            budget = left;
            clean.push(c);
        }
        let clean = clean.trim();
        if clean.is_empty() {
            return Err(SessionKeyError::EmptyRest);
        }
        Ok(Self(format!("agent:{}:{}", agent.0, clean.to_lowercase())))
    }

    /// Canonicalises any key the way the gateway does: trim, lower-case, `main` (or `global`) →
    /// `agent:<default>:main`, a key without `agent:` scoped to the default agent.
    ///
    /// The gateway keeps opaque Signal-group and Matrix-room peer ids case-preserved inside keys;
    /// keys built by [`SessionKey::build`] cannot contain them (their `:` is replaced).
    ///
    /// # Errors
    /// [`SessionKeyError::Empty`], [`SessionKeyError::Malformed`], [`SessionKeyError::TooLong`].
    pub fn canonicalize(raw: &str, default_agent: &AgentId) -> Result<Self, SessionKeyError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(SessionKeyError::Empty);
        }
        if trimmed.encode_utf16().count() > MAX_SESSION_KEY_LEN {
            return Err(SessionKeyError::TooLong);
        }
        let lowered = trimmed.to_lowercase();
        if lowered == "main" || lowered == "global" {
            return Ok(Self(format!(
                "agent:{}:{DEFAULT_AGENT_ID}",
                default_agent.0
            )));
        }
        let malformed = || SessionKeyError::Malformed(raw.to_string());
        let Some(after) = lowered.strip_prefix("agent:") else {
            // The gateway would store `agent:<default>::x`, a key it then cannot parse.
            if lowered.starts_with(':') {
                return Err(malformed());
            }
            return Ok(Self(format!("agent:{}:{lowered}", default_agent.0)));
        };
        let (agent, rest) = after.split_once(':').ok_or_else(malformed)?;
        let agent = agent.trim();
        if agent.is_empty() || rest.is_empty() || rest.starts_with(':') {
            return Err(malformed());
        }
        let agent =
            AgentId::parse(agent).map_or_else(|_| normalize_invalid_agent_id(agent), |a| a.0);
        Ok(Self(format!("agent:{agent}:{rest}")))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The agent id part.
    pub fn agent_id(&self) -> &str {
        self.0["agent:".len()..]
            .split(':')
            .next()
            .unwrap_or_default()
    }
}

/// The gateway's `normalizeAgentId` for ids that fail validation: runs of invalid characters
/// become `-`, leading/trailing dashes go, 64 characters at most, `main` if nothing is left.
fn normalize_invalid_agent_id(agent: &str) -> String {
    let mut out = String::new();
    let mut in_invalid_run = false;
    for c in agent.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
            in_invalid_run = false;
        } else if !in_invalid_run {
            out.push('-');
            in_invalid_run = true;
        }
    }
    let out: String = out
        .trim_matches('-')
        .chars()
        .take(MAX_AGENT_ID_LEN)
        .collect();
    if out.is_empty() {
        DEFAULT_AGENT_ID.to_string()
    } else {
        out
    }
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn main_agent() -> AgentId {
        AgentId::parse("main").unwrap()
    }

    #[test]
    fn agent_ids() {
        assert_eq!(AgentId::parse("Sofia_2").unwrap().as_str(), "sofia_2");
        for bad in ["", "-x", "a b", "ação", &"a".repeat(65)] {
            assert!(AgentId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn build_sanitises_untrusted_chat_ids() {
        let agent = AgentId::parse("sofia").unwrap();
        let key = SessionKey::build(&agent, "omni-inst1-5511:99@s.whatsapp.net/x\\y\u{0}\u{7f}Z")
            .unwrap();
        assert_eq!(
            key.as_str(),
            "agent:sofia:omni-inst1-5511-99@s.whatsapp.net-x-yz"
        );
        assert_eq!(key.agent_id(), "sofia");
        assert_eq!(
            SessionKey::build(&agent, "\u{1}\u{2} "),
            Err(SessionKeyError::EmptyRest)
        );
        let long = SessionKey::build(&agent, &"é".repeat(1000)).unwrap();
        assert_eq!(
            long.as_str().chars().count(),
            "agent:sofia:".len() + MAX_REST_CHARS
        );
        let wide = SessionKey::build(&AgentId::parse(&"a".repeat(64)).unwrap(), &"😀".repeat(300))
            .unwrap();
        assert!(wide.as_str().encode_utf16().count() <= MAX_SESSION_KEY_LEN);
    }

    #[test]
    fn canonicalises_like_the_observed_gateway() {
        let m = main_agent();
        let c = |k| SessionKey::canonicalize(k, &m).map(|k| k.0);
        assert_eq!(
            c("Probe-MixedCase-1").unwrap(),
            "agent:main:probe-mixedcase-1"
        );
        assert_eq!(
            c("agent:main:Mixed-Case-Key:Sub/Path x").unwrap(),
            "agent:main:mixed-case-key:sub/path x"
        );
        assert_eq!(c("main").unwrap(), "agent:main:main");
        assert_eq!(c("global").unwrap(), "agent:main:main");
        assert_eq!(c("agent:Main:x").unwrap(), "agent:main:x");
        assert!(matches!(
            c("agent:main:"),
            Err(SessionKeyError::Malformed(_))
        ));
        assert!(matches!(c("agent::x"), Err(SessionKeyError::Malformed(_))));
        assert!(matches!(
            c("agent:main::x"),
            Err(SessionKeyError::Malformed(_))
        ));
        assert_eq!(c("agent:we ird!:x").unwrap(), "agent:we-ird:x");
        assert_eq!(c("  "), Err(SessionKeyError::Empty));
    }

    proptest! {
        #[test]
        fn canonicalisation_is_idempotent(raw in "\\PC{1,80}") {
            let m = main_agent();
            if let Ok(once) = SessionKey::canonicalize(&raw, &m) {
                let twice = SessionKey::canonicalize(once.as_str(), &m).unwrap();
                prop_assert_eq!(once, twice);
            }
        }

        #[test]
        fn built_keys_are_canonical_and_bounded(rest in "\\PC{0,400}") {
            let agent = AgentId::parse("sofia").unwrap();
            if let Ok(key) = SessionKey::build(&agent, &rest) {
                prop_assert_eq!(SessionKey::canonicalize(key.as_str(), &main_agent()).unwrap(), key.clone());
                prop_assert!(key.as_str().encode_utf16().count() <= MAX_SESSION_KEY_LEN);
                prop_assert!(!key.as_str()["agent:sofia:".len()..].contains([':', '/', '\\']));
            }
        }
    }
}
