//! The join: every run of one gateway, keyed by its idempotency key (the runId, derived from
//! Omni's trace), with whoever waits for it and the reply being accumulated.
//!
//! This is the bridge's only join. A second `run()` with a key already in flight joins the entry
//! instead of sending again ([`RunTable::admit`]); [`RunTable::attach`] joins without ever
//! starting (a retry during shutdown, and later a delivery ledger re-attaching after a restart);
//! [`RunTable::finish`] hands the one result to every waiter and removes the entry. The service
//! keeps only a cache of finished answers.
//!
//! The entry exists before the `chat.send`, so events that race ahead of the ack land in place.
//! The reader applies each event to its run's [`ReplyAccumulator`] under a short lock and never
//! waits for a consumer. Events for runs we do not know (another operator's runs are broadcast to
//! us too, or a late second terminal) are held briefly in a bounded buffer, then dropped.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use shared_protocol::chat::ChatEvent;
use shared_protocol::{ReplyAccumulator, RunOutcome, Step};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::reply::RunReply;
use crate::error::Error;

/// How long events for an unknown run are held.
pub const EARLY_HOLD: Duration = Duration::from_secs(2);
/// Held events per unknown run.
pub const EARLY_PER_RUN: usize = 64;
/// Held events in total.
pub const EARLY_TOTAL: usize = 1024;
/// Held bytes in total (cumulative snapshots can be large).
pub const EARLY_TOTAL_BYTES: usize = 4 * 1024 * 1024;

/// What a run ends with, for every waiter.
pub type RunResult = Result<RunReply, Error>;

/// How the events of a run ended it.
#[derive(Debug)]
pub enum RunEnd {
    /// A terminal event (the first one wins).
    Outcome(RunOutcome),
    /// The reply grew past the cap.
    CapExceeded,
}

/// Progress numbers of a run, for stats and timeout errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressSnapshot {
    /// Deltas applied.
    pub deltas: u32,
    /// Current text length in bytes.
    pub bytes: usize,
    /// When the first delta arrived.
    pub first_delta_at: Option<Instant>,
    /// When the last delta arrived.
    pub last_delta_at: Option<Instant>,
}

struct Progress {
    acc: ReplyAccumulator,
    numbers: ProgressSnapshot,
    done: Option<oneshot::Sender<RunEnd>>,
}

struct RunEntry {
    /// Everyone waiting for the result: the caller that started the run and every joiner.
    waiters: Vec<oneshot::Sender<RunResult>>,
    /// Set once the run is sent (accumulation started); boxed so that the table's slots stay
    /// small.
    progress: Option<Box<Progress>>,
}

/// A wait for the result of one run; resolves to [`Error::Closed`] if the run vanished.
#[derive(Debug)]
pub struct RunWaiter {
    rx: oneshot::Receiver<RunResult>,
    joined: bool,
}

impl RunWaiter {
    /// True when this waiter joined a run that was already in flight.
    pub fn joined(&self) -> bool {
        self.joined
    }
}

impl Future for RunWaiter {
    type Output = RunResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<RunResult> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// Whether `admit` started a run or joined one.
#[derive(Debug)]
pub enum Admission {
    /// New entry: the caller must drive it (and finish it).
    New(RunWaiter),
    /// Existing entry: just wait.
    Joined(RunWaiter),
}

#[derive(Default)]
struct EarlyBuffer {
    by_run: HashMap<String, Vec<String>>,
    order: VecDeque<(Instant, String)>,
    events: usize,
    bytes: usize,
}

impl EarlyBuffer {
    fn purge(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < EARLY_HOLD {
                break;
            }
            if let Some((_, run)) = self.order.pop_front()
                && let Some(held) = self.by_run.remove(&run)
            {
                dropped += held.len() as u64;
                self.forget(&held);
            }
        }
        dropped
    }

    fn forget(&mut self, held: &[String]) {
        self.events -= held.len();
        self.bytes -= held.iter().map(String::len).sum::<usize>();
    }

