//! The flags and env vars shared by `serve`, `register` and `check-gateway`: a config file and
//! overrides for its main knobs, or flags alone for one gateway and one agent.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use shared_protocol::Secret;

use crate::config::{
    AgentConfig, BridgeConfig, ConfigError, DEFAULT_AGENT_NAME, DEFAULT_GATEWAY_NAME, GatewayEntry,
};

/// Gateway URL used when neither a config file nor `--gateway-url` names one.
pub const DEFAULT_GATEWAY_URL: &str = "ws://127.0.0.1:18789";

/// The bridge as Omni sees it: the secret Omni sends and the URL it posts to (shared by `serve`,
/// `check-gateway` and `register`).
#[derive(Debug, Clone, Args)]
pub struct InboundArgs {
    /// Secret Omni sends as `Authorization: Bearer` (the provider's apiKey).
    #[arg(
        long,
        env = "OMNI_BRIDGE_INBOUND_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub inbound_token: Option<String>,
    /// Public base URL of the bridge as Omni reaches it (overrides `public_url`).
    #[arg(long, env = "OMNI_BRIDGE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

/// Config file and overrides.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML config file: listen, inbound_token, public_url, session_key_secret,
    /// shutdown_grace_secs, [gateways.<name>], [agents.<name>], [instances.<id>],
    /// [texts.<locale>] (documented in omni_bridge::config). Without it, flags and env describe
    /// one gateway named "default" and one agent.
    #[arg(long, short = 'c', env = "OMNI_BRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long, env = "OMNI_BRIDGE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// OpenClaw gateway URL for the "default" gateway (default ws://127.0.0.1:18789).
    #[arg(long, env = "OMNI_BRIDGE_GATEWAY_URL", value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Gateway token; fills every gateway that has none in the file.
    #[arg(
        long,
        env = "OMNI_BRIDGE_GATEWAY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub gateway_token: Option<String>,
    /// Certificate pin for the "default" gateway: sha256/cert:<hex> or sha256/spki:<hex>
    /// (repeatable; wss:// only).
    #[arg(long = "gateway-pin", value_name = "PIN")]
    pub gateway_pins: Vec<String>,
    /// The bridge as Omni reaches it.
    #[command(flatten)]
    pub inbound: InboundArgs,
    /// Agent name when no config file is given (the OpenClaw agent id too).
    #[arg(long, env = "OMNI_BRIDGE_AGENT", default_value = DEFAULT_AGENT_NAME, value_name = "AGENT")]
    pub agent: String,
    /// Omni's NATS server (its NATS_URL, e.g. nats://omni:4222): handle 🗑 resets from Omni's
    /// event stream (needs --omni-url and --omni-api-key for the confirmation text).
    #[arg(long, env = "OMNI_NATS_URL", value_name = "URL")]
    pub omni_nats_url: Option<String>,
    /// Omni's REST API base URL (overrides omni.url), used for 🗑 confirmations.
    #[arg(long, env = "OMNI_URL", value_name = "URL")]
    pub omni_url: Option<String>,
    /// Omni API key (overrides omni.api_key; sent as x-api-key).
    #[arg(long, env = "OMNI_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub omni_api_key: Option<String>,
}

impl ConfigArgs {
    /// The file (if any) with the overrides applied, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(&self) -> Result<BridgeConfig, ConfigError> {
        let config = self.merged()?;
        config.validate()?;
        Ok(config)
    }

    /// The file (if any) with the overrides applied, not validated.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read or parsed.
    pub fn merged(&self) -> Result<BridgeConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => BridgeConfig::load(path)?,
            None => BridgeConfig::single(
                GatewayEntry::new(DEFAULT_GATEWAY_URL, Secret::default()),
                &self.agent,
                Secret::default(),
            ),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(url) = &self.gateway_url {
            config
                .gateways
                .entry(DEFAULT_GATEWAY_NAME.to_string())
                .and_modify(|g| g.url.clone_from(url))
                .or_insert_with(|| GatewayEntry::new(url.clone(), Secret::default()));
            if config.agents.is_empty() {
                config.agents.insert(
                    self.agent.clone(),
                    AgentConfig::on_gateway(DEFAULT_GATEWAY_NAME),
                );
            }
        }
        if let Some(token) = &self.gateway_token {
            for g in config.gateways.values_mut() {
                if g.token.is_empty() {
                    g.token = Secret::new(token.clone());
                }
            }
        }
        if !self.gateway_pins.is_empty() {
            let Some(g) = config.gateways.get_mut(DEFAULT_GATEWAY_NAME) else {
                return Err(ConfigError::Invalid {
                    key: "--gateway-pin".into(),
                    message: "there is no gateway named \"default\" to pin".into(),
                });
            };
            g.pins.extend(self.gateway_pins.iter().cloned());
        }
        if let Some(token) = &self.inbound.inbound_token {
            config.inbound_token = Secret::new(token.clone());
        }
        if let Some(url) = &self.inbound.public_url {
            config.public_url = Some(url.clone());
        }
        if let Some(url) = &self.omni_nats_url {
            config.omni.nats_url = Some(url.clone());
        }
        if let Some(url) = &self.omni_url {
            config.omni.url = Some(url.clone());
        }
        if let Some(key) = &self.omni_api_key {
            config.omni.api_key = Secret::new(key.clone());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        c: ConfigArgs,
    }

    fn parse(args: &[&str]) -> ConfigArgs {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .c
    }

    #[test]
    fn flags_alone_make_one_gateway_and_one_agent() {
        let c = parse(&[
            "--gateway-url",
            "ws://10.0.0.2:18789",
            "--gateway-token",
            "gt",
            "--inbound-token",
            "it",
            "--agent",
            "sofia",
            "--listen",
            "0.0.0.0:9000",
        ])
        .load()
        .unwrap();
        assert_eq!(c.gateways["default"].url, "ws://10.0.0.2:18789");
        assert_eq!(c.gateways["default"].token.expose(), "gt");
        assert!(c.agents.contains_key("sofia"));
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn missing_secrets_name_the_key() {
        let err = parse(&["--inbound-token", "it"])
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateways.default.token"), "{err}");
        let err = parse(&["--gateway-token", "gt"])
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("inbound_token"), "{err}");
    }
}
