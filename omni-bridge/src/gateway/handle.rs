//! [`GatewayHandle`]: what the service uses to talk to one gateway.

use std::sync::Arc;
use std::time::Duration;

use shared_protocol::SessionKey;
use shared_protocol::chat::{ChatAbortParams, ChatAbortResult};
use shared_protocol::methods::AgentsListResult;
use shared_protocol::methods::names as methods;
use shared_protocol::sessions::{
    SessionsArchiveParams, SessionsDeleteParams, SessionsDescribeParams, SessionsDescribeResult,
};
use tokio::time::Instant;

use super::connection::Gateway;
use super::reply::{RunReply, RunRequest};
use super::run::{self, RunHost};
use super::runs::RunWaiter;
use super::status::{GatewayCheck, GatewayStatus};
use super::transport::{read_response, send_request};
use crate::error::{ConnectError, Error};

/// A cheap, clonable handle on one gateway connection.
#[derive(Clone)]
pub struct GatewayHandle {
    gateway: Arc<Gateway>,
}

impl std::fmt::Debug for GatewayHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayHandle")
            .field("name", &self.gateway.name())
            .finish_non_exhaustive()
    }
}

impl GatewayHandle {
    pub(super) fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// Sends a message and waits for the agent's full reply.
    ///
    /// One run at a time per session (later ones queue, bounded); a second call with the same
    /// idempotency key while the first is in flight joins it.
    ///
    /// # Errors
    /// [`Error`]: `CircuitOpen`, `Backpressure` and `SessionQueueFull` at once; the
    /// timeouts of each phase; `AgentFailed`, `Rejected`, `Unavailable`, `Closed`...
    pub async fn run(&self, request: RunRequest) -> Result<RunReply, Error> {
        self.start(request)?.await
    }

    /// Starts the run of `request` (or joins the one in flight with its idempotency key) and
    /// returns at once; the [`RunWaiter`] resolves with the result. The run goes on when the
    /// waiter is dropped.
    ///
    /// # Errors
    /// What refuses a run at once: `CircuitOpen`, `Backpressure`, `SessionQueueFull`, `Closed`.
    pub fn start(&self, request: RunRequest) -> Result<RunWaiter, Error> {
        run::start(&self.gateway, request)
    }

    /// Joins the run in flight with this idempotency key, if there is one; never starts a run.
    pub fn attach(&self, idempotency_key: &str) -> Option<RunWaiter> {
        self.gateway.runs().attach(idempotency_key)
    }

    /// Runs admitted on this gateway and not finished (queued ones included).
    pub fn runs_in_flight(&self) -> usize {
        self.gateway.runs().len()
    }

    /// Resets a session with write scope only: `sessions.describe`, then
    /// `sessions.patch {archived:true}`, then `sessions.delete {archivedOnly:true}`, both guarded
    /// by `expectedSessionId`. Waits for the session's active run first (it takes a turn in
    /// the session's queue). A session that does not exist yet is already "reset".
    ///
    /// # Errors
    /// [`Error`] of the failing step.
    pub async fn reset_session(&self, key: &SessionKey) -> Result<(), Error> {
        let g = &self.gateway;
        let budget = g.config().send_ack_timeout;
        let _turn = g.session_turn(key.as_str()).await?;
        let described: SessionsDescribeResult = g
            .request(
                methods::SESSIONS_DESCRIBE,
                &SessionsDescribeParams {
                    key: key.as_str().to_string(),
                },
                budget,
            )
            .await?
            .into_payload()?;
        let Some(session_id) = described.session_id().map(str::to_string) else {
            tracing::info!(gateway = %g.name(), session_key = %key.as_str(), "reset: no session yet");
            return Ok(());
        };
        g.request(
            methods::SESSIONS_PATCH,
            &SessionsArchiveParams {
                key: key.as_str().to_string(),
                archived: true,
                expected_session_id: Some(session_id.clone()),
            },
            budget,
        )
        .await?
        .into_payload::<serde_json::Value>()?;
        g.request(
            methods::SESSIONS_DELETE,
            &SessionsDeleteParams {
                key: key.as_str().to_string(),
                archived_only: true,
                expected_session_id: Some(session_id),
            },
            budget,
        )
        .await?
        .into_payload::<serde_json::Value>()?;
        tracing::info!(gateway = %g.name(), session_key = %key.as_str(), "session reset");
        Ok(())
    }

    /// Aborts the session's run (`runId`) or all its runs; true when something was aborted.
    /// The aborted run's `run()` returns its partial text with `ReplyOutcome::Aborted`.
    ///
    /// # Errors
    /// [`Error`] of the request.
    pub async fn abort(&self, key: &SessionKey, run_id: Option<&str>) -> Result<bool, Error> {
        let params = ChatAbortParams {
            session_key: key.as_str().to_string(),
            run_id: run_id.map(str::to_string),
            agent_id: None,
            preserve_side_runs: None,
        };
        let result: ChatAbortResult = self
            .gateway
            .request(
                methods::CHAT_ABORT,
                &params,
                self.gateway.config().send_ack_timeout,
            )
            .await?
            .into_payload()?;
        Ok(result.aborted)
    }

    /// Current state, breaker, load and identity.
    pub fn status(&self) -> GatewayStatus {
        self.gateway.status()
    }

    /// Opens a fresh connection (not the pooled one), measures the handshake, reads
    /// `agents.list`, and closes it. For `check-gateway`.
    ///
    /// # Errors
    /// [`Error::Connect`] saying exactly what failed, or the `agents.list` error.
    pub async fn check(&self) -> Result<GatewayCheck, Error> {
        let established = self.gateway.dialer()?.dial().await?;
        let mut ws = established.ws;
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = Instant::now() + self.gateway.config().send_ack_timeout;
        let agents = tokio::time::timeout_at(deadline, async {
            send_request(&mut ws, &id, methods::AGENTS_LIST, &serde_json::json!({})).await?;
            read_response(&mut ws, &id).await
        })
        .await
        .map_err(|_| Error::Connect(ConnectError::Timeout))??
        .map_err(Error::from_shape)?;
        let _ = tokio::time::timeout(Duration::from_millis(500), ws.close(None)).await;
        let agents: AgentsListResult =
            serde_json::from_str(&agents).map_err(|e| Error::Protocol(e.to_string()))?;
        Ok(GatewayCheck {
            latency: established.latency,
            server_version: established.hello.server.version,
            granted_scopes: established.hello.auth.scopes,
            agents: agents.agents.into_iter().map(|a| a.id).collect(),
        })
    }
}
