//! tungstenite settings for the handshake phase of both sockets of a proxied connection (the
//! relay then uses its own codec, [`crate::wire`]).
//!
//! tungstenite's default 128 KiB read buffer is zero-filled before every read (performance.md);
//! both sides use small buffers instead.

use shared_protocol::limits::{MAX_PAYLOAD_BYTES, MAX_PREAUTH_PAYLOAD_BYTES};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Read chunk per socket.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Bytes buffered before tungstenite writes to the socket (every frame is flushed anyway).
pub const WRITE_BUFFER_BYTES: usize = 0;
/// Largest message accepted from either side (the gateway's `policy.maxPayload`); the relay
/// enforces it too.
pub const MAX_MESSAGE_BYTES: usize = MAX_PAYLOAD_BYTES;
/// Ceiling of tungstenite's outgoing buffer: one maximal frame plus headroom.
pub const MAX_WRITE_BUFFER_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// The config for every socket the proxy accepts or opens.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// The config of an accepted client socket until it is authenticated: a message above
/// `MAX_PREAUTH_PAYLOAD_BYTES` is refused on its frame header, before it is buffered. After the
/// handshake the relay applies [`MAX_MESSAGE_BYTES`] itself.
pub fn preauth_config() -> WebSocketConfig {
    config()
        .max_message_size(Some(MAX_PREAUTH_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PREAUTH_PAYLOAD_BYTES))
}
