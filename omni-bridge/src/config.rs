//! Bridge configuration: one TOML file (or flags and env only), checked by `validate()` before
//! anything starts, so a typo fails at boot with a sentence naming the key instead of at the
//! first message.
//!
//! ```toml
//! listen = "127.0.0.1:8090"
//! inbound_token = "omni-shared-secret"      # or OMNI_BRIDGE_INBOUND_TOKEN
//! public_url = "http://bridge.internal:8090" # what `register` gives Omni
//!
//! [gateways.default]
//! url = "ws://127.0.0.1:18789"
//! token = "test-token-123"                  # or OMNI_BRIDGE_GATEWAY_TOKEN
//!
//! [agents.main]
//! gateway = "default"
//! sender_prefix = true
//! locale = "en"
//!
//! [instances.wa-sales]                      # this Omni instance always talks to `main`
//! agent = "main"
//!
//! [texts.en]
//! unavailable = "Our assistant is offline for a minute."
//!
//! [omni]                                    # optional: 🗑 resets from Omni's event stream
//! url = "http://omni:8882"                  # Omni's REST API (confirmations), or OMNI_URL
//! api_key = "omni_sk_..."                   # or OMNI_API_KEY
//! nats_url = "nats://omni:4222"             # Omni's NATS_URL, or OMNI_NATS_URL
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared_protocol::{AgentId, Secret};

use crate::omni::reset_consumer::ResetStreamConfig;
use crate::service::texts::{TextOverrides, Texts};

/// Where the bridge listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Name of the gateway built from flags when no config file is given.
pub const DEFAULT_GATEWAY_NAME: &str = "default";
/// Agent built from flags when no config file is given (the gateway's default agent).
pub const DEFAULT_AGENT_NAME: &str = "main";
/// Command that clears a conversation when it is the whole message.
pub const DEFAULT_RESET_COMMAND: &str = "/reset";
/// Time the gateway has to acknowledge `chat.send`, in seconds: the connection layer's
/// [`DEFAULT_SEND_ACK_TIMEOUT`](crate::gateway::config::DEFAULT_SEND_ACK_TIMEOUT).
pub const DEFAULT_SEND_ACK_TIMEOUT_SECS: u64 =
    crate::gateway::config::DEFAULT_SEND_ACK_TIMEOUT.as_secs();
/// Time a run may take from ack to its terminal event, in seconds: the connection layer's
/// [`DEFAULT_RUN_TIMEOUT`](crate::gateway::config::DEFAULT_RUN_TIMEOUT).
pub const DEFAULT_RUN_TIMEOUT_SECS: u64 = crate::gateway::config::DEFAULT_RUN_TIMEOUT.as_secs();
/// Time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;

/// Why a configuration was refused. Every message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown/mistyped key.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said (names the key and line).
        message: String,
    },
    /// A value is missing or wrong.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key path, e.g. `agents.main.gateway`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole bridge configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Address the HTTP service binds.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Bearer secret Omni sends (`Authorization: Bearer <apiKey>` of the provider row).
    #[serde(default)]
    pub inbound_token: Secret,
    /// Public base URL of this bridge as Omni reaches it (for `register`); defaults to
    /// `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Secret for non-enumerable session keys: when set, the conversation part of every session
    /// key is an HMAC of `instance:chat` instead of the readable chat id.
    #[serde(default)]
    pub session_key_secret: Option<Secret>,
    /// Seconds in-flight requests get to finish on shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// OpenClaw gateways by name; each gets one pooled connection.
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewayEntry>,
    /// Agents by the name used in the trigger path (`/omni/agents/{name}/trigger`).
    #[serde(default)]
    pub agents: BTreeMap<String, AgentConfig>,
    /// Omni instance id -> agent, overriding the agent named in the path.
    #[serde(default)]
    pub instances: BTreeMap<String, InstanceConfig>,
    /// User-facing texts per locale (`en`, `pt-BR`, ...), over the built-in ones.
    #[serde(default)]
    pub texts: BTreeMap<String, TextOverrides>,
    /// Omni itself: its REST API and event stream, for 🗑 resets.
    #[serde(default)]
    pub omni: OmniConfig,
}

/// Omni's REST API and NATS, for what the bridge asks of Omni beyond answering triggers: with
/// `nats_url` set, the bridge consumes Omni's `message.received` events and handles 🗑 resets
/// (see [`crate::omni::reset_consumer`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniConfig {
    /// Omni's base URL, e.g. `http://omni:8882`.
    #[serde(default)]
    pub url: Option<String>,
    /// Omni API key (`x-api-key`).
    #[serde(default)]
    pub api_key: Secret,
    /// Omni's NATS server (its `NATS_URL`); enables the 🗑 reset consumer.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// Durable consumer name, shared by the replicas of one deployment.
    #[serde(default = "default_nats_consumer")]
    pub nats_consumer: String,
    /// Seconds before an unacknowledged 🗑 is delivered again.
    #[serde(default = "default_ack_wait")]
    pub nats_ack_wait_secs: u64,
}

