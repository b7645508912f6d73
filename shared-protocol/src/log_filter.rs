//! The log filter every binary uses: `RUST_LOG` (or a default) with the libraries that log frame
//! contents held at `info`, whatever `RUST_LOG` says.
//!
//! tungstenite logs whole frames at trace level ("Received message ..."): the connect frame with
//! its token, device signatures, message text. A secret must not reach a log line because someone
//! turned on `RUST_LOG=trace` at 3 a.m., so these targets are capped here, once, for all binaries.
//!
//! [`LogCapture`] is the other half of that promise: the in-memory sink every crate's "no secret
//! in the logs" test installs, so that all of them capture output the same way.

use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;
use tracing_subscriber::fmt::MakeWriter;

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

/// Formatted log output collected in memory, for tests that grep what was logged.
///
/// Clones share one buffer: hand a clone to `tracing_subscriber::fmt().with_writer(..)` (it is a
/// [`MakeWriter`]) and read everything written so far with [`LogCapture::contents`].
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far (invalid UTF-8 replaced, never an error).
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

impl io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_collects_what_a_subscriber_writes_through_any_clone() {
        let capture = LogCapture::new();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(capture.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "first line");
            tracing::debug!("below the default level");
        });
        let logs = capture.contents();
        assert!(
            logs.contains("first line") && logs.contains("answer=42"),
            "{logs}"
        );
        assert!(!logs.contains("below the default level"), "{logs}");
        assert_eq!(logs.lines().count(), 1, "{logs}");
    }

    #[test]
    fn frame_logging_targets_are_capped_even_at_trace() {
        let rendered = capped(EnvFilter::new("trace")).to_string();
        for target in CAPPED_TARGETS {
            assert!(rendered.contains(&format!("{target}=info")), "{rendered}");
        }
    }
}
