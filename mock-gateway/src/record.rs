//! The log of every request the mock received, so tests can assert on what a client sent.

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::config::REQUEST_LOG_CAP;

/// One request as received (connect included, with its params).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    /// Which connection sent it (1-based, in accept order).
    pub connection: u64,
    /// The request id.
    pub id: String,
    /// The method (`connect` for handshakes).
    pub method: String,
    /// The params (`null` when absent).
    pub params: serde_json::Value,
}

/// Append-only request log with a change signal (no polling).
#[derive(Debug)]
pub(crate) struct RequestLog {
    entries: Mutex<Vec<ReceivedRequest>>,
    /// Bumped on every append; waiters subscribe before looking, so no append is missed.
    changed: watch::Sender<u64>,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            changed: watch::Sender::new(0),
        }
    }
}

impl RequestLog {
    /// Records a request (dropped beyond [`REQUEST_LOG_CAP`], with a warning).
    pub fn push(&self, request: ReceivedRequest) {
        {
            let mut entries = self.entries.lock();
            if entries.len() >= REQUEST_LOG_CAP {
                tracing::warn!(
                    cap = REQUEST_LOG_CAP,
                    "request log full; request not recorded"
                );
                return;
            }
            entries.push(request);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// A copy of everything recorded.
    pub fn all(&self) -> Vec<ReceivedRequest> {
        self.entries.lock().clone()
    }

    /// The `nth` (1-based) request of `method`.
    pub fn nth(&self, method: &str, nth: usize) -> Option<ReceivedRequest> {
        self.entries
            .lock()
            .iter()
            .filter(|r| r.method == method)
            .nth(nth.checked_sub(1)?)
            .cloned()
    }

    /// Waits (no longer than the caller's timeout) for the `nth` request of `method`.
    pub async fn wait_for(&self, method: &str, nth: usize) -> Option<ReceivedRequest> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(found) = self.nth(method, nth) {
                return Some(found);
            }
            rx.changed().await.ok()?;
        }
    }
}
