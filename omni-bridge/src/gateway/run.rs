//! One agent run: `chat.send` with the caller's idempotency key, then the reply from events.
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

use std::sync::Arc;
use std::time::Duration;

use shared_protocol::chat::{
    ChatAbortParams, ChatAbortResult, ChatMessage, ChatSendAck, ChatSendParams, ChatSendStatus,
};
use shared_protocol::methods::names as methods;
use shared_protocol::{RunOutcome, SessionKey};
use tokio::time::Instant;
use tracing::Instrument;

use super::breaker::Permit;
use super::connection::{Gateway, WaitError};
use super::error::GatewayError;
use super::link::RequestError;
use super::runs::{Admission, RunEnd};
use super::session_gate::{Entry, SessionTurn};

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

/// A message for an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Canonical session key (`agent:<id>:<rest>`).
    pub session_key: SessionKey,
    /// The message text (logged only at debug level).
    pub message: String,
    /// Becomes the runId; a second `run()` with the same key while the first is in flight
    /// joins it, and the gateway deduplicates it for 5 minutes.
    pub idempotency_key: String,
}

/// How a run that produced a reply ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyOutcome {
    /// `final`.
    Completed,
    /// `aborted` (the text is what was written before).
    Aborted,
}

impl ReplyOutcome {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Aborted => "aborted",
        }
    }
}

/// Timing and size of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunStats {
    /// From `run()` to the `chat.send` ack (queue and connection wait included).
    pub time_to_ack: Duration,
    /// From the first `chat.send` to the first text delta.
    pub time_to_first_delta: Option<Duration>,
    /// Text deltas received.
    pub deltas: u32,
    /// Reply size in bytes.
    pub bytes: usize,
    /// From `run()` to the end.
    pub duration: Duration,
}

/// The reply of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReply {
    /// The runId (= idempotency key).
    pub run_id: String,
    /// The full reply text.
    pub text: String,
    /// Completed or aborted.
    pub outcome: ReplyOutcome,
    /// Timing and size.
    pub stats: RunStats,
}

/// `run()`: join or start, then wait for the result.
pub async fn run(gateway: &Arc<Gateway>, request: RunRequest) -> Result<RunReply, GatewayError> {
    if gateway.cancel.is_cancelled() {
        return Err(GatewayError::Closed);
    }
    if request.idempotency_key.is_empty() {
        return Err(GatewayError::Config("empty idempotency key".into()));
    }
    let key = request.idempotency_key.clone();
    let mut rx = match gateway.runs.admit(&key) {
        Admission::Joined(rx) => {
            tracing::debug!(gateway = %gateway.name, run_id = %key, "joining the run in flight with this idempotency key");
            rx
        }
        Admission::New(rx) => {
            match admit_new(gateway, &request) {
                Ok((permit, entry)) => {
                    gateway.refresh_queued();
                    let span = tracing::info_span!("run", gateway = %gateway.name, run_id = %key, session_key = %request.session_key.as_str());
                    gateway
                        .tracker
                        .spawn(drive(gateway.clone(), request, permit, entry).instrument(span));
                }
                Err(e) => {
                    gateway.metrics.error(e.kind());
                    gateway.runs.finish(&key, Err(e.clone()));
                    return Err(e);
                }
            }
            rx
        }
    };
    let result = rx.wait_for(Option::is_some).await;
    match result {
        Ok(r) => r.clone().unwrap_or(Err(GatewayError::Closed)),
        Err(_) => Err(GatewayError::Closed),
    }
}

fn admit_new(
    gateway: &Arc<Gateway>,
    request: &RunRequest,
) -> Result<(Permit, Entry), GatewayError> {
    if gateway.is_saturated() {
        return Err(GatewayError::Backpressure);
    }
    let entry = gateway.sessions.enter(
        request.session_key.as_str(),
        gateway.config.max_queued_per_session,
    )?;
    let permit = gateway.admit()?;
    Ok((permit, entry))
}

async fn drive(gateway: Arc<Gateway>, request: RunRequest, permit: Permit, entry: Entry) {
    let started = Instant::now();
    tracing::debug!(message = %request.message, "run starting");
    let (result, turn) = match take_turn(&gateway, entry).await {
        Ok(turn) => (drive_phases(&gateway, &request, started).await, Some(turn)),
        Err(e) => (Err(e), None),
    };
    let orphaned = matches!(
        result,
        Err(GatewayError::SendAckTimeout(_) | GatewayError::RunTimeout { .. })
    );
    gateway.record(permit, result.as_ref().err());
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(reply) => {
            gateway
                .metrics
                .run_finished(reply.outcome.as_str(), seconds);
            if let Some(ttfd) = reply.stats.time_to_first_delta {
                gateway.metrics.first_delta(ttfd.as_secs_f64());
            }
            tracing::info!(
                outcome = reply.outcome.as_str(),
                deltas = reply.stats.deltas,
                bytes = reply.stats.bytes,
                ttfd_ms = reply
                    .stats
                    .time_to_first_delta
                    .map(|d| d.as_millis() as u64),
                duration_ms = reply.stats.duration.as_millis() as u64,
                "run finished"
            );
        }
        Err(e) => {
            gateway.metrics.error(e.kind());
            gateway.metrics.run_finished(e.kind().as_str(), seconds);
            gateway.set_error(e.to_string());
            tracing::warn!(kind = e.kind().as_str(), error = %e, "run failed");
        }
    }
    gateway.runs.finish(&request.idempotency_key, result);
    if orphaned && !gateway.cancel.is_cancelled() {
        abort_orphan(&gateway, &request).await;
    }
    drop(turn);
}

