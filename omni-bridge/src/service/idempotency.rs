//! Omni retries must never start a second run.
//!
//! Omni retries a webhook on 5xx and its dispatcher re-runs a whole dispatch on network errors,
//! always with the same `traceId`. The [`TraceTable`] maps that key to the run in flight (a retry
//! joins it and gets the same answer) or to the finished answer, kept for [`REPLY_CACHE_TTL`] in a
//! cache bounded by [`MAX_CACHED_REPLIES`]. Both maps are bounded; when the running map is full a
//! new trace is refused (the person gets the `busy` text; a later delivery of the trace may run).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a finished answer is replayed to retries.
pub const REPLY_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most finished answers kept; the oldest go first.
pub const MAX_CACHED_REPLIES: usize = 10_000;
/// Most traces running at once.
pub const MAX_RUNNING_TRACES: usize = 10_000;

/// The result of claiming a trace key.
pub enum Claim<T: Clone> {
    /// First request: run it, then [`Lease::finish`].
    Lead(Lease<T>),
    /// A run for this key is in flight: wait with [`joined`].
    Join(watch::Receiver<Option<T>>),
    /// Finished recently: answer with this.
    Cached(T),
    /// Too many traces running.
    Full,
}

struct Inner<T> {
    running: HashMap<String, watch::Receiver<Option<T>>>,
    done: HashMap<String, (T, Instant)>,
    /// Insertion order of `done`, for expiry and the size bound.
    order: VecDeque<(String, Instant)>,
}

/// In-flight and recently finished traces.
pub struct TraceTable<T> {
    inner: Mutex<Inner<T>>,
    ttl: Duration,
    max_cached: usize,
    max_running: usize,
}

impl<T: Clone> TraceTable<T> {
    /// A table with the default bounds.
    pub fn new() -> Arc<Self> {
        Self::with_bounds(REPLY_CACHE_TTL, MAX_CACHED_REPLIES, MAX_RUNNING_TRACES)
    }

    /// A table with explicit bounds (tests).
    pub fn with_bounds(ttl: Duration, max_cached: usize, max_running: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                running: HashMap::new(),
                done: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            max_cached,
            max_running,
        })
    }

    /// Claims `key`.
    pub fn claim(self: &Arc<Self>, key: &str) -> Claim<T> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        self.evict(&mut inner, now);
        if let Some((value, _)) = inner.done.get(key) {
            return Claim::Cached(value.clone());
        }
        if let Some(rx) = inner.running.get(key) {
            return Claim::Join(rx.clone());
        }
        if inner.running.len() >= self.max_running {
            return Claim::Full;
        }
        let (tx, rx) = watch::channel(None);
        inner.running.insert(key.to_string(), rx);
        Claim::Lead(Lease {
            table: Arc::clone(self),
            key: key.to_string(),
            tx: Some(tx),
        })
    }

    /// Runs in flight.
    pub fn running(&self) -> usize {
        self.inner.lock().running.len()
    }

    /// Answers cached.
    pub fn cached(&self) -> usize {
        self.inner.lock().done.len()
    }

    fn evict(&self, inner: &mut Inner<T>, now: Instant) {
        while let Some((key, at)) = inner.order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && inner.order.len() <= self.max_cached {
                break;
            }
            if inner.done.get(key).is_some_and(|(_, t)| t == at) {
                inner.done.remove(key);
            }
            inner.order.pop_front();
        }
    }
}

/// The right (and duty) to finish one trace.
pub struct Lease<T: Clone> {
    table: Arc<TraceTable<T>>,
    key: String,
    tx: Option<watch::Sender<Option<T>>>,
}

impl<T: Clone> Lease<T> {
    /// A receiver that sees the answer when [`Lease::finish`] publishes it.
    pub fn subscribe(&self) -> watch::Receiver<Option<T>> {
        match &self.tx {
            Some(tx) => tx.subscribe(),
            None => watch::channel(None).1,
        }
    }

    /// Publishes the answer to joiners; keeps it for retries when `cache` is true (false for
    /// answers that ask Omni to retry, so the retry starts afresh).
    pub fn finish(mut self, value: T, cache: bool) {
        let now = Instant::now();
        let mut inner = self.table.inner.lock();
        inner.running.remove(&self.key);
        if cache {
            inner.done.insert(self.key.clone(), (value.clone(), now));
            inner.order.push_back((self.key.clone(), now));
            self.table.evict(&mut inner, now);
        }
        drop(inner);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(value));
        }
    }
}

impl<T: Clone> Drop for Lease<T> {
    fn drop(&mut self) {
        if self.tx.is_some() {
            // Abandoned without an answer: joiners see the channel close.
            self.table.inner.lock().running.remove(&self.key);
        }
    }
}

/// Waits for the leader's answer; `None` when it vanished without one.
pub async fn joined<T: Clone>(mut rx: watch::Receiver<Option<T>>) -> Option<T> {
    rx.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|v| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn lead_join_cache_expire_and_bounds() {
        let t: Arc<TraceTable<u32>> = TraceTable::with_bounds(Duration::from_secs(60), 2, 2);
        let Claim::Lead(lease) = t.claim("a") else {
            panic!("lead")
        };
        let Claim::Join(rx) = t.claim("a") else {
            panic!("join")
        };
        let Claim::Lead(_b) = t.claim("b") else {
            panic!("lead b")
        };
        assert!(matches!(t.claim("c"), Claim::Full));
        let waiter = tokio::spawn(joined(rx));
        lease.finish(7, true);
        assert_eq!(waiter.await.unwrap(), Some(7));
        assert!(matches!(t.claim("a"), Claim::Cached(7)));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(matches!(t.claim("a"), Claim::Lead(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn abandoned_and_uncached_leases_let_a_retry_lead() {
        let t: Arc<TraceTable<u32>> = TraceTable::with_bounds(Duration::from_secs(60), 10, 10);
        let Claim::Lead(lease) = t.claim("a") else {
            panic!()
        };
        let Claim::Join(rx) = t.claim("a") else {
            panic!()
        };
        drop(lease);
        assert_eq!(joined(rx).await, None);
        let Claim::Lead(lease) = t.claim("a") else {
            panic!()
        };
        lease.finish(1, false);
        assert!(matches!(t.claim("a"), Claim::Lead(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_cache_is_bounded() {
        let t: Arc<TraceTable<u32>> = TraceTable::with_bounds(Duration::from_secs(60), 3, 10);
        for i in 0..10 {
            let Claim::Lead(l) = t.claim(&i.to_string()) else {
                panic!()
            };
            l.finish(i, true);
        }
        assert_eq!(t.cached(), 3);
        assert!(matches!(t.claim("9"), Claim::Cached(9)));
        assert_eq!(t.running(), 0);
    }
}
