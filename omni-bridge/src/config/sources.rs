//! Where each value comes from. Every key of the file can be set three ways, applied in this
//! order so that the later wins: the file, then the environment, then the command line —
//! **flag > env > file**, for secrets as for everything else.
//!
//! - Environment: the named variables of the command line (`OMNI_BRIDGE_GATEWAY_TOKEN`, ...)
//!   and, for any key, `OMNI_BRIDGE__<KEY>` with `__` between the parts of the dotted key
//!   (`OMNI_BRIDGE__GATEWAYS__DEFAULT__BREAKER__OPEN_FOR=1m`; parts are lowercased).
//! - Command line: the named flags (`--gateway-token`, ...) and, for any key,
//!   `--set <key>=<value>` (`--set gateways.default.max_in_flight=200`).
//!
//! Within one level the named variable or flag comes first and the generic one after it, so the
//! more specific setting wins. A value is read as TOML when it parses as such (`200`, `true`,
//! `["a", "b"]`), else as a string; a secret is always a string. [`Layers`] remembers, for every
//! secret, which of these set it, so that `serve` and `check-gateway` can say where each secret
//! came from without printing it ([`super::BridgeConfig::secret_sources`]).

use std::collections::BTreeMap;
use std::path::Path;

pub use super::origin::Origin;
use super::{BridgeConfig, ConfigError};

/// Prefix of the generic environment variables: `OMNI_BRIDGE__<KEY>`.
pub const ENV_PREFIX: &str = "OMNI_BRIDGE__";

/// True for the keys that hold secrets.
pub fn is_secret(key: &str) -> bool {
    matches!(key, "inbound_token" | "session_key_secret" | "omni.api_key")
        || (key.starts_with("gateways.") && key.ends_with(".token") && key.split('.').count() == 3)
}

/// A configuration being assembled: a TOML table, and the origin of every secret set so far.
#[derive(Debug, Default)]
pub struct Layers {
    table: toml::Table,
    origins: BTreeMap<String, Origin>,
}

impl Layers {
    /// Starts from a table (built by the caller when there is no file).
    pub fn from_table(table: toml::Table) -> Self {
        Self {
            table,
            origins: BTreeMap::new(),
        }
    }

    /// Starts from a config file; every secret it sets is recorded as coming from it.
    ///
    /// # Errors
    /// [`ConfigError::Read`], or [`ConfigError::Parse`] for a file that is not TOML.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut layers = Self::from_table(table);
        for key in secret_keys(&layers.table) {
            layers.origins.insert(key, Origin::File(path.to_path_buf()));
        }
        Ok(layers)
    }

    /// The value at a dotted key, if set.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        let mut parts = key.split('.');
        let mut value = self.table.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// The names under a table key (`gateways`, `agents`).
    pub fn names(&self, key: &str) -> Vec<String> {
        self.get(key)
            .and_then(toml::Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets `key` from text: a secret as a string, anything else as TOML when it parses as a
    /// value, else as a string.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a part of the key is already a value, not a table.
    pub fn set(&mut self, key: &str, raw: &str, origin: Origin) -> Result<(), ConfigError> {
        let value = if is_secret(key) {
            toml::Value::String(raw.to_string())
        } else {
            parse_value(raw)
        };
        self.set_value(key, value, origin)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when a part of the key is already a value, not a table.
    pub fn set_value(
        &mut self,
        key: &str,
        value: toml::Value,
        origin: Origin,
    ) -> Result<(), ConfigError> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::invalid(
                key,
                format!("is not a key ({origin}): use dotted names such as gateways.default.url"),
            ));
        }
        let (last, path) = parts.split_last().unwrap_or((&"", &[]));
        let mut table = &mut self.table;
        for part in path {
            let entry = table
                .entry((*part).to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{part:?} is a value, not a table ({origin})"),
                    ));
                }
            };
        }
        table.insert((*last).to_string(), value);
        for secret in secret_keys(&self.table) {
            if secret == key || secret.starts_with(&format!("{key}.")) {
                self.origins.insert(secret, origin.clone());
            }
        }
        Ok(())
    }

    /// The typed configuration, with the secrets' origins (not yet validated).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key whose type or name is wrong.
    pub fn finish(self) -> Result<BridgeConfig, ConfigError> {
        let mut config: BridgeConfig =
            toml::Value::Table(self.table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "config".into(),
                    message: e.to_string().trim_end().replace('\n', " "),
                })?;
        config.sources = self.origins;
        Ok(config)
    }
}

