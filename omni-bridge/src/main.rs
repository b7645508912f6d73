//! `omni-bridge` binary: parse the command line, set up logging, run the command, print the
//! error as one sentence (no backtrace) and exit 1 when it fails.

use std::process::ExitCode;

use clap::Parser;
use omni_bridge::cli::{Cli, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = shared_protocol::log_filter::env_filter(cli.command.default_log_filter());
    // Colour codes only on a terminal: never in files, journald or a container's log.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    match cli.command.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = anyhow::Error::from(e);
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
