//! The idempotency cache of `chat.send`: same key + same input replays, other input conflicts.
//!
//! Bounded like the gateway's (`DEDUPE_MAX` entries, `DEDUPE_TTL_MS` lifetime,
//! `src/gateway/server-constants.ts`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use shared_protocol::limits::{DEDUPE_MAX, DEDUPE_TTL_MS};
use tokio::time::Instant;

/// What a send with a known idempotency key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Unknown key: start a run.
    New,
    /// Same input, run still going: `status: in_flight`.
    InFlight,
    /// Same input, run finished: `status: ok`, no events.
    Done,
    /// Different input: `chat-request-conflict`.
    Conflict,
}

#[derive(Debug)]
struct Entry {
    session_key: String,
    message: String,
    done: bool,
    at: Instant,
}

/// Key → what was sent with it.
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    entries: HashMap<String, Entry>,
    order: VecDeque<(String, Instant)>,
}

impl Dedupe {
    fn prune(&mut self) {
        let ttl = Duration::from_millis(DEDUPE_TTL_MS);
        while let Some((key, at)) = self.order.front().cloned() {
            let expired = at.elapsed() >= ttl;
            if !expired && self.order.len() <= DEDUPE_MAX {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&key).is_some_and(|e| e.at == at) {
                self.entries.remove(&key);
            }
        }
    }

    /// Classifies a send.
    pub fn check(&mut self, key: &str, session_key: &str, message: &str) -> Replay {
        self.prune();
        match self.entries.get(key) {
            None => Replay::New,
            Some(e) if e.session_key != session_key || e.message != message => Replay::Conflict,
            Some(e) if e.done => Replay::Done,
            Some(_) => Replay::InFlight,
        }
    }

    /// Remembers a started run.
    pub fn insert(&mut self, key: &str, session_key: &str, message: &str) {
        let at = Instant::now();
        self.entries.insert(
            key.to_string(),
            Entry {
                session_key: session_key.to_string(),
                message: message.to_string(),
                done: false,
                at,
            },
        );
        self.order.push_back((key.to_string(), at));
        self.prune();
    }

    /// Marks a run finished (later replays answer `ok`).
    pub fn finish(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.done = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn replays_conflicts_expires_and_stays_bounded() {
        let mut d = Dedupe::default();
        assert_eq!(d.check("k", "s", "m"), Replay::New);
        d.insert("k", "s", "m");
        assert_eq!(d.check("k", "s", "m"), Replay::InFlight);
        assert_eq!(d.check("k", "s", "other"), Replay::Conflict);
        d.finish("k");
        assert_eq!(d.check("k", "s", "m"), Replay::Done);
        tokio::time::advance(Duration::from_millis(DEDUPE_TTL_MS)).await;
        assert_eq!(d.check("k", "s", "m"), Replay::New);
        for i in 0..DEDUPE_MAX + 10 {
            d.insert(&i.to_string(), "s", "m");
        }
        assert_eq!(d.entries.len(), DEDUPE_MAX);
        assert_eq!(d.check("0", "s", "m"), Replay::New);
    }
}
