//! Which gateway session a `chat.send` addresses, so that its per-session rate limit is keyed on
//! the session the gateway will use, not on the text the client sent (`" Main"`,
//! `"\u{feff}main"`, `"agent:MAIN:main"` and `"main"` are one session to the gateway, and must be
//! one bucket here).
//!
//! A port of the gateway's own resolution (openclaw 2026.9.6: `loadChatSendSessionContext` in
//! `chat-send-handler`, `resolveRequestedSessionAgentId`, `resolveSessionStoreIdentity` and
//! `resolveSessionStoreKey` in `src/gateway/session-store-key.ts`, `canonicalizeMainSessionAlias`,
//! `normalizeAgentId`, `parseAgentSessionKeyParts`), with JavaScript's `trim()` and
//! `toLowerCase()` ([`shared_protocol::js_string`]) and the defaults the gateway reports in its
//! hello (`snapshot.sessionDefaults`: default agent, main key, scope). The differential test
//! (`tests/differential.rs`) checks it against the gateway's functions themselves.
//!
//! Keys it cannot resolve exactly are refused ([`KeyError`]) rather than given a bucket of
//! their own: a key holding a lone surrogate, a Signal-group or Matrix-room key (the gateway keeps
//! parts of those case-preserved), or one the gateway itself refuses (a malformed `agent:` key,
//! an agent id that normalises to nothing, an `agentId` that contradicts the key).
//!
//! Assumed, as on a gateway with one agent (the default): a key without an agent prefix belongs
//! to the default agent, and the agent `main` exists. On a gateway with several agents and
//! sessions recorded under other owners, an unprefixed key may resolve elsewhere; the bucket is
//! then per spelling rather than per session (docs/security.md).

use shared_protocol::js_json::Value;
use shared_protocol::js_string::{js_lower, js_trim};

/// The gateway's session defaults (`hello-ok.snapshot.sessionDefaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDefaults {
    /// `defaultAgentId`.
    pub default_agent: String,
    /// `mainKey`.
    pub main_key: String,
    /// `scope == "global"`: every main alias is the one `global` session.
    pub global_scope: bool,
}

impl Default for SessionDefaults {
    /// The gateway's own defaults: agent `main`, main key `main`, per-sender scope.
    fn default() -> Self {
        Self {
            default_agent: DEFAULT_AGENT.to_string(),
            main_key: DEFAULT_AGENT.to_string(),
            global_scope: false,
        }
    }
}

impl SessionDefaults {
    /// The defaults from the fields of `snapshot.sessionDefaults` (what is missing keeps the
    /// gateway's default).
    pub fn from_fields(
        default_agent: Option<&str>,
        main_key: Option<&str>,
        scope: Option<&str>,
    ) -> Self {
        fn given(s: Option<&str>) -> Option<&str> {
            s.filter(|s| !s.is_empty())
        }
        Self {
            default_agent: given(default_agent).map_or_else(
                || DEFAULT_AGENT.to_string(),
                |a| normalize_agent_id(a).into_owned(),
            ),
            main_key: given(main_key).map_or_else(|| DEFAULT_AGENT.to_string(), normalize_main_key),
            global_scope: scope == Some("global"),
        }
    }
}

/// The default agent id and main key (`DEFAULT_AGENT_ID`, `DEFAULT_MAIN_KEY`).
const DEFAULT_AGENT: &str = "main";
/// Longest agent id.
const MAX_AGENT_ID: usize = 64;

/// Why a `chat.send` session key has no bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// It holds a lone surrogate: no Rust string is that key.
    NotExact,
    /// A Signal group or Matrix room: the gateway keeps parts of those keys case-preserved.
    CasePreserved,
    /// `agent:` without an agent id and a rest; the gateway refuses it too.
    Malformed,
    /// `agentId` normalises to nothing or names another agent than the key; the gateway
    /// refuses it too.
    Agent,
}

impl KeyError {
    /// For the client's error message.
    pub fn explain(self) -> &'static str {
        match self {
            KeyError::NotExact => "the session key holds an unpaired UTF-16 surrogate",
            KeyError::CasePreserved => {
                "Signal-group and Matrix-room session keys are not accepted through the proxy"
            }
            KeyError::Malformed => "malformed session key",
            KeyError::Agent => "agentId does not match the session key or is not a valid agent id",
        }
    }
}

/// The bucket of a `chat.send`: its canonical session key, or `None` when its params are not an
/// object with a string `sessionKey` (the gateway refuses such params before any session).
///
/// # Errors
/// [`KeyError`] for a key that cannot be resolved exactly.
pub fn chat_send_session(
    params: Option<Value<'_>>,
    defaults: &SessionDefaults,
) -> Result<Option<String>, KeyError> {
    let Some(params) = params.filter(Value::is_object) else {
        return Ok(None);
    };
    let Some(key) = params.get("sessionKey").and_then(|k| k.as_str()) else {
        return Ok(None);
    };
    // An agent id is normalised to [a-z0-9_-]: a lone surrogate (U+FFFD here) is one invalid
    // character like any other, so its lossy text normalises exactly.
    let agent = match params.get("agentId") {
        None => None,
        Some(a) => match a.as_str() {
            Some(a) => Some(a),
            // Not a string: the gateway's schema refuses the params.
            None => return Ok(None),
        },
    };
    if !key.lossless {
        return Err(KeyError::NotExact);
    }
    // normalizeOptionalChatText: trimmed, empty is absent.
    let agent = agent
        .as_ref()
        .map(|a| js_trim(a.as_str()))
        .filter(|a| !a.is_empty());
    canonical_session_key(key.as_str(), agent, defaults).map(Some)
}

