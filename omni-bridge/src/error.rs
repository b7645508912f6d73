//! The bridge's one error type: everything that can keep a message from its reply, classified so
//! that callers branch on kinds, never on strings (pingora's `Error` is the model).
//!
//! - [`Error::kind`] gives the closed [`ErrorKind`]: the metric label (`errors_total{kind}`,
//!   `triggers_total{outcome}`), and, in `service::outcome`, the HTTP status and the text the
//!   person reads.
//! - [`Error::side`] says which side failed: the gateway, the agent, or the bridge itself.
//! - [`Error::is_retryable`] says whether the same request may succeed later: a retryable failure
//!   is never replayed from the answer cache (Omni's retry of the trace tries again), and the
//!   reset endpoint answers it 503 instead of 502.
//! - [`Error::trips_breaker`] says whether it is a sign of a sick gateway (see there).

use std::time::Duration;

use shared_protocol::error::{DetailCode, ErrorCode, ErrorShape};

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not `ws://` or `wss://` (or cannot be parsed).
    #[error("bad gateway url: {0}")]
    BadScheme(String),
    /// TCP connect failed or the peer dropped the connection at once.
    #[error("connection refused or reset: {0}")]
    Refused(String),
    /// The TLS handshake failed for another reason than a pin.
    #[error("tls handshake failed: {0}")]
    Tls(String),
    /// The server certificate matches none of the configured pins.
    #[error("server certificate matches no configured pin")]
    PinMismatch,
    /// The gateway refused the credentials (`details.code`, e.g. `AUTH_TOKEN_MISMATCH`).
    #[error("gateway rejected authentication ({code}): {message}")]
    AuthRejected {
        /// `details.code` (or the top-level code when there is none).
        code: String,
        /// The gateway's prose.
        message: String,
    },
    /// The gateway is starting or overloaded; try again after `retry_after`.
    #[error("gateway unavailable: {message}")]
    Unavailable {
        /// The gateway's prose.
        message: String,
        /// `retryAfterMs`.
        retry_after: Option<Duration>,
    },
    /// No challenge or no hello within the handshake deadline.
    #[error("handshake timed out")]
    Timeout,
    /// The peer spoke something else than the gateway protocol, or closed mid-handshake.
    #[error("protocol error during handshake: {0}")]
    Protocol(String),
    /// The device identity file could not be read or created.
    #[error("device identity: {0}")]
    Device(String),
}

impl ConnectError {
    /// True when retrying with the same configuration cannot help (bad URL, wrong token,
    /// pin mismatch, unreadable device key): waiting callers fail at once instead of timing out.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::BadScheme(_) | Self::PinMismatch | Self::AuthRejected { .. } | Self::Device(_)
        )
    }
}

