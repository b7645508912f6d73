//! What a gateway connection reports about itself: state, breaker, load, identity.

use std::time::Duration;

use super::breaker::BreakerState;

/// Lifecycle of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Opening the socket or handshaking.
    Connecting,
    /// hello-ok received; runs can be sent.
    Connected,
    /// Waiting before the next attempt.
    Backoff,
    /// Closed for good (removed, reconfigured or pool closed).
    Closed,
}

impl ConnectionState {
    /// Metric value: 0 closed, 1 connecting, 2 connected, 3 backoff.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Connecting => 1,
            Self::Connected => 2,
            Self::Backoff => 3,
        }
    }

    /// Log / JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Backoff => "backoff",
        }
    }
}

/// A snapshot of one gateway connection.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayStatus {
    /// Connection lifecycle.
    pub state: ConnectionState,
    /// Breaker state.
    pub breaker: BreakerState,
    /// Runs sent or being sent.
    pub in_flight: usize,
    /// Messages waiting behind their session's active run.
    pub queued: usize,
    /// `hello-ok.server.version` of the current (or last) connection.
    pub server_version: Option<String>,
    /// `hello-ok.auth.scopes` of the current (or last) connection.
    pub granted_scopes: Vec<String>,
    /// The last connection or run error, for operators.
    pub last_error: Option<String>,
}

/// Result of [`super::GatewayHandle::check`]: a fresh handshake and `agents.list`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayCheck {
    /// Socket open to hello-ok.
    pub latency: Duration,
    /// `hello-ok.server.version`.
    pub server_version: String,
    /// Granted scopes.
    pub granted_scopes: Vec<String>,
    /// Agent ids from `agents.list`.
    pub agents: Vec<String>,
}
