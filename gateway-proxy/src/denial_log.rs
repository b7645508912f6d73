//! Audit records of refused requests, aggregated: a client that sends the same refused request
//! in a loop must not turn each one into a line on disk.
//!
//! Per interval (`audit.denial_interval_ms`) and per credential, method and reason: the first
//! refusal is written at once, as any audit record; the repeats are counted, and written as one
//! line with `count` when the interval ends ([`DenialLog::flush`], on a timer, and at
//! shutdown). Distinct methods per interval are bounded ([`MAX_DENIAL_KEYS`]); past the bound,
//! a credential's further methods are counted under the method `*`. So a credential writes at
//! most `2 × (MAX_DENIAL_KEYS + reasons)` lines per interval, whatever it sends.

use std::collections::HashMap;
use std::net::SocketAddr;

use parking_lot::Mutex;

use crate::audit::{AuditEvent, AuditKind, AuditLog, MAX_AUDIT_METHOD_LEN, truncate};

/// Distinct (credential, method, reason) keys tracked per interval.
pub const MAX_DENIAL_KEYS: usize = 1024;
/// The method name under which refusals past [`MAX_DENIAL_KEYS`] are counted.
pub const OTHER_METHODS: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    credential: String,
    method: String,
    reason: &'static str,
}

/// Repeats of a key since its first line, and where the last one came from.
#[derive(Debug, Clone, Copy)]
struct Repeats {
    count: u64,
    peer: SocketAddr,
    conn: u64,
}

/// The interval's refusals, by key.
#[derive(Debug, Default)]
pub struct DenialLog {
    keys: Mutex<HashMap<Key, Option<Repeats>>>,
}

impl DenialLog {
    /// Records one refused request (`who` is the peer and connection id).
    pub fn record(
        &self,
        audit: &AuditLog,
        credential: &str,
        method: &str,
        reason: &'static str,
        (peer, conn): (SocketAddr, u64),
    ) {
        let mut key = Key {
            credential: credential.to_string(),
            method: truncate(method, MAX_AUDIT_METHOD_LEN).to_string(),
            reason,
        };
        {
            let mut keys = self.keys.lock();
            if !keys.contains_key(&key) && keys.len() >= MAX_DENIAL_KEYS {
                key.method = OTHER_METHODS.to_string();
            }
            match keys.get_mut(&key) {
                Some(repeats) => {
                    let r = repeats.get_or_insert(Repeats {
                        count: 0,
                        peer,
                        conn,
                    });
                    r.count += 1;
                    (r.peer, r.conn) = (peer, conn);
                    return;
                }
                None => {
                    keys.insert(key.clone(), None);
                }
            }
        }
        audit.record(AuditEvent {
            credential: Some(&key.credential),
            method: Some(&key.method),
            reason: Some(reason),
            ..AuditEvent::new(AuditKind::Denied, peer, conn)
        });
    }

    /// Ends the interval: writes one line per key that repeated, with the count, and forgets
    /// every key.
    pub fn flush(&self, audit: &AuditLog) {
        let keys = std::mem::take(&mut *self.keys.lock());
        for (key, repeats) in keys {
            let Some(r) = repeats else { continue };
            audit.record(AuditEvent {
                credential: Some(&key.credential),
                method: Some(&key.method),
                reason: Some(key.reason),
                count: Some(r.count),
                ..AuditEvent::new(AuditKind::Denied, r.peer, r.conn)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// 2,000 identical refusals are two lines, the second counting the 1,999 repeats; another
    /// method is a line of its own; the next interval starts afresh.
    #[test]
    fn repeated_refusals_are_one_line_per_interval_with_a_count() {
        let path = std::env::temp_dir().join(format!("gwp-denials-{}.jsonl", uuid::Uuid::new_v4()));
        let audit = AuditLog::open(Some(&path)).unwrap();
        let log = DenialLog::default();
        let who = ("127.0.0.1:9".parse().unwrap(), 4);
        for _ in 0..2000 {
            log.record(&audit, "bridge", "sessions.reset", "missing_scope", who);
        }
        log.record(&audit, "bridge", "config.set", "missing_scope", who);
        assert_eq!(lines(&path).len(), 2, "first refusals are written at once");
        log.flush(&audit);
        let all = lines(&path);
        assert_eq!(all.len(), 3);
        assert_eq!(all[2]["method"], "sessions.reset");
        assert_eq!(all[2]["count"], 1999);
        assert!(all[0].get("count").is_none());
        log.record(&audit, "bridge", "sessions.reset", "missing_scope", who);
        log.flush(&audit);
        assert_eq!(lines(&path).len(), 4);
        std::fs::remove_file(path).unwrap();
    }

    /// Distinct method names cannot grow the map or the log without bound.
    #[test]
    fn distinct_methods_are_bounded() {
        let audit = AuditLog::default();
        let log = DenialLog::default();
        let who = ("127.0.0.1:9".parse().unwrap(), 4);
        for i in 0..(MAX_DENIAL_KEYS + 500) {
            log.record(&audit, "c", &format!("m{i}"), "unknown_method", who);
        }
        let keys = log.keys.lock();
        assert_eq!(keys.len(), MAX_DENIAL_KEYS + 1);
        let other = Key {
            credential: "c".into(),
            method: OTHER_METHODS.into(),
            reason: "unknown_method",
        };
        assert_eq!(keys[&other].map(|r| r.count), Some(499));
    }
}
