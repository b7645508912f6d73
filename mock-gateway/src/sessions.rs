//! Sessions: generations (`sessionId`), transcripts, and the `sessions.*` methods.

use std::collections::HashMap;

use serde_json::{Value, json};
use shared_protocol::{AgentId, ErrorCode, ErrorShape, SessionKey, SessionKeyError};

use crate::config::MAX_SESSIONS;
use crate::state::{Gateway, now_ms};

/// One session generation.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Generation id; a delete makes the next send start a new one.
    pub session_id: String,
    /// Canonical key.
    pub key: String,
    /// Archived by `sessions.patch`.
    pub archived: bool,
    /// Transcript (`chat.history`).
    pub messages: Vec<Value>,
    /// Creation time, epoch ms.
    pub created_at: u64,
    /// Last change, epoch ms.
    pub updated_at: u64,
}

impl Session {
    fn new(key: &str) -> Self {
        let now = now_ms();
        Self {
            session_id: uuid::Uuid::new_v4().to_string(),
            key: key.to_string(),
            archived: false,
            messages: Vec::new(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The session row as `sessions.describe` shows it.
    pub fn row(&self) -> Value {
        json!({"key": self.key, "sessionId": self.session_id, "archived": self.archived,
               "createdAt": self.created_at, "updatedAt": self.updated_at,
               "agentId": self.key.split(':').nth(1).unwrap_or_default(),
               "effectiveQueueMode": "steer"})
    }

    /// Appends a transcript entry.
    pub fn push(&mut self, message: Value) {
        self.updated_at = now_ms();
        self.messages.push(message);
    }
}

/// Canonical key → session.
#[derive(Debug, Default)]
pub(crate) struct SessionStore {
    map: HashMap<String, Session>,
}

impl SessionStore {
    /// The session of `key`, created when absent (bounded by [`MAX_SESSIONS`]).
    pub fn get_or_create(&mut self, key: &str) -> &mut Session {
        if !self.map.contains_key(key) && self.map.len() >= MAX_SESSIONS {
            let oldest = self
                .map
                .values()
                .min_by_key(|s| s.updated_at)
                .map(|s| s.key.clone());
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map
            .entry(key.to_string())
            .or_insert_with(|| Session::new(key))
    }

    /// The session of `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Session> {
        self.map.get(key)
    }

    /// Starts a new generation of `key` (an admin reset).
    pub fn reset(&mut self, key: &str) -> &mut Session {
        self.map.insert(key.to_string(), Session::new(key));
        self.get_or_create(key)
    }
}

fn invalid(message: impl Into<String>) -> ErrorShape {
    ErrorShape::new(ErrorCode::InvalidRequest, message)
}

/// Canonicalises a key and checks its agent exists, with the gateway's errors.
pub(crate) fn canonical_key(gw: &Gateway, raw: &str) -> Result<SessionKey, ErrorShape> {
    let main = AgentId::parse(shared_protocol::session_key::DEFAULT_AGENT_ID)
        .map_err(|e| invalid(e.to_string()))?;
    let key = SessionKey::canonicalize(raw, &main).map_err(|e| match e {
        SessionKeyError::Malformed(_) => invalid(format!("malformed session key \"{raw}\"")),
        other => invalid(format!("invalid session key: {other}")),
    })?;
    let agent = key.agent_id().to_string();
    if !gw.agent_ids().contains(&agent) {
        return Err(invalid(format!(
            "Agent \"{agent}\" no longer exists in configuration"
        )));
    }
    Ok(key)
}

fn key_param(gw: &Gateway, params: &Value, field: &str) -> Result<SessionKey, ErrorShape> {
    let raw = params.get(field).and_then(Value::as_str).ok_or_else(|| {
        invalid(format!(
            "invalid params: at root: must have required property '{field}'"
        ))
    })?;
    canonical_key(gw, raw)
}

fn check_expected(session: &Session, params: &Value, action: &str) -> Result<(), ErrorShape> {
    match params.get("expectedSessionId").and_then(Value::as_str) {
        Some(expected) if expected != session.session_id => Err(ErrorShape {
            details: Some(json!({"reason": "session-changed"})),
            ..invalid(format!(
                "Session {} changed before {action}. Retry.",
                session.key
            ))
        }),
        _ => Ok(()),
    }
}

fn not_found(key: &SessionKey) -> ErrorShape {
    invalid(format!("session not found: {key}"))
}

/// `sessions.describe {key}` → `{session}` (`null` for an unknown key, as observed).
pub(crate) fn describe(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let key = key_param(gw, params, "key")?;
    let book = gw.chat.lock();
    let row = book.sessions.get(key.as_str()).map(Session::row);
    Ok(json!({ "session": row }))
}

/// `sessions.patch {key, archived, expectedSessionId}` → `{ok, key, entry}`.
pub(crate) fn patch(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let key = key_param(gw, params, "key")?;
    let mut book = gw.chat.lock();
    let session = book
        .sessions
        .map
        .get_mut(key.as_str())
        .ok_or_else(|| not_found(&key))?;
    let lifecycle = params.get("archived").is_some();
    if lifecycle && params.get("expectedSessionId").is_none() {
        return Err(invalid(format!(
            "expectedSessionId required for session lifecycle patch: {key}"
        )));
    }
    check_expected(session, params, "patch")?;
    if let Some(archived) = params.get("archived").and_then(Value::as_bool) {
        session.archived = archived;
    }
    session.updated_at = now_ms();
    Ok(json!({"ok": true, "key": key.as_str(), "entry": session.row()}))
}

/// `sessions.delete {key, archivedOnly, expectedSessionId}` → `{ok, key, deleted, archived}`.
pub(crate) fn delete(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let key = key_param(gw, params, "key")?;
    let mut book = gw.chat.lock();
    let archived_only = params.get("archivedOnly").and_then(Value::as_bool) == Some(true);
    let not_archived = || {
        invalid(format!(
            "Session {key} is not archived. Archive it first, then delete it."
        ))
    };
    let Some(session) = book.sessions.map.get(key.as_str()) else {
        // Observed: an archivedOnly delete of a missing session says it is not archived.
        if archived_only {
            return Err(not_archived());
        }
        return Ok(json!({"ok": true, "key": key.as_str(), "deleted": false, "archived": []}));
    };
    if archived_only && !session.archived {
        return Err(not_archived());
    }
    check_expected(session, params, "deletion")?;
    let transcript = format!("sessions/{}.jsonl", session.session_id);
    book.sessions.map.remove(key.as_str());
    Ok(json!({"ok": true, "key": key.as_str(), "deleted": true, "archived": [transcript]}))
}

/// `sessions.reset {key, reason}` (admin) → `{ok, key, entry}`.
pub(crate) fn reset(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let key = key_param(gw, params, "key")?;
    let mut book = gw.chat.lock();
    let row = book.sessions.reset(key.as_str()).row();
    Ok(json!({"ok": true, "key": key.as_str(), "entry": row}))
}

/// `chat.history {sessionKey, limit?}`.
pub(crate) fn history(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let key = key_param(gw, params, "sessionKey")?;
    let limit = params
        .get("limit")
        .and_then(Value::as_u64)
        .and_then(|l| usize::try_from(l).ok())
        .unwrap_or(usize::MAX);
    let book = gw.chat.lock();
    let (session_id, messages) = book
        .sessions
        .get(key.as_str())
        .map_or((Value::Null, Vec::new()), |s| {
            (json!(s.session_id), s.messages.clone())
        });
    let total = messages.len();
    let skip = total.saturating_sub(limit);
    Ok(json!({"sessionKey": key.as_str(), "sessionId": session_id,
              "messages": messages[skip..], "hasMore": skip > 0, "totalMessages": total}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_starts_a_new_generation() {
        let mut store = SessionStore::default();
        let first = store.get_or_create("agent:main:x").session_id.clone();
        assert_eq!(store.get_or_create("agent:main:x").session_id, first);
        assert_ne!(store.reset("agent:main:x").session_id, first);
    }
}
