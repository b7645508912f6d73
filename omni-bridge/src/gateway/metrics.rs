//! Prometheus metrics of the gateway pool, registered on a registry passed in.
//!
//! Every series carries `gateway` (a configured name: bounded by config, never client input);
//! the other labels come from closed enums. Series of a removed gateway are deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::breaker::BreakerState;
use super::status::ConnectionState;
use crate::error::{Error, ErrorKind};

const PREFIX: &str = "omni_bridge_gateway_";

/// Run duration buckets in seconds (Omni's provider: 1..180 s, with sub-second resolution).
const RUN_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0,
];
/// Time-to-first-delta buckets in seconds.
const TTFD_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The pool's metrics.
#[derive(Clone)]
pub struct Metrics {
    connection_state: IntGaugeVec,
    reconnects: IntCounterVec,
    run_duration: HistogramVec,
    ttfd: HistogramVec,
    errors: IntCounterVec,
    breaker_state: IntGaugeVec,
    breaker_transitions: IntCounterVec,
    in_flight: IntGaugeVec,
    queued: IntGaugeVec,
    early_dropped: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every series family.
    ///
    /// # Errors
    /// [`Error::Config`] when a family is already registered on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, Error> {
        let opts = |name: &str, help: &str| Opts::new(format!("{PREFIX}{name}"), help);
        let hopts = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(format!("{PREFIX}{name}"), help).buckets(buckets.to_vec())
        };
        let err = |e: prometheus::Error| Error::Config(format!("metrics: {e}"));
        let m = Self {
            connection_state: IntGaugeVec::new(
                opts(
                    "connection_state",
                    "0 closed, 1 connecting, 2 connected, 3 backoff",
                ),
                &["gateway"],
            )
            .map_err(err)?,
            reconnects: IntCounterVec::new(
                opts("reconnects_total", "Connection attempts after the first"),
                &["gateway"],
            )
            .map_err(err)?,
            run_duration: HistogramVec::new(
                hopts(
                    "run_duration_seconds",
                    "Run time from run() to reply or error, by outcome",
                    RUN_BUCKETS,
                ),
                &["gateway", "outcome"],
            )
            .map_err(err)?,
            ttfd: HistogramVec::new(
                hopts(
                    "time_to_first_delta_seconds",
                    "From chat.send to the first text delta",
                    TTFD_BUCKETS,
                ),
                &["gateway"],
            )
            .map_err(err)?,
            errors: IntCounterVec::new(
                opts("errors_total", "Run errors by kind"),
                &["gateway", "kind"],
            )
            .map_err(err)?,
            breaker_state: IntGaugeVec::new(
                opts("breaker_state", "0 closed, 1 open, 2 half-open"),
                &["gateway"],
            )
            .map_err(err)?,
            breaker_transitions: IntCounterVec::new(
                opts(
                    "breaker_transitions_total",
                    "Breaker transitions by new state",
                ),
                &["gateway", "to"],
            )
            .map_err(err)?,
            in_flight: IntGaugeVec::new(
                opts("runs_in_flight", "Runs sent or being sent"),
                &["gateway"],
            )
            .map_err(err)?,
            queued: IntGaugeVec::new(
                opts(
                    "queued_messages",
                    "Messages waiting behind their session's run",
                ),
                &["gateway"],
            )
            .map_err(err)?,
            early_dropped: IntCounterVec::new(
                opts(
                    "unmatched_events_dropped_total",
                    "Chat events for no known run, dropped after the hold period",
                ),
                &["gateway"],
            )
            .map_err(err)?,
        };
        registry
            .register(Box::new(m.connection_state.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.reconnects.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.run_duration.clone()))
            .map_err(err)?;
        registry.register(Box::new(m.ttfd.clone())).map_err(err)?;
        registry.register(Box::new(m.errors.clone())).map_err(err)?;
        registry
            .register(Box::new(m.breaker_state.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.breaker_transitions.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.in_flight.clone()))
            .map_err(err)?;
        registry.register(Box::new(m.queued.clone())).map_err(err)?;
        registry
            .register(Box::new(m.early_dropped.clone()))
            .map_err(err)?;
        Ok(m)
    }

    /// The metrics of one gateway.
    pub fn for_gateway(&self, name: &str) -> GatewayMetrics {
        let g = GatewayMetrics {
            name: name.to_string(),
            all: self.clone(),
            ttfd: self.ttfd.with_label_values(&[name]),
            removed: Arc::new(AtomicBool::new(false)),
        };
        g.set_state(ConnectionState::Connecting);
        g.set_breaker(BreakerState::Closed);
        g.all.in_flight.with_label_values(&[name]).set(0);
        g.all.queued.with_label_values(&[name]).set(0);
        g.all.reconnects.with_label_values(&[name]);
        for kind in ErrorKind::ALL {
            g.all.errors.with_label_values(&[name, kind.as_str()]);
        }
        g
    }
}

