//! The Omni provider HTTP service: Omni's `webhook` provider POSTs each message here and gets the
//! agent's reply in the response (omni-contract §2.1).
//!
//! Endpoints (all on one listener):
//! - `POST /omni/agents/{agentId}/trigger` — a message; `HEAD` on the same path answers 200
//!   (Omni's provider health probe).
//! - `POST /omni/sessions/reset` — `{agentId, instanceId, chatId | sessionId}` clears a session.
//! - `GET /health` — liveness plus per-gateway state (Omni's provider health check).
//! - `GET /ready` — 503 until every configured gateway completed a handshake once, while any
//!   circuit breaker is open, and during shutdown.
//! - `GET /metrics` — Prometheus text.

pub mod agent_backend;
pub mod answer_cache;
pub mod conversation;
pub mod http_util;
pub mod metrics;
pub mod omni_request;
pub mod outcome;
pub mod pool_backend;
pub mod probes;
pub mod prompt;
pub mod reset;
pub mod routes;
pub mod server;
pub mod texts;
pub mod trigger;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::Registry;
use shared_protocol::{AgentId, Secret, SessionKey};
use tokio_util::task::TaskTracker;

use crate::config::BridgeConfig;
use agent_backend::AgentBackend;
use answer_cache::AnswerCache;
use metrics::Metrics;
use texts::Texts;

pub use server::run;

/// Deadline for a session reset (Omni's provider allowed 5 s to connect + 30 s for the request).
pub const RESET_TIMEOUT: Duration = Duration::from_secs(35);

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// An agent id in the config is invalid.
    #[error("agent {agent:?}: {source}")]
    Agent {
        /// Agent name.
        agent: String,
        /// The reason.
        source: shared_protocol::SessionKeyError,
    },
    /// Metric registration failed.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Everything needed to answer one agent's triggers, resolved once from the config.
#[derive(Debug, Clone)]
pub struct AgentRoute {
    /// Name in the path.
    pub name: String,
    /// OpenClaw agent id.
    pub openclaw_agent: AgentId,
    /// Gateway name.
    pub gateway: String,
    /// `[Name]: ` prefix on.
    pub sender_prefix: bool,
    /// Reset command.
    pub reset_command: String,
    /// User-facing texts.
    pub texts: Texts,
}

/// The service state shared by every connection.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    /// Agents by lower-cased path name.
    agents: HashMap<String, Arc<AgentRoute>>,
    /// Omni instance id -> lower-cased agent name.
    instances: HashMap<String, String>,
    /// Configured gateway names (readiness).
    gateways: Vec<String>,
    /// What Omni must send as `Authorization: Bearer`.
    inbound_token: Secret,
    /// Makes session keys non-enumerable when set.
    session_key_secret: Option<Secret>,
    /// Runs agents; holds the join of deliveries of one trace.
    backend: Arc<dyn AgentBackend>,
    /// Finished answers for repeated deliveries.
    answers: AnswerCache,
    metrics: Metrics,
    registry: Registry,
    /// Texts for answers that belong to no agent (a trigger for an agent this bridge does not
    /// serve): the `en` texts with the config's `[texts.en]`.
    default_texts: Texts,
    /// A token per request waiting for a run or a reset, so shutdown can wait for them.
    runs: TaskTracker,
    /// Owns every connection task.
    conns: TaskTracker,
    shutting_down: AtomicBool,
    /// Time in-flight requests get on shutdown.
    grace: Duration,
    /// Most HTTP connections served at once.
    max_connections: usize,
}

impl Service {
    /// Builds the service from a validated config.
    ///
    /// # Errors
    /// [`ServiceError`] for an invalid agent id or a metric name clash.
    pub fn new(
        config: &BridgeConfig,
        backend: Arc<dyn AgentBackend>,
        registry: &Registry,
    ) -> Result<Self, ServiceError> {
        let mut agents = HashMap::new();
        for (name, agent) in &config.agents {
            let oc = agent.openclaw_agent.as_deref().unwrap_or(name);
            let openclaw_agent = AgentId::parse(oc).map_err(|source| ServiceError::Agent {
                agent: name.clone(),
                source,
            })?;
            let locale = agent.locale.as_deref().unwrap_or("en");
            let texts = Texts::for_locale(locale, &config.texts).with(&agent.texts);
            agents.insert(
                name.to_ascii_lowercase(),
                Arc::new(AgentRoute {
                    name: name.clone(),
                    openclaw_agent,
                    gateway: agent.gateway.clone(),
                    sender_prefix: agent.sender_prefix,
                    reset_command: agent.reset_command.trim().to_string(),
                    texts,
                }),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                agents,
                instances: config
                    .instances
                    .iter()
                    .map(|(i, c)| (i.clone(), c.agent.to_ascii_lowercase()))
                    .collect(),
                gateways: config.gateways.keys().cloned().collect(),
                inbound_token: config.inbound_token.clone(),
                session_key_secret: config.session_key_secret.clone(),
                backend,
                answers: AnswerCache::new(config.answer_cache_ttl, config.max_cached_answers),
                metrics: Metrics::new(registry)?,
                registry: registry.clone(),
                default_texts: Texts::for_locale("en", &config.texts),
                runs: TaskTracker::new(),
                conns: TaskTracker::new(),
                shutting_down: AtomicBool::new(false),
                grace: config.shutdown_grace,
                max_connections: config.max_connections,
            }),
        })
    }

    /// The route for a trigger: the instance override, else the agent in the path.
    pub fn route(&self, path_agent: &str, instance_id: Option<&str>) -> Option<Arc<AgentRoute>> {
        if let Some(agent) = instance_id.and_then(|i| self.inner.instances.get(i)) {
            return self.inner.agents.get(agent).cloned();
        }
        match self.inner.agents.get(path_agent) {
            Some(route) => Some(route.clone()),
            None => self
                .inner
                .agents
                .get(&path_agent.to_ascii_lowercase())
                .cloned(),
        }
    }

    /// The OpenClaw session key of one conversation on `route` (see [`conversation`]): the same
    /// for a trigger, a reset request and a 🗑 seen on Omni's event stream.
    ///
    /// # Errors
    /// [`shared_protocol::SessionKeyError`] when the conversation id cannot form a key.
    pub fn session_key_for(
        &self,
        route: &AgentRoute,
        instance_id: &str,
        conversation: &str,
    ) -> Result<SessionKey, shared_protocol::SessionKeyError> {
        conversation::session_key(
            &route.openclaw_agent,
            instance_id,
            conversation,
            self.inner.session_key_secret.as_ref(),
        )
    }

    /// The backend (the reset consumer resets sessions through it).
    pub fn backend(&self) -> &Arc<dyn AgentBackend> {
        &self.inner.backend
    }

    fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }
}
