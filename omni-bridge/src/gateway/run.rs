//! One agent run: `chat.send` with the caller's idempotency key, then the reply from events.
//!
//! A run sees its gateway only through [`RunHost`], the narrow interface the connection
//! implements (admission, the join table, a live link, accounting); it never reaches into the
//! connection's state.
//!
//! Phases and budgets: wait for the session's turn (bounded FIFO, `send_ack_timeout +
//! run_timeout`), then send-ack (`send_ack_timeout`, includes waiting for the connection), then
//! accumulation (`run_timeout`). The run is driven by its own task, so a caller that goes away
//! does not cancel it for a retried request that joined it (same idempotency key). If the
//! socket drops mid-run, the same `chat.send` is re-sent after reconnecting: the gateway answers
//! `in_flight` (events continue), `started` (it lost the run; accumulation restarts) or `ok`
//! (it finished meanwhile; the reply is read back from `chat.history`). If the connection does
//! not come back within `send_ack_timeout`, the run fails with a retryable `Unavailable`; so does
//! a run that never found a connection (the gateway is down), while `SendAckTimeout` means the
//! gateway was connected but did not acknowledge in time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use shared_protocol::RunOutcome;
use shared_protocol::chat::{
    ChatAbortParams, ChatAbortResult, ChatMessage, ChatSendAck, ChatSendParams, ChatSendStatus,
};
use shared_protocol::methods::names as methods;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::breaker::Permit;
use super::link::{Link, RequestError, Response};
use super::reply::{ReplyOutcome, RunReply, RunRequest, RunStats};
use super::runs::{Admission, RunEnd, RunTable, RunWaiter};
use super::session_gate::{Entry, SessionTurn};
use crate::config::GatewayConfig;
use crate::error::{Error, ErrorKind};

/// Messages read back from `chat.history` when a run completed while we were disconnected.
const HISTORY_LIMIT: u32 = 10;
/// Pause before re-sending a `chat.send` answered `UNAVAILABLE` without `retryAfterMs`.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(250);
/// Budget of the best-effort `chat.abort` of a run we gave up on (a timeout).
const ORPHAN_ABORT_BUDGET: Duration = Duration::from_secs(2);
/// After an `error` terminal without `errorKind`, how long to watch for the socket closing: a
/// stopping gateway fails runs it cannot finish ("Gateway is draining; new tasks are not
/// accepted", observed on SIGTERM, no `errorKind`) a few seconds before it closes with 1012,
/// and that is a retryable restart, not an agent failure. Only kind-less errors wait; refusals
/// and other classified failures return at once.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Why waiting for a connection ended without one.
pub enum WaitError {
    /// The deadline passed.
    Timeout,
    /// A definite failure (closed, breaker open, fatal connect error).
    Failed(Error),
}

/// A new run's admission: the breaker's permit and the session's turn (now or later).
pub struct Admitted {
    /// Hand back to [`RunHost::finished`].
    pub permit: Permit,
    /// The session's turn, or the wait for it.
    pub turn: Entry,
}

/// What a run needs from the connection of its gateway.
pub trait RunHost: Send + Sync + Sized + 'static {
    /// The gateway's configured name (logs).
    fn name(&self) -> &str;
    /// Its configuration (budgets and bounds).
    fn config(&self) -> &GatewayConfig;
    /// The join: runs by idempotency key.
    fn runs(&self) -> &RunTable;
    /// Cancelled when the gateway is closed, removed or reconfigured.
    fn cancelled(&self) -> &CancellationToken;
    /// Admits a new run: in-flight bound, the session's queue, the breaker.
    ///
    /// # Errors
    /// `Backpressure`, `SessionQueueFull` or `CircuitOpen`.
    fn admit(&self, session_key: &str) -> Result<Admitted, Error>;
    /// Waits for a queued session turn, at most `send_ack_timeout + run_timeout`.
    fn take_turn(&self, turn: Entry) -> impl Future<Output = Result<SessionTurn, Error>> + Send;
    /// Counts the run in flight until the guard drops.
    ///
    /// # Errors
    /// `Backpressure` at `max_in_flight`.
    fn reserve(self: &Arc<Self>) -> Result<InFlight<Self>, Error>;
    /// Gives the in-flight slot back (called by [`InFlight`]'s drop).
    fn release(&self);
    /// Waits until a link is ready, the deadline passes, or waiting cannot help any more.
    fn wait_link(
        &self,
        deadline: Instant,
    ) -> impl Future<Output = Result<Arc<Link>, WaitError>> + Send;
    /// One request on the current link within `budget` (connection wait included).
    fn request<P: Serialize + Sync>(
        &self,
        method: &str,
        params: &P,
        budget: Duration,
    ) -> impl Future<Output = Result<Response, Error>> + Send;
    /// The last connection or run error, for an "unreachable" message.
    fn last_error(&self) -> Option<String>;
    /// A run ended: breaker, metrics, status and the log line.
    fn finished(&self, permit: Permit, result: &Result<RunReply, Error>, elapsed: Duration);
    /// A run was refused before it started (counted, logged at debug).
    fn refused(&self, error: &Error);
    /// Spawns a task owned by the gateway.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);
}