impl Default for OmniConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: Secret::default(),
            nats_url: None,
            nats_consumer: default_nats_consumer(),
            nats_ack_wait_secs: default_ack_wait(),
        }
    }
}

impl OmniConfig {
    /// The reset consumer's settings, when `nats_url` is set.
    pub fn reset_stream(&self) -> Option<ResetStreamConfig> {
        self.nats_url.as_ref().map(|url| ResetStreamConfig {
            nats_url: url.clone(),
            durable: self.nats_consumer.clone(),
            ack_wait: Duration::from_secs(self.nats_ack_wait_secs),
        })
    }

    /// Checked only when the 🗑 consumer is on (`OMNI_URL` in the environment of a bridge that
    /// does not use it is no error).
    fn validate(&self) -> Result<(), ConfigError> {
        let Some(stream) = self.reset_stream() else {
            return Ok(());
        };
        if let Some(url) = &self.url
            && !url.starts_with("http://")
        {
            return Err(ConfigError::invalid(
                "omni.url",
                format!("{url:?} must start with http:// (https is not supported by this client)"),
            ));
        }
        stream
            .validate()
            .map_err(|m| ConfigError::invalid("omni.nats_url", m))?;
        if self.url.is_none() {
            return Err(ConfigError::invalid(
                "omni.url",
                "is required with omni.nats_url: 🗑 confirmations go through Omni's REST API (--omni-url or OMNI_URL)",
            ));
        }
        if self.api_key.expose().trim().is_empty() {
            return Err(ConfigError::invalid(
                "omni.api_key",
                "is required with omni.nats_url (--omni-api-key or OMNI_API_KEY)",
            ));
        }
        Ok(())
    }
}

/// One OpenClaw gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayEntry {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Shared gateway token (or `OMNI_BRIDGE_GATEWAY_TOKEN`).
    #[serde(default)]
    pub token: Secret,
    /// Certificate pins, `sha256/cert:<hex>` or `sha256/spki:<hex>` (wss only).
    #[serde(default)]
    pub pins: Vec<String>,
    /// Ed25519 device key file, for non-loopback gateways that require pairing.
    #[serde(default)]
    pub device_key_path: Option<PathBuf>,
    /// Seconds the gateway has to acknowledge `chat.send`.
    #[serde(default = "default_send_ack")]
    pub send_ack_timeout_secs: u64,
    /// Seconds a run may take after its ack.
    #[serde(default = "default_run_timeout")]
    pub run_timeout_secs: u64,
    /// Most runs in flight on this gateway's connection (the connection layer's default when
    /// unset).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

impl GatewayEntry {
    /// A gateway with default timeouts.
    pub fn new(url: impl Into<String>, token: Secret) -> Self {
        Self {
            url: url.into(),
            token,
            pins: Vec::new(),
            device_key_path: None,
            send_ack_timeout_secs: DEFAULT_SEND_ACK_TIMEOUT_SECS,
            run_timeout_secs: DEFAULT_RUN_TIMEOUT_SECS,
            max_in_flight: None,
        }
    }

    /// The longest a run through this gateway may take: send-ack plus run timeout.
    pub fn run_budget(&self) -> Duration {
        Duration::from_secs(self.send_ack_timeout_secs + self.run_timeout_secs)
    }
}

/// One agent as Omni addresses it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Gateway name (a key of `gateways`).
    #[serde(default = "default_gateway_name")]
    pub gateway: String,
    /// OpenClaw agent id when it differs from the name in the path.
    #[serde(default)]
    pub openclaw_agent: Option<String>,
    /// Prefix each message with `[Sender Name]: ` (Omni's `agentPrefixSenderName`).
    #[serde(default = "yes")]
    pub sender_prefix: bool,
    /// Locale of the user-facing texts (`en` when unset).
    #[serde(default)]
    pub locale: Option<String>,
    /// Message that clears the conversation when it is the whole text.
    #[serde(default = "default_reset_command")]
    pub reset_command: String,
    /// Texts for this agent only, over the locale's.
    #[serde(default)]
    pub texts: TextOverrides,
}

impl AgentConfig {
    /// An agent on `gateway` with every default.
    pub fn on_gateway(gateway: impl Into<String>) -> Self {
        Self {
            gateway: gateway.into(),
            openclaw_agent: None,
            sender_prefix: true,
            locale: None,
            reset_command: DEFAULT_RESET_COMMAND.to_string(),
            texts: TextOverrides::default(),
        }
    }
}

/// Per-instance overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Agent (a key of `agents`) that answers this instance whatever the path says.
    pub agent: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}
