//! Wall-clock time for the wire (challenge `ts`, device-proof skew, audit timestamps).
//!
//! Durations and deadlines use `tokio::time`; only epoch milliseconds come from `SystemTime`.

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