/// An in-flight slot; released on drop.
pub struct InFlight<H: RunHost> {
    host: Arc<H>,
}

impl<H: RunHost> InFlight<H> {
    /// A slot the host has already counted.
    pub fn new(host: Arc<H>) -> Self {
        Self { host }
    }
}

impl<H: RunHost> Drop for InFlight<H> {
    fn drop(&mut self) {
        self.host.release();
    }
}

/// Joins the run of this idempotency key, or starts it; the waiter resolves with its result.
///
/// # Errors
/// The admission's refusal (`CircuitOpen`, `Backpressure`, `SessionQueueFull`), `Closed`, or an
/// empty key (`Config`).
pub fn start<H: RunHost>(host: &Arc<H>, request: RunRequest) -> Result<RunWaiter, Error> {
    if host.cancelled().is_cancelled() {
        return Err(Error::Closed);
    }
    if request.idempotency_key.is_empty() {
        return Err(Error::Config("empty idempotency key".into()));
    }
    let waiter = match host.runs().admit(&request.idempotency_key) {
        Admission::Joined(waiter) => {
            tracing::debug!(gateway = %host.name(), run_id = %request.idempotency_key, "joining the run in flight with this idempotency key");
            return Ok(waiter);
        }
        Admission::New(waiter) => waiter,
    };
    match host.admit(request.session_key.as_str()) {
        Ok(admitted) => {
            let span = tracing::debug_span!("run", gateway = %host.name(), run_id = %request.idempotency_key);
            host.spawn(drive(host.clone(), request, admitted).instrument(span));
            Ok(waiter)
        }
        Err(e) => {
            host.refused(&e);
            host.runs().finish(&request.idempotency_key, Err(e.clone()));
            Err(e)
        }
    }
}

async fn drive<H: RunHost>(host: Arc<H>, request: RunRequest, admitted: Admitted) {
    let started = Instant::now();
    tracing::debug!(message = %request.message, "run starting");
    let Admitted { permit, turn } = admitted;
    // The rare, large waits are boxed so that the task of a run in flight stays small: memory per
    // run in flight is what bounds how many one connection carries.
    let (result, turn) = match Box::pin(host.take_turn(turn)).await {
        Ok(turn) => (
            Box::pin(drive_phases(&host, &request, started)).await,
            Some(turn),
        ),
        Err(e) => (Err(e), None),
    };
    let orphaned = matches!(
        result,
        Err(Error::SendAckTimeout(_) | Error::RunTimeout { .. })
    );
    host.finished(permit, &result, started.elapsed());
    if let Err(e) = &result {
        tracing::warn!(
            gateway = %host.name(),
            run_id = %request.idempotency_key,
            session_key = %request.session_key.as_str(),
            kind = e.kind().as_str(),
            side = e.side().as_str(),
            error = %e,
            "run failed"
        );
    }
    host.runs().finish(&request.idempotency_key, result);
    if orphaned && !host.cancelled().is_cancelled() {
        Box::pin(abort_orphan(&*host, &request)).await;
    }
    drop(turn);
}

/// After a timeout the gateway may still be running the turn; left alone, it would absorb the
/// session's next message (steer). Abort it, best effort, while we still hold the turn.
async fn abort_orphan<H: RunHost>(host: &H, request: &RunRequest) {
    let params = ChatAbortParams {
        session_key: request.session_key.as_str().to_string(),
        run_id: Some(request.idempotency_key.clone()),
        agent_id: None,
        preserve_side_runs: None,
    };
    match host
        .request(methods::CHAT_ABORT, &params, ORPHAN_ABORT_BUDGET)
        .await
        .and_then(|r| r.into_payload::<ChatAbortResult>())
    {
        Ok(r) => tracing::info!(aborted = r.aborted, "timed-out run aborted on the gateway"),
        Err(e) => tracing::debug!(error = %e, "could not abort the timed-out run"),
    }
}

