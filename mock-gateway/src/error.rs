//! Errors of the mock's own API (loading a fault script).

/// Why a fault script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// The file could not be read.
    #[error("cannot read fault script {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is neither a JSON array nor a TOML `[[fault]]` list of faults.
    #[error("invalid fault script {path}: {detail}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said.
        detail: String,
    },
}

impl MockError {
    /// A short, closed label for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Parse { .. } => "parse",
        }
    }
}
