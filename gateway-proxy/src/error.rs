//! The proxy's one error type: which side failed, and whether trying again may help.

use std::io;

/// Which side of the proxy an error came from (drives metric labels and retry decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration or a file it names.
    Config,
    /// TLS material or a TLS handshake.
    Tls,
    /// The client side (downstream).
    Downstream,
    /// The gateway side (upstream).
    Upstream,
    /// A local I/O problem (bind, file write).
    Io,
}

impl ErrorKind {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Tls => "tls",
            ErrorKind::Downstream => "downstream",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Io => "io",
        }
    }
}

/// Everything that can go wrong in the proxy library.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is invalid; the message says which key and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// Certificate or key material is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// Binding or accepting failed.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The gateway could not be reached or refused the proxy.
    #[error("upstream: {0}")]
    Upstream(String),
}

impl ProxyError {
    /// Which side failed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::Config(_) | ProxyError::File { .. } => ErrorKind::Config,
            ProxyError::Tls(_) => ErrorKind::Tls,
            ProxyError::Io(_) => ErrorKind::Io,
            ProxyError::Upstream(_) => ErrorKind::Upstream,
        }
    }

    /// True when the same operation may succeed later without a change (upstream down).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProxyError::Upstream(_) | ProxyError::Io(_))
    }

    pub(crate) fn file(path: &std::path::Path, source: io::Error) -> Self {
        ProxyError::File {
            path: path.display().to_string(),
            source,
        }
    }
}
