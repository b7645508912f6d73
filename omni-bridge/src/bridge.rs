//! The whole bridge in one value: the gateway pool, the HTTP service on a bound listener and the
//! 🗑 reset consumer, wired together (the one module that knows all of them).
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

use crate::config::{BridgeConfig, ConfigError};
use crate::error::Error;
use crate::gateway::GatewayPool;
use crate::http_client::HttpClient;
use crate::omni::api::OmniApi;
use crate::omni::binding::TriggerUrls;
use crate::omni::reset_consumer::{Pause, ResetConsumer};
use crate::service::pool_backend::PoolBackend;
use crate::service::{Service, ServiceError};

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Pool creation failed.
    #[error("gateway: {0}")]
    Gateway(#[from] Error),
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
    /// The 🗑 reset consumer, when `omni.nats_url` is set.
    resets: Option<(CancellationToken, JoinHandle<()>)>,
}

/// Options of [`RunningBridge::start_with`] beyond the config.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Stop the 🗑 reset consumer at this point to play a crash (tests).
    pub reset_pause: Option<Pause>,
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
        Self::start_with(config, registry, listener, StartOptions::default())
    }

    /// [`RunningBridge::start`] with [`StartOptions`].
    ///
    /// # Errors
    /// [`StartError`].
    pub fn start_with(
        config: &BridgeConfig,
        registry: &Registry,
        listener: TcpListener,
        options: StartOptions,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let pool_shutdown = CancellationToken::new();
        let pool = GatewayPool::new(registry, pool_shutdown.clone())?;
        for (name, gateway) in &config.gateways {
            pool.upsert(name, gateway.clone());
        }
        let backend = PoolBackend::new(pool.clone(), config.gateways.keys().cloned().collect());
        let service = Service::new(config, Arc::new(backend), registry)?;
        let resets = match config.omni.reset_stream() {
            Some(stream) => {
                let omni = OmniApi::new(
                    HttpClient::default(),
                    config.omni.url.as_deref().unwrap_or_default(),
                    config.omni.api_key.clone(),
                );
                let urls = TriggerUrls::new(
                    config
                        .agents
                        .keys()
                        .map(|a| (config.trigger_url(a), a.clone())),
                );
                let mut consumer =
                    ResetConsumer::new(stream, service.clone(), omni, urls, registry)
                        .map_err(ServiceError::Metrics)?;
                if let Some(p) = options.reset_pause {
                    consumer = consumer.with_pause(p);
                }
                let stop = CancellationToken::new();
                Some((stop.clone(), tokio::spawn(consumer.run(stop))))
            }
            None => None,
        };
        let addr = listener.local_addr()?;
        let service_shutdown = CancellationToken::new();
        let task = tokio::spawn(crate::service::run(
            listener,
            service,
            service_shutdown.clone(),
        ));
        Ok(Self {
            addr,
            pool,
            service_shutdown,
            pool_shutdown,
            task,
            resets,
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

    /// Stops the 🗑 consumer (a reset in progress is left for redelivery), drains in-flight
    /// requests within the grace period (see [`crate::service::run`]), then closes the gateway
    /// connections.
    ///
    /// # Errors
    /// The accept loop's error, if it failed.
    pub async fn stop(self) -> io::Result<()> {
        if let Some((stop, task)) = self.resets {
            stop.cancel();
            let _ = task.await;
        }
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
