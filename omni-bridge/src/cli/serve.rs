//! `omni-bridge serve`: the long-running service.

use clap::Args;
use tokio::net::TcpListener;

use super::config_args::ConfigArgs;
use super::error::CliError;
use crate::bridge::RunningBridge;
use crate::config::BridgeConfig;

/// Long help for `serve`.
pub const LONG_ABOUT: &str = "Run the HTTP service Omni's webhook provider POSTs to.\n\n\
Endpoints: POST /omni/agents/{agent}/trigger (HEAD answers 200), POST /omni/sessions/reset, \
GET /health, GET /ready, GET /metrics.\n\n\
Examples:\n  \
# one gateway, one agent (\"main\"), no file\n  \
OMNI_BRIDGE_GATEWAY_TOKEN=test-token-123 OMNI_BRIDGE_INBOUND_TOKEN=s3cret omni-bridge serve --gateway-url ws://127.0.0.1:18789\n  \
# everything from a file, the secrets from env\n  \
omni-bridge serve --config bridge.toml\n\n\
At start-up it logs where each secret came from (flag, environment variable or config file; \
never the value).\n\n\
SIGTERM or Ctrl-C: stop accepting, let in-flight requests finish within shutdown_grace (default 30s), then exit.";

/// Flags of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Runs until SIGTERM / Ctrl-C.
///
/// # Errors
/// [`CliError`] for a bad config, a port in use, or a failing listener.
pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    log_secret_sources(&config);
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        CliError::Message(format!(
            "cannot listen on {}: {e} (is another process using the port? change --listen)",
            config.listen
        ))
    })?;
    let registry = prometheus::Registry::new();
    let bridge = RunningBridge::start(&config, &registry, listener)?;
    tracing::info!(
        listen = %bridge.addr(),
        gateways = config.gateways.len(),
        agents = config.agents.len(),
        "omni-bridge serving; trigger URL for agent {:?}: {}",
        config.agents.keys().next().map(String::as_str).unwrap_or("-"),
        config.trigger_url(config.agents.keys().next().map(String::as_str).unwrap_or("main")),
    );
    wait_for_signal().await;
    tracing::info!("signal received, shutting down");
    bridge
        .stop()
        .await
        .map_err(|e| CliError::Message(format!("the listener failed: {e}")))
}

/// Logs, at start-up, where each secret came from (flag, variable, file), never its value: one
/// INFO line per secret.
pub fn log_secret_sources(config: &BridgeConfig) {
    for source in config.secret_sources() {
        tracing::info!(secret = %source.key, "secret source: {source}");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
