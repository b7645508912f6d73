//! `demo`: the README's main command. Starts a mock OpenClaw gateway, gateway-proxy and
//! omni-bridge on loopback, plays Omni against them and prints the replies and latencies.

use std::process::ExitCode;

use bridge_tools::demo::{DemoArgs, run};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = DemoArgs::parse();
    let filter = shared_protocol::log_filter::env_filter("warn");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(&args).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