/// Reads a value as TOML (`200`, `true`, `1.5`, `["a"]`), or as a string when it is not one.
pub fn parse_value(raw: &str) -> toml::Value {
    raw.parse::<toml::Value>()
        .unwrap_or_else(|_| toml::Value::String(raw.to_string()))
}

/// Splits `key=value` (of `--set`).
///
/// # Errors
/// [`ConfigError::Invalid`] without an `=`.
pub fn parse_assignment(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(ConfigError::invalid(
            "--set",
            "expects KEY=VALUE, e.g. --set gateways.default.max_in_flight=200",
        )),
    }
}

/// The generic variables among `vars`: (`dotted.key`, variable name, value), sorted by name.
pub fn generic_env(vars: &[(String, String)]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = vars
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(ENV_PREFIX)?;
            let key = rest
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect::<Vec<_>>()
                .join(".");
            Some((key, name.clone(), value.clone()))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// The secret keys present in a table.
fn secret_keys(table: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    for key in ["inbound_token", "session_key_secret"] {
        if table.contains_key(key) {
            keys.push(key.to_string());
        }
    }
    if table
        .get("omni")
        .and_then(toml::Value::as_table)
        .is_some_and(|o| o.contains_key("api_key"))
    {
        keys.push("omni.api_key".into());
    }
    if let Some(gateways) = table.get("gateways").and_then(toml::Value::as_table) {
        for (name, gateway) in gateways {
            if gateway.as_table().is_some_and(|g| g.contains_key("token")) {
                keys.push(format!("gateways.{name}.token"));
            }
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_values_and_origins() {
        let mut l = Layers::from_table(toml::Table::new());
        l.set(
            "gateways.default.url",
            "ws://x",
            Origin::Flag("--gateway-url".into()),
        )
        .unwrap();
        l.set(
            "gateways.default.max_in_flight",
            "200",
            Origin::Env("V".into()),
        )
        .unwrap();
        l.set("gateways.default.token", "123", Origin::Env("T".into()))
            .unwrap();
        assert_eq!(
            l.get("gateways.default.max_in_flight"),
            Some(&toml::Value::Integer(200))
        );
        // A secret stays a string even when it looks like a number.
        assert_eq!(
            l.get("gateways.default.token"),
            Some(&toml::Value::String("123".into()))
        );
        assert_eq!(l.origins["gateways.default.token"], Origin::Env("T".into()));
        l.set("gateways.default.token", "t2", Origin::Flag("--set".into()))
            .unwrap();
        assert_eq!(
            l.origins["gateways.default.token"],
            Origin::Flag("--set".into())
        );
        assert!(
            l.set("gateways.default.url.x", "1", Origin::Flag("--set".into()))
                .is_err()
        );
        assert!(l.set("a..b", "1", Origin::Flag("--set".into())).is_err());
        assert_eq!(l.names("gateways"), ["default"]);
    }

    #[test]
    fn generic_variables_and_assignments() {
        let vars = vec![
            (
                "OMNI_BRIDGE__GATEWAYS__DEFAULT__BREAKER__OPEN_FOR".to_string(),
                "1m".to_string(),
            ),
            ("OMNI_BRIDGE_LISTEN".to_string(), "x".to_string()),
        ];
        assert_eq!(
            generic_env(&vars),
            [(
                "gateways.default.breaker.open_for".to_string(),
                "OMNI_BRIDGE__GATEWAYS__DEFAULT__BREAKER__OPEN_FOR".to_string(),
                "1m".to_string()
            )]
        );
        assert_eq!(
            parse_assignment("a.b=c=d").unwrap(),
            ("a.b".to_string(), "c=d".to_string())
        );
        assert!(parse_assignment("novalue").is_err());
        assert!(is_secret("gateways.x.token") && is_secret("omni.api_key"));
        assert!(!is_secret("gateways.x.url") && !is_secret("gateways.token"));
    }
}