/// Why a run, a reset or a request to a gateway failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The `chat.send` went out on a live connection but was not acknowledged in time. (A run
    /// that found no connection at all within the same budget fails with
    /// [`Error::Unavailable`] instead: the gateway is down, not slow.)
    #[error("gateway did not acknowledge the message within {0:?}")]
    SendAckTimeout(Duration),
    /// The run did not end within the accumulation budget.
    #[error(
        "agent run timed out ({}, {deltas} deltas)",
        if *stalled_mid_stream { "stalled mid-stream" } else { "no answer at all" }
    )]
    RunTimeout {
        /// True when some text had arrived (the agent stalled), false when nothing did.
        stalled_mid_stream: bool,
        /// Deltas received before the timeout.
        deltas: u32,
    },
    /// A later message for the session waited too long behind the active run.
    #[error("message waited too long behind the session's active run")]
    QueueTimeout,
    /// The circuit breaker is open: the gateway failed repeatedly.
    #[error("gateway circuit open; retry after {retry_after:?}")]
    CircuitOpen {
        /// Until the half-open probe is allowed.
        retry_after: Duration,
    },
    /// Too many runs in flight on this connection.
    #[error("too many runs in flight on this gateway connection")]
    Backpressure,
    /// Too many messages already wait for this session.
    #[error("too many messages queued for this session")]
    SessionQueueFull,
    /// The gateway answered a retryable `UNAVAILABLE`, or the connection was lost and could
    /// not be restored in time.
    #[error("gateway unavailable: {message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// The gateway's `retryAfterMs`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// A gateway-proxy in front of the gateway refused the request under one of its rate limits
    /// (retryable `UNAVAILABLE`, `details.code: RATE_LIMITED`). The gateway itself is healthy,
    /// so this fails only this request and never counts towards the breaker: one chatty
    /// conversation must not make the gateway unavailable for everyone else.
    #[error("rate limited by the gateway proxy: {message}")]
    RateLimited {
        /// The proxy's prose (names the limit).
        message: String,
        /// The proxy's `retryAfterMs`.
        retry_after: Option<Duration>,
    },
    /// The agent ended the run with `error`.
    #[error("agent failed: {}", message.as_deref().unwrap_or("no message"))]
    AgentFailed {
        /// The gateway's `errorMessage`.
        message: Option<String>,
        /// `refusal`, `timeout`, `rate_limit`, `context_length`, `unknown`.
        kind: Option<String>,
    },
    /// The gateway refused the request (not retryable as is: conflict, unknown agent, scope...).
    #[error("gateway rejected the request: {} {}", .0.code, .0.message)]
    Rejected(ErrorShape),
    /// The pool or this gateway was closed, removed or reconfigured.
    #[error("gateway connection closed")]
    Closed,
    /// The reply grew past `reply_cap_bytes`.
    #[error("agent reply exceeds the size cap")]
    AccumulationCap,
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The WebSocket failed after the handshake.
    #[error("websocket error: {0}")]
    Ws(String),
    /// A response did not have the expected shape.
    #[error("unexpected response from gateway: {0}")]
    Protocol(String),
    /// Invalid configuration.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    /// The agent's route names a gateway the pool does not have.
    #[error("no gateway named {0:?}")]
    UnknownGateway(String),
    /// The bridge is shutting down and starts no new run (a retry still joins its run).
    #[error("the bridge is shutting down and starts no new run")]
    ShuttingDown,
}

/// Which side failed, for logs (pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The gateway or the way to it: connection, TLS, credentials, its answers and deadlines.
    Gateway,
    /// The agent: its run failed, was too long or too slow.
    Agent,
    /// The bridge's own limits and state: breaker, bounds, configuration, shutdown.
    Bridge,
}

impl Side {
    /// Log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Agent => "agent",
            Self::Bridge => "bridge",
        }
    }
}

/// Closed classification of [`Error`], for metric labels and status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Send-ack, run or queue timeout.
    Timeout,
    /// Transport failure (socket, handshake, protocol).
    WsError,
    /// TLS failure or pin mismatch.
    Tls,
    /// Credentials refused.
    Auth,
    /// Breaker open.
    CircuitOpen,
    /// Reply cap exceeded.
    AccumulationCap,
    /// In-flight or session-queue bound reached.
    Backpressure,
    /// The gateway refused the request.
    Rejected,
    /// The agent failed.
    AgentError,
    /// The gateway is unavailable (starting, overloaded, connection lost).
    Unavailable,
    /// A gateway-proxy rate limit refused the request.
    RateLimited,
    /// Closed by us.
    Closed,
    /// Bad configuration.
    Config,
}

impl ErrorKind {
    /// Every kind (for pre-registering metric labels).
    pub const ALL: [ErrorKind; 13] = [
        Self::Timeout,
        Self::WsError,
        Self::Tls,
        Self::Auth,
        Self::CircuitOpen,
        Self::AccumulationCap,
        Self::Backpressure,
        Self::Rejected,
        Self::AgentError,
        Self::Unavailable,
        Self::RateLimited,
        Self::Closed,
        Self::Config,
    ];

    /// Metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::WsError => "ws_error",
            Self::Tls => "tls",
            Self::Auth => "auth",
            Self::CircuitOpen => "circuit_open",
            Self::AccumulationCap => "accumulation_cap",
            Self::Backpressure => "backpressure",
            Self::Rejected => "rejected",
            Self::AgentError => "agent_error",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
            Self::Closed => "closed",
            Self::Config => "config",
        }
    }
}

