//! The whole bridge in one value: the gateway pool plus the HTTP service on a bound listener.
//!
//! `serve`, the demo, the benchmark and the end-to-end tests all start the bridge this way, so
//! they exercise exactly the production wiring.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::pool_backend::PoolBackend;
use super::{Service, ServiceError};
use crate::config::{BridgeConfig, ConfigError};
use crate::gateway::{GatewayError, GatewayPool};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Gateway configuration or pool creation failed.
    #[error("gateway: {0}")]
    Gateway(#[from] GatewayError),
    /// Service construction failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Socket error.
    #[error("listener: {0}")]
    Io(#[from] io::Error),
}

/// A running bridge.
pub struct RunningBridge {
    addr: SocketAddr,
    pool: GatewayPool,
    service_shutdown: CancellationToken,
    pool_shutdown: CancellationToken,
    task: JoinHandle<io::Result<()>>,
}

impl RunningBridge {
    /// Validates `config`, connects every gateway and serves on `listener`.
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start(
        config: &BridgeConfig,
        registry: &Registry,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let pool_shutdown = CancellationToken::new();
        let pool = GatewayPool::new(registry, pool_shutdown.clone())?;
        for (name, entry) in &config.gateways {
            pool.upsert(name, PoolBackend::gateway_config(entry)?);
        }
        let backend = PoolBackend::new(pool.clone(), config.gateways.keys().cloned().collect());
        let service = Service::new(config, Arc::new(backend), registry)?;
        let addr = listener.local_addr()?;
        let service_shutdown = CancellationToken::new();
        let task = tokio::spawn(super::run(listener, service, service_shutdown.clone()));
        Ok(Self {
            addr,
            pool,
            service_shutdown,
            pool_shutdown,
            task,
        })
    }

    /// [`RunningBridge::start`] with a registry of its own (demo, tests, tools).
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start_standalone(
        config: &BridgeConfig,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        Self::start(config, &Registry::new(), listener)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway pool (for status and checks).
    pub fn pool(&self) -> &GatewayPool {
        &self.pool
    }

    /// Stops accepting, drains in-flight requests within the grace period, then closes the
    /// gateway connections.
    ///
    /// # Errors
    /// The accept loop's error, if it failed.
    pub async fn stop(self) -> io::Result<()> {
        self.service_shutdown.cancel();
        let served = match self.task.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        };
        self.pool.close().await;
        self.pool_shutdown.cancel();
        served
    }
}
