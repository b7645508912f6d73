//! [`AgentBackend`] over the real connection layer: one pooled WebSocket per gateway.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use shared_protocol::SessionKey;

use super::agent_backend::{
    AgentBackend, BackendError, BackendErrorKind, BackendReply, BackendRun, GatewayHealth,
};
use crate::config::GatewayEntry;
use crate::gateway::{
    BreakerState, CertPin, ConnectionState, ErrorKind, GatewayConfig, GatewayError, GatewayPool,
    ReplyOutcome, RunRequest,
};

/// The production backend.
#[derive(Clone)]
pub struct PoolBackend {
    pool: GatewayPool,
    names: Arc<Vec<String>>,
    /// Gateways seen connected at least once (for `/ready`).
    ever_connected: Arc<Mutex<HashSet<String>>>,
}

impl PoolBackend {
    /// Wraps a pool whose gateways were added with [`PoolBackend::gateway_config`].
    pub fn new(pool: GatewayPool, names: Vec<String>) -> Self {
        Self {
            pool,
            names: Arc::new(names),
            ever_connected: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &GatewayPool {
        &self.pool
    }

    /// The connection layer's config for one configured gateway.
    ///
    /// # Errors
    /// [`GatewayError::Config`] for a bad pin.
    pub fn gateway_config(entry: &GatewayEntry) -> Result<GatewayConfig, GatewayError> {
        let mut c = GatewayConfig::new(entry.url.clone(), entry.token.clone());
        c.pins = entry
            .pins
            .iter()
            .map(|p| p.parse::<CertPin>())
            .collect::<Result<_, _>>()?;
        c.device_key_path.clone_from(&entry.device_key_path);
        c.send_ack_timeout = Duration::from_secs(entry.send_ack_timeout_secs);
        c.run_timeout = Duration::from_secs(entry.run_timeout_secs);
        if let Some(n) = entry.max_in_flight {
            c.max_in_flight = n;
        }
        Ok(c)
    }
}

/// Classifies a connection-layer error for the service.
pub fn classify(e: &GatewayError) -> BackendError {
    let kind = match e.kind() {
        ErrorKind::Timeout => BackendErrorKind::Timeout,
        ErrorKind::CircuitOpen => BackendErrorKind::CircuitOpen,
        ErrorKind::Backpressure => BackendErrorKind::Backpressure,
        ErrorKind::Rejected => BackendErrorKind::Rejected,
        ErrorKind::AgentError => BackendErrorKind::AgentFailed,
        ErrorKind::AccumulationCap => BackendErrorKind::TooLarge,
        ErrorKind::Closed => BackendErrorKind::Closed,
        ErrorKind::Unavailable
        | ErrorKind::RateLimited
        | ErrorKind::WsError
        | ErrorKind::Tls
        | ErrorKind::Auth
        | ErrorKind::Config => BackendErrorKind::Unavailable,
    };
    BackendError::new(kind, e.to_string())
}

fn unknown(gateway: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::UnknownGateway,
        format!("no gateway named {gateway:?}"),
    )
}

impl AgentBackend for PoolBackend {
    fn run(&self, run: BackendRun) -> BoxFuture<'static, Result<BackendReply, BackendError>> {
        let handle = self.pool.get(&run.gateway);
        async move {
            let handle = handle.ok_or_else(|| unknown(&run.gateway))?;
            let reply = handle
                .run(RunRequest {
                    session_key: run.session_key,
                    message: run.message,
                    idempotency_key: run.idempotency_key,
                })
                .await
                .map_err(|e| classify(&e))?;
            Ok(BackendReply {
                run_id: reply.run_id,
                text: reply.text,
                aborted: matches!(reply.outcome, ReplyOutcome::Aborted),
                time_to_first_delta: reply.stats.time_to_first_delta,
            })
        }
        .boxed()
    }

    fn reset(
        &self,
        gateway: &str,
        key: &SessionKey,
    ) -> BoxFuture<'static, Result<(), BackendError>> {
        let handle = self.pool.get(gateway);
        let gateway = gateway.to_string();
        let key = key.clone();
        async move {
            let handle = handle.ok_or_else(|| unknown(&gateway))?;
            handle.reset_session(&key).await.map_err(|e| classify(&e))
        }
        .boxed()
    }

    fn health(&self) -> Vec<GatewayHealth> {
        let statuses = self.pool.statuses();
        let mut ever = self.ever_connected.lock();
        self.names
            .iter()
            .map(|name| {
                let status = statuses.iter().find(|(n, _)| n == name).map(|(_, s)| s);
                let connected = status.is_some_and(|s| s.state == ConnectionState::Connected);
                if connected || status.is_some_and(|s| s.server_version.is_some()) {
                    ever.insert(name.clone());
                }
                GatewayHealth {
                    name: name.clone(),
                    state: status.map_or("absent", |s| s.state.as_str()).to_string(),
                    connected,
                    ever_connected: ever.contains(name),
                    breaker_open: status.is_some_and(|s| s.breaker == BreakerState::Open),
                    in_flight: status.map_or(0, |s| s.in_flight),
                    queued: status.map_or(0, |s| s.queued),
                    last_error: status.and_then(|s| s.last_error.clone()),
                }
            })
            .collect()
    }
}
