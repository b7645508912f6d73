//! `omni-bridge check-gateway`: one fresh handshake per gateway, reported in plain words.

use std::time::Duration;

use clap::Args;
use shared_protocol::Secret;
use tokio_util::sync::CancellationToken;

use super::config_args::ConfigArgs;
use super::config_args::process_env;
use super::error::CliError;
use crate::error::{ConnectError, Error};
use crate::gateway::{GatewayCheck, GatewayPool};

/// Long help for `check-gateway`.
pub const LONG_ABOUT: &str = "Open one fresh connection to each configured gateway (or the one \
given by --gateway-url), complete the handshake, list the agents, and report the latency, the \
scopes granted, the server version and whether the configured agents exist. It first says where \
each secret came from (flag, environment variable or config file; never the value). Each failure \
gets a specific message: wrong URL scheme, connection refused, bad token, certificate pin mismatch, \
unknown agent, timeout.\n\n\
Examples:\n  \
OMNI_BRIDGE_GATEWAY_TOKEN=test-token-123 omni-bridge check-gateway --gateway-url ws://127.0.0.1:18789\n  \
omni-bridge check-gateway --config bridge.toml";

/// Deadline for the whole check of one gateway.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Flags of `check-gateway`.
#[derive(Debug, Args)]
pub struct CheckGatewayArgs {
    /// Config file and overrides.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Checks every gateway and prints a report.
///
/// # Errors
/// [`CliError`] naming the first failure, after printing what succeeded.
pub async fn run(args: CheckGatewayArgs) -> Result<(), CliError> {
    let mut config = args.config.merged(&process_env())?;
    print!("{}", secret_report(&config));
    if config.inbound_token.is_empty() {
        // Not needed to talk to a gateway.
        config.inbound_token = Secret::new("unused-by-check-gateway".to_string());
    }
    config.validate()?;
    let registry = prometheus::Registry::new();
    let shutdown = CancellationToken::new();
    let pool = GatewayPool::new(&registry, shutdown.clone())
        .map_err(|e| CliError::Message(e.to_string()))?;
    let mut failures = Vec::new();
    for (name, gateway) in &config.gateways {
        let wanted: Vec<String> = config
            .agents
            .iter()
            .filter(|(_, a)| &a.gateway == name)
            .map(|(n, a)| a.openclaw_agent.clone().unwrap_or_else(|| n.clone()))
            .collect();
        pool.upsert(name, gateway.clone());
        let Some(handle) = pool.get(name) else {
            failures.push(format!("{name}: could not start a connection"));
            continue;
        };
        let result = tokio::time::timeout(CHECK_TIMEOUT, handle.check()).await;
        match result {
            Ok(Ok(check)) => {
                println!("{}", describe_ok(name, &gateway.url, &check));
                for agent in &wanted {
                    if !check.agents.iter().any(|a| a.eq_ignore_ascii_case(agent)) {
                        failures.push(format!(
                            "{name}: agent {agent:?} is unknown to the gateway (it has: {}). Fix `openclaw_agent` / --agent or add the agent in OpenClaw.",
                            check.agents.join(", ")
                        ));
                    }
                }
            }
            Ok(Err(e)) => failures.push(format!("{name} ({}): {}", gateway.url, explain(&e, &gateway.url))),
            Err(_) => failures.push(format!(
                "{name} ({}): no answer within {CHECK_TIMEOUT:?}; is the URL right and the gateway reachable?",
                gateway.url
            )),
        }
    }
    pool.close().await;
    shutdown.cancel();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CliError::Message(failures.join("\n")))
    }
}

/// Where each secret came from, as `check-gateway` prints it first (never the values).
pub fn secret_report(config: &crate::config::BridgeConfig) -> String {
    let mut out = String::from("Secrets (where each came from; values are never shown):\n");
    for source in config.secret_sources() {
        out.push_str(&format!("  {source}\n"));
    }
    out
}

fn describe_ok(name: &str, url: &str, check: &GatewayCheck) -> String {
    format!(
        "{name} ({url}): OK\n  handshake latency {:.1} ms\n  server version {}\n  granted scopes {}\n  agents {}",
        check.latency.as_secs_f64() * 1000.0,
        check.server_version,
        if check.granted_scopes.is_empty() {
            "(none: chat.send will fail; use a loopback gateway-client connection or a device identity)".to_string()
        } else {
            check.granted_scopes.join(", ")
        },
        check.agents.join(", ")
    )
}

/// A sentence for each way a check can fail.
pub fn explain(e: &Error, url: &str) -> String {
    match e {
        Error::Connect(c) => match c {
            ConnectError::BadScheme(_) => format!(
                "{url:?} is not a WebSocket URL: it must start with ws:// or wss:// (e.g. ws://127.0.0.1:18789)"
            ),
            ConnectError::Refused(why) => format!(
                "connection refused ({why}): is the OpenClaw gateway running and listening on that host and port?"
            ),
            ConnectError::AuthRejected { code, .. } => format!(
                "the gateway rejected the token ({code}): check --gateway-token / OMNI_BRIDGE_GATEWAY_TOKEN"
            ),
            ConnectError::PinMismatch => {
                "the server certificate matches none of the configured pins (--gateway-pin)".into()
            }
            ConnectError::Tls(why) => format!("TLS handshake failed: {why}"),
            ConnectError::Timeout => "the gateway did not complete the handshake in time".into(),
            ConnectError::Unavailable { message, .. } => {
                format!(
                    "the gateway is starting or overloaded ({message}); try again in a few seconds"
                )
            }
            ConnectError::Protocol(why) => format!(
                "the peer does not speak the OpenClaw gateway protocol ({why}); is this the gateway's port?"
            ),
            ConnectError::Device(why) => format!("device identity problem: {why}"),
        },
        Error::Rejected(shape) => {
            format!("the gateway refused agents.list: {}", shape.message)
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_own_sentence() {
        let url = "ws://127.0.0.1:1";
        let cases = [
            (
                ConnectError::BadScheme("http://x".into()),
                "must start with ws://",
            ),
            (
                ConnectError::Refused("os error 111".into()),
                "connection refused",
            ),
            (
                ConnectError::AuthRejected {
                    code: "AUTH_TOKEN_MISMATCH".into(),
                    message: "m".into(),
                },
                "rejected the token (AUTH_TOKEN_MISMATCH)",
            ),
            (ConnectError::Timeout, "did not complete the handshake"),
            (ConnectError::PinMismatch, "pins"),
        ];
        for (e, want) in cases {
            let text = explain(&Error::Connect(e), url);
            assert!(text.contains(want), "{text}");
        }
    }
}
