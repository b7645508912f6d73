//! [`AgentBackend`] over the real connection layer: one pooled WebSocket per gateway.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use shared_protocol::SessionKey;

use super::agent_backend::{AgentBackend, GatewayHealth, ReplyFuture, Started};
use crate::error::Error;
use crate::gateway::{BreakerState, ConnectionState, GatewayPool, RunRequest};

/// The production backend.
#[derive(Clone)]
pub struct PoolBackend {
    pool: GatewayPool,
    names: Arc<Vec<String>>,
    /// Gateways seen connected at least once (for `/ready`).
    ever_connected: Arc<Mutex<HashSet<String>>>,
}

impl PoolBackend {
    /// Wraps a pool whose gateways are `names`.
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
}

impl AgentBackend for PoolBackend {
    fn run(&self, gateway: &str, request: RunRequest) -> Started {
        let Some(handle) = self.pool.get(gateway) else {
            let e = Error::UnknownGateway(gateway.to_string());
            return Started {
                joined: false,
                reply: async move { Err(e) }.boxed(),
            };
        };
        match handle.start(request) {
            Ok(waiter) => Started {
                joined: waiter.joined(),
                reply: waiter.boxed(),
            },
            Err(e) => Started {
                joined: false,
                reply: async move { Err(e) }.boxed(),
            },
        }
    }

    fn attach(&self, gateway: &str, idempotency_key: &str) -> Option<ReplyFuture> {
        let waiter = self.pool.get(gateway)?.attach(idempotency_key)?;
        Some(waiter.boxed())
    }

    fn reset(&self, gateway: &str, key: &SessionKey) -> BoxFuture<'static, Result<(), Error>> {
        let handle = self.pool.get(gateway);
        let gateway = gateway.to_string();
        let key = key.clone();
        async move {
            let handle = handle.ok_or(Error::UnknownGateway(gateway))?;
            handle.reset_session(&key).await
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

    fn runs_in_flight(&self) -> usize {
        self.names
            .iter()
            .filter_map(|n| self.pool.get(n))
            .map(|h| h.runs_in_flight())
            .sum()
    }
}