/// Waits for the session's turn (bounded FIFO).
async fn take_turn(gateway: &Gateway, entry: Entry) -> Result<SessionTurn, GatewayError> {
    match entry {
        Entry::Now(turn) => Ok(turn),
        Entry::Queued(rx) => {
            let budget = gateway.config.send_ack_timeout + gateway.config.run_timeout;
            let turn = tokio::select! {
                turn = rx => turn.map_err(|_| GatewayError::Closed),
                () = tokio::time::sleep(budget) => Err(GatewayError::QueueTimeout),
                () = gateway.cancel.cancelled() => Err(GatewayError::Closed),
            };
            gateway.refresh_queued();
            turn
        }
    }
}

/// After a timeout the gateway may still be running the turn; left alone, it would absorb the
/// session's next message (steer). Abort it, best effort, while we still hold the turn.
async fn abort_orphan(gateway: &Gateway, request: &RunRequest) {
    let params = ChatAbortParams {
        session_key: request.session_key.as_str().to_string(),
        run_id: Some(request.idempotency_key.clone()),
        agent_id: None,
        preserve_side_runs: None,
    };
    match gateway
        .request(methods::CHAT_ABORT, &params, ORPHAN_ABORT_BUDGET)
        .await
        .and_then(|r| r.into_payload::<ChatAbortResult>())
    {
        Ok(r) => tracing::info!(aborted = r.aborted, "timed-out run aborted on the gateway"),
        Err(e) => tracing::debug!(error = %e, "could not abort the timed-out run"),
    }
}

