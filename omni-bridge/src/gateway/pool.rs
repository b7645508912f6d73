//! [`GatewayPool`]: one connection per configured gateway name, rebuilt when its config
//! changes and closed when it is removed (Omni's provider kept stale connections until a
//! restart; we don't).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::Gateway;
use super::handle::GatewayHandle;
use super::metrics::Metrics;
use super::run::RunHost;
use super::status::GatewayStatus;
use crate::config::GatewayConfig;
use crate::error::Error;

/// Budget of a graceful close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

struct PoolInner {
    metrics: Metrics,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    gateways: Mutex<HashMap<String, Arc<Gateway>>>,
    closed: AtomicBool,
}

/// The gateways of the bridge. Clone is cheap (an `Arc`).
#[derive(Clone)]
pub struct GatewayPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for GatewayPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayPool")
            .field("gateways", &self.inner.gateways.lock().len())
            .finish_non_exhaustive()
    }
}

impl GatewayPool {
    /// An empty pool; its metrics are registered on `registry`, and cancelling `shutdown`
    /// closes every connection.
    ///
    /// # Errors
    /// [`Error::Config`] when the metrics are already registered on `registry`.
    pub fn new(
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(PoolInner {
                metrics: Metrics::new(registry)?,
                shutdown,
                tracker: TaskTracker::new(),
                gateways: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Adds a gateway or applies a changed configuration (the connection is rebuilt; runs on
    /// the old one fail with `Closed`, which is retryable). An identical config is a no-op.
    /// An invalid config is kept so that runs fail at once with its `Config` error.
    pub fn upsert(&self, name: &str, config: GatewayConfig) {
        if self.inner.closed.load(Ordering::Acquire) {
            tracing::warn!(gateway = name, "pool closed: upsert ignored");
            return;
        }
        let mut gateways = self.inner.gateways.lock();
        if gateways.get(name).is_some_and(|g| *g.config() == config) {
            return;
        }
        let metrics = self.inner.metrics.for_gateway(name);
        let fresh = Gateway::start(
            name,
            config,
            metrics,
            &self.inner.shutdown,
            self.inner.tracker.clone(),
        );
        if let Some(old) = gateways.insert(name.to_string(), fresh) {
            tracing::info!(
                gateway = name,
                "gateway configuration changed; reconnecting"
            );
            old.shutdown();
        } else {
            tracing::info!(gateway = name, "gateway added");
        }
    }

    /// Closes and forgets a gateway; its in-flight runs fail with `Closed` at once.
    pub fn remove(&self, name: &str) {
        if let Some(old) = self.inner.gateways.lock().remove(name) {
            tracing::info!(gateway = name, "gateway removed");
            old.shutdown();
            old.forget_metrics();
        }
    }

    /// The handle of a gateway.
    pub fn get(&self, name: &str) -> Option<GatewayHandle> {
        self.inner
            .gateways
            .lock()
            .get(name)
            .map(|g| GatewayHandle::new(g.clone()))
    }

    /// Status of every gateway, sorted by name.
    pub fn statuses(&self) -> Vec<(String, GatewayStatus)> {
        let gateways: Vec<_> = self.inner.gateways.lock().values().cloned().collect();
        let mut out: Vec<_> = gateways
            .iter()
            .map(|g| (g.name().to_string(), g.status()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Graceful close: refuse new work, fail queued and in-flight runs with `Closed`, send
    /// close frames, and wait for every task, at most `CLOSE_GRACE` (3 s).
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let gateways: Vec<_> = self.inner.gateways.lock().drain().map(|(_, g)| g).collect();
        for g in &gateways {
            g.shutdown();
        }
        self.inner.tracker.close();
        if tokio::time::timeout(CLOSE_GRACE, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?CLOSE_GRACE,
                "gateway pool did not close within its grace period"
            );
        }
    }
}
