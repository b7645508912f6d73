//! `[gateways.<name>]`: one gateway connection, with every tunable of the connection layer
//! (budgets, bounds, breaker, backoff, health, reply cap). The connection layer
//! ([`crate::gateway`]) uses this struct as it is: there is no second schema.
//!
//! Defaults are those of Omni's TypeScript provider where it had one. Durations use the one
//! syntax of [`super::duration`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared_protocol::Secret;
use shared_protocol::pin::Pin;

use super::duration;

/// Default budget for getting a `chat.send` acknowledged, including waiting for the connection
/// (Omni's provider used 10 s).
pub const DEFAULT_SEND_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default budget for the accumulation phase, ack to terminal event (Omni's provider used 120 s).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Default number of runs in flight on one connection (Omni's provider used 50).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 50;
/// Default number of later messages that may wait behind a session's active run.
pub const DEFAULT_MAX_QUEUED_PER_SESSION: usize = 16;
/// Default period of the `health` request.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(30);

/// One gateway: where it is, how to authenticate, and the budgets and bounds of its runs.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `ws://` or `wss://` URL of the gateway (or of gateway-proxy in front of it).
    pub url: String,
    /// Shared gateway token, or the proxy credential (never logged).
    #[serde(default)]
    pub token: Secret,
    /// Certificate pins for `wss://` (`sha256/cert:<hex>` or `sha256/spki:<hex>`); empty means
    /// normal WebPKI verification.
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Ed25519 seed file of the device identity, created (mode 0600) on first use; the device
    /// token the gateway issues is stored beside it (`<path>.token`). `None`: no device identity.
    #[serde(default)]
    pub device_key_path: Option<PathBuf>,
    /// Budget for a `chat.send` ack, including the wait for a ready connection.
    #[serde(default = "d_send_ack", deserialize_with = "duration::deserialize")]
    pub send_ack_timeout: Duration,
    /// Budget of the accumulation phase (ack to terminal event).
    #[serde(default = "d_run", deserialize_with = "duration::deserialize")]
    pub run_timeout: Duration,
    /// Runs in flight on this connection; beyond it a run fails with `Backpressure` at once.
    #[serde(default = "d_in_flight")]
    pub max_in_flight: usize,
    /// Later messages that may wait behind a session's active run (FIFO).
    #[serde(default = "d_queued")]
    pub max_queued_per_session: usize,
    /// Circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Reconnect backoff.
    #[serde(default)]
    pub backoff: BackoffConfig,
    /// Period of the `health` request (never counts towards the breaker).
    #[serde(default = "d_health", deserialize_with = "duration::deserialize")]
    pub health_interval: Duration,
    /// Largest reply accepted from one run, in bytes.
    #[serde(default = "d_reply_cap")]
    pub reply_cap_bytes: usize,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("url", &self.url)
            .field("token", &self.token)
            .field("pins", &self.pins.len())
            .field("device_key_path", &self.device_key_path)
            .field("send_ack_timeout", &self.send_ack_timeout)
            .field("run_timeout", &self.run_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_queued_per_session", &self.max_queued_per_session)
            .field("breaker", &self.breaker)
            .field("backoff", &self.backoff)
            .field("health_interval", &self.health_interval)
            .field("reply_cap_bytes", &self.reply_cap_bytes)
            .finish()
    }
}

/// A gateway key that fails validation, and why (the caller prefixes `gateways.<name>.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The key under `[gateways.<name>]`, e.g. `breaker.failure_threshold`.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl GatewayConfig {
    /// A config with every default: 10 s send-ack, 120 s run, 50 in flight, 16 queued per
    /// session, breaker 3 failures / 60 s -> 30 s open, backoff 800 ms .. 15 s, health 30 s,
    /// 1 MiB replies, no pins, no device identity.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        Self {
            url: url.into(),
            token,
            pins: Vec::new(),
            device_key_path: None,
            send_ack_timeout: DEFAULT_SEND_ACK_TIMEOUT,
            run_timeout: DEFAULT_RUN_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_queued_per_session: DEFAULT_MAX_QUEUED_PER_SESSION,
            breaker: BreakerConfig::default(),
            backoff: BackoffConfig::default(),
            health_interval: DEFAULT_HEALTH_INTERVAL,
            reply_cap_bytes: shared_protocol::accumulator::DEFAULT_REPLY_CAP_BYTES,
        }
    }

    /// The longest a run through this gateway may take: send-ack plus run timeout.
    pub fn run_budget(&self) -> Duration {
        self.send_ack_timeout.saturating_add(self.run_timeout)
    }

    /// Checks every value a connection cannot work with (the token is checked by the bridge's
    /// `validate`, which knows where it may come from).
    ///
    /// # Errors
    /// [`Invalid`] naming the first bad key.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &'static str, message: &str| {
            Err(Invalid {
                key,
                message: message.to_string(),
            })
        };
        let scheme = self.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("ws" | "wss")) {
            return Err(Invalid {
                key: "url",
                message: format!(
                    "{:?} must start with ws:// or wss:// (the OpenClaw gateway speaks WebSocket, default ws://127.0.0.1:18789)",
                    self.url
                ),
            });
        }
        if !self.pins.is_empty() && scheme != Some("wss") {
            return bad("pins", "pins need a wss:// url");
        }
        if self.send_ack_timeout.is_zero() {
            return bad("send_ack_timeout", "must be more than 0");
        }
        if self.run_timeout.is_zero() {
            return bad("run_timeout", "must be more than 0");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.health_interval.is_zero() {
            return bad("health_interval", "must be more than 0");
        }
        if self.reply_cap_bytes == 0 {
            return bad("reply_cap_bytes", "must be at least 1");
        }
        if self.breaker.failure_threshold == 0 {
            return bad("breaker.failure_threshold", "must be at least 1");
        }
        if self.breaker.window.is_zero() || self.breaker.open_for.is_zero() {
            return bad(
                "breaker.open_for",
                "breaker.window and breaker.open_for must be more than 0",
            );
        }
        if self.backoff.min_delay.is_zero() || self.backoff.max_delay < self.backoff.min_delay {
            return bad(
                "backoff.max_delay",
                "backoff needs 0 < min_delay <= max_delay",
            );
        }
        if !(self.backoff.factor.is_finite() && self.backoff.factor >= 1.0) {
            return bad("backoff.factor", "must be a number >= 1");
        }
        Ok(())
    }
}

