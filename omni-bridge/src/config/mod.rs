//! Bridge configuration: **one** struct, [`BridgeConfig`], read from one TOML file, with every
//! key settable from the environment and the command line too ([`sources`]: flag > env > file),
//! and checked once by [`BridgeConfig::validate`] before anything starts, so a typo fails at boot
//! with a sentence naming the key instead of at the first message. The gateway layer uses
//! [`GatewayConfig`] as it is (budgets, bounds, breaker, backoff): there is no second schema.
//!
//! ```toml
//! listen = "127.0.0.1:8090"
//! inbound_token = "omni-shared-secret"      # or OMNI_BRIDGE_INBOUND_TOKEN
//! public_url = "http://bridge.internal:8090" # what `register` gives Omni
//! shutdown_grace = "30s"
//!
//! [gateways.default]
//! url = "ws://127.0.0.1:18789"
//! token = "test-token-123"                  # or OMNI_BRIDGE_GATEWAY_TOKEN
//! run_timeout = "120s"                      # every connection-layer tunable: see gateway.rs
//! breaker = { failure_threshold = 3, window = "60s", open_for = "30s" }
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
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shared_protocol::{AgentId, Secret};

pub mod duration;
pub mod gateway;
pub mod omni;
pub mod origin;
pub mod sources;
pub mod texts;

pub use gateway::{BackoffConfig, BreakerConfig, GatewayConfig};
pub use omni::{OmniConfig, ResetStreamConfig};
use origin::Origin;
use texts::TextOverrides;

/// Where the bridge listens when nothing else is said.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
/// Name of the gateway built from flags when no config file is given.
pub const DEFAULT_GATEWAY_NAME: &str = "default";
/// Agent built from flags when no config file is given (the gateway's default agent).
pub const DEFAULT_AGENT_NAME: &str = "main";
/// Command that clears a conversation when it is the whole message.
pub const DEFAULT_RESET_COMMAND: &str = "/reset";
/// Time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Most HTTP connections served at once; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// How long a finished answer is replayed to a repeated delivery of its trace.
pub const DEFAULT_ANSWER_CACHE_TTL: Duration = Duration::from_secs(10 * 60);
/// Most finished answers kept for repeated deliveries; the oldest go first.
pub const DEFAULT_MAX_CACHED_ANSWERS: usize = 10_000;

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
    /// The file is not valid TOML.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said (names the line).
        message: String,
    },
    /// A value is missing or wrong, or a key unknown.
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted key path, e.g. `agents.main.gateway`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
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
    /// Time in-flight requests get to finish on shutdown.
    #[serde(default = "default_grace", deserialize_with = "duration::deserialize")]
    pub shutdown_grace: Duration,
    /// Most HTTP connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a finished answer is replayed to a repeated delivery of its trace.
    #[serde(
        default = "default_cache_ttl",
        deserialize_with = "duration::deserialize"
    )]
    pub answer_cache_ttl: Duration,
    /// Most finished answers kept for repeated deliveries; the oldest go first.
    #[serde(default = "default_max_cached")]
    pub max_cached_answers: usize,
    /// OpenClaw gateways by name; each gets one pooled connection.
    #[serde(default)]
    pub gateways: BTreeMap<String, GatewayConfig>,
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
    /// Where each secret came from (file, environment variable, flag), by key: filled by
    /// [`sources::Layers`]. Never the values.
    #[serde(skip)]
    pub sources: BTreeMap<String, Origin>,
}

/// Where one secret came from, as `serve` logs it and `check-gateway` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// The key, e.g. `gateways.default.token`.
    pub key: String,
    /// True when the secret has a value.
    pub set: bool,
    /// The file, variable or flag that set it (`None`: not set, or set by the program).
    pub origin: Option<Origin>,
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.origin, self.set) {
            (Some(origin), true) => write!(f, "{}: from the {origin}", self.key),
            (Some(origin), false) => write!(f, "{}: empty in the {origin}", self.key),
            (None, true) => write!(f, "{}: set by the program", self.key),
            (None, false) => write!(f, "{}: not set", self.key),
        }
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
fn default_grace() -> Duration {
    DEFAULT_SHUTDOWN_GRACE
}
fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_cache_ttl() -> Duration {
    DEFAULT_ANSWER_CACHE_TTL
}
fn default_max_cached() -> usize {
    DEFAULT_MAX_CACHED_ANSWERS
}
fn default_gateway_name() -> String {
    DEFAULT_GATEWAY_NAME.to_string()
}
fn default_reset_command() -> String {
    DEFAULT_RESET_COMMAND.to_string()
}
fn yes() -> bool {
    true
}

