//! The command line: `serve`, `register`, `check-gateway` and `reset`.
//!
//! Each subcommand lives in its own file; `main.rs` only parses, sets up logging and calls
//! [`Command::run`].

pub mod check_gateway;
pub mod config_args;
pub mod error;
pub mod register;
pub mod reset;
pub mod serve;

use clap::{Parser, Subcommand};

pub use config_args::ConfigArgs;
pub use error::CliError;

/// Omni provider bridge for OpenClaw agents.
#[derive(Debug, Parser)]
#[command(
    name = "omni-bridge",
    version,
    about = "Connects Omni (the messaging hub) to OpenClaw agents: Omni POSTs each message, the bridge answers with the agent's reply.",
    long_about = "Connects Omni (the messaging hub) to OpenClaw agents.\n\n\
Omni's `webhook` provider POSTs every message for an agent to the bridge; the bridge runs it on the \
agent over one pooled WebSocket per OpenClaw gateway and answers with the reply.\n\n\
Quick start from a clone of the repository (no config needed):\n  \
cargo run --release -p bridge-tools --bin demo     # mock gateway + proxy + bridge on loopback, prints a table\n\n\
Real setup:\n  \
export OMNI_BRIDGE_GATEWAY_TOKEN=test-token-123 OMNI_BRIDGE_INBOUND_TOKEN=$(openssl rand -hex 24)\n  \
omni-bridge check-gateway --gateway-url ws://127.0.0.1:18789\n  \
omni-bridge serve --gateway-url ws://127.0.0.1:18789 --listen 0.0.0.0:8090\n  \
OMNI_API_KEY=... omni-bridge register --omni-url http://localhost:8882 --public-url http://bridge-host:8090 --instance <omni-instance-id>"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "OMNI_BRIDGE_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service Omni POSTs to.
    #[command(long_about = serve::LONG_ABOUT)]
    Serve(serve::ServeArgs),
    /// Create or update the webhook provider in Omni (idempotent) and bind an instance.
    #[command(long_about = register::LONG_ABOUT)]
    Register(register::RegisterArgs),
    /// Connect to the gateway once and report latency, scopes, version and agents.
    #[command(long_about = check_gateway::LONG_ABOUT)]
    CheckGateway(check_gateway::CheckGatewayArgs),
    /// Clear one conversation's agent session through a running bridge.
    #[command(long_about = reset::LONG_ABOUT)]
    Reset(reset::ResetArgs),
}

impl Command {
    /// The default log filter for this command (`RUST_LOG` overrides it).
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Self::Serve(_) => "info",
            _ => "warn",
        }
    }

    /// Runs the command.
    ///
    /// # Errors
    /// [`CliError`] phrased for the operator.
    pub async fn run(self) -> Result<(), CliError> {
        match self {
            Self::Serve(a) => serve::run(a).await,
            Self::Register(a) => register::run(a).await,
            Self::CheckGateway(a) => check_gateway::run(a).await,
            Self::Reset(a) => reset::run(a).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
