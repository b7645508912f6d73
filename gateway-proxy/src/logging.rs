//! The log filter: `RUST_LOG` (default `info`) with the WebSocket and TLS libraries capped.
//!
//! tungstenite logs whole frames at trace level ("Received message ..."), which would put tokens
//! and message text in the log; those targets are capped at `info` whatever `RUST_LOG` says.

use tracing_subscriber::EnvFilter;

/// Targets that may log frame contents or key material below `info`.
pub const CAPPED_TARGETS: [&str; 3] = ["tungstenite", "tokio_tungstenite", "rustls"];

/// `RUST_LOG` (or `default`) with [`CAPPED_TARGETS`] held at `info`.
pub fn filter(default: &str) -> EnvFilter {
    let base = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    CAPPED_TARGETS.iter().fold(base, |f, target| {
        match format!("{target}=info").parse() {
            Ok(d) => f.add_directive(d),
            Err(_) => f,
        }
    })
}
