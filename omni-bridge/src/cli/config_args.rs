//! The flags and environment variables shared by `serve`, `check-gateway` and `register`: a
//! config file, named settings for its main keys, and `--set` / `OMNI_BRIDGE__*` for every other
//! key. All of them go through one loader ([`Loader`]), which applies them in one order —
//! **flag > env > file** — and remembers where each secret came from
//! ([`crate::config::sources`]).

use std::path::PathBuf;

use clap::Args;

use crate::config::sources::{self, Layers, Origin};
use crate::config::{BridgeConfig, ConfigError, DEFAULT_AGENT_NAME, DEFAULT_GATEWAY_NAME};

/// Gateway URL used when neither a config file nor `--gateway-url` names one.
pub const DEFAULT_GATEWAY_URL: &str = "ws://127.0.0.1:18789";

/// The bridge as Omni sees it: the secret Omni sends and the URL it posts to (shared by `serve`,
/// `check-gateway` and `register`).
#[derive(Debug, Clone, Default, Args)]
pub struct InboundArgs {
    /// Secret Omni sends as `Authorization: Bearer` (the provider's apiKey); sets
    /// `inbound_token`. Env: OMNI_BRIDGE_INBOUND_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub inbound_token: Option<String>,
    /// Public base URL of the bridge as Omni reaches it; sets `public_url`.
    /// Env: OMNI_BRIDGE_PUBLIC_URL.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
}

/// Config file and overrides.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML config file (keys in docs/configuration.md). Without it, flags and env describe one
    /// gateway named "default" and one agent.
    #[arg(long, short = 'c', env = "OMNI_BRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on; sets `listen`. Env: OMNI_BRIDGE_LISTEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// OpenClaw gateway URL; sets `gateways.default.url` (default ws://127.0.0.1:18789).
    /// Env: OMNI_BRIDGE_GATEWAY_URL.
    #[arg(long, value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Gateway token (or gateway-proxy credential); sets `token` of every configured gateway.
    /// Env: OMNI_BRIDGE_GATEWAY_TOKEN. Gateways with different tokens:
    /// --set gateways.<name>.token=... or OMNI_BRIDGE__GATEWAYS__<NAME>__TOKEN.
    #[arg(long, value_name = "TOKEN")]
    pub gateway_token: Option<String>,
    /// Certificate pin for the "default" gateway: sha256/cert:<hex> or sha256/spki:<hex>
    /// (repeatable; wss:// only); added to `gateways.default.pins`.
    #[arg(long = "gateway-pin", value_name = "PIN")]
    pub gateway_pins: Vec<String>,
    /// The bridge as Omni reaches it.
    #[command(flatten)]
    pub inbound: InboundArgs,
    /// Agent name when no config file is given (the OpenClaw agent id too; default "main").
    /// Env: OMNI_BRIDGE_AGENT.
    #[arg(long, value_name = "AGENT")]
    pub agent: Option<String>,
    /// Omni's NATS server (its NATS_URL, e.g. nats://omni:4222): handle 🗑 resets from Omni's
    /// event stream (needs --omni-url and --omni-api-key); sets `omni.nats_url`.
    /// Env: OMNI_NATS_URL.
    #[arg(long, value_name = "URL")]
    pub omni_nats_url: Option<String>,
    /// Omni's REST API base URL, used for 🗑 confirmations; sets `omni.url`. Env: OMNI_URL.
    #[arg(long, value_name = "URL")]
    pub omni_url: Option<String>,
    /// Omni API key (sent as x-api-key); sets `omni.api_key`. Env: OMNI_API_KEY.
    #[arg(long, value_name = "KEY")]
    pub omni_api_key: Option<String>,
    /// Any config key, e.g. --set gateways.default.breaker.open_for=1m or
    /// --set max_cached_answers=20000 (repeatable; over everything else). Env:
    /// OMNI_BRIDGE__<KEY> with `__` between the parts, e.g.
    /// OMNI_BRIDGE__GATEWAYS__DEFAULT__MAX_IN_FLIGHT=200.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// What a named setting sets.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// One key.
    Key(&'static str),
    /// `gateways.default.url`.
    GatewayUrl,
    /// `token` of every configured gateway.
    GatewayTokens,
}

/// A named setting: its flag, its variable, what it sets, and the flag's value.
struct Named<'a> {
    flag: &'static str,
    env: &'static str,
    target: Target,
    value: Option<&'a str>,
}

/// The environment, as a list of variables (the process's, or a test's).
pub type Env = Vec<(String, String)>;