/// The session key the gateway stores `raw` under, `explicit_agent` being `chat.send`'s
/// trimmed `agentId`.
///
/// # Errors
/// [`KeyError`] as for [`chat_send_session`].
pub fn canonical_session_key(
    raw: &str,
    explicit_agent: Option<&str>,
    d: &SessionDefaults,
) -> Result<String, KeyError> {
    let trimmed = js_trim(raw);
    let lowered = js_lower(trimmed);
    if lowered.contains("signal:") || lowered.contains("matrix:") {
        return Err(KeyError::CasePreserved);
    }
    // resolveRequestedSessionAgentInput / resolveRequestedSessionAgentId.
    let parsed = parse_parts(&lowered);
    if parsed.is_none() && lowered.starts_with("agent:") {
        return Err(KeyError::Malformed);
    }
    let explicit = explicit_agent
        .map(|a| normalize_agent_id_strict(a).ok_or(KeyError::Agent))
        .transpose()?;
    let requested = match parsed {
        Some((agent, _)) => {
            let key_agent = normalize_agent_id(agent).into_owned();
            if explicit.as_ref().is_some_and(|e| *e != key_agent) {
                return Err(KeyError::Agent);
            }
            key_agent
        }
        None => explicit.unwrap_or_else(|| d.default_agent.clone()),
    };
    // The load key: `global` names the agent's main session unless the scope is global.
    let load_key = if !d.global_scope && lowered == "global" {
        format!("agent:{requested}:{}", d.main_key)
    } else {
        raw.to_string()
    };
    // resolveSessionStoreIdentity, then resolveSessionStoreKey.
    let raw = js_trim(&load_key);
    let session_key = match parse_parts(&js_lower(raw)) {
        Some(_) => parsed_key(raw),
        None => raw.to_string(),
    };
    Ok(resolve_store_key(&session_key, &requested, d))
}

/// `resolveSessionStoreKey`.
fn resolve_store_key(session_key: &str, store_agent: &str, d: &SessionDefaults) -> String {
    let raw = js_trim(session_key);
    if raw.is_empty() {
        return String::new();
    }
    let lowered = js_lower(raw);
    if lowered == "global" || lowered == "unknown" {
        return lowered.into_owned();
    }
    if let Some((agent, _)) = parse_parts(&lowered) {
        return canonicalize_main_alias(&normalize_agent_id(agent), &parsed_key(raw), d);
    }
    if lowered == "main" || lowered == d.main_key {
        return if d.global_scope {
            "global".to_string()
        } else {
            format!("agent:{}:{}", normalize_agent_id(store_agent), d.main_key)
        };
    }
    // canonicalizeSessionKeyForAgent.
    if lowered.starts_with("agent:") {
        lowered.into_owned()
    } else {
        format!("agent:{}:{lowered}", normalize_agent_id(store_agent))
    }
}

/// `resolveParsedSessionStoreKey`'s key, the agent `main` existing: the key trimmed and
/// lower-cased.
fn parsed_key(raw: &str) -> String {
    js_lower(js_trim(raw)).into_owned()
}

/// `canonicalizeMainSessionAlias`.
fn canonicalize_main_alias(agent: &str, key: &str, d: &SessionDefaults) -> String {
    let raw = js_trim(key);
    let mk = d.main_key.as_str();
    let main_like = raw == "main"
        || raw == mk
        || raw.ends_with(":main")
        || raw.strip_suffix(mk).is_some_and(|p| p.ends_with(':'));
    if raw.is_empty() || !main_like {
        return raw.to_string();
    }
    let agent = normalize_agent_id(agent);
    let aliases = [
        "main".to_string(),
        mk.to_string(),
        format!("agent:{agent}:{mk}"),
        format!("agent:{agent}:main"),
        format!("agent:{DEFAULT_AGENT}:{mk}"),
        format!("agent:{DEFAULT_AGENT}:main"),
    ];
    if !aliases.iter().any(|a| a == raw) {
        raw.to_string()
    } else if d.global_scope {
        "global".to_string()
    } else {
        format!("agent:{agent}:{mk}")
    }
}

/// `parseAgentSessionKeyParts` on a lower-cased key: `agent:<id>:<rest>` with a non-empty
/// (trimmed) id and a rest that neither is empty nor starts with `:`.
fn parse_parts(key: &str) -> Option<(&str, &str)> {
    let after = key.strip_prefix("agent:")?;
    let (agent, rest) = after.split_once(':')?;
    let agent = js_trim(agent);
    (!agent.is_empty() && !rest.is_empty() && !rest.starts_with(':')).then_some((agent, rest))
}