    fn hold(&mut self, run_id: &str, raw: &str, now: Instant) -> u64 {
        let mut dropped = self.purge(now);
        if self.events >= EARLY_TOTAL || self.bytes + raw.len() > EARLY_TOTAL_BYTES {
            return dropped + 1;
        }
        let held = match self.by_run.get_mut(run_id) {
            Some(held) => held,
            None => {
                self.order.push_back((now, run_id.to_string()));
                self.by_run.entry(run_id.to_string()).or_default()
            }
        };
        if held.len() >= EARLY_PER_RUN {
            dropped += 1;
        } else {
            held.push(raw.to_string());
            self.events += 1;
            self.bytes += raw.len();
        }
        dropped
    }

    fn take(&mut self, run_id: &str) -> Vec<String> {
        let held = self.by_run.remove(run_id).unwrap_or_default();
        self.forget(&held);
        held
    }
}

#[derive(Default)]
struct Inner {
    runs: HashMap<Box<str>, RunEntry>,
    early: EarlyBuffer,
}

/// The runs of one gateway.
#[derive(Default)]
pub struct RunTable {
    inner: Mutex<Inner>,
}

impl RunTable {
    /// Joins the run with this idempotency key, or creates its entry.
    pub fn admit(&self, key: &str) -> Admission {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.inner.lock();
        if let Some(entry) = inner.runs.get_mut(key) {
            entry.waiters.push(tx);
            return Admission::Joined(RunWaiter { rx, joined: true });
        }
        inner.runs.insert(
            key.into(),
            RunEntry {
                waiters: vec![tx],
                progress: None,
            },
        );
        Admission::New(RunWaiter { rx, joined: false })
    }

    /// Joins the run with this idempotency key if one is in flight; never starts one.
    pub fn attach(&self, key: &str) -> Option<RunWaiter> {
        let mut inner = self.inner.lock();
        let entry = inner.runs.get_mut(key)?;
        let (tx, rx) = oneshot::channel();
        entry.waiters.push(tx);
        Some(RunWaiter { rx, joined: true })
    }

    /// Publishes the result to every waiter and removes the entry.
    pub fn finish(&self, key: &str, result: RunResult) {
        let Some(entry) = self.inner.lock().runs.remove(key) else {
            return;
        };
        let mut waiters = entry.waiters.into_iter();
        let last = waiters.next_back();
        for tx in waiters {
            let _ = tx.send(result.clone());
        }
        if let Some(tx) = last {
            let _ = tx.send(result);
        }
    }

    /// Runs in the table (admitted and not finished).
    pub fn len(&self) -> usize {
        self.inner.lock().runs.len()
    }

    /// Starts (or restarts, after the gateway forgot the run) accumulation for `key`, applying
    /// events that arrived before. Returns the receiver of the run's end.
    pub fn accumulate(&self, key: &str, cap_bytes: usize) -> Option<oneshot::Receiver<RunEnd>> {
        let mut inner = self.inner.lock();
        let held = inner.early.take(key);
        let entry = inner.runs.get_mut(key)?;
        let (tx, rx) = oneshot::channel();
        let numbers = entry
            .progress
            .as_ref()
            .map(|p| p.numbers)
            .unwrap_or_default();
        let progress = entry.progress.insert(Box::new(Progress {
            acc: ReplyAccumulator::new(cap_bytes),
            numbers,
            done: Some(tx),
        }));
        let now = Instant::now();
        for raw in held {
            if let Ok(event) = serde_json::from_str::<ChatEvent>(&raw) {
                apply(progress, &event, now);
            }
        }
        Some(rx)
    }

    /// Progress numbers of a run.
    pub fn progress(&self, key: &str) -> ProgressSnapshot {
        self.inner
            .lock()
            .runs
            .get(key)
            .and_then(|e| e.progress.as_ref())
            .map(|p| p.numbers)
            .unwrap_or_default()
    }

    /// Routes one `chat` event payload (the reader's hot path). Returns how many held events
    /// were dropped.
    pub fn on_chat_event(&self, raw: &str, now: Instant) -> u64 {
        // Parsed once, outside the lock; a run we do not know keeps the raw text for later.
        let event = match serde_json::from_str::<ChatEvent>(raw) {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(error = %e, "malformed chat event (or one without runId) ignored");
                return 0;
            }
        };
        let mut inner = self.inner.lock();
        if let Some(progress) = inner
            .runs
            .get_mut(event.run_id.as_str())
            .and_then(|e| e.progress.as_mut())
        {
            apply(progress, &event, now);
            return 0;
        }
        let dropped = inner.early.hold(&event.run_id, raw, now);
        if dropped > 0 {
            tracing::debug!(
                dropped,
                "chat events for no known run dropped after the hold period"
            );
        }
        dropped
    }
}