/// The send, re-send and accumulation of one run. Its own future (boxed by the caller), so that
/// the driver task of a run waiting for its turn stays small.
async fn drive_phases<H: RunHost>(
    host: &Arc<H>,
    request: &RunRequest,
    started: Instant,
) -> Result<RunReply, Error> {
    let config = host.config();
    let _slot = host.reserve()?;
    let key = request.idempotency_key.as_str();
    // Encoded once (a few hundred bytes of JSON) for the first send and any re-send.
    let params: Box<RawValue> = serde_json::value::to_raw_value(&ChatSendParams::new(
        request.session_key.as_str(),
        &request.message,
        key,
    ))
    .map_err(|e| Error::Protocol(e.to_string()))?;
    let cap = config.reply_cap_bytes;
    let mut end_rx = host.runs().accumulate(key, cap).ok_or(Error::Closed)?;
    let first_send = Instant::now();
    let ack_deadline = first_send + config.send_ack_timeout;
    let mut run_deadline: Option<Instant> = None;
    let mut time_to_ack = None;
    loop {
        let resent = run_deadline.is_some();
        let wait_deadline = match run_deadline {
            None => ack_deadline,
            Some(rd) => rd.min(Instant::now() + config.send_ack_timeout),
        };
        let lost = || Error::Unavailable {
            message: "connection to the gateway lost mid-run and not restored in time".into(),
            retry_after: None,
        };
        let link = match Box::pin(host.wait_link(wait_deadline)).await {
            Ok(link) => link,
            Err(WaitError::Failed(e)) => return Err(e),
            Err(WaitError::Timeout) if resent => return Err(lost()),
            // Nothing was sent: the gateway was not reachable during the whole budget. That is
            // "unavailable", not a slow agent.
            Err(WaitError::Timeout) => return Err(unreachable(&**host, config.send_ack_timeout)),
        };
        let response =
            match Box::pin(link.request(methods::CHAT_SEND, &params, wait_deadline)).await {
                Ok(response) => response,
                Err(RequestError::Lost) => continue,
                Err(RequestError::Timeout) if resent => return Err(lost()),
                Err(RequestError::Timeout) => {
                    return Err(Error::SendAckTimeout(config.send_ack_timeout));
                }
                Err(RequestError::Failed(e)) => return Err(e),
            };
        let ack: ChatSendAck = match response.into_payload() {
            Ok(ack) => ack,
            // Starting or overloaded (the gateway asks us to come back): same idempotency key,
            // so retrying is safe while the budget lasts.
            Err(e) if e.kind() == ErrorKind::Unavailable && e.is_retryable() => {
                let pause = e.retry_after().unwrap_or(UNAVAILABLE_PAUSE);
                if Instant::now() + pause >= wait_deadline {
                    return Err(e);
                }
                tracing::debug!(
                    pause_ms = pause.as_millis() as u64,
                    "chat.send unavailable; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = host.cancelled().cancelled() => return Err(Error::Closed),
                }
            }
            Err(e) => return Err(e),
        };
        let time_to_ack = *time_to_ack.get_or_insert(started.elapsed());
        match &ack.status {
            ChatSendStatus::Started if resent => {
                tracing::info!("gateway lost the run while we were disconnected; it started again");
                end_rx = host.runs().accumulate(key, cap).ok_or(Error::Closed)?;
            }
            ChatSendStatus::Started | ChatSendStatus::InFlight => {}
            ChatSendStatus::Ok => {
                tracing::info!("run already completed; reading the reply from chat.history");
                let text = Box::pin(recover_from_history(&**host, request)).await?;
                let stats = stats(&**host, key, time_to_ack, first_send, started, text.len());
                return Ok(RunReply {
                    run_id: key.to_string(),
                    text,
                    outcome: ReplyOutcome::Completed,
                    stats,
                });
            }
            ChatSendStatus::Error | ChatSendStatus::Unknown(_) => {
                return Err(Error::Unavailable {
                    message: ack
                        .summary
                        .unwrap_or_else(|| format!("chat.send status {}", ack.status)),
                    retry_after: None,
                });
            }
        }
        if resent {
            tracing::info!(status = %ack.status, "run re-sent after reconnect");
        }
        let rd = *run_deadline.get_or_insert(Instant::now() + config.run_timeout);
        tokio::select! {
            end = &mut end_rx => {
                let end = end.map_err(|_| Error::Closed)?;
                if matches!(&end, RunEnd::Outcome(RunOutcome::Failed { error_kind: None, .. }))
                    && (link.is_draining()
                        || Box::pin(tokio::time::timeout(DRAIN_GRACE, link.closed())).await.is_ok())
                {
                    return Err(Error::Unavailable {
                        message: "the gateway is restarting and cut the run short".into(),
                        retry_after: None,
                    });
                }
                return finish(&**host, key, end, time_to_ack, first_send, started);
            }
            () = link.closed() => {
                tracing::info!("connection lost mid-run; will re-send after reconnecting");
            }
            () = tokio::time::sleep_until(rd) => {
                let p = host.runs().progress(key);
                if p.deltas == 0 {
                    tracing::warn!(gateway = %host.name(), run_id = %key, "dead response: the agent never answered");
                } else {
                    tracing::warn!(gateway = %host.name(), run_id = %key, deltas = p.deltas, since_last_delta_ms = p.last_delta_at.map(|t| t.elapsed().as_millis() as u64), "run stalled mid-stream");
                }
                return Err(Error::RunTimeout { stalled_mid_stream: p.deltas > 0, deltas: p.deltas });
            }
            () = host.cancelled().cancelled() => return Err(Error::Closed),
        }
    }
}