/// `normalizeMainKey`: trimmed, lower-cased, `main` when empty.
fn normalize_main_key(key: &str) -> String {
    let key = js_lower(js_trim(key));
    if key.is_empty() {
        DEFAULT_AGENT.to_string()
    } else {
        key.into_owned()
    }
}

/// `normalizeAgentId`: the strict form, or `main`.
fn normalize_agent_id(id: &str) -> std::borrow::Cow<'_, str> {
    match normalize_agent_id_strict(id) {
        Some(a) => std::borrow::Cow::Owned(a),
        None => std::borrow::Cow::Borrowed(DEFAULT_AGENT),
    }
}

/// `normalizeAgentIdStrict`: a valid id (`^[a-z0-9][a-z0-9_-]{0,63}$`, any case) lower-cased;
/// otherwise the lower-cased id with each run of other characters turned into one `-`, leading
/// and trailing dashes cut, at most 64 characters; `None` when nothing is left.
fn normalize_agent_id_strict(id: &str) -> Option<String> {
    let trimmed = js_trim(id);
    let lowered = js_lower(trimmed);
    let valid_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let valid = trimmed.len() <= MAX_AGENT_ID
        && trimmed
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && trimmed.chars().all(valid_char);
    if valid {
        return Some(lowered.into_owned());
    }
    let mut out = String::with_capacity(lowered.len());
    let mut in_run = false;
    for c in lowered.chars() {
        // After lower-casing, [a-z0-9_-] is what `INVALID_CHARS_RE` leaves alone.
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let out: String = out.trim_matches('-').chars().take(MAX_AGENT_ID).collect();
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::js_json;

    fn key(raw: &str) -> Result<String, KeyError> {
        canonical_session_key(raw, None, &SessionDefaults::default())
    }

    #[test]
    fn spellings_of_one_session_share_one_key() {
        for raw in [
            "main",
            " Main",
            "\u{feff}main",
            "MAIN\u{3000}",
            "agent:main:main",
            "Agent:MAIN:Main",
            "global",
            "\u{2028}Global",
        ] {
            assert_eq!(key(raw).unwrap(), "agent:main:main", "{raw:?}");
        }
        for raw in [
            "probe-x",
            "\u{feff}Probe-X",
            "agent:main:probe-x",
            " AGENT:main:PROBE-X ",
        ] {
            assert_eq!(key(raw).unwrap(), "agent:main:probe-x", "{raw:?}");
        }
        // U+0085 is whitespace to Rust, not to JavaScript: part of the key.
        assert_eq!(key("\u{85}x").unwrap(), "agent:main:\u{85}x");
        assert_eq!(key("ΑΣ").unwrap(), "agent:main:ας");
    }

    #[test]
    fn keys_that_cannot_be_resolved_exactly_are_refused() {
        for (raw, err) in [
            ("agent:main:", KeyError::Malformed),
            ("agent::x", KeyError::Malformed),
            ("agent:main::x", KeyError::Malformed),
            ("signal:group:AbC", KeyError::CasePreserved),
            ("agent:main:matrix:room:!X", KeyError::CasePreserved),
        ] {
            assert_eq!(key(raw), Err(err), "{raw}");
        }
        let d = SessionDefaults::default();
        assert_eq!(
            canonical_session_key("agent:main:x", Some("other"), &d),
            Err(KeyError::Agent)
        );
        assert_eq!(
            canonical_session_key("x", Some("!!!"), &d),
            Err(KeyError::Agent)
        );
        assert_eq!(
            canonical_session_key("x", Some("Ops"), &d).unwrap(),
            "agent:ops:x"
        );
        let params = js_json::parse(r#"{"sessionKey":"\ud800main"}"#).ok();
        assert_eq!(chat_send_session(params, &d), Err(KeyError::NotExact));
        let params = js_json::parse(r#"{"sessionKey":7}"#).ok();
        assert_eq!(chat_send_session(params, &d), Ok(None));
        let params = js_json::parse(r#"{"sessionKey":"a","sessionKey":"\ufeffMain"}"#).ok();
        assert_eq!(
            chat_send_session(params, &d),
            Ok(Some("agent:main:main".into()))
        );
    }

    #[test]
    fn the_gateways_defaults_apply() {
        let d = SessionDefaults::from_fields(Some("Sofia"), Some("Home"), Some("per-sender"));
        assert_eq!(
            (d.default_agent.as_str(), d.main_key.as_str()),
            ("sofia", "home")
        );
        assert_eq!(
            canonical_session_key("home", None, &d).unwrap(),
            "agent:sofia:home"
        );
        assert_eq!(
            canonical_session_key("x", None, &d).unwrap(),
            "agent:sofia:x"
        );
        assert_eq!(
            canonical_session_key("agent:sofia:main", None, &d).unwrap(),
            "agent:sofia:home"
        );
        let global = SessionDefaults {
            global_scope: true,
            ..SessionDefaults::default()
        };
        assert_eq!(
            canonical_session_key("main", None, &global).unwrap(),
            "global"
        );
        assert_eq!(
            SessionDefaults::from_fields(None, Some(""), None),
            SessionDefaults::default()
        );
    }
}
