//! The log filter every binary uses: `RUST_LOG` (or a default) with the libraries that log frame
//! contents held at `info`, whatever `RUST_LOG` says.
//!
//! tungstenite logs whole frames at trace level ("Received message ..."): the connect frame with
//! its token, device signatures, message text. A secret must not reach a log line because someone
//! turned on `RUST_LOG=trace` at 3 a.m., so these targets are capped here, once, for all binaries.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// Targets that may log frame contents or key material below `info`.
pub const CAPPED_TARGETS: [&str; 3] = ["tungstenite", "tokio_tungstenite", "rustls"];

/// `RUST_LOG` (or `default` when unset or invalid) with [`CAPPED_TARGETS`] held at `info`.
pub fn env_filter(default: &str) -> EnvFilter {
    let base = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    capped(base)
}

/// Adds the caps to any filter (tests build their own filter at `trace`).
pub fn capped(filter: EnvFilter) -> EnvFilter {
    CAPPED_TARGETS
        .iter()
        .filter_map(|target| format!("{target}=info").parse::<Directive>().ok())
        .fold(filter, EnvFilter::add_directive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_logging_targets_are_capped_even_at_trace() {
        let rendered = capped(EnvFilter::new("trace")).to_string();
        for target in CAPPED_TARGETS {
            assert!(rendered.contains(&format!("{target}=info")), "{rendered}");
        }
    }
}
