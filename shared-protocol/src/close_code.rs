//! WebSocket close codes the gateway uses, named.

/// Going away (RFC 6455): an endpoint leaves, e.g. the proxy after its client vanished.
pub const GOING_AWAY: u16 = 1001;
/// Protocol range mismatch.
pub const PROTOCOL_MISMATCH: u16 = 1002;
/// RFC 6455 protocol error (a malformed frame); the same code as [`PROTOCOL_MISMATCH`].
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not UTF-8 (RFC 6455).
pub const INVALID_PAYLOAD: u16 = 1007;
/// Policy: auth failure, invalid handshake or params, slow consumer.
pub const POLICY_VIOLATION: u16 = 1008;
/// A pre-auth frame over 64 KiB.
pub const TOO_LARGE: u16 = 1009;
/// Internal error.
pub const INTERNAL_ERROR: u16 = 1011;
/// Service restart (after a `shutdown` event).
pub const SERVICE_RESTART: u16 = 1012;
/// Gateway starting (after a retryable `UNAVAILABLE`).
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The reference client's own close on a liveness timeout.
pub const CLIENT_LIVENESS_TIMEOUT: u16 = 4000;
/// Gateway auth changed or client invalidated.
pub const AUTH_CHANGED: u16 = 4001;
