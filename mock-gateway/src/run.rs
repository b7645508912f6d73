//! One chat run: status events, paced deltas, steered follow-ups, and its terminal event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::json;
use shared_protocol::chat::{ChatEvent, ChatMessage, ChatState, QueueMode};
use shared_protocol::events::names;
use tokio_util::sync::CancellationToken;

use crate::chat::ChatBook;
use crate::config::{MAX_STEERED_MESSAGES, SLOW_DELTA_INTERVAL};
use crate::fault::RunFault;
use crate::reply::{is_provider_failure, is_slow, reply_chunks};
use crate::state::{Audience, Gateway, now_ms};

/// Why a run was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `chat.abort`: ends `aborted`, stopReason `rpc`, partial text.
    Abort,
    /// `queueMode: interrupt`: ends `aborted` (stopReason `aborted`), or an empty `final` before any text.
    Interrupt,
    /// Restart or stop of the mock: no terminal event at all.
    Vanish,
}

/// A run in progress, shared between its task and the methods that steer or stop it.
#[derive(Debug)]
pub(crate) struct RunCtl {
    /// The run id (= idempotency key).
    pub run_id: String,
    /// Canonical session key.
    pub session_key: String,
    /// The message that started it.
    pub message: String,
    /// Its fault, if one was queued.
    pub fault: Option<RunFault>,
    /// The connection that sent the chat.send (for `DropConnectionAfterDeltas`).
    pub origin_conn: u64,
    stop: Mutex<Option<Stop>>,
    stopped: CancellationToken,
    /// Messages sent while the model streams: their replies join this run's text.
    steered: Mutex<VecDeque<String>>,
    /// Messages sent before the model streamed: they run afterwards under new run ids.
    followups: Mutex<VecDeque<String>>,
    /// Set once the first delta went out.
    streaming: std::sync::atomic::AtomicBool,
}

impl RunCtl {
    /// A new run.
    pub fn new(
        run_id: String,
        session_key: String,
        message: String,
        fault: Option<RunFault>,
        origin_conn: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            run_id,
            session_key,
            message,
            fault,
            origin_conn,
            stop: Mutex::new(None),
            stopped: CancellationToken::new(),
            steered: Mutex::new(VecDeque::new()),
            followups: Mutex::new(VecDeque::new()),
            streaming: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Stops the run (the first reason wins).
    pub fn stop(&self, why: Stop) {
        let mut stop = self.stop.lock();
        if stop.is_none() {
            *stop = Some(why);
        }
        self.stopped.cancel();
    }

    /// Queues a message sent while this run is active (default queue mode `steer`). Observed on
    /// the real gateway: once the model streams, the reply is appended to this run's text
    /// (`"\n\n"`-joined); before that, it runs after this one under a new, unannounced run id.
    /// `queueMode` `followup`/`collect` always run afterwards. False when
    /// [`MAX_STEERED_MESSAGES`] are already waiting.
    pub fn steer(&self, message: String, mode: Option<QueueMode>) -> bool {
        let follow = matches!(mode, Some(QueueMode::Followup | QueueMode::Collect));
        let mut q = if !follow && self.streaming.load(std::sync::atomic::Ordering::SeqCst) {
            self.steered.lock()
        } else {
            self.followups.lock()
        };
        if q.len() >= MAX_STEERED_MESSAGES {
            return false;
        }
        q.push_back(message);
        true
    }

    fn stop_reason(&self) -> Stop {
        self.stop.lock().unwrap_or(Stop::Vanish)
    }
}

/// The `chat` event of a run with the common fields filled in.
pub(crate) fn chat_event(run_id: &str, session_key: &str, state: ChatState, seq: u64) -> ChatEvent {
    let mut ev = ChatEvent::new(run_id, session_key, state);
    ev.agent_id = session_key.split(':').nth(1).map(str::to_string);
    ev.seq = Some(seq);
    ev
}

/// A `final` the gateway emits outside the agent run (steered or early-interrupted sends, slash
/// commands): payload `seq` 1 and no `agentId` (observed).
pub(crate) fn synthetic_final(run_id: &str, session_key: &str) -> ChatEvent {
    let mut ev = chat_event(run_id, session_key, ChatState::Final, 1);
    ev.agent_id = None;
    ev
}

/// Broadcasts a `chat` event to every read-scoped socket (deltas may be dropped for slow ones).
pub(crate) fn emit(gw: &Gateway, ev: &ChatEvent) {
    let droppable = ev.state == ChatState::Delta;
    gw.broadcast(names::CHAT, ev, Audience::Readers, droppable);
}

struct Runner {
    gw: Arc<Gateway>,
    run: Arc<RunCtl>,
    /// The run id events carry: the ctl's, or a new one for each follow-up.
    run_id: String,
    seq: u64,
    text: String,
    deltas: usize,
}

enum Paused {
    Go,
    Stopped,
}

impl Runner {
    fn event(&mut self, state: ChatState) -> ChatEvent {
        self.seq += 1;
        chat_event(&self.run_id, &self.run.session_key, state, self.seq)
    }