fn default_grace() -> u64 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}
fn default_send_ack() -> u64 {
    DEFAULT_SEND_ACK_TIMEOUT_SECS
}
fn default_run_timeout() -> u64 {
    DEFAULT_RUN_TIMEOUT_SECS
}
fn default_gateway_name() -> String {
    DEFAULT_GATEWAY_NAME.to_string()
}
fn default_nats_consumer() -> String {
    crate::omni::reset_consumer::DEFAULT_DURABLE.to_string()
}
fn default_ack_wait() -> u64 {
    crate::omni::reset_consumer::DEFAULT_ACK_WAIT.as_secs()
}
fn default_reset_command() -> String {
    DEFAULT_RESET_COMMAND.to_string()
}
fn yes() -> bool {
    true
}

impl BridgeConfig {
    /// A configuration with one gateway named `default` and one agent, as built from flags.
    pub fn single(gateway: GatewayEntry, agent: &str, inbound_token: Secret) -> Self {
        Self {
            listen: default_listen(),
            inbound_token,
            public_url: None,
            session_key_secret: None,
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
            gateways: BTreeMap::from([(DEFAULT_GATEWAY_NAME.to_string(), gateway)]),
            agents: BTreeMap::from([(
                agent.to_string(),
                AgentConfig::on_gateway(DEFAULT_GATEWAY_NAME),
            )]),
            instances: BTreeMap::new(),
            texts: BTreeMap::new(),
            omni: OmniConfig::default(),
        }
    }

    /// Reads a TOML file (not yet validated).
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses TOML text (not yet validated).
    ///
    /// # Errors
    /// The parser's message, which names the key and line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The built-in texts of `locale` with the file's `[texts.<locale>]` over them.
    pub fn texts_for(&self, locale: &str) -> Texts {
        let texts = Texts::builtin(locale);
        match self.texts.get(locale) {
            Some(over) => texts.with(over),
            None => texts,
        }
    }

    /// The shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The URL Omni should POST to for `agent`.
    pub fn trigger_url(&self, agent: &str) -> String {
        let base = self
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen));
        format!("{}/omni/agents/{agent}/trigger", base.trim_end_matches('/'))
    }

    /// The longest run budget of any gateway (send-ack + run timeout).
    pub fn max_run_budget(&self) -> Duration {
        self.gateways
            .values()
            .map(GatewayEntry::run_budget)
            .max()
            .unwrap_or_else(|| {
                Duration::from_secs(DEFAULT_SEND_ACK_TIMEOUT_SECS + DEFAULT_RUN_TIMEOUT_SECS)
            })
    }

    /// Checks every cross-reference and value.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.inbound_token.expose().trim().is_empty() {
            return Err(ConfigError::invalid(
                "inbound_token",
                "is empty: set it in the file or with OMNI_BRIDGE_INBOUND_TOKEN (Omni sends it as the provider's apiKey)",
            ));
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "public_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        if self
            .session_key_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < 16)
        {
            return Err(ConfigError::invalid(
                "session_key_secret",
                "must be at least 16 characters",
            ));
        }
        if self.gateways.is_empty() {
            return Err(ConfigError::invalid(
                "gateways",
                "no gateway configured: add [gateways.default] with url = \"ws://...\" or pass --gateway-url",
            ));
        }
        for (name, gw) in &self.gateways {
            validate_gateway(name, gw)?;
        }
        if self.agents.is_empty() {
            return Err(ConfigError::invalid(
                "agents",
                "no agent configured: add [agents.<name>] with gateway = \"<gateway name>\"",
            ));
        }
        for (name, agent) in &self.agents {
            let key = format!("agents.{name}");
            AgentId::parse(name).map_err(|e| ConfigError::invalid(&key, e.to_string()))?;
            if let Some(oc) = &agent.openclaw_agent {
                AgentId::parse(oc).map_err(|e| {
                    ConfigError::invalid(format!("{key}.openclaw_agent"), e.to_string())
                })?;
            }
            if !self.gateways.contains_key(&agent.gateway) {
                return Err(ConfigError::invalid(
                    format!("{key}.gateway"),
                    format!(
                        "names gateway {:?}, which is not among [gateways.*] ({})",
                        agent.gateway,
                        self.gateways.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let cmd = agent.reset_command.trim();
            if cmd.is_empty() || cmd.contains(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("{key}.reset_command"),
                    "must be one word such as \"/reset\"",
                ));
            }
        }
        for (instance, over) in &self.instances {
            if !self.agents.contains_key(&over.agent) {
                return Err(ConfigError::invalid(
                    format!("instances.{instance}.agent"),
                    format!(
                        "names agent {:?}, which is not among [agents.*]",
                        over.agent
                    ),
                ));
            }
        }
        for (locale, texts) in &self.texts {
            texts.validate().map_err(|field| {
                ConfigError::invalid(format!("texts.{locale}.{field}"), "is empty")
            })?;
        }
        for (name, agent) in &self.agents {
            agent.texts.validate().map_err(|field| {
                ConfigError::invalid(format!("agents.{name}.texts.{field}"), "is empty")
            })?;
        }
        self.omni.validate()
    }
}