async fn drive_phases(
    gateway: &Arc<Gateway>,
    request: &RunRequest,
    started: Instant,
) -> Result<RunReply, GatewayError> {
    let config = &gateway.config;
    let _slot = gateway.reserve()?;
    let key = request.idempotency_key.as_str();
    // Encoded once (a few hundred bytes of JSON) instead of keeping the wide params struct in
    // every run's future.
    let params = serde_json::value::to_raw_value(&ChatSendParams::new(
        request.session_key.as_str(),
        &request.message,
        key,
    ))
    .map_err(|e| GatewayError::Protocol(e.to_string()))?;
    let cap = config.reply_cap_bytes;
    let mut end_rx = gateway
        .runs
        .accumulate(key, cap)
        .ok_or(GatewayError::Closed)?;
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
        let lost = || GatewayError::Unavailable {
            message: "connection to the gateway lost mid-run and not restored in time".into(),
            retry_after: None,
        };
        let link = match gateway.wait_link(wait_deadline).await {
            Ok(link) => link,
            Err(WaitError::Failed(e)) => return Err(e),
            Err(WaitError::Timeout) if resent => return Err(lost()),
            // Nothing was sent: the gateway was not reachable during the whole budget. That is
            // "unavailable", not a slow agent.
            Err(WaitError::Timeout) => return Err(unreachable(gateway, config.send_ack_timeout)),
        };
        let response = match link
            .request(methods::CHAT_SEND, &params, wait_deadline)
            .await
        {
            Ok(response) => response,
            Err(RequestError::Lost) => continue,
            Err(RequestError::Timeout) if resent => return Err(lost()),
            Err(RequestError::Timeout) => {
                return Err(GatewayError::SendAckTimeout(config.send_ack_timeout));
            }
            Err(RequestError::Failed(e)) => return Err(e),
        };
        let ack: ChatSendAck = match response.into_payload() {
            Ok(ack) => ack,
            // Starting or overloaded: same idempotency key, so retrying is safe while the
            // budget lasts.
            Err(GatewayError::Unavailable {
                message,
                retry_after,
            }) => {
                let pause = retry_after.unwrap_or(UNAVAILABLE_PAUSE);
                if Instant::now() + pause >= wait_deadline {
                    return Err(GatewayError::Unavailable {
                        message,
                        retry_after,
                    });
                }
                tracing::debug!(
                    pause_ms = pause.as_millis() as u64,
                    "chat.send unavailable; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = gateway.cancel.cancelled() => return Err(GatewayError::Closed),
                }
            }
            Err(e) => return Err(e),
        };
        let time_to_ack = *time_to_ack.get_or_insert(started.elapsed());
        match &ack.status {
            ChatSendStatus::Started if resent => {
                tracing::info!("gateway lost the run while we were disconnected; it started again");
                end_rx = gateway
                    .runs
                    .accumulate(key, cap)
                    .ok_or(GatewayError::Closed)?;
            }
            ChatSendStatus::Started | ChatSendStatus::InFlight => {}
            ChatSendStatus::Ok => {
                tracing::info!("run already completed; reading the reply from chat.history");
                let text = recover_from_history(gateway, request).await?;
                let stats = stats(gateway, key, time_to_ack, first_send, started, text.len());
                return Ok(RunReply {
                    run_id: key.to_string(),
                    text,
                    outcome: super::run::ReplyOutcome::Completed,
                    stats,
                });
            }
            ChatSendStatus::Error | ChatSendStatus::Unknown(_) => {
                return Err(GatewayError::Unavailable {
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
                let end = end.map_err(|_| GatewayError::Closed)?;
                if matches!(&end, RunEnd::Outcome(RunOutcome::Failed { error_kind: None, .. }))
                    && (link.is_draining()
                        || tokio::time::timeout(DRAIN_GRACE, link.closed()).await.is_ok())
                {
                    return Err(GatewayError::Unavailable {
                        message: "the gateway is restarting and cut the run short".into(),
                        retry_after: None,
                    });
                }
                return finish(gateway, key, end, time_to_ack, first_send, started);
            }
            () = link.closed() => {
                tracing::info!("connection lost mid-run; will re-send after reconnecting");
            }
            () = tokio::time::sleep_until(rd) => {
                let p = gateway.runs.progress(key);
                if p.deltas == 0 {
                    tracing::warn!("dead response: the agent never answered");
                } else {
                    tracing::warn!(deltas = p.deltas, since_last_delta_ms = p.last_delta_at.map(|t| t.elapsed().as_millis() as u64), "run stalled mid-stream");
                }
                return Err(GatewayError::RunTimeout { stalled_mid_stream: p.deltas > 0, deltas: p.deltas });
            }
            () = gateway.cancel.cancelled() => return Err(GatewayError::Closed),
        }
    }
}

/// The error of a run that found no connection within its send-ack budget.
fn unreachable(gateway: &Gateway, budget: Duration) -> GatewayError {
    let last = gateway.status().last_error;
    GatewayError::Unavailable {
        message: match last {
            Some(e) => format!("no connection to the gateway within {budget:?} (last error: {e})"),
            None => format!("no connection to the gateway within {budget:?}"),
        },
        retry_after: None,
    }
}

fn stats(
    gateway: &Gateway,
    key: &str,
    time_to_ack: Duration,
    first_send: Instant,
    started: Instant,
    bytes: usize,
) -> RunStats {
    let p = gateway.runs.progress(key);
    RunStats {
        time_to_ack,
        time_to_first_delta: p.first_delta_at.map(|t| t.duration_since(first_send)),
        deltas: p.deltas,
        bytes,
        duration: started.elapsed(),
    }
}

fn finish(
    gateway: &Gateway,
    key: &str,
    end: RunEnd,
    time_to_ack: Duration,
    first_send: Instant,
    started: Instant,
) -> Result<RunReply, GatewayError> {
    let (text, outcome) = match end {
        RunEnd::Outcome(RunOutcome::Completed { text, .. }) => (text, ReplyOutcome::Completed),
        RunEnd::Outcome(RunOutcome::Aborted { partial, .. }) => (partial, ReplyOutcome::Aborted),
        RunEnd::Outcome(RunOutcome::Failed {
            error_message,
            error_kind,
            ..
        }) => {
            return Err(GatewayError::AgentFailed {
                message: error_message,
                kind: error_kind,
            });
        }
        RunEnd::CapExceeded => return Err(GatewayError::AccumulationCap),
    };
    let stats = stats(gateway, key, time_to_ack, first_send, started, text.len());
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

async fn recover_from_history(
    gateway: &Gateway,
    request: &RunRequest,
) -> Result<String, GatewayError> {
    let params = serde_json::json!({
        "sessionKey": request.session_key.as_str(),
        "limit": HISTORY_LIMIT,
    });
    let history: History = gateway
        .request(
            methods::CHAT_HISTORY,
            &params,
            gateway.config.send_ack_timeout,
        )
        .await?
        .into_payload()?;
    history
        .messages
        .iter()
        .rev()
        .find(|m| m.role.as_deref() == Some("assistant"))
        .map(ChatMessage::text)
        .ok_or_else(|| GatewayError::Unavailable {
            message: "the run completed while disconnected and its reply is not in chat.history"
                .into(),
            retry_after: None,
        })
}
