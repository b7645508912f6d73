//! Reconnect schedule (exponential with jitter, via `backon`) and log escalation.
//!
//! The schedule restarts on every hello-ok. A retryable `UNAVAILABLE` with `retryAfterMs`
//! replaces the next delay (the gateway knows best when it will be ready). Log levels escalate
//! like Omni's client: attempts 1-3 WARN, then INFO until 10, then DEBUG, every 10th WARN.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use crate::config::BackoffConfig;

/// Delays between reconnect attempts.
#[derive(Debug)]
pub struct ReconnectSchedule {
    config: BackoffConfig,
    delays: ExponentialBackoff,
    attempt: u32,
}

impl ReconnectSchedule {
    /// A fresh schedule.
    pub fn new(config: BackoffConfig) -> Self {
        let delays = build(&config);
        Self {
            config,
            delays,
            attempt: 0,
        }
    }

    /// After a successful handshake: start over from `min_delay`.
    pub fn reset(&mut self) {
        self.delays = build(&self.config);
        self.attempt = 0;
    }

    /// The failed attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Counts one failed attempt and returns the delay before the next one: the gateway's
    /// `retry_after` when given, else the next exponential step (jitter included, capped).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let step = self.delays.next().unwrap_or(self.config.max_delay);
        retry_after.unwrap_or(step).min(self.config.max_delay)
    }
}

fn build(config: &BackoffConfig) -> ExponentialBackoff {
    let builder = ExponentialBuilder::new()
        .with_min_delay(config.min_delay)
        .with_max_delay(config.max_delay)
        .with_factor(config.factor)
        .without_max_times();
    if config.jitter {
        builder.with_jitter().build()
    } else {
        builder.build()
    }
}

/// Level of the log line for reconnect attempt `attempt` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// WARN.
    Warn,
    /// INFO.
    Info,
    /// DEBUG.
    Debug,
}

/// Attempts 1-3 WARN, every 10th WARN, otherwise INFO until 10, then DEBUG.
pub fn log_level(attempt: u32) -> LogLevel {
    if attempt <= 3 || attempt.is_multiple_of(10) {
        LogLevel::Warn
    } else if attempt < 10 {
        LogLevel::Info
    } else {
        LogLevel::Debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut s = ReconnectSchedule::new(BackoffConfig {
            jitter: false,
            ..BackoffConfig::default()
        });
        let delays: Vec<_> = (0..8).map(|_| s.next_delay(None)).collect();
        assert_eq!(delays[0], Duration::from_millis(800));
        assert!(delays[1] > delays[0] && delays[1] < Duration::from_millis(1400));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(15));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(s.attempt(), 8);
        s.reset();
        assert_eq!(s.attempt(), 0);
        assert_eq!(s.next_delay(None), Duration::from_millis(800));
    }

    #[test]
    fn jitter_stays_within_bounds_and_retry_after_wins() {
        let mut s = ReconnectSchedule::new(BackoffConfig::default());
        for _ in 0..30 {
            let d = s.next_delay(None);
            assert!(d >= Duration::from_millis(800) && d <= Duration::from_secs(15));
        }
        assert_eq!(
            s.next_delay(Some(Duration::from_millis(500))),
            Duration::from_millis(500)
        );
        assert_eq!(
            s.next_delay(Some(Duration::from_secs(600))),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn log_escalation() {
        let levels: Vec<_> = (1..=21).map(log_level).collect();
        assert_eq!(&levels[..3], &[LogLevel::Warn; 3]);
        assert_eq!(&levels[3..9], &[LogLevel::Info; 6]);
        assert_eq!(levels[9], LogLevel::Warn);
        assert_eq!(levels[10], LogLevel::Debug);
        assert_eq!(levels[19], LogLevel::Warn);
    }
}