/// Circuit breaker: `failure_threshold` consecutive failures within `window` open it for
/// `open_for`, after which one half-open probe decides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// The failures must fall within this window.
    #[serde(deserialize_with = "duration::deserialize")]
    pub window: Duration,
    /// How long the breaker stays open before a probe.
    #[serde(deserialize_with = "duration::deserialize")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
        }
    }
}

/// Reconnect backoff: exponential from `min_delay` by `factor` up to `max_delay`, with jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay.
    #[serde(deserialize_with = "duration::deserialize")]
    pub min_delay: Duration,
    /// Cap.
    #[serde(deserialize_with = "duration::deserialize")]
    pub max_delay: Duration,
    /// Growth per attempt.
    pub factor: f32,
    /// Add up to +100 % random jitter (still capped at `max_delay`).
    pub jitter: bool,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(15),
            factor: 1.7,
            jitter: true,
        }
    }
}

fn d_send_ack() -> Duration {
    DEFAULT_SEND_ACK_TIMEOUT
}
fn d_run() -> Duration {
    DEFAULT_RUN_TIMEOUT
}
fn d_in_flight() -> usize {
    DEFAULT_MAX_IN_FLIGHT
}
fn d_queued() -> usize {
    DEFAULT_MAX_QUEUED_PER_SESSION
}
fn d_health() -> Duration {
    DEFAULT_HEALTH_INTERVAL
}
fn d_reply_cap() -> usize {
    shared_protocol::accumulator::DEFAULT_REPLY_CAP_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_typescript_provider() {
        let c = GatewayConfig::new("ws://127.0.0.1:1", Secret::new("t".into()));
        assert_eq!(c.send_ack_timeout, Duration::from_secs(10));
        assert_eq!(c.run_timeout, Duration::from_secs(120));
        assert_eq!((c.max_in_flight, c.max_queued_per_session), (50, 16));
        assert_eq!(c.breaker.failure_threshold, 3);
        assert_eq!(c.backoff.min_delay, Duration::from_millis(800));
        assert_eq!(c.reply_cap_bytes, 1024 * 1024);
        assert_eq!(c.run_budget(), Duration::from_secs(130));
        c.validate().unwrap();
    }

    #[test]
    fn toml_with_durations_and_unknown_fields() {
        let c: GatewayConfig = toml::from_str(
            r#"url = "wss://gw:443"
               token = "secret-token"
               pins = ["sha256/cert:0000000000000000000000000000000000000000000000000000000000000000"]
               send_ack_timeout = "2s"
               run_timeout = "1500ms"
               breaker = { open_for = "1m" }"#,
        )
        .unwrap();
        assert_eq!(c.send_ack_timeout, Duration::from_secs(2));
        assert_eq!(c.run_timeout, Duration::from_millis(1500));
        assert_eq!(c.breaker.open_for, Duration::from_secs(60));
        assert_eq!(c.breaker.failure_threshold, 3);
        assert_eq!(c.pins.len(), 1);
        assert!(!format!("{c:?}").contains("secret-token"));
        c.validate().unwrap();
        for bad in [
            "url = \"ws://x\"\ntoken = \"t\"\nbogus = 1",
            "url = \"ws://x\"\nrun_timeout = \"5 parsecs\"",
            "url = \"ws://x\"\nrun_timeout = 1500",
            "url = \"ws://x\"\nsend_ack_timeout_secs = 10",
        ] {
            assert!(toml::from_str::<GatewayConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_names_the_bad_key() {
        let mut c = GatewayConfig::new("http://x", Secret::new("t".into()));
        assert_eq!(c.validate().unwrap_err().key, "url");
        c.url = "ws://x".into();
        c.pins = vec![Pin::Cert([0; 32])];
        assert_eq!(c.validate().unwrap_err().key, "pins");
        c.pins.clear();
        c.max_in_flight = 0;
        assert_eq!(c.validate().unwrap_err().key, "max_in_flight");
        c.max_in_flight = 1;
        c.breaker.failure_threshold = 0;
        assert_eq!(c.validate().unwrap_err().key, "breaker.failure_threshold");
        c.breaker.failure_threshold = 1;
        c.backoff.factor = 0.5;
        assert_eq!(c.validate().unwrap_err().key, "backoff.factor");
    }
}