    async fn pause(&self, d: Duration) -> Paused {
        // A zero interval only yields: tokio's timer would round it up to a 1 ms tick, which made
        // an "instant" mock cost ~11 ms per run.
        let pace = async {
            if d.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(d).await;
            }
        };
        tokio::select! {
            biased;
            () = self.run.stopped.cancelled() => Paused::Stopped,
            () = self.gw.shutdown.cancelled() => { self.run.stop(Stop::Vanish); Paused::Stopped }
            () = pace => Paused::Go,
        }
    }

    async fn wait_for_stop(&self) {
        tokio::select! {
            () = self.run.stopped.cancelled() => {}
            () = self.gw.shutdown.cancelled() => self.run.stop(Stop::Vanish),
        }
    }

    fn snapshot(&self) -> ChatMessage {
        ChatMessage::assistant_text(&self.text, now_ms())
    }

    /// Ends the run after an outside stop (queued follow-ups are dropped with it).
    fn stopped(&mut self) {
        self.run.followups.lock().clear();
        match self.run.stop_reason() {
            Stop::Vanish => {}
            Stop::Abort => {
                let mut ev = self.event(ChatState::Aborted);
                if !self.text.is_empty() {
                    ev.message = Some(self.snapshot());
                }
                ev.stop_reason = Some("rpc".into());
                emit(&self.gw, &ev);
            }
            // Observed: an interrupted run with text ends `aborted` (stopReason `aborted`, the
            // partial text); one interrupted before any text ends with an empty `final`.
            Stop::Interrupt if self.text.is_empty() => {
                emit(
                    &self.gw,
                    &synthetic_final(&self.run.run_id, &self.run.session_key),
                );
            }
            Stop::Interrupt => {
                let mut ev = self.event(ChatState::Aborted);
                ev.message = Some(self.snapshot());
                ev.stop_reason = Some("aborted".into());
                emit(&self.gw, &ev);
            }
        }
        self.finish();
    }

    /// Forgets the run (if still registered), records the reply, marks the key done.
    fn finish(&self) {
        let mut book = self.gw.chat.lock();
        if self.run.followups.lock().is_empty()
            && book
                .active
                .get(&self.run.session_key)
                .is_some_and(|r| Arc::ptr_eq(r, &self.run))
        {
            book.active.remove(&self.run.session_key);
        }
        book.dedupe.finish(&self.run.run_id);
        if !self.text.is_empty() {
            let msg = json!({"role":"assistant","content":[{"type":"text","text":self.text}],"timestamp":now_ms()});
            book.sessions.get_or_create(&self.run.session_key).push(msg);
        }
    }

    fn error(&mut self, message: &str, with_agent: bool) {
        let mut ev = self.event(ChatState::Error);
        if !with_agent {
            ev.agent_id = None;
            ev.seq = Some(1);
        }
        ev.error_message = Some(message.to_string());
        emit(&self.gw, &ev);
    }

    /// Streams one message's reply; `false` when the run was stopped or must go silent.
    async fn stream(&mut self, message: &str) -> bool {
        let chunks = reply_chunks(message);
        let mut raw = if self.text.is_empty() {
            String::new()
        } else {
            format!("{}\n\n", self.text)
        };
        if self.deltas == 0 && !self.delta_count_fault().await {
            return false;
        }
        for chunk in &chunks {
            let pacing = if is_slow(message) {
                SLOW_DELTA_INTERVAL
            } else {
                self.gw.config.delta_interval
            };
            if let Paused::Stopped = self.pause(pacing).await {
                self.stopped();
                return false;
            }
            raw.push_str(chunk);
            let snapshot = raw.trim_end();
            if snapshot.len() <= self.text.len() || !snapshot.starts_with(self.text.as_str()) {
                continue;
            }
            let delta = snapshot[self.text.len()..].to_string();
            self.text = snapshot.to_string();
            let mut ev = self.event(ChatState::Delta);
            ev.delta_text = Some(delta);
            ev.message = Some(self.snapshot());
            emit(&self.gw, &ev);
            self.run
                .streaming
                .store(true, std::sync::atomic::Ordering::SeqCst);
            self.deltas += 1;
            if !self.delta_count_fault().await {
                return false;
            }
        }
        true
    }

