//! Why a command failed, as one sentence for the operator.

/// Why a command failed, as a sentence for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The bridge could not start.
    #[error(transparent)]
    Start(#[from] crate::bridge::StartError),
    /// Registration failed.
    #[error(transparent)]
    Register(#[from] crate::register::RegisterError),
    /// Anything else, already phrased for the operator.
    #[error("{0}")]
    Message(String),
}