/// The error of a run that found no connection within its send-ack budget.
fn unreachable<H: RunHost>(host: &H, budget: Duration) -> Error {
    Error::Unavailable {
        message: match host.last_error() {
            Some(e) => format!("no connection to the gateway within {budget:?} (last error: {e})"),
            None => format!("no connection to the gateway within {budget:?}"),
        },
        retry_after: None,
    }
}

fn stats<H: RunHost>(
    host: &H,
    key: &str,
    time_to_ack: Duration,
    first_send: Instant,
    started: Instant,
    bytes: usize,
) -> RunStats {
    let p = host.runs().progress(key);
    RunStats {
        time_to_ack,
        time_to_first_delta: p.first_delta_at.map(|t| t.duration_since(first_send)),
        deltas: p.deltas,
        bytes,
        duration: started.elapsed(),
    }
}

fn finish<H: RunHost>(
    host: &H,
    key: &str,
    end: RunEnd,
    time_to_ack: Duration,
    first_send: Instant,
    started: Instant,
) -> Result<RunReply, Error> {
    let (text, outcome) = match end {
        RunEnd::Outcome(RunOutcome::Completed { text, .. }) => (text, ReplyOutcome::Completed),
        RunEnd::Outcome(RunOutcome::Aborted { partial, .. }) => (partial, ReplyOutcome::Aborted),
        RunEnd::Outcome(RunOutcome::Failed {
            error_message,
            error_kind,
            ..
        }) => {
            return Err(Error::AgentFailed {
                message: error_message,
                kind: error_kind,
            });
        }
        RunEnd::CapExceeded => return Err(Error::AccumulationCap),
    };
    let stats = stats(host, key, time_to_ack, first_send, started, text.len());
    Ok(RunReply {
        run_id: key.to_string(),
        text,
        outcome,
        stats,
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct History {
    messages: Vec<ChatMessage>,
}

async fn recover_from_history<H: RunHost>(host: &H, request: &RunRequest) -> Result<String, Error> {
    let params = serde_json::json!({
        "sessionKey": request.session_key.as_str(),
        "limit": HISTORY_LIMIT,
    });
    let history: History = host
        .request(
            methods::CHAT_HISTORY,
            &params,
            host.config().send_ack_timeout,
        )
        .await?
        .into_payload()?;
    history
        .messages
        .iter()
        .rev()
        .find(|m| m.role.as_deref() == Some("assistant"))
        .map(ChatMessage::text)
        .ok_or_else(|| Error::Unavailable {
            message: "the run completed while disconnected and its reply is not in chat.history"
                .into(),
            retry_after: None,
        })
}