fn validate_gateway(name: &str, gw: &GatewayEntry) -> Result<(), ConfigError> {
    let key = format!("gateways.{name}");
    if !(gw.url.starts_with("ws://") || gw.url.starts_with("wss://")) {
        return Err(ConfigError::invalid(
            format!("{key}.url"),
            format!(
                "{:?} must start with ws:// or wss:// (the OpenClaw gateway speaks WebSocket, default ws://127.0.0.1:18789)",
                gw.url
            ),
        ));
    }
    if gw.token.expose().is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.token"),
            "is empty: set it in the file or with OMNI_BRIDGE_GATEWAY_TOKEN",
        ));
    }
    for (i, pin) in gw.pins.iter().enumerate() {
        if !is_pin(pin) {
            return Err(ConfigError::invalid(
                format!("{key}.pins[{i}]"),
                format!("{pin:?} is not sha256/cert:<64 hex> or sha256/spki:<64 hex>"),
            ));
        }
    }
    if !gw.pins.is_empty() && gw.url.starts_with("ws://") {
        return Err(ConfigError::invalid(
            format!("{key}.pins"),
            "pins need a wss:// url",
        ));
    }
    if gw.max_in_flight == Some(0) {
        return Err(ConfigError::invalid(
            format!("{key}.max_in_flight"),
            "must be at least 1",
        ));
    }
    if gw.send_ack_timeout_secs == 0 || gw.run_timeout_secs == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.run_timeout_secs"),
            "timeouts must be at least 1 second",
        ));
    }
    Ok(())
}

/// True for `sha256/cert:<64 hex>` and `sha256/spki:<64 hex>`.
fn is_pin(pin: &str) -> bool {
    let hex_part = pin
        .strip_prefix("sha256/cert:")
        .or_else(|| pin.strip_prefix("sha256/spki:"));
    hex_part.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
inbound_token = "in-secret"
[gateways.default]
url = "ws://127.0.0.1:18789"
token = "t"
[agents.main]
[agents.sales]
gateway = "default"
openclaw_agent = "sofia"
sender_prefix = false
[instances.i1]
agent = "sales"
[texts.en]
unavailable = "down"
"#;

    #[test]
    fn a_full_file_parses_and_validates() {
        let c = BridgeConfig::from_toml(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.agents["main"].gateway, "default");
        assert!(c.agents["main"].sender_prefix);
        assert!(!c.agents["sales"].sender_prefix);
        assert_eq!(c.instances["i1"].agent, "sales");
        assert_eq!(c.max_run_budget(), Duration::from_secs(130));
        assert_eq!(
            c.trigger_url("main"),
            "http://127.0.0.1:8090/omni/agents/main/trigger"
        );
    }

    #[test]
    fn the_trash_consumer_needs_omnis_url_and_key() {
        let mut c = BridgeConfig::from_toml(GOOD).unwrap();
        c.omni.url = Some("https://omni".into());
        c.validate().unwrap();
        c.omni.nats_url = Some("nats://127.0.0.1:4222".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("omni.url"), "{err}");
        c.omni.url = Some("http://omni:8882".into());
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("omni.api_key"), "{err}");
        c.omni.api_key = Secret::new("k".into());
        c.validate().unwrap();
        c.omni.nats_consumer = "bad.name".into();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("omni.nats_url") && err.contains("bad.name"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = BridgeConfig::from_toml(&format!(
            "{GOOD}\n[gateways.x]\nurl=\"ws://a\"\ntokn=\"x\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            ("[agents.main]\ngateway = \"nope\"", "agents.main.gateway"),
            (
                "[gateways.b]\nurl = \"http://x\"\ntoken=\"t\"",
                "gateways.b.url",
            ),
            ("[instances.z]\nagent = \"ghost\"", "instances.z.agent"),
            ("[agents.\"bad id\"]", "agents.bad id"),
            (
                "[gateways.c]\nurl = \"wss://x\"\ntoken=\"t\"\npins=[\"md5:1\"]",
                "gateways.c.pins[0]",
            ),
        ];
        for (extra, key) in cases {
            let text = GOOD.replace("[agents.main]\n", "") + extra;
            let c = BridgeConfig::from_toml(&text).unwrap();
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{extra}: {err}");
        }
        let mut c = BridgeConfig::from_toml(GOOD).unwrap();
        c.inbound_token = Secret::default();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("inbound_token")
        );
    }
}
