//! Wall-clock time for the wire (challenge `ts`, device-proof skew, audit timestamps).
//!
//! Durations and deadlines use `tokio::time`, except in the relay loops (`LoopInstant`); only
//! epoch milliseconds come from `SystemTime`.

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The relay loops' clock (slow-consumer and close deadlines). The loops run on threads of their
/// own, outside tokio, where a paused tokio clock could not reach them anyway; tests of those
/// deadlines run in real time with short limits.
#[allow(
    clippy::disallowed_types,
    reason = "the relay loops are not tokio tasks (see relay_loop)"
)]
pub(crate) type LoopInstant = std::time::Instant;