impl BridgeConfig {
    /// A configuration with one gateway named `default` and one agent, as built from flags.
    pub fn single(gateway: GatewayConfig, agent: &str, inbound_token: Secret) -> Self {
        Self {
            listen: default_listen(),
            inbound_token,
            public_url: None,
            session_key_secret: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            answer_cache_ttl: DEFAULT_ANSWER_CACHE_TTL,
            max_cached_answers: DEFAULT_MAX_CACHED_ANSWERS,
            gateways: BTreeMap::from([(DEFAULT_GATEWAY_NAME.to_string(), gateway)]),
            agents: BTreeMap::from([(
                agent.to_string(),
                AgentConfig::on_gateway(DEFAULT_GATEWAY_NAME),
            )]),
            instances: BTreeMap::new(),
            texts: BTreeMap::new(),
            omni: OmniConfig::default(),
            sources: BTreeMap::new(),
        }
    }

    /// Parses TOML text (not yet validated; no overrides). The loader of the command line is
    /// `cli::ConfigArgs`, which applies the environment and the flags on top of the file.
    ///
    /// # Errors
    /// The parser's message, which names the key and line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
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
            .map(GatewayConfig::run_budget)
            .max()
            .unwrap_or_else(|| {
                gateway::DEFAULT_SEND_ACK_TIMEOUT.saturating_add(gateway::DEFAULT_RUN_TIMEOUT)
            })
    }

    /// Every secret of this configuration and where it came from (never its value).
    pub fn secret_sources(&self) -> Vec<SecretSource> {
        let mut keys = vec![("inbound_token".to_string(), !self.inbound_token.is_empty())];
        for (name, gateway) in &self.gateways {
            keys.push((format!("gateways.{name}.token"), !gateway.token.is_empty()));
        }
        if self.session_key_secret.is_some() || self.sources.contains_key("session_key_secret") {
            keys.push((
                "session_key_secret".into(),
                self.session_key_secret
                    .as_ref()
                    .is_some_and(|s| !s.is_empty()),
            ));
        }
        if self.omni.nats_url.is_some() || self.sources.contains_key("omni.api_key") {
            keys.push(("omni.api_key".into(), !self.omni.api_key.is_empty()));
        }
        keys.into_iter()
            .map(|(key, set)| SecretSource {
                origin: self.sources.get(&key).cloned(),
                key,
                set,
            })
            .collect()
    }

    /// Checks every cross-reference and value, each gateway's included (the one validation).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.inbound_token.expose().trim().is_empty() {
            return Err(ConfigError::invalid(
                "inbound_token",
                "is empty: set it with --inbound-token, OMNI_BRIDGE_INBOUND_TOKEN or in the file (Omni sends it as the provider's apiKey)",
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
            gw.validate().map_err(|e| {
                ConfigError::invalid(format!("gateways.{name}.{}", e.key), e.message)
            })?;
            if gw.token.expose().is_empty() {
                return Err(ConfigError::invalid(
                    format!("gateways.{name}.token"),
                    "is empty: set it with --gateway-token, OMNI_BRIDGE_GATEWAY_TOKEN, OMNI_BRIDGE__GATEWAYS__<NAME>__TOKEN or in the file",
                ));
            }
        }
        for (key, value) in [
            ("max_connections", self.max_connections),
            ("max_cached_answers", self.max_cached_answers),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
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
        self.omni
            .validate()
            .map_err(|(key, message)| ConfigError::invalid(key, message))
    }
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
        assert_eq!(c.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
        assert_eq!(
            c.trigger_url("main"),
            "http://127.0.0.1:8090/omni/agents/main/trigger"
        );
    }

    #[test]
    fn the_annotated_example_lists_every_default_and_validates() {
        let mut c = BridgeConfig::from_toml(include_str!("../../bridge.example.toml")).unwrap();
        c.inbound_token = Secret::new("from-env".into());
        c.gateways.get_mut("default").unwrap().token = Secret::new("from-env".into());
        c.validate().unwrap();
        let g = &c.gateways["default"];
        let defaults = GatewayConfig::new(g.url.clone(), g.token.clone());
        assert_eq!(*g, defaults, "the example shows the defaults");
        let built = BridgeConfig::single(defaults, "main", c.inbound_token.clone());
        assert_eq!(c.shutdown_grace, built.shutdown_grace);
        assert_eq!(c.max_connections, built.max_connections);
        assert_eq!(c.answer_cache_ttl, built.answer_cache_ttl);
        assert_eq!(c.max_cached_answers, built.max_cached_answers);
        assert_eq!(c.omni.nats_ack_wait, OmniConfig::default().nats_ack_wait);
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
                "gateways.c",
            ),
        ];
        for (extra, key) in cases {
            let text = GOOD.replace("[agents.main]\n", "") + extra;
            // A pin is parsed with the file; the rest is found by validate().
            let err = match BridgeConfig::from_toml(&text) {
                Ok(c) => c.validate().unwrap_err().to_string(),
                Err(e) => e,
            };
            assert!(err.contains(key) || err.contains("pins"), "{extra}: {err}");
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
