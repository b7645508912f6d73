//! The audit log: one JSON object per line for every security decision (connects with their
//! credential and granted scopes, auth failures, denials, rate-limit hits, disconnects).
//!
//! Refused requests go through [`DenialLog`](crate::denial_log::DenialLog), which writes one
//! line per credential, method and reason per interval, so a client cannot fill the disk.
//!
//! Records carry identifiers and reasons only: never a token, password, device signature or
//! message text. The field set is fixed by [`AuditEvent`], so nothing from a frame can slip in
//! except the method name (length-capped).

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use parking_lot::Mutex;
use serde::Serialize;

use crate::error::ProxyError;

/// Longest method name written (client input: capped so the log cannot be flooded).
pub const MAX_AUDIT_METHOD_LEN: usize = 128;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A client completed the handshake.
    Connect,
    /// A client failed authentication or the device proof.
    AuthFailure,
    /// A request was refused by policy.
    Denied,
    /// A rate limit refused a handshake or request.
    RateLimited,
    /// A connection ended.
    Disconnect,
}

/// One audit record.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    /// Kind.
    pub event: AuditKind,
    /// Client address.
    pub peer: SocketAddr,
    /// Connection id (matches the tracing span `conn`).
    pub conn: u64,
    /// Credential id, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<&'a str>,
    /// Method of the request concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'a str>,
    /// Closed reason code (`missing_scope`, `AUTH_TOKEN_MISMATCH`, `requests`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Granted scopes (connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<&'static str>>,
    /// Device id (public; connect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<&'a str>,
    /// How many like it this line stands for (aggregated denials; absent means one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl<'a> AuditEvent<'a> {
    /// A record with only the kind, peer and connection set.
    pub fn new(event: AuditKind, peer: SocketAddr, conn: u64) -> Self {
        Self {
            event,
            peer,
            conn,
            credential: None,
            method: None,
            reason: None,
            scopes: None,
            device: None,
            count: None,
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts_ms: u64,
    #[serde(flatten)]
    event: &'a AuditEvent<'a>,
}

/// The audit sink: an append-only JSON-lines file (optional) plus the tracing log.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<Mutex<std::fs::File>>,
}

impl AuditLog {
    /// Opens (appends to) `path`, or logs to tracing only when `None`.
    ///
    /// # Errors
    /// [`ProxyError::File`] when the file cannot be opened.
    pub fn open(path: Option<&Path>) -> Result<Self, ProxyError> {
        let file = path
            .map(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| ProxyError::file(p, e))
            })
            .transpose()?;
        Ok(Self {
            file: file.map(Mutex::new),
        })
    }

    /// Records one event (a failed write is logged, never fatal).
    pub fn record(&self, mut event: AuditEvent<'_>) {
        if let Some(m) = event.method {
            event.method = Some(truncate(m, MAX_AUDIT_METHOD_LEN));
        }
        tracing::info!(
            target: "gateway_proxy::audit",
            event = ?event.event,
            peer = %event.peer,
            conn = event.conn,
            credential = event.credential,
            method = event.method,
            reason = event.reason,
            scopes = ?event.scopes,
            count = event.count,
            "audit"
        );
        let Some(file) = &self.file else {
            return;
        };
        let line = Line {
            ts_ms: crate::clock::unix_ms(),
            event: &event,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        if let Err(e) = file.lock().write_all(&text) {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_json_lines_with_a_capped_method() {
        let path = std::env::temp_dir().join(format!("gwp-audit-{}.jsonl", uuid::Uuid::new_v4()));
        let log = AuditLog::open(Some(&path)).unwrap();
        let peer: SocketAddr = "127.0.0.1:5".parse().unwrap();
        let long = "m".repeat(500);
        log.record(AuditEvent {
            credential: Some("bridge"),
            method: Some(&long),
            reason: Some("missing_scope"),
            ..AuditEvent::new(AuditKind::Denied, peer, 3)
        });
        log.record(AuditEvent::new(AuditKind::Disconnect, peer, 3));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "denied");
        assert_eq!(lines[0]["credential"], "bridge");
        assert_eq!(
            lines[0]["method"].as_str().unwrap().len(),
            MAX_AUDIT_METHOD_LEN
        );
        assert!(lines[1].get("credential").is_none() && lines[1]["ts_ms"].as_u64().unwrap() > 0);
        std::fs::remove_file(path).unwrap();
    }
}
