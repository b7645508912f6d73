//! `sessions.*`: the write-scope reset (describe, patch archived, delete archivedOnly).
//!
//! `sessions.reset` needs `operator.admin`; with read+write the verified equivalent is
//! describe → patch `{archived:true}` → delete `{archivedOnly:true}`; the next `chat.send` on the
//! same key starts a fresh session.

use serde::{Deserialize, Serialize};

/// `sessions.describe` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsDescribeParams {
    /// Session key.
    pub key: String,
}

/// `sessions.describe` result; the session row may be nested under `session` or flat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionsDescribeResult {
    /// The row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionRow>,
    /// Flat form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

impl SessionsDescribeResult {
    /// The current session generation, wherever it was put.
    pub fn session_id(&self) -> Option<&str> {
        self.session
            .as_ref()
            .and_then(|s| s.session_id.as_deref())
            .or(self.session_id.as_deref())
    }
}

/// A session row (only what we use).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionRow {
    /// Session generation id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Canonical key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Archived flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
}

/// `sessions.patch {key, archived: true, expectedSessionId}` (write scope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsArchiveParams {
    /// Session key.
    pub key: String,
    /// Always true here.
    pub archived: bool,
    /// Guard against archiving a newer generation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_session_id: Option<String>,
}

/// `sessions.delete {key, archivedOnly: true, expectedSessionId}` (write scope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsDeleteParams {
    /// Session key.
    pub key: String,
    /// Only delete if archived: this is what makes it a write-scope call.
    pub archived_only: bool,
    /// Guard.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_session_id: Option<String>,
}

/// `sessions.delete` result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionsDeleteResult {
    /// Handled.
    pub ok: bool,
    /// Canonical key.
    pub key: String,
    /// Deleted.
    pub deleted: bool,
}

/// `sessions.reset {key, reason}`: admin only; kept so callers can see (and tests can prove)
/// that it is refused with write scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionsResetParams {
    /// Session key.
    pub key: String,
    /// `new` or `reset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_reads_nested_or_flat_session_id() {
        let nested: SessionsDescribeResult =
            serde_json::from_str(r#"{"session":{"sessionId":"s1","x":1}}"#).unwrap();
        assert_eq!(nested.session_id(), Some("s1"));
        let flat: SessionsDescribeResult = serde_json::from_str(r#"{"sessionId":"s2"}"#).unwrap();
        assert_eq!(flat.session_id(), Some("s2"));
        let archive = SessionsArchiveParams {
            key: "k".into(),
            archived: true,
            expected_session_id: Some("s1".into()),
        };
        assert_eq!(
            serde_json::to_string(&archive).unwrap(),
            r#"{"key":"k","archived":true,"expectedSessionId":"s1"}"#
        );
        let delete = SessionsDeleteParams {
            key: "k".into(),
            archived_only: true,
            expected_session_id: None,
        };
        assert_eq!(
            serde_json::to_string(&delete).unwrap(),
            r#"{"key":"k","archivedOnly":true}"#
        );
    }
}