/// Applies a file, the environment and the command line, in that order (flag > env > file).
pub struct Loader<'a> {
    /// The config file, if any.
    pub file: Option<&'a std::path::Path>,
    /// The agent of a file-less configuration (flag value; the env variable is read here).
    pub agent: Option<&'a str>,
    named: Vec<Named<'a>>,
    /// Pins for `gateways.default.pins` (flags only).
    pub pins: &'a [String],
    /// `--set` assignments.
    pub sets: &'a [String],
}

impl Loader<'_> {
    /// The merged configuration, not validated.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read, or a key or value is wrong.
    pub fn load(&self, env: &Env) -> Result<BridgeConfig, ConfigError> {
        let var = |name: &str| {
            env.iter()
                .find(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let agent = self
            .agent
            .or_else(|| var("OMNI_BRIDGE_AGENT"))
            .unwrap_or(DEFAULT_AGENT_NAME)
            .to_string();
        let mut layers = match self.file {
            Some(path) => Layers::from_file(path)?,
            None => {
                let mut base = Layers::default();
                base.set(
                    "gateways.default.url",
                    DEFAULT_GATEWAY_URL,
                    Origin::Flag("(built-in default)".into()),
                )?;
                base.set_value(
                    &format!("agents.{agent}"),
                    toml::Value::Table(toml::Table::new()),
                    Origin::Flag("--agent".into()),
                )?;
                base
            }
        };
        // A gateway URL from the command line or env adds the "default" gateway (and an agent
        // on it) to a file that has neither.
        let url_named = self.named.iter().any(|n| {
            matches!(n.target, Target::GatewayUrl) && (n.value.is_some() || var(n.env).is_some())
        });
        if url_named && layers.get("gateways.default").is_none() {
            layers.set_value(
                "gateways.default",
                toml::Value::Table(toml::Table::new()),
                Origin::Flag("--gateway-url".into()),
            )?;
            if layers.names("agents").is_empty() {
                layers.set_value(
                    &format!("agents.{agent}"),
                    toml::Value::Table(toml::Table::new()),
                    Origin::Flag("--agent".into()),
                )?;
            }
        }
        for named in &self.named {
            if let Some(value) = var(named.env) {
                apply(
                    &mut layers,
                    named.target,
                    value,
                    Origin::Env(named.env.into()),
                )?;
            }
        }
        for (key, name, value) in sources::generic_env(env) {
            layers.set(&key, &value, Origin::Env(name))?;
        }
        for named in &self.named {
            if let Some(value) = named.value {
                apply(
                    &mut layers,
                    named.target,
                    value,
                    Origin::Flag(named.flag.into()),
                )?;
            }
        }
        if !self.pins.is_empty() {
            let mut pins: Vec<toml::Value> = match layers.get("gateways.default") {
                None => {
                    return Err(ConfigError::invalid(
                        "--gateway-pin",
                        "there is no gateway named \"default\" to pin",
                    ));
                }
                Some(_) => layers
                    .get("gateways.default.pins")
                    .and_then(toml::Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            };
            pins.extend(self.pins.iter().cloned().map(toml::Value::String));
            layers.set_value(
                "gateways.default.pins",
                toml::Value::Array(pins),
                Origin::Flag("--gateway-pin".into()),
            )?;
        }
        for assignment in self.sets {
            let (key, value) = sources::parse_assignment(assignment)?;
            layers.set(&key, &value, Origin::Flag(format!("--set {key}")))?;
        }
        layers.finish()
    }
}

fn apply(
    layers: &mut Layers,
    target: Target,
    value: &str,
    origin: Origin,
) -> Result<(), ConfigError> {
    match target {
        Target::Key(key) => layers.set(key, value, origin),
        Target::GatewayUrl => layers.set(
            &format!("gateways.{DEFAULT_GATEWAY_NAME}.url"),
            value,
            origin,
        ),
        Target::GatewayTokens => {
            let names = layers.names("gateways");
            for name in names {
                layers.set(&format!("gateways.{name}.token"), value, origin.clone())?;
            }
            Ok(())
        }
    }
}

/// The process's environment.
pub fn process_env() -> Env {
    std::env::vars().collect()
}

impl ConfigArgs {
    /// The loader of these flags.
    pub fn loader(&self) -> Loader<'_> {
        let named = vec![
            Named {
                flag: "--listen",
                env: "OMNI_BRIDGE_LISTEN",
                target: Target::Key("listen"),
                value: self.listen.as_deref(),
            },
            Named {
                flag: "--gateway-url",
                env: "OMNI_BRIDGE_GATEWAY_URL",
                target: Target::GatewayUrl,
                value: self.gateway_url.as_deref(),
            },
            Named {
                flag: "--gateway-token",
                env: "OMNI_BRIDGE_GATEWAY_TOKEN",
                target: Target::GatewayTokens,
                value: self.gateway_token.as_deref(),
            },
            Named {
                flag: "--inbound-token",
                env: "OMNI_BRIDGE_INBOUND_TOKEN",
                target: Target::Key("inbound_token"),
                value: self.inbound.inbound_token.as_deref(),
            },
            Named {
                flag: "--public-url",
                env: "OMNI_BRIDGE_PUBLIC_URL",
                target: Target::Key("public_url"),
                value: self.inbound.public_url.as_deref(),
            },
            Named {
                flag: "--omni-nats-url",
                env: "OMNI_NATS_URL",
                target: Target::Key("omni.nats_url"),
                value: self.omni_nats_url.as_deref(),
            },
            Named {
                flag: "--omni-url",
                env: "OMNI_URL",
                target: Target::Key("omni.url"),
                value: self.omni_url.as_deref(),
            },
            Named {
                flag: "--omni-api-key",
                env: "OMNI_API_KEY",
                target: Target::Key("omni.api_key"),
                value: self.omni_api_key.as_deref(),
            },
        ];
        Loader {
            file: self.config.as_deref(),
            agent: self.agent.as_deref(),
            named,
            pins: &self.gateway_pins,
            sets: &self.set,
        }
    }

    /// The file (if any) with the environment and the flags applied, validated.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key at fault.
    pub fn load(&self) -> Result<BridgeConfig, ConfigError> {
        let config = self.merged(&process_env())?;
        config.validate()?;
        Ok(config)
    }

    /// The file (if any) with `env` and the flags applied, not validated.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read or a key or value is wrong.
    pub fn merged(&self, env: &Env) -> Result<BridgeConfig, ConfigError> {
        self.loader().load(env)
    }
}

impl InboundArgs {
    /// The loader of `register`: a file and these two settings plus Omni's URL and key.
    pub fn loader<'a>(
        &'a self,
        file: Option<&'a std::path::Path>,
        agent: Option<&'a str>,
        omni_url: Option<&'a str>,
        omni_api_key: Option<&'a str>,
        omni_nats_url: Option<&'a str>,
    ) -> Loader<'a> {
        let named = vec![
            Named {
                flag: "--inbound-token",
                env: "OMNI_BRIDGE_INBOUND_TOKEN",
                target: Target::Key("inbound_token"),
                value: self.inbound_token.as_deref(),
            },
            Named {
                flag: "--public-url",
                env: "OMNI_BRIDGE_PUBLIC_URL",
                target: Target::Key("public_url"),
                value: self.public_url.as_deref(),
            },
            Named {
                flag: "--omni-url",
                env: "OMNI_URL",
                target: Target::Key("omni.url"),
                value: omni_url,
            },
            Named {
                flag: "--omni-api-key",
                env: "OMNI_API_KEY",
                target: Target::Key("omni.api_key"),
                value: omni_api_key,
            },
            Named {
                flag: "--omni-nats-url",
                env: "OMNI_NATS_URL",
                target: Target::Key("omni.nats_url"),
                value: omni_nats_url,
            },
        ];
        Loader {
            file,
            agent,
            named,
            pins: &[],
            sets: &[],
        }
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

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn load(args: &[&str], vars: &[(&str, &str)]) -> Result<BridgeConfig, ConfigError> {
        let c = parse(args).merged(&env(vars))?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn flags_alone_make_one_gateway_and_one_agent() {
        let c = load(
            &[
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
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.gateways["default"].url, "ws://10.0.0.2:18789");
        assert_eq!(c.gateways["default"].token.expose(), "gt");
        assert!(c.agents.contains_key("sofia"));
        assert_eq!(c.listen.port(), 9000);
    }

    #[test]
    fn missing_secrets_name_the_key() {
        let err = load(&["--inbound-token", "it"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateways.default.token"), "{err}");
        let err = load(&["--gateway-token", "gt"], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("inbound_token"), "{err}");
    }

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::with(text)
    }

    #[test]
    fn every_secret_resolves_flag_over_env_over_file_and_says_where_it_came_from() {
        let f = file(
            "inbound_token = \"from-file\"\n[gateways.default]\nurl = \"ws://127.0.0.1:1\"\ntoken = \"file-token\"\n[gateways.b]\nurl = \"ws://127.0.0.1:2\"\ntoken = \"file-b\"\n[agents.main]\n",
        );
        let path = f.path.to_str().unwrap();
        // File only.
        let c = load(&["-c", path], &[]).unwrap();
        assert_eq!(c.inbound_token.expose(), "from-file");
        assert_eq!(c.gateways["b"].token.expose(), "file-b");
        let sources: Vec<String> = c.secret_sources().iter().map(ToString::to_string).collect();
        assert!(
            sources.contains(&format!(
                "gateways.default.token: from the config file {path}"
            )),
            "{sources:?}"
        );
        // Env over file: the named variable sets every gateway; the generic one, one gateway.
        let vars = [
            ("OMNI_BRIDGE_GATEWAY_TOKEN", "env-token"),
            ("OMNI_BRIDGE__GATEWAYS__B__TOKEN", "env-b"),
            ("OMNI_BRIDGE_INBOUND_TOKEN", "env-inbound"),
        ];
        let c = load(&["-c", path], &vars).unwrap();
        assert_eq!(c.gateways["default"].token.expose(), "env-token");
        assert_eq!(c.gateways["b"].token.expose(), "env-b");
        assert_eq!(c.inbound_token.expose(), "env-inbound");
        assert_eq!(
            c.sources["gateways.b.token"],
            Origin::Env("OMNI_BRIDGE__GATEWAYS__B__TOKEN".into())
        );
        // Flags over env.
        let c = load(
            &[
                "-c",
                path,
                "--gateway-token",
                "flag-token",
                "--inbound-token",
                "flag-inbound",
            ],
            &vars,
        )
        .unwrap();
        assert_eq!(c.gateways["default"].token.expose(), "flag-token");
        assert_eq!(c.gateways["b"].token.expose(), "flag-token");
        assert_eq!(c.inbound_token.expose(), "flag-inbound");
        assert_eq!(
            c.sources["inbound_token"],
            Origin::Flag("--inbound-token".into())
        );
        // --set over everything.
        let c = load(
            &[
                "-c",
                path,
                "--gateway-token",
                "flag-token",
                "--set",
                "gateways.b.token=set-b",
            ],
            &vars,
        )
        .unwrap();
        assert_eq!(c.gateways["b"].token.expose(), "set-b");
        // The report names every secret and never its value.
        let report: String = c
            .secret_sources()
            .iter()
            .map(|s| format!("{s}\n"))
            .collect();
        for secret in ["flag-token", "set-b", "env-inbound", "file-b"] {
            assert!(!report.contains(secret), "{report}");
        }
        assert!(
            report
                .contains("inbound_token: from the environment variable OMNI_BRIDGE_INBOUND_TOKEN"),
            "{report}"
        );
    }

    #[test]
    fn every_tunable_is_reachable_from_env_and_flags() {
        let base = ["--gateway-token", "t", "--inbound-token", "i"];
        let vars = [
            ("OMNI_BRIDGE__GATEWAYS__DEFAULT__BREAKER__OPEN_FOR", "1m"),
            (
                "OMNI_BRIDGE__GATEWAYS__DEFAULT__MAX_QUEUED_PER_SESSION",
                "4",
            ),
            ("OMNI_BRIDGE__SHUTDOWN_GRACE", "5s"),
        ];
        let mut args = base.to_vec();
        args.extend([
            "--set",
            "gateways.default.backoff.max_delay=20s",
            "--set",
            "gateways.default.breaker.failure_threshold=7",
            "--set",
            "max_cached_answers=12",
        ]);
        let c = load(&args, &vars).unwrap();
        let g = &c.gateways["default"];
        assert_eq!(g.breaker.open_for, std::time::Duration::from_secs(60));
        assert_eq!(g.breaker.failure_threshold, 7);
        assert_eq!(g.max_queued_per_session, 4);
        assert_eq!(g.backoff.max_delay, std::time::Duration::from_secs(20));
        assert_eq!(c.shutdown_grace, std::time::Duration::from_secs(5));
        assert_eq!(c.max_cached_answers, 12);
        // A wrong key or value names the key.
        let mut bad = base.to_vec();
        bad.extend(["--set", "gateways.default.breaker.open_fr=1m"]);
        let err = load(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.contains("open_fr") && err.contains("gateways.default.breaker"),
            "{err}"
        );
        let mut bad = base.to_vec();
        bad.extend(["--set", "gateways.default.run_timeout=120"]);
        let err = load(&bad, &[]).unwrap_err().to_string();
        assert!(
            err.contains("no unit") && err.contains("run_timeout"),
            "{err}"
        );
    }
}

/// A temporary file for the tests, removed on drop.
#[cfg(test)]
mod tempfile_path {
    pub struct TempPath {
        pub path: std::path::PathBuf,
    }

    impl TempPath {
        pub fn with(text: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("omni-bridge-cfg-{}.toml", uuid::Uuid::new_v4()));
            std::fs::write(&path, text).unwrap();
            Self { path }
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