fn apply(progress: &mut Progress, event: &ChatEvent, now: Instant) {
    match progress.acc.apply(event) {
        Ok(Step::Delta { .. }) => {
            let n = &mut progress.numbers;
            n.deltas += 1;
            n.first_delta_at.get_or_insert(now);
            n.last_delta_at = Some(now);
            n.bytes = progress.acc.text().len();
        }
        Ok(Step::Terminal) => {
            progress.numbers.bytes = progress.acc.text().len();
            if let (Some(tx), Some(outcome)) = (progress.done.take(), progress.acc.take_outcome()) {
                let _ = tx.send(RunEnd::Outcome(outcome));
            }
        }
        Ok(Step::Status | Step::Ignored) => {}
        Err(_) => {
            if let Some(tx) = progress.done.take() {
                let _ = tx.send(RunEnd::CapExceeded);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::chat::{ChatMessage, ChatState};

    fn event(run: &str, state: ChatState, text: Option<&str>) -> String {
        let e = ChatEvent {
            delta_text: text.map(str::to_string),
            message: text.map(|t| ChatMessage::assistant_text(t, 0)),
            ..ChatEvent::new(run, "agent:main:k", state)
        };
        serde_json::to_string(&e).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn events_before_accumulate_are_held_then_applied() {
        let t = RunTable::default();
        assert!(matches!(t.admit("r1"), Admission::New(_)));
        assert!(matches!(t.admit("r1"), Admission::Joined(_)));
        assert!(t.attach("r1").is_some() && t.attach("r2").is_none());
        let now = Instant::now();
        assert_eq!(
            t.on_chat_event(&event("r1", ChatState::Delta, Some("he")), now),
            0
        );
        let mut rx = t.accumulate("r1", 1024).unwrap();
        assert_eq!(t.progress("r1").deltas, 1);
        t.on_chat_event(&event("r1", ChatState::Final, Some("hello")), now);
        match rx.try_recv().unwrap() {
            RunEnd::Outcome(RunOutcome::Completed { text, .. }) => assert_eq!(text, "hello"),
            other => panic!("{other:?}"),
        }
        // A second terminal is ignored (first wins).
        t.on_chat_event(&event("r1", ChatState::Error, None), now);
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_runs_are_bounded_and_expire() {
        let t = RunTable::default();
        let now = Instant::now();
        let raw = event("ghost", ChatState::Delta, Some("x"));
        let mut dropped = 0;
        for _ in 0..(EARLY_PER_RUN + 5) {
            dropped += t.on_chat_event(&raw, now);
        }
        assert_eq!(dropped, 5);
        for i in 0..EARLY_TOTAL {
            t.on_chat_event(&event(&format!("g{i}"), ChatState::Delta, Some("x")), now);
        }
        assert_eq!(t.inner.lock().early.events, EARLY_TOTAL);
        tokio::time::advance(EARLY_HOLD).await;
        let later = Instant::now();
        let dropped = t.on_chat_event(&raw, later);
        assert_eq!(dropped as usize, EARLY_TOTAL);
        assert_eq!(t.inner.lock().early.events, 1);
        assert_eq!(t.on_chat_event("{\"state\":\"delta\"}", later), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn cap_exceeded_and_finish_publishes() {
        let t = RunTable::default();
        let Admission::New(first) = t.admit("r") else {
            panic!()
        };
        let Admission::Joined(second) = t.admit("r") else {
            panic!()
        };
        let mut end = t.accumulate("r", 4).unwrap();
        t.on_chat_event(&event("r", ChatState::Delta, Some("12345")), Instant::now());
        assert!(matches!(end.try_recv().unwrap(), RunEnd::CapExceeded));
        t.finish("r", Err(Error::AccumulationCap));
        assert_eq!(first.await, Err(Error::AccumulationCap));
        assert_eq!(second.await, Err(Error::AccumulationCap));
        assert_eq!(t.len(), 0);
        assert!(matches!(t.admit("r"), Admission::New(_)));
        // A run that vanishes without a result closes its waiters.
        let Admission::Joined(orphan) = t.admit("r") else {
            panic!()
        };
        t.inner.lock().runs.clear();
        assert_eq!(orphan.await, Err(Error::Closed));
    }
}
