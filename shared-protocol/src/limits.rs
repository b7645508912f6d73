//! Protocol constants and limits, as the gateway defines them.

/// The protocol version spoken by the gateway (`PROTOCOL_VERSION`).
pub const PROTOCOL_VERSION: u32 = 4;
/// Frame cap before hello-ok (`MAX_PREAUTH_PAYLOAD_BYTES`); larger closes 1009.
pub const MAX_PREAUTH_PAYLOAD_BYTES: usize = 64 * 1024;
/// Frame cap after hello-ok (`policy.maxPayload`).
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// Outbound buffer beyond which the gateway closes a slow consumer (`policy.maxBufferedBytes`).
pub const MAX_BUFFERED_BYTES: usize = 50 * 1024 * 1024;
/// Tick interval the gateway announces (`policy.tickIntervalMs`).
pub const TICK_INTERVAL_MS: u64 = 30_000;
/// Server-side deadline for the client's connect after the socket opens.
pub const PREAUTH_HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// Allowed |now - signedAt| for a device proof (`DEVICE_SIGNATURE_SKEW_MS`).
pub const DEVICE_SIGNATURE_SKEW_MS: u64 = 120_000;
/// chat.send session key length bounds.
pub const MAX_SESSION_KEY_LEN: usize = 512;
/// Idempotency cache lifetime on the gateway (`DEDUPE_TTL_MS`).
pub const DEDUPE_TTL_MS: u64 = 5 * 60 * 1000;
/// Idempotency cache size on the gateway (`DEDUPE_MAX`).
pub const DEDUPE_MAX: usize = 1000;
