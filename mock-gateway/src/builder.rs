//! Building and starting a mock gateway.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use shared_protocol::AgentId;
use tokio::net::TcpListener;

use crate::config::MockConfig;
use crate::handle::MockGatewayHandle;
use crate::server::{accept_loop, tick_loop};
use crate::state::Gateway;

/// Entry point: `MockGateway::builder()...start().await`.
#[derive(Debug, Clone, Copy)]
pub struct MockGateway;

impl MockGateway {
    /// A builder with the defaults (token `test-token`, 10 ms deltas, 30 s ticks, 127.0.0.1:0).
    pub fn builder() -> MockGatewayBuilder {
        MockGatewayBuilder {
            config: MockConfig::default(),
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        }
    }
}

/// Configures a mock gateway.
#[derive(Debug, Clone)]
pub struct MockGatewayBuilder {
    config: MockConfig,
    bind: SocketAddr,
}

impl MockGatewayBuilder {
    /// The shared token connects must present (default `test-token`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.token = token.into();
        self
    }

    /// Pacing between deltas (default 10 ms; messages containing `SLOW` always use 1 s).
    pub fn delta_interval(mut self, d: Duration) -> Self {
        self.config.delta_interval = d;
        self
    }

    /// `tick` period and `policy.tickIntervalMs` (default 30 s).
    pub fn tick_interval(mut self, d: Duration) -> Self {
        self.config.tick_interval = d;
        self
    }

    /// For this long after start, connects get retryable `UNAVAILABLE` + close 1013.
    pub fn startup_unavailable_for(mut self, d: Duration) -> Self {
        self.config.startup_unavailable_for = d;
        self
    }

    /// Slow-consumer threshold and `policy.maxBufferedBytes` (default 50 MiB).
    pub fn max_buffered_bytes(mut self, n: usize) -> Self {
        self.config.max_buffered_bytes = n;
        self
    }

    /// Address to listen on (default 127.0.0.1:0).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Deadline for the client's `connect` after the socket opens (default 15 s).
    pub fn preauth_timeout(mut self, d: Duration) -> Self {
        self.config.preauth_timeout = d;
        self
    }

    /// Agents configured besides `main`; chat.send to any other agent is refused. Invalid ids are
    /// ignored (they could never appear in a canonical key).
    pub fn agents<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.agents = ids
            .into_iter()
            .filter_map(|id| AgentId::parse(id.as_ref()).ok())
            .map(|id| id.as_str().to_string())
            .collect();
        self
    }

    /// Binds and starts the mock.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start(self) -> std::io::Result<MockGatewayHandle> {
        let listener = TcpListener::bind(self.bind).await?;
        self.start_on(listener)
    }

    /// Starts the mock on an already bound listener.
    ///
    /// # Errors
    /// When the listener's local address cannot be read.
    pub fn start_on(self, listener: TcpListener) -> std::io::Result<MockGatewayHandle> {
        let addr = listener.local_addr()?;
        let gw = Gateway::new(self.config);
        gw.tracker.spawn(accept_loop(gw.clone(), listener));
        gw.tracker.spawn(tick_loop(gw.clone()));
        tracing::info!(%addr, "mock gateway listening");
        Ok(MockGatewayHandle::new(gw, addr))
    }
}
