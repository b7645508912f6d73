//! Circuit breaker per gateway: closed -> open -> half-open -> closed.
//!
//! `failure_threshold` consecutive counted failures (see
//! [`super::Error::trips_breaker`]) within `window` open the breaker for `open_for`;
//! meanwhile callers get `CircuitOpen` at once. Then exactly one run is let through as a probe:
//! success closes the breaker, failure opens it again. A success while closed resets the count.
//! Time is `tokio::time::Instant`, so tests drive it with a paused clock. The caller holds it
//! under a lock and logs/exports the transitions it returns.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// Breaker state as reported in status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Runs flow.
    Closed,
    /// Runs are refused.
    Open,
    /// One probe run decides.
    HalfOpen,
}

impl BreakerState {
    /// Metric value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// Label / log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What a finished run means to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The gateway did its job.
    Success,
    /// A counted failure.
    Failure,
    /// Neither (the caller's fault, or we gave up ourselves).
    Neutral,
}

/// Permission to run, returned by [`CircuitBreaker::admit`]; hand it back to
/// [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// A normal run.
    Normal,
    /// The single half-open probe.
    Probe,
}

#[derive(Debug)]
enum State {
    Closed { failures: VecDeque<Instant> },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// The state machine.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: State::Closed {
                failures: VecDeque::new(),
            },
        }
    }

    /// Current state (an expired open period reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if now < until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Time left until a probe may run (zero unless open).
    pub fn open_remaining(&self, now: Instant) -> Duration {
        match self.state {
            State::Open { until } => until.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    /// Asks to start a run.
    ///
    /// # Errors
    /// The time until a probe may be tried, when the breaker refuses.
    pub fn admit(&mut self, now: Instant) -> Result<(Permit, Option<BreakerState>), Duration> {
        match &mut self.state {
            State::Closed { .. } => Ok((Permit::Normal, None)),
            State::Open { until } if now < *until => Err(*until - now),
            State::Open { .. } => {
                self.state = State::HalfOpen { probing: true };
                Ok((Permit::Probe, Some(BreakerState::HalfOpen)))
            }
            State::HalfOpen { probing: false } => {
                self.state = State::HalfOpen { probing: true };
                Ok((Permit::Probe, None))
            }
            State::HalfOpen { probing: true } => Err(Duration::ZERO),
        }
    }

    /// Records how an admitted run ended; returns the new state when it changed.
    pub fn record(
        &mut self,
        now: Instant,
        permit: Permit,
        verdict: Verdict,
    ) -> Option<BreakerState> {
        match (&mut self.state, permit, verdict) {
            (State::HalfOpen { .. }, Permit::Probe, Verdict::Success) => {
                self.state = State::Closed {
                    failures: VecDeque::new(),
                };
                Some(BreakerState::Closed)
            }
            (State::HalfOpen { .. }, Permit::Probe, Verdict::Failure) => self.open(now),
            (State::HalfOpen { probing }, Permit::Probe, Verdict::Neutral) => {
                *probing = false;
                None
            }
            (State::Closed { failures }, _, Verdict::Success) => {
                failures.clear();
                None
            }
            (State::Closed { failures }, _, Verdict::Failure) => {
                let window = self.config.window;
                failures.retain(|t| now.duration_since(*t) < window);
                failures.push_back(now);
                if failures.len() >= self.config.failure_threshold as usize {
                    self.open(now)
                } else {
                    None
                }
            }
            // Late results of runs admitted before the breaker opened do not move it.
            _ => None,
        }
    }

    fn open(&mut self, now: Instant) -> Option<BreakerState> {
        self.state = State::Open {
            until: now + self.config.open_for,
        };
        Some(BreakerState::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig::default())
    }

    #[tokio::test(start_paused = true)]
    async fn three_failures_open_then_probe_closes() {
        let mut b = breaker();
        let t0 = Instant::now();
        for i in 0..2 {
            let (p, _) = b.admit(t0).unwrap();
            assert_eq!(b.record(t0, p, Verdict::Failure), None, "failure {i}");
        }
        let (p, _) = b.admit(t0).unwrap();
        assert_eq!(b.record(t0, p, Verdict::Failure), Some(BreakerState::Open));
        assert_eq!(b.state(t0), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(Instant::now()), Err(Duration::from_secs(20)));
        tokio::time::advance(Duration::from_secs(20)).await;
        let now = Instant::now();
        assert_eq!(b.state(now), BreakerState::HalfOpen);
        let (probe, change) = b.admit(now).unwrap();
        assert_eq!(
            (probe, change),
            (Permit::Probe, Some(BreakerState::HalfOpen))
        );
        // Only one probe at a time.
        assert_eq!(b.admit(now), Err(Duration::ZERO));
        assert_eq!(
            b.record(now, probe, Verdict::Success),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.admit(now).unwrap().0, Permit::Normal);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_and_neutral_probe_frees_the_slot() {
        let mut b = breaker();
        let now = Instant::now();
        for _ in 0..3 {
            b.record(now, Permit::Normal, Verdict::Failure);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        let now = Instant::now();
        let (probe, _) = b.admit(now).unwrap();
        assert_eq!(b.record(now, probe, Verdict::Neutral), None);
        let (probe, _) = b.admit(now).unwrap();
        assert_eq!(probe, Permit::Probe);
        assert_eq!(
            b.record(now, probe, Verdict::Failure),
            Some(BreakerState::Open)
        );
        assert!(b.admit(now).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_or_broken_by_success_do_not_open() {
        let mut b = breaker();
        b.record(Instant::now(), Permit::Normal, Verdict::Failure);
        b.record(Instant::now(), Permit::Normal, Verdict::Failure);
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(
            b.record(Instant::now(), Permit::Normal, Verdict::Failure),
            None
        );
        b.record(Instant::now(), Permit::Normal, Verdict::Success);
        b.record(Instant::now(), Permit::Normal, Verdict::Failure);
        assert_eq!(
            b.record(Instant::now(), Permit::Normal, Verdict::Failure),
            None
        );
        assert_eq!(b.state(Instant::now()), BreakerState::Closed);
        // Neutral outcomes neither count nor reset.
        b.record(Instant::now(), Permit::Normal, Verdict::Neutral);
        assert_eq!(
            b.record(Instant::now(), Permit::Normal, Verdict::Failure),
            Some(BreakerState::Open)
        );
    }
}