impl Error {
    /// The closed classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::SendAckTimeout(_) | Self::RunTimeout { .. } | Self::QueueTimeout => {
                ErrorKind::Timeout
            }
            Self::CircuitOpen { .. } => ErrorKind::CircuitOpen,
            Self::Backpressure | Self::SessionQueueFull => ErrorKind::Backpressure,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::AgentFailed { .. } => ErrorKind::AgentError,
            Self::Rejected(_) => ErrorKind::Rejected,
            Self::Closed | Self::ShuttingDown => ErrorKind::Closed,
            Self::UnknownGateway(_) => ErrorKind::Config,
            Self::AccumulationCap => ErrorKind::AccumulationCap,
            Self::Ws(_) | Self::Protocol(_) => ErrorKind::WsError,
            Self::Config(_) => ErrorKind::Config,
            Self::Connect(c) => match c {
                ConnectError::BadScheme(_) | ConnectError::Device(_) => ErrorKind::Config,
                ConnectError::Tls(_) | ConnectError::PinMismatch => ErrorKind::Tls,
                ConnectError::AuthRejected { .. } => ErrorKind::Auth,
                ConnectError::Unavailable { .. } => ErrorKind::Unavailable,
                ConnectError::Refused(_) | ConnectError::Timeout | ConnectError::Protocol(_) => {
                    ErrorKind::WsError
                }
            },
        }
    }

    /// Which side failed.
    pub fn side(&self) -> Side {
        match self {
            Self::RunTimeout { .. } | Self::AgentFailed { .. } | Self::AccumulationCap => {
                Side::Agent
            }
            Self::QueueTimeout
            | Self::CircuitOpen { .. }
            | Self::Backpressure
            | Self::SessionQueueFull
            | Self::Closed
            | Self::ShuttingDown
            | Self::Config(_)
            | Self::UnknownGateway(_) => Side::Bridge,
            Self::SendAckTimeout(_)
            | Self::Unavailable { .. }
            | Self::RateLimited { .. }
            | Self::Rejected(_)
            | Self::Connect(_)
            | Self::Ws(_)
            | Self::Protocol(_) => Side::Gateway,
        }
    }

    /// True when the same request may succeed if tried again later (possibly after
    /// [`Error::retry_after`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rejected(shape) => shape.is_retryable(),
            Self::AgentFailed { kind, .. } => {
                matches!(kind.as_deref(), Some("timeout" | "rate_limit"))
            }
            Self::Connect(c) => !c.is_fatal(),
            _ => matches!(
                self.kind(),
                ErrorKind::Timeout
                    | ErrorKind::WsError
                    | ErrorKind::CircuitOpen
                    | ErrorKind::Backpressure
                    | ErrorKind::Unavailable
                    | ErrorKind::RateLimited
                    | ErrorKind::Closed
            ),
        }
    }

    /// A hint for when to retry, if the gateway or the breaker gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::CircuitOpen { retry_after } => Some(*retry_after),
            Self::Unavailable { retry_after, .. }
            | Self::RateLimited { retry_after, .. }
            | Self::Connect(ConnectError::Unavailable { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    /// Whether this failure counts towards the circuit breaker.
    ///
    /// Counted: signs that the gateway or the link is sick — timeouts, transport and TLS
    /// failures, `UNAVAILABLE`, and agent failures other than `refusal`/`context_length`.
    /// Not counted: what the caller or the message caused or what we decided ourselves —
    /// rejections (conflict, unknown agent, missing scope), refusals, the reply cap,
    /// backpressure, an open breaker, closing, bad config and credentials (those fail fast on
    /// their own).
    pub fn trips_breaker(&self) -> bool {
        match self {
            Self::AgentFailed { kind, .. } => {
                !matches!(kind.as_deref(), Some("refusal" | "context_length"))
            }
            _ => matches!(
                self.kind(),
                ErrorKind::Timeout | ErrorKind::WsError | ErrorKind::Tls | ErrorKind::Unavailable
            ),
        }
    }

    /// Maps a failed gateway response: retryable `UNAVAILABLE` becomes [`Self::Unavailable`],
    /// everything else [`Self::Rejected`].
    pub fn from_shape(shape: ErrorShape) -> Self {
        if shape.code == ErrorCode::Unavailable
            && shape.detail_code() == Some(DetailCode::RateLimited)
        {
            Self::RateLimited {
                retry_after: shape.retry_after_ms.map(Duration::from_millis),
                message: shape.message,
            }
        } else if shape.code == ErrorCode::Unavailable && shape.retryable != Some(false) {
            Self::Unavailable {
                retry_after: shape.retry_after_ms.map(Duration::from_millis),
                message: shape.message,
            }
        } else {
            Self::Rejected(shape)
        }
    }
}

impl ConnectError {
    /// Maps the gateway's answer to `connect`.
    pub fn from_shape(shape: &ErrorShape) -> Self {
        if shape.code == ErrorCode::Unavailable {
            return Self::Unavailable {
                message: shape.message.clone(),
                retry_after: shape.retry_after_ms.map(Duration::from_millis),
            };
        }
        match shape.detail_code() {
            Some(DetailCode::ProtocolMismatch) => Self::Protocol(shape.message.clone()),
            Some(code) => Self::AuthRejected {
                code: code.as_str().to_string(),
                message: shape.message.clone(),
            },
            None => Self::AuthRejected {
                code: shape.code.as_str().to_string(),
                message: shape.message.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_retryability_and_breaker() {
        let timeout = Error::RunTimeout {
            stalled_mid_stream: true,
            deltas: 3,
        };
        assert_eq!(timeout.kind().as_str(), "timeout");
        assert!(timeout.is_retryable() && timeout.trips_breaker());
        assert!(timeout.to_string().contains("stalled mid-stream"));

        let conflict = ErrorShape {
            details: Some(serde_json::json!({"reason": "chat-request-conflict"})),
            ..ErrorShape::new(ErrorCode::InvalidRequest, "already used")
        };
        let e = Error::from_shape(conflict);
        assert_eq!(e.kind(), ErrorKind::Rejected);
        assert!(!e.is_retryable() && !e.trips_breaker());

        let e = Error::from_shape(ErrorShape::unavailable("starting", "startup", 250));
        assert_eq!(e.retry_after(), Some(Duration::from_millis(250)));
        assert!(e.is_retryable() && e.trips_breaker());

        let refusal = Error::AgentFailed {
            message: None,
            kind: Some("refusal".into()),
        };
        assert!(!refusal.trips_breaker() && !refusal.is_retryable());
        let provider = Error::AgentFailed {
            message: None,
            kind: Some("unknown".into()),
        };
        assert!(provider.trips_breaker());

        for e in [
            Error::Backpressure,
            Error::CircuitOpen {
                retry_after: Duration::ZERO,
            },
            Error::AccumulationCap,
            Error::Closed,
        ] {
            assert!(!e.trips_breaker(), "{e}");
        }
        // gateway-proxy's rate-limit answer: retryable, but the gateway is fine.
        let limited: ErrorShape = serde_json::from_str(
            r#"{"code":"UNAVAILABLE","message":"rate limited (chat_send_session); retry after 1900 ms","retryable":true,"retryAfterMs":1900,"details":{"code":"RATE_LIMITED","limit":"chat_send_session"}}"#,
        )
        .unwrap();
        let e = Error::from_shape(limited);
        assert_eq!(e.kind().as_str(), "rate_limited");
        assert!(e.is_retryable() && !e.trips_breaker());
        assert_eq!(e.retry_after(), Some(Duration::from_millis(1900)));

        let names: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn connect_errors_say_precisely_what_failed() {
        let mismatch: ErrorShape = serde_json::from_str(
            r#"{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch","details":{"code":"AUTH_TOKEN_MISMATCH"}}"#,
        )
        .unwrap();
        let c = ConnectError::from_shape(&mismatch);
        assert!(
            matches!(&c, ConnectError::AuthRejected { code, .. } if code == "AUTH_TOKEN_MISMATCH")
        );
        assert!(c.is_fatal());
        let e = Error::from(c);
        assert_eq!(e.kind(), ErrorKind::Auth);
        assert!(!e.is_retryable());
        let starting = ConnectError::from_shape(&ErrorShape::unavailable("starting", "s", 500));
        assert!(!starting.is_fatal());
        assert_eq!(
            Error::from(starting).retry_after(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            Error::Connect(ConnectError::PinMismatch).kind(),
            ErrorKind::Tls
        );
    }
}
