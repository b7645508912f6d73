//! `omni-bridge register`: the CLI side of [`crate::register`].
//!
//! It asks only for what it uses: Omni's URL and key, the bridge's public URL and inbound secret,
//! the agent (and, from an optional config file, the agent's OpenClaw id and the gateway
//! timeouts that decide Omni's `defaultTimeout`). No gateway token.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::config_args::{InboundArgs, process_env};
use super::error::CliError;
use crate::config::{ConfigError, DEFAULT_AGENT_NAME};
use crate::http_client::HttpClient;
use crate::register::{RegisterOptions, register};

/// Omni's API when neither `--omni-url`, `OMNI_URL` nor the file's `omni.url` names it.
pub const DEFAULT_OMNI_URL: &str = "http://localhost:8882";

/// Long help for `register`.
pub const LONG_ABOUT: &str = "Create (or update in place) the webhook provider `omni-bridge-<agent>` in Omni, \
pointing at this bridge's trigger URL with mode round-trip, retries 0 and a timeout above the \
bridge's own; optionally bind an Omni instance to it; then run Omni's provider health check. \
Running it twice changes nothing.\n\n\
It checks everything it can before it changes anything (Omni and its key, the instance, the provider \
name, the bridge's inbound secret, Omni's NATS), so a failed run leaves Omni as it was. --dry-run \
prints the REST calls it would make.\n\n\
Omni keeps a provider's settings cached per instance until its API restarts: when an update would \
not reach instances it already served, register names them and prints the remedy.\n\n\
With --omni-nats-url it also creates the durable consumer through which `serve` handles 🗑 resets \
(Omni never sends a 🗑 to a webhook provider).\n\n\
Omni's REST API is reached over plain http:// (https is not supported by this client).\n\n\
Examples:\n  \
OMNI_API_KEY=omni_sk_... OMNI_BRIDGE_INBOUND_TOKEN=s3cret omni-bridge register --omni-url http://localhost:8882 --public-url http://10.0.0.5:8090 --instance <instance-id>\n  \
omni-bridge register --config bridge.toml --agent sales --instance <instance-id> --dry-run";

/// Flags of `register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Optional TOML config file of the bridge: the agent's OpenClaw id, public_url,
    /// inbound_token and the gateway timeouts come from it (gateway tokens are not needed).
    #[arg(long, short = 'c', env = "OMNI_BRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Agent name in the trigger path (with a config file: one of its [agents]).
    #[arg(long, env = "OMNI_BRIDGE_AGENT", value_name = "AGENT")]
    pub agent: Option<String>,
    /// The bridge's public URL and inbound secret (over public_url / inbound_token of the file).
    #[command(flatten)]
    pub inbound: InboundArgs,
    /// Omni API base URL (default http://localhost:8882); over the file's `omni.url`.
    /// Env: OMNI_URL.
    #[arg(long, value_name = "URL")]
    pub omni_url: Option<String>,
    /// Omni API key (sent as x-api-key; required); over the file's `omni.api_key`.
    /// Env: OMNI_API_KEY.
    #[arg(long, value_name = "KEY")]
    pub omni_api_key: Option<String>,
    /// Omni instance id to bind to this agent.
    #[arg(long, value_name = "INSTANCE_ID")]
    pub instance: Option<String>,
    /// Omni's NATS (its NATS_URL): also create the durable consumer for 🗑 resets; over the
    /// file's `omni.nats_url`. Env: OMNI_NATS_URL.
    #[arg(long, value_name = "URL")]
    pub omni_nats_url: Option<String>,
    /// Check and print the REST calls it would make; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl RegisterArgs {
    /// The options, from the flags and the optional file, checked.
    ///
    /// # Errors
    /// [`CliError`] naming what is missing.
    pub fn options(&self) -> Result<RegisterOptions, CliError> {
        let config = self
            .inbound
            .loader(
                self.config.as_deref(),
                self.agent.as_deref(),
                self.omni_url.as_deref(),
                self.omni_api_key.as_deref(),
                self.omni_nats_url.as_deref(),
            )
            .load(&process_env())?;
        let agent_name = match &self.agent {
            Some(a) if config.agents.contains_key(a) => a.clone(),
            None if config.agents.len() == 1 => {
                config.agents.keys().next().cloned().unwrap_or_default()
            }
            None if config.agents.contains_key(DEFAULT_AGENT_NAME) => DEFAULT_AGENT_NAME.into(),
            _ => {
                return Err(CliError::Message(format!(
                    "agent {:?} is not in the config; pass --agent with one of: {}",
                    self.agent.as_deref().unwrap_or(DEFAULT_AGENT_NAME),
                    config.agents.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        };
        shared_protocol::AgentId::parse(&agent_name).map_err(|e| ConfigError::Invalid {
            key: "--agent".into(),
            message: e.to_string(),
        })?;
        let agent = &config.agents[&agent_name];
        let public_url = config
            .public_url
            .clone()
            .ok_or_else(|| ConfigError::Invalid {
                key: "--public-url".into(),
                message: "is required: the bridge's base URL as Omni reaches it, e.g. http://10.0.0.5:8090 (or public_url in the config)".into(),
            })?;
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(ConfigError::Invalid {
                key: "--public-url".into(),
                message: format!("{public_url:?} must start with http:// or https://"),
            }
            .into());
        }
        let inbound = config.inbound_token.clone();
        if inbound.expose().trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "--inbound-token".into(),
                message: "is required: the secret `omni-bridge serve` checks (OMNI_BRIDGE_INBOUND_TOKEN), which Omni will send".into(),
            }
            .into());
        }
        let deadline: Duration = config
            .gateways
            .get(&agent.gateway)
            .map_or_else(|| config.max_run_budget(), |g| g.run_budget());
        let mut trigger = config.clone();
        trigger.public_url = Some(public_url);
        if config.omni.api_key.expose().trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "--omni-api-key".into(),
                message:
                    "is required: an Omni API key (OMNI_API_KEY, or omni.api_key in the config)"
                        .into(),
            }
            .into());
        }
        let nats = config.omni.reset_stream();
        Ok(RegisterOptions {
            omni_url: config
                .omni
                .url
                .clone()
                .unwrap_or_else(|| DEFAULT_OMNI_URL.to_string()),
            api_key: config.omni.api_key.clone(),
            agent: agent_name.clone(),
            openclaw_agent: agent
                .openclaw_agent
                .clone()
                .unwrap_or_else(|| agent_name.clone()),
            trigger_url: trigger.trigger_url(&agent_name),
            inbound_token: inbound,
            bridge_deadline: deadline,
            instance: self.instance.clone(),
            nats,
            dry_run: self.dry_run,
        })
    }
}

/// Registers and prints what was done.
///
/// # Errors
/// [`CliError`] with a sentence saying what to fix.
pub async fn run(args: RegisterArgs) -> Result<(), CliError> {
    let opts = args.options()?;
    let report = register(&HttpClient::default(), &opts).await?;
    print!("{}", report.summary(&opts));
    Ok(())
}
