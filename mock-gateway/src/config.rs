//! The mock's settings and the named bounds it runs under.

use std::time::Duration;

use shared_protocol::limits;

/// Token the mock expects when the builder is not told otherwise.
pub const DEFAULT_TOKEN: &str = "test-token";
/// Pacing between deltas of a normal run.
pub const DEFAULT_DELTA_INTERVAL: Duration = Duration::from_millis(10);
/// Pacing between deltas when the message contains `SLOW` (as the fake LLM does).
pub const SLOW_DELTA_INTERVAL: Duration = Duration::from_secs(1);
/// `hello-ok.server.version` of the mock.
pub const MOCK_SERVER_VERSION: &str = "mock-2026.9.6";
/// Frames queued towards one client before it counts as a slow consumer, whatever their size.
pub const OUTBOUND_QUEUE_FRAMES: usize = 4096;
/// Concurrent sockets the mock serves; more are accepted and dropped at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// Requests the log keeps; later ones are counted but not stored (tests never get near it).
pub(crate) const REQUEST_LOG_CAP: usize = 100_000;
/// How long a close frame may take to leave before the socket is dropped.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long `stop()` and `restart()` wait for connections and tasks to finish.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);
/// WebSocket read buffer (performance.md: the 128 KiB default costs ~20 µs per frame).
pub(crate) const READ_BUFFER_BYTES: usize = 8 * 1024;
/// WebSocket write buffer.
pub(crate) const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Largest message tungstenite accepts after hello (`policy.maxPayload`).
pub(crate) const MAX_MESSAGE_BYTES: usize = limits::MAX_PAYLOAD_BYTES;
/// Messages a steered run may queue behind its active reply.
pub(crate) const MAX_STEERED_MESSAGES: usize = 64;
/// Paired devices remembered (one entry per device token issued).
pub(crate) const MAX_PAIRED_DEVICES: usize = 1024;
/// Sessions the mock keeps; the oldest idle one is forgotten beyond this.
pub(crate) const MAX_SESSIONS: usize = 10_000;

/// Everything the builder configures.
#[derive(Debug, Clone)]
pub(crate) struct MockConfig {
    /// Shared gateway token.
    pub token: String,
    /// Pacing between deltas.
    pub delta_interval: Duration,
    /// `tick` period and `policy.tickIntervalMs`.
    pub tick_interval: Duration,
    /// Connects answered with retryable UNAVAILABLE for this long after start.
    pub startup_unavailable_for: Duration,
    /// Slow-consumer threshold and `policy.maxBufferedBytes`.
    pub max_buffered_bytes: usize,
    /// Deadline for the client's `connect` after the socket opens.
    pub preauth_timeout: Duration,
    /// Configured agents besides `main` (lower-cased).
    pub agents: Vec<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            token: DEFAULT_TOKEN.to_string(),
            delta_interval: DEFAULT_DELTA_INTERVAL,
            tick_interval: Duration::from_millis(limits::TICK_INTERVAL_MS),
            startup_unavailable_for: Duration::ZERO,
            max_buffered_bytes: limits::MAX_BUFFERED_BYTES,
            preauth_timeout: Duration::from_millis(limits::PREAUTH_HANDSHAKE_TIMEOUT_MS),
            agents: Vec::new(),
        }
    }
}
