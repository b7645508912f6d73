//! `omni-bridge register`: the CLI side of [`crate::register`].

use clap::Args;
use shared_protocol::Secret;

use super::{CliError, ConfigArgs};
use crate::register::{RegisterOptions, http::HttpClient, register};

/// Long help for `register`.
pub const LONG_ABOUT: &str = "Create (or update in place) the webhook provider `omni-bridge-<agent>` in Omni, \
pointing at this bridge's trigger URL with mode round-trip, retries 0 and a timeout above the \
bridge's own; optionally bind an Omni instance to it; then run Omni's provider health check. \
Running it twice changes nothing.\n\n\
Omni's REST API is reached over plain http:// (https is not supported by this client).\n\n\
Examples:\n  \
OMNI_API_KEY=omni_sk_... OMNI_BRIDGE_INBOUND_TOKEN=s3cret omni-bridge register --omni-url http://localhost:8882 --public-url http://10.0.0.5:8090\n  \
omni-bridge register --config bridge.toml --agent sales --instance 3f1c...-instance-uuid";

/// Flags of `register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Config file and overrides (the agent, trigger URL, inbound token and timeouts come from it).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Omni API base URL.
    #[arg(
        long,
        env = "OMNI_URL",
        default_value = "http://localhost:8882",
        value_name = "URL"
    )]
    pub omni_url: String,
    /// Omni API key (sent as x-api-key).
    #[arg(long, env = "OMNI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub omni_api_key: String,
    /// Omni instance id to bind to this agent.
    #[arg(long, value_name = "INSTANCE_ID")]
    pub instance: Option<String>,
}

/// Registers and prints what was done.
///
/// # Errors
/// [`CliError`] with a sentence saying what to fix.
pub async fn run(args: RegisterArgs) -> Result<(), CliError> {
    let config = args.config.load()?;
    let agent_name = if config.agents.contains_key(&args.config.agent) {
        args.config.agent.clone()
    } else if config.agents.len() == 1 {
        config.agents.keys().next().cloned().unwrap_or_default()
    } else {
        return Err(CliError::Message(format!(
            "agent {:?} is not in the config; pass --agent with one of: {}",
            args.config.agent,
            config.agents.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    };
    let agent = &config.agents[&agent_name];
    let deadline = config
        .gateways
        .get(&agent.gateway)
        .map_or_else(|| config.max_run_budget(), |g| g.run_budget());
    let opts = RegisterOptions {
        omni_url: args.omni_url,
        api_key: Secret::new(args.omni_api_key),
        agent: agent_name.clone(),
        openclaw_agent: agent
            .openclaw_agent
            .clone()
            .unwrap_or_else(|| agent_name.clone()),
        trigger_url: config.trigger_url(&agent_name),
        inbound_token: config.inbound_token.clone(),
        bridge_deadline: deadline,
        instance: args.instance,
    };
    let report = register(&HttpClient::default(), &opts).await?;
    print!("{}", report.summary(&opts));
    Ok(())
}
