//! One live, authenticated socket: outbound frames and request/response correlation.
//!
//! Requests are matched to responses by id through a map of oneshots; the reader completes
//! them in O(1) without waiting on anyone. Ids are a per-socket counter (no random numbers, no
//! allocation for the key). Outbound frames go through a bounded channel to the
//! socket's writer task. When the socket ends, every pending request fails at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use shared_protocol::ErrorShape;
use shared_protocol::frame::encode_request;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// Outbound frames waiting for the writer.
pub const OUTBOUND_QUEUE: usize = 1024;
/// Requests awaiting a response on one socket: a safety net only, runs are bounded first by
/// `max_in_flight` (a run has at most one request pending).
pub const MAX_PENDING_REQUESTS: usize = 65_536;

/// A response: the raw payload text or the error.
#[derive(Debug)]
pub struct Response {
    /// `ok`.
    pub ok: bool,
    /// Payload JSON text (`null` when absent).
    pub payload: String,
    /// Error object, for failed responses.
    pub error: Option<ErrorShape>,
}

impl Response {
    /// The payload decoded, or the error mapped.
    ///
    /// # Errors
    /// [`Error`] from the error shape, or [`Error::Protocol`] for a bad payload.
    pub fn into_payload<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        if !self.ok {
            return Err(self.error.map_or_else(
                || Error::Protocol("failed response without an error".into()),
                Error::from_shape,
            ));
        }
        serde_json::from_str(&self.payload).map_err(|e| Error::Protocol(e.to_string()))
    }
}

/// The live socket.
pub struct Link {
    out: mpsc::Sender<Message>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Response>>>,
    next_id: AtomicU64,
    closed: CancellationToken,
    draining: AtomicBool,
}

/// Removes a pending entry when the waiting request is dropped or times out.
struct PendingGuard<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.link.pending.lock().remove(&self.id);
    }
}

impl Link {
    /// A link writing to `out`; `closed` is cancelled when the socket ends.
    pub fn new(out: mpsc::Sender<Message>, closed: CancellationToken) -> Self {
        Self {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed,
            draining: AtomicBool::new(false),
        }
    }

    /// The gateway announced `shutdown` on this socket: runs ending now were cut short.
    pub fn mark_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// True after a `shutdown` event.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// True once the socket has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the socket has ended.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Ends the link: pending requests fail with a lost-connection error.
    pub fn close(&self) {
        self.closed.cancel();
        self.pending.lock().clear();
    }

    /// Delivers a response to its waiter; unknown ids (timed out) are ignored.
    pub fn complete(&self, id: &str, response: Response) {
        let Ok(id) = id.parse::<u64>() else {
            return;
        };
        if let Some(tx) = self.pending.lock().remove(&id) {
            let _ = tx.send(response);
        }
    }

    /// Sends a request and waits for its response until `deadline`.
    ///
    /// # Errors
    /// [`RequestError`]: the deadline passed, the socket ended, or the request could not be
    /// queued; the caller picks the error its phase implies.
    pub async fn request<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        deadline: Instant,
    ) -> Result<Response, RequestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let text = encode_request(&id.to_string(), method, params)
            .map_err(|e| RequestError::Failed(Error::Protocol(e.to_string())))?;
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if self.is_closed() {
                return Err(RequestError::Lost);
            }
            if pending.len() >= MAX_PENDING_REQUESTS {
                return Err(RequestError::Failed(Error::Backpressure));
            }
            pending.insert(id, tx);
        }
        let _guard = PendingGuard { link: self, id };
        // One timer and one cancellation waiter for both phases, and none at all for queueing
        // when the writer's queue has room (the common case).
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        let closed = self.closed.cancelled();
        tokio::pin!(closed);
        match self.out.try_send(Message::text(text)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(RequestError::Lost),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                tokio::select! {
                    sent = self.out.send(msg) => {
                        if sent.is_err() {
                            return Err(RequestError::Lost);
                        }
                    }
                    () = &mut timeout => return Err(RequestError::Timeout),
                    () = &mut closed => return Err(RequestError::Lost),
                }
            }
        }
        tokio::select! {
            response = rx => response.map_err(|_| RequestError::Lost),
            () = &mut timeout => Err(RequestError::Timeout),
            () = &mut closed => Err(RequestError::Lost),
        }
    }
}

/// Why a request on a link did not get a response.
#[derive(Debug)]
pub enum RequestError {
    /// The deadline passed.
    Timeout,
    /// The socket ended first.
    Lost,
    /// Could not be sent at all.
    Failed(Error),
}

impl RequestError {
    /// The error a caller of a simple request sees.
    pub fn into_error(self, what: &str) -> Error {
        match self {
            Self::Timeout => Error::Unavailable {
                message: format!("{what}: no response in time"),
                retry_after: None,
            },
            Self::Lost => Error::Unavailable {
                message: format!("{what}: connection lost"),
                retry_after: None,
            },
            Self::Failed(e) => e,
        }
    }
}