    /// Applies a fault that fires after a number of deltas (also after none, before the first);
    /// `false` when the run must stop streaming.
    async fn delta_count_fault(&mut self) -> bool {
        match &self.run.fault {
            Some(RunFault::Abort) if self.deltas > 0 => {
                self.run.stop(Stop::Abort);
                self.stopped();
                false
            }
            Some(RunFault::StallAfterDeltas(n)) if self.deltas == *n => {
                self.wait_for_stop().await;
                self.stopped();
                false
            }
            Some(RunFault::DropConnectionAfterDeltas(n)) if self.deltas == *n => {
                self.gw.kill(self.run.origin_conn);
                true
            }
            _ => true,
        }
    }

    async fn drive(mut self) {
        for phase in ["preparing_workspace", "preparing_context", "starting_model"] {
            if let Paused::Stopped = self.pause(self.gw.config.delta_interval).await {
                return self.stopped();
            }
            let mut ev = self.event(ChatState::Status);
            ev.phase = Some(phase.into());
            emit(&self.gw, &ev);
        }
        if let Some(RunFault::Error { message }) = &self.run.fault {
            let message = message.clone();
            self.error(&message, true);
            return self.finish();
        }
        if is_provider_failure(&self.run.message) {
            self.error(PROVIDER_FAILURE, true);
            self.error(AGENT_FAILED, false);
            return self.finish();
        }
        let mut message = self.run.message.clone();
        loop {
            if !self.stream(&message).await {
                return;
            }
            let next = {
                let mut book = self.gw.chat.lock();
                let next = self.run.steered.lock().pop_front();
                if next.is_none()
                    && self.run.fault != Some(RunFault::NeverFinish)
                    && self.run.followups.lock().is_empty()
                {
                    self.leave_session(&mut book);
                }
                next
            };
            match next {
                Some(m) => message = m,
                None => break,
            }
        }
        if self.run.fault == Some(RunFault::NeverFinish) {
            self.wait_for_stop().await;
            return self.stopped();
        }
        self.complete();
        if self.run.fault == Some(RunFault::DoubleTerminal) {
            self.error(AGENT_FAILED, false);
        }
        self.finish();
        // Follow-ups: each under a new run id, deltas then final, no status events (observed).
        while let Some(message) = self.next_followup() {
            self.run_id = uuid::Uuid::new_v4().to_string();
            self.text.clear();
            self.seq = 0;
            if !self.stream(&message).await {
                return;
            }
            self.complete();
            self.finish();
        }
    }

    fn complete(&mut self) {
        let mut ev = self.event(ChatState::Final);
        ev.message = Some(self.snapshot());
        ev.stop_reason = Some("stop".into());
        emit(&self.gw, &ev);
    }

    /// The next follow-up; when none is left the run leaves the session.
    fn next_followup(&self) -> Option<String> {
        let mut book = self.gw.chat.lock();
        let next = self.run.followups.lock().pop_front();
        if next.is_none() {
            self.leave_session(&mut book);
        }
        next
    }

    /// Frees the session for the next run, if this run still holds it.
    fn leave_session(&self, book: &mut ChatBook) {
        if book
            .active
            .get(&self.run.session_key)
            .is_some_and(|r| Arc::ptr_eq(r, &self.run))
        {
            book.active.remove(&self.run.session_key);
        }
    }
}

/// First terminal of a provider failure (as observed with `FAIL500`).
const PROVIDER_FAILURE: &str = "⚠️ fakellm/fake-model request failed (provider internal error, HTTP 500). This is usually temporary — try again shortly.";
/// The second terminal the gateway sends after a failed run.
const AGENT_FAILED: &str = "⚠️ Agent failed before reply: the model provider failed. To view logs, run `openclaw logs --follow` in a terminal.";

/// Runs `run` to its end (spawned on the gateway's tracker).
pub(crate) async fn drive(gw: Arc<Gateway>, run: Arc<RunCtl>) {
    Runner {
        gw,
        run_id: run.run_id.clone(),
        run,
        seq: 0,
        text: String::new(),
        deltas: 0,
    }
    .drive()
    .await;
}
