//! `mock-gateway`: run the fake OpenClaw gateway as a process (demos, other languages' tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mock_gateway::{FaultScript, MockGateway};

/// A faithful, fault-injecting fake of the OpenClaw gateway (protocol v4).
///
/// Replies to every chat.send with `FAKE-REPLY: you said <<M>>. chunk-a chunk-b chunk-c`, like the
/// real gateway in front of the fake LLM. SIGINT/SIGTERM stop it gracefully (`shutdown` event and
/// close 1012 to every client).
#[derive(Debug, Parser)]
#[command(name = "mock-gateway", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18789")]
    listen: SocketAddr,
    /// Shared gateway token clients must send in `connect.auth.token`.
    #[arg(long, env = "MOCK_GATEWAY_TOKEN", hide_env_values = true)]
    token: String,
    /// Milliseconds between deltas (messages containing SLOW always use 1000).
    #[arg(long, default_value_t = 10)]
    delta_interval_ms: u64,
    /// Milliseconds between `tick` events (also `policy.tickIntervalMs`).
    #[arg(long, default_value_t = 30_000)]
    tick_interval_ms: u64,
    /// Answer connects with retryable UNAVAILABLE + close 1013 for this long after start.
    #[arg(long, default_value_t = 0)]
    startup_unavailable_ms: u64,
    /// Extra agent ids besides `main` (repeatable).
    #[arg(long = "agent")]
    agents: Vec<String>,
    /// Faults queued at start: a JSON array (`[{"fault":"delay_ack","ms":500}]`) or TOML
    /// `[[fault]]` tables. Kinds: delay_ack{ms}, drop_ack, never_finish,
    /// stall_after_deltas{deltas}, drop_connection_after_deltas{deltas}, error{message}, abort,
    /// double_terminal.
    #[arg(long)]
    fault_script: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(shared_protocol::log_filter::env_filter("info"))
        .init();
    let args = Args::parse();
    let faults = match &args.fault_script {
        Some(path) => FaultScript::load(path)?.into_faults(),
        None => Vec::new(),
    };
    let handle = MockGateway::builder()
        .bind(args.listen)
        .token(args.token)
        .delta_interval(Duration::from_millis(args.delta_interval_ms))
        .tick_interval(Duration::from_millis(args.tick_interval_ms))
        .startup_unavailable_for(Duration::from_millis(args.startup_unavailable_ms))
        .agents(&args.agents)
        .start()
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    for fault in faults {
        handle.push_run_fault(fault);
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot install the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot wait for SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("stopping");
    handle.stop().await;
    Ok(())
}
