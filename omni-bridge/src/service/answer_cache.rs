//! Finished answers, replayed to repeated deliveries of their trace.
//!
//! Omni retries a webhook on 5xx and its dispatcher re-runs a whole dispatch on network errors,
//! always with the same `traceId`. A delivery whose run is still in flight joins it in the
//! gateway layer (the one join, keyed by the idempotency key derived from the trace); one that
//! comes after the run finished gets the answer kept here, for [`AnswerCache::ttl`], in a cache
//! bounded by its capacity (the oldest go first). Answers that ask for a retry (a retryable
//! failure) are never kept: the retry tries again.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::outcome::Answer;

struct Inner {
    answers: HashMap<Arc<str>, (Answer, Instant)>,
    /// Insertion order of `answers`, for expiry and the size bound.
    order: VecDeque<(Arc<str>, Instant)>,
}

/// Recently finished answers by idempotency key.
pub struct AnswerCache {
    inner: Mutex<Inner>,
    ttl: Duration,
    capacity: usize,
}

impl AnswerCache {
    /// A cache keeping at most `capacity` answers, each for `ttl`.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                answers: HashMap::new(),
                order: VecDeque::new(),
            }),
            ttl,
            capacity,
        }
    }

    /// How long an answer is kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The answer kept for `key`, if it has not expired.
    pub fn get(&self, key: &str) -> Option<Answer> {
        let now = Instant::now();
        let inner = self.inner.lock();
        inner
            .answers
            .get(key)
            .filter(|(_, at)| now.duration_since(*at) < self.ttl)
            .map(|(answer, _)| answer.clone())
    }

    /// Keeps `answer` for `key` (replacing an older one), dropping expired and excess entries.
    pub fn insert(&self, key: &str, answer: Answer) {
        let now = Instant::now();
        let key: Arc<str> = Arc::from(key);
        let mut inner = self.inner.lock();
        inner.answers.insert(key.clone(), (answer, now));
        inner.order.push_back((key, now));
        while let Some((key, at)) = inner.order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && inner.order.len() <= self.capacity {
                break;
            }
            // Remove the map entry only if it is this insertion (not a newer one of the key).
            if inner.answers.get(key).is_some_and(|(_, t)| t == at) {
                let key = key.clone();
                inner.answers.remove(&key);
            }
            inner.order.pop_front();
        }
    }

    /// Answers kept.
    pub fn len(&self) -> usize {
        self.inner.lock().answers.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::outcome::Outcome;
    use crate::service::texts::Texts;

    fn answer(n: u32) -> Answer {
        let mut a = Answer::of(Outcome::Replied, &Texts::english());
        a.reply = Some(Arc::from(n.to_string()));
        a
    }

    #[tokio::test(start_paused = true)]
    async fn answers_expire_and_the_cache_is_bounded() {
        let c = AnswerCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            c.insert(&i.to_string(), answer(i));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("0").is_none());
        assert_eq!(c.get("9").unwrap().reply.as_deref(), Some("9"));
        // A newer insertion of a key survives the expiry of the older one.
        c.insert("9", answer(99));
        tokio::time::advance(Duration::from_secs(30)).await;
        c.insert("x", answer(1));
        assert_eq!(c.get("9").unwrap().reply.as_deref(), Some("99"));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(c.get("9").is_none(), "expired");
        assert!(c.get("x").is_some());
    }
}