/// One gateway's series.
#[derive(Clone)]
pub struct GatewayMetrics {
    name: String,
    all: Metrics,
    ttfd: Histogram,
    /// Set by `remove`: late updates from the closing tasks must not recreate the series.
    removed: Arc<AtomicBool>,
}

impl GatewayMetrics {
    /// Connection state gauge.
    pub fn set_state(&self, state: ConnectionState) {
        if self.is_removed() {
            return;
        }
        self.all
            .connection_state
            .with_label_values(&[&self.name])
            .set(state.as_gauge());
    }

    /// One more reconnect attempt.
    pub fn reconnect(&self) {
        if self.is_removed() {
            return;
        }
        self.all.reconnects.with_label_values(&[&self.name]).inc();
    }

    /// A run ended: `outcome` is `completed`, `aborted` or an error kind.
    pub fn run_finished(&self, outcome: &str, seconds: f64) {
        if self.is_removed() {
            return;
        }
        self.all
            .run_duration
            .with_label_values(&[&self.name, outcome])
            .observe(seconds);
    }

    /// Time to first delta.
    pub fn first_delta(&self, seconds: f64) {
        if self.is_removed() {
            return;
        }
        self.ttfd.observe(seconds);
    }

    /// An error returned to a caller.
    pub fn error(&self, kind: ErrorKind) {
        if self.is_removed() {
            return;
        }
        self.all
            .errors
            .with_label_values(&[&self.name, kind.as_str()])
            .inc();
    }

    /// Breaker state gauge.
    pub fn set_breaker(&self, state: BreakerState) {
        if self.is_removed() {
            return;
        }
        self.all
            .breaker_state
            .with_label_values(&[&self.name])
            .set(state.as_gauge());
    }

    /// A breaker transition.
    pub fn breaker_transition(&self, to: BreakerState) {
        if self.is_removed() {
            return;
        }
        self.set_breaker(to);
        self.all
            .breaker_transitions
            .with_label_values(&[&self.name, to.as_str()])
            .inc();
    }

    /// Runs in flight gauge.
    pub fn set_in_flight(&self, n: usize) {
        if self.is_removed() {
            return;
        }
        self.all
            .in_flight
            .with_label_values(&[&self.name])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Queued messages gauge.
    pub fn set_queued(&self, n: usize) {
        if self.is_removed() {
            return;
        }
        self.all
            .queued
            .with_label_values(&[&self.name])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Chat events for unknown runs dropped.
    pub fn unmatched_dropped(&self, n: u64) {
        if self.is_removed() {
            return;
        }
        self.all
            .early_dropped
            .with_label_values(&[&self.name])
            .inc_by(n);
    }

    fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Deletes this gateway's series (after `remove`); later updates are ignored.
    pub fn remove(&self) {
        self.removed.store(true, Ordering::Release);
        let name = self.name.as_str();
        let _ = self.all.connection_state.remove_label_values(&[name]);
        let _ = self.all.reconnects.remove_label_values(&[name]);
        let _ = self.all.ttfd.remove_label_values(&[name]);
        let _ = self.all.breaker_state.remove_label_values(&[name]);
        let _ = self.all.in_flight.remove_label_values(&[name]);
        let _ = self.all.queued.remove_label_values(&[name]);
        let _ = self.all.early_dropped.remove_label_values(&[name]);
        for kind in ErrorKind::ALL {
            let _ = self.all.errors.remove_label_values(&[name, kind.as_str()]);
            let _ = self
                .all
                .run_duration
                .remove_label_values(&[name, kind.as_str()]);
        }
        for outcome in ["completed", "aborted"] {
            let _ = self.all.run_duration.remove_label_values(&[name, outcome]);
        }
        for to in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let _ = self
                .all
                .breaker_transitions
                .remove_label_values(&[name, to.as_str()]);
        }
    }
}
