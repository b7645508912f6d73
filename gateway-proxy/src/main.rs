//! `gateway-proxy`: parses the command line, sets up logging, runs the chosen command.

use anyhow::Context;
use clap::Parser;
use gateway_proxy::cli::{Cli, Command, CredentialCommand};
fn init_tracing(format: &str) {
    let filter = shared_protocol::log_filter::env_filter("info");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}

// The runtime runs accepting, the handshakes (TLS, upgrade, authentication), the admin endpoint,
// signals and probes; admitted connections are relayed on the relay loops (`listen.workers`, see
// `gateway_proxy::relay_loop`).
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let out = match &cli.command {
        Command::Serve(args) => {
            init_tracing(&cli.log_format);
            gateway_proxy::cli::serve(args).await.context("serve")?;
            return Ok(());
        }
        Command::Credential(CredentialCommand::New(args)) => {
            gateway_proxy::cli::new_credential(args)?
        }
        Command::Fingerprint(args) => gateway_proxy::cli::fingerprint(&args.cert)?,
        Command::SelfSigned(args) => gateway_proxy::cli::self_signed(args)?,
        Command::CheckConfig(args) => gateway_proxy::cli::check_config(args)?,
    };
    print!("{out}");
    Ok(())
}
