//! One run at a time per session key, later messages in a bounded FIFO.
//!
//! The gateway merges (steer) or hijacks (followup/interrupt) concurrent runs on one session,
//! so a proxy that maps request to reply by runId must serialise sends per session. The turn is
//! a value ([`SessionTurn`]) handed from one holder to the next through a oneshot: if a waiter
//! gave up, the turn it never received is dropped and passes on by itself, so a session can
//! never stay blocked.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::Error;

/// The right to run on a session; dropping it hands the session to the next waiter.
pub struct SessionTurn {
    gates: Arc<SessionGates>,
    key: String,
}

/// Result of [`SessionGates::enter`].
pub enum Entry {
    /// The session was free.
    Now(SessionTurn),
    /// Wait for the turn.
    Queued(oneshot::Receiver<SessionTurn>),
}

/// All sessions of one gateway.
#[derive(Default)]
pub struct SessionGates {
    waiting: Mutex<HashMap<String, VecDeque<oneshot::Sender<SessionTurn>>>>,
    queued: AtomicUsize,
}

impl SessionGates {
    /// Takes the session's turn or a place in its queue.
    ///
    /// # Errors
    /// [`Error::SessionQueueFull`] when `max_queued` messages already wait.
    pub fn enter(self: &Arc<Self>, key: &str, max_queued: usize) -> Result<Entry, Error> {
        let mut waiting = self.waiting.lock();
        match waiting.get_mut(key) {
            None => {
                waiting.insert(key.to_string(), VecDeque::new());
                Ok(Entry::Now(SessionTurn {
                    gates: self.clone(),
                    key: key.to_string(),
                }))
            }
            Some(queue) if queue.len() >= max_queued => Err(Error::SessionQueueFull),
            Some(queue) => {
                let (tx, rx) = oneshot::channel();
                queue.push_back(tx);
                self.queued.fetch_add(1, Ordering::Relaxed);
                Ok(Entry::Queued(rx))
            }
        }
    }

    /// Messages waiting behind an active run, over all sessions.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sessions with an active run.
    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.waiting.lock().len()
    }

    fn release(self: &Arc<Self>, key: String) {
        let next = {
            let mut waiting = self.waiting.lock();
            let Some(queue) = waiting.get_mut(&key) else {
                return;
            };
            match queue.pop_front() {
                Some(next) => {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    next
                }
                None => {
                    waiting.remove(&key);
                    return;
                }
            }
        };
        // A waiter that gave up returns the turn; dropping it moves on to the next one.
        let _ = next.send(SessionTurn {
            gates: self.clone(),
            key,
        });
    }
}

impl Drop for SessionTurn {
    fn drop(&mut self) {
        self.gates.release(std::mem::take(&mut self.key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifo_per_session_bounded_and_independent_sessions() {
        let g = Arc::new(SessionGates::default());
        let Entry::Now(first) = g.enter("a", 2).unwrap() else {
            panic!()
        };
        let Entry::Now(other) = g.enter("b", 2).unwrap() else {
            panic!()
        };
        let Entry::Queued(second) = g.enter("a", 2).unwrap() else {
            panic!()
        };
        let Entry::Queued(third) = g.enter("a", 2).unwrap() else {
            panic!()
        };
        assert!(matches!(g.enter("a", 2), Err(Error::SessionQueueFull)));
        assert_eq!(g.queued(), 2);
        drop(other);
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(g.queued(), 1);
        drop(second);
        let third = third.await.unwrap();
        drop(third);
        assert_eq!((g.queued(), g.active()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_does_not_block_the_session() {
        let g = Arc::new(SessionGates::default());
        let Entry::Now(first) = g.enter("a", 4).unwrap() else {
            panic!()
        };
        let Entry::Queued(gave_up) = g.enter("a", 4).unwrap() else {
            panic!()
        };
        let Entry::Queued(patient) = g.enter("a", 4).unwrap() else {
            panic!()
        };
        drop(gave_up);
        drop(first);
        let turn = patient.await.unwrap();
        drop(turn);
        assert_eq!(g.active(), 0);
    }
}
