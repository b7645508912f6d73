//! Prometheus metrics of the HTTP service, registered on the registry the caller passes in.
//!
//! Label values come only from closed enums ([`Outcome::as_str`]), never from request data. The
//! series of every outcome are resolved once, so counting a trigger takes no label lookup.

use std::collections::HashMap;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::outcome::Outcome;

/// Buckets for trigger duration, in seconds (the gateway acks in ms, agents answer in seconds).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0,
];

/// The service's metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `triggers_total` and `trigger_duration_seconds` of each outcome label.
    by_outcome: HashMap<&'static str, (IntCounter, Histogram)>,
    in_flight: IntGauge,
    resets: IntCounterVec,
    retries: IntCounterVec,
}

impl Metrics {
    /// Creates and registers the metrics.
    ///
    /// # Errors
    /// A name clash on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let triggers = IntCounterVec::new(
            Opts::new(
                "omni_bridge_triggers_total",
                "Trigger requests answered, by outcome.",
            ),
            &["outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "omni_bridge_trigger_duration_seconds",
                "Time from trigger request to response, by outcome.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["outcome"],
        )?;
        let in_flight = IntGauge::new(
            "omni_bridge_runs_in_flight",
            "Agent runs started by the bridge and not finished (read when scraped).",
        )?;
        let resets = IntCounterVec::new(
            Opts::new(
                "omni_bridge_session_resets_total",
                "Session resets, by result.",
            ),
            &["result"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "omni_bridge_retries_total",
                "Deliveries of a trace already seen: joined the run in flight, or answered from the cache.",
            ),
            &["served"],
        )?;
        registry.register(Box::new(triggers.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(resets.clone()))?;
        let by_outcome = Outcome::all()
            .map(|o| {
                let label = o.as_str();
                (
                    label,
                    (
                        triggers.with_label_values(&[label]),
                        duration.with_label_values(&[label]),
                    ),
                )
            })
            .collect();
        Ok(Self {
            by_outcome,
            in_flight,
            resets,
            retries,
        })
    }

    /// Counts one answered trigger.
    pub fn trigger(&self, outcome: Outcome, seconds: f64) {
        if let Some((count, duration)) = self.by_outcome.get(outcome.as_str()) {
            count.inc();
            duration.observe(seconds);
        }
    }

    /// Counts one reset.
    pub fn reset(&self, ok: bool) {
        self.resets
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// A repeated delivery was joined to its run (`joined`) or served from the cache (`cached`).
    pub fn retry(&self, served: &'static str) {
        self.retries.with_label_values(&[served]).inc();
    }

    /// Runs in flight, set when the metrics are read.
    pub fn set_in_flight(&self, n: usize) {
        self.in_flight.set(i64::try_from(n).unwrap_or(i64::MAX));
    }
}
