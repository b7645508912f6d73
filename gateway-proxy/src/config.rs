//! The proxy's configuration: one TOML file, read strictly, checked once by [`Config::validate`].
//!
//! Every field has an explicit default (see the `default_*` functions) so a minimal file names
//! only the upstream, one listener and the credentials. Unknown keys are an error, so a typo never
//! silently turns a protection off. Secrets are [`Secret`]s and never print.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use shared_protocol::{Scope, ScopeSet, Secret};

use crate::credential::TokenHash;
use crate::error::ProxyError;
use crate::pin::Pin;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the proxy listens.
    pub listen: ListenConfig,
    /// Certificate and key for the TLS listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The gateway behind the proxy.
    pub upstream: UpstreamConfig,
    /// How clients are identified.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Rate limits and resource bounds.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Who may connect, and what each may do.
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
}

/// Listener addresses and admission.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// WebSocket over TLS (`wss://`); needs `[tls]`.
    #[serde(default)]
    pub tls: Option<SocketAddr>,
    /// Plain WebSocket (`ws://`), for local clients only.
    #[serde(default)]
    pub plain: Option<SocketAddr>,
    /// Allow `plain` on a non-loopback address (traffic and credentials travel in clear).
    #[serde(default)]
    pub allow_insecure_listener: bool,
    /// `/metrics`, `/healthz`, `/readyz` (HTTP). Keep it on loopback or a private network.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
    /// Authenticated connections at once (TLS + plain). A client authenticated beyond it is
    /// answered `UNAVAILABLE` (retryable) and closed 1013.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections not yet authenticated (TLS, upgrade, `connect`), at once, from all addresses;
    /// counted apart from `max_connections` so that idle sockets cannot keep logins out. One
    /// over it is closed at once.
    #[serde(default = "default_max_pending_connections")]
    pub max_pending_connections: usize,
    /// Connections not yet authenticated from one source address, at once (as nginx
    /// `limit_conn`); one over it is closed at once.
    #[serde(default = "default_max_pending_per_ip")]
    pub max_pending_per_ip: usize,
    /// Deadline for the TLS handshake plus the HTTP upgrade request, in ms: a socket that sends
    /// nothing is closed after this, well before the handshake deadline.
    #[serde(default = "default_upgrade_timeout_ms")]
    pub upgrade_timeout_ms: u64,
    /// Deadline for TLS + WebSocket upgrade + `connect`, in ms (the gateway uses 15000).
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// On SIGTERM, how long open connections may continue before they are closed 1012, in ms.
    #[serde(default = "default_drain_grace_ms")]
    pub drain_grace_ms: u64,
    /// Relay loop threads, which move the frames of admitted connections (0: one per core).
    #[serde(default)]
    pub workers: usize,
}

/// PEM certificate chain and private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first. Reloaded on SIGHUP.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1). Reloaded on SIGHUP.
    pub key: PathBuf,
    /// PEM CA bundle: when set, clients may present a certificate signed by it (mutual TLS), and
    /// credentials with `client_cert_pins` require one.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// The gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `ws://127.0.0.1:18789` or `wss://host:port`.
    pub url: String,
    /// The gateway's shared token (exchange mode). Prefer the env var
    /// `GATEWAY_PROXY_UPSTREAM_TOKEN` over writing it here.
    #[serde(default)]
    pub token: Option<Secret>,
    /// For `wss://`: accepted certificate pins (`sha256/cert:<hex>` or `sha256/spki:<hex>`).
    /// Empty means "verify against the system's web PKI roots".
    #[serde(default)]
    pub pins: Vec<String>,
    /// Deadline for TCP + TLS + upgrade + gateway handshake, in ms.
    #[serde(default = "default_upstream_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How often `/readyz` probes the gateway (TCP connect), in ms.
    #[serde(default = "default_probe_interval_ms")]
    pub probe_interval_ms: u64,
    /// Upstream identity in exchange mode.
    #[serde(default)]
    pub identity: UpstreamIdentity,
    /// Hex Ed25519 seed file for `identity = "device"` (created 0600 if absent).
    #[serde(default)]
    pub device_key_file: Option<PathBuf>,
}

/// How the proxy presents itself to the gateway in exchange mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamIdentity {
    /// Token auth on a loopback link as `gateway-client`/`backend` (or `cli`/`cli`): the gateway
    /// keeps the requested scopes without a device. Needs the gateway on loopback.
    #[default]
    Loopback,
    /// Token auth plus the proxy's own signed device identity (works off loopback once paired).
    Device,
}

/// Client identification.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// `exchange` (default) or `passthrough`.
    #[serde(default)]
    pub mode: IdentityMode,
}

/// Who authenticates clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    /// The proxy challenges the client, checks a proxy-issued credential and opens its own
    /// upstream session with the gateway token, which never leaves the proxy.
    #[default]
    Exchange,
    /// The client's handshake goes upstream untouched; the credential is matched by the hash of
    /// the token the client sends to the gateway, and the proxy only enforces policy.
    Passthrough,
}

/// Rate limits and buffers. A zero rate disables that limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// WebSocket handshakes per minute per source IP.
    #[serde(default = "default_handshakes_per_minute")]
    pub handshakes_per_minute_per_ip: u32,
    /// Requests per second per credential (burst = this many).
    #[serde(default = "default_requests_per_second")]
    pub requests_per_second_per_credential: u32,
    /// `chat.send` per minute per credential.
    #[serde(default = "default_chat_per_minute_credential")]
    pub chat_send_per_minute_per_credential: u32,
    /// `chat.send` per minute per canonical session key.
    #[serde(default = "default_chat_per_minute_session")]
    pub chat_send_per_minute_per_session: u32,
    /// A client that has not accepted a frame for this long is closed 1008 "slow consumer", in ms.
    #[serde(default = "default_slow_consumer_timeout_ms")]
    pub slow_consumer_timeout_ms: u64,
    /// How often idle rate-limiter keys are evicted, in ms.
    #[serde(default = "default_limiter_gc_interval_ms")]
    pub limiter_gc_interval_ms: u64,
    /// Client frames per second per connection, every frame counted (pings and pongs too;
    /// burst = this many). Over it the connection is closed 1008 "too many frames". 0 disables.
    #[serde(default = "default_frames_per_second")]
    pub frames_per_second_per_connection: u32,
    /// Requests refused by policy in a row after which the connection is closed 1008 (the
    /// gateway closes after 10 unauthorised calls). A forwarded request resets the count. 0
    /// disables.
    #[serde(default = "default_max_consecutive_denials")]
    pub max_consecutive_denials: u32,
    /// A client message (all its frames) must be complete this long after its first byte, in
    /// ms; else the connection is closed 1008 "message timeout".
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// Bytes all connections together may hold for client messages not yet complete. A
    /// connection that needs more is closed 1013 (try again later).
    #[serde(default = "default_partial_message_budget_bytes")]
    pub partial_message_budget_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            handshakes_per_minute_per_ip: default_handshakes_per_minute(),
            requests_per_second_per_credential: default_requests_per_second(),
            chat_send_per_minute_per_credential: default_chat_per_minute_credential(),
            chat_send_per_minute_per_session: default_chat_per_minute_session(),
            slow_consumer_timeout_ms: default_slow_consumer_timeout_ms(),
            limiter_gc_interval_ms: default_limiter_gc_interval_ms(),
            frames_per_second_per_connection: default_frames_per_second(),
            max_consecutive_denials: default_max_consecutive_denials(),
            message_timeout_ms: default_message_timeout_ms(),
            partial_message_budget_bytes: default_partial_message_budget_bytes(),
        }
    }
}

/// The audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// JSON-lines file (appended). Absent: audit events go to the log at info level only.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Refused requests are audited once per credential, method and reason per interval, in ms:
    /// the first at once, the repeats as one line with a `count` when the interval ends.
    #[serde(default = "default_denial_interval_ms")]
    pub denial_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            denial_interval_ms: default_denial_interval_ms(),
        }
    }
}

/// One client credential and its policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Stable name, used in logs, audit and metrics-free diagnostics.
    pub id: String,
    /// Hex SHA-256 of the secret token (`gateway-proxy credential new` prints it).
    pub token_sha256: String,
    /// Granted scopes; requests are clamped to them.
    pub scopes: Vec<String>,
    /// If set, only these methods may be called (on top of the scope check); may name methods the
    /// gateway's core table does not know (plugin methods).
    #[serde(default)]
    pub allow_methods: Option<Vec<String>>,
    /// Methods refused even when the scopes would allow them.
    #[serde(default)]
    pub deny_methods: Vec<String>,
    /// Open connections at once for this credential (0 = unlimited).
    #[serde(default = "default_credential_max_connections")]
    pub max_connections: u32,
    /// Refuse a connect without a valid device proof.
    #[serde(default)]
    pub require_device: bool,
    /// With `[tls] client_ca`: the client certificate must match one of these pins.
    #[serde(default)]
    pub client_cert_pins: Vec<String>,
}

fn default_max_connections() -> usize {
    1024
}
fn default_max_pending_connections() -> usize {
    256
}
fn default_max_pending_per_ip() -> usize {
    16
}
fn default_upgrade_timeout_ms() -> u64 {
    3_000
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_drain_grace_ms() -> u64 {
    30_000
}
fn default_upstream_connect_timeout_ms() -> u64 {
    5_000
}
fn default_probe_interval_ms() -> u64 {
    5_000
}
fn default_handshakes_per_minute() -> u32 {
    120
}
fn default_requests_per_second() -> u32 {
    200
}
fn default_chat_per_minute_credential() -> u32 {
    120
}
fn default_chat_per_minute_session() -> u32 {
    30
}
fn default_slow_consumer_timeout_ms() -> u64 {
    10_000
}
fn default_limiter_gc_interval_ms() -> u64 {
    60_000
}
fn default_credential_max_connections() -> u32 {
    64
}
fn default_frames_per_second() -> u32 {
    1_000
}
fn default_max_consecutive_denials() -> u32 {
    10
}
fn default_message_timeout_ms() -> u64 {
    30_000
}
fn default_partial_message_budget_bytes() -> usize {
    128 << 20
}
fn default_denial_interval_ms() -> u64 {
    10_000
}

impl Config {
    /// Reads and validates a TOML file.
    ///
    /// # Errors
    /// [`ProxyError::File`] when unreadable, [`ProxyError::Config`] when invalid.
    pub fn load(path: &Path) -> Result<Self, ProxyError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProxyError::file(path, e))?;
        Self::from_toml(&text)
    }

    /// Parses TOML text (no validation: call [`Config::validate`] after applying overrides).
    ///
    /// # Errors
    /// [`ProxyError::Config`] with toml's explanation (line, column, key).
    pub fn from_toml(text: &str) -> Result<Self, ProxyError> {
        toml::from_str(text).map_err(|e| ProxyError::Config(e.to_string()))
    }

    /// Checks everything that can be checked without touching the network; each error names the
    /// key and says how to fix it.
    ///
    /// # Errors
    /// [`ProxyError::Config`] for the first problem found.
    pub fn validate(&self) -> Result<(), ProxyError> {
        let bad = |msg: String| Err(ProxyError::Config(msg));
        let l = &self.listen;
        if l.tls.is_none() && l.plain.is_none() {
            return bad("listen: set `tls` and/or `plain` (at least one listener)".into());
        }
        if l.tls.is_some() && self.tls.is_none() {
            return bad("listen.tls is set but the [tls] section (cert, key) is missing".into());
        }
        if let Some(addr) = l.plain
            && !addr.ip().is_loopback()
            && !l.allow_insecure_listener
        {
            return bad(format!(
                "listen.plain = {addr} is not a loopback address: plain WebSocket would carry \
                 credentials in clear. Use listen.tls, bind 127.0.0.1, or set \
                 listen.allow_insecure_listener = true if you really mean it"
            ));
        }
        if l.max_connections == 0 {
            return bad("listen.max_connections must be at least 1".into());
        }
        if l.max_pending_connections == 0 || l.max_pending_per_ip == 0 {
            return bad(
                "listen.max_pending_connections and listen.max_pending_per_ip must be at least 1"
                    .into(),
            );
        }
        if l.handshake_timeout_ms == 0 || l.upgrade_timeout_ms == 0 {
            return bad(
                "listen.handshake_timeout_ms and listen.upgrade_timeout_ms must be > 0".into(),
            );
        }
        let url = &self.upstream.url;
        let is_tls = url.starts_with("wss://");
        if !is_tls && !url.starts_with("ws://") {
            return bad(format!(
                "upstream.url = {url:?} must start with ws:// or wss://"
            ));
        }
        if !self.upstream.pins.is_empty() && !is_tls {
            return bad("upstream.pins are set but upstream.url is not wss://".into());
        }
        for p in &self.upstream.pins {
            Pin::parse(p).map_err(|e| ProxyError::Config(format!("upstream.pins: {e}")))?;
        }
        if self.identity.mode == IdentityMode::Exchange
            && self.upstream.token.as_ref().is_none_or(Secret::is_empty)
        {
            return bad(
                "exchange mode needs the gateway token: set GATEWAY_PROXY_UPSTREAM_TOKEN (or \
                 upstream.token, or --upstream-token)"
                    .into(),
            );
        }
        if self.upstream.identity == UpstreamIdentity::Device
            && self.upstream.device_key_file.is_none()
        {
            return bad("upstream.identity = \"device\" needs upstream.device_key_file".into());
        }
        if self.upstream.connect_timeout_ms == 0 || self.upstream.probe_interval_ms == 0 {
            return bad(
                "upstream.connect_timeout_ms and upstream.probe_interval_ms must be > 0".into(),
            );
        }
        let lim = &self.limits;
        if lim.slow_consumer_timeout_ms == 0
            || lim.limiter_gc_interval_ms == 0
            || lim.message_timeout_ms == 0
            || lim.partial_message_budget_bytes == 0
            || self.audit.denial_interval_ms == 0
        {
            return bad(
                "limits.slow_consumer_timeout_ms, limits.limiter_gc_interval_ms, \
                 limits.message_timeout_ms, limits.partial_message_budget_bytes and \
                 audit.denial_interval_ms must be > 0"
                    .into(),
            );
        }
        if self.credentials.is_empty() {
            return bad(
                "no [[credentials]]: nobody could connect. Create one with `gateway-proxy \
                 credential new --name NAME --scopes operator.read,operator.write`"
                    .into(),
            );
        }
        let mut ids = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for c in &self.credentials {
            let at = format!("credentials[id={:?}]", c.id);
            if c.id.is_empty() || !ids.insert(c.id.as_str()) {
                return bad(format!("{at}: id must be non-empty and unique"));
            }
            let hash = TokenHash::from_hex(&c.token_sha256)
                .map_err(|e| ProxyError::Config(format!("{at}.token_sha256: {e}")))?;
            if !hashes.insert(hash.to_hex()) {
                return bad(format!("{at}: token_sha256 is used by another credential"));
            }
            scope_set(&c.scopes).map_err(|e| ProxyError::Config(format!("{at}.scopes: {e}")))?;
            for p in &c.client_cert_pins {
                Pin::parse(p)
                    .map_err(|e| ProxyError::Config(format!("{at}.client_cert_pins: {e}")))?;
            }
            if !c.client_cert_pins.is_empty()
                && self.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
            {
                return bad(format!("{at}: client_cert_pins need [tls] client_ca"));
            }
        }
        Ok(())
    }

    /// Handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.listen.handshake_timeout_ms)
    }

    /// Deadline for TLS and the upgrade request.
    pub fn upgrade_timeout(&self) -> Duration {
        Duration::from_millis(self.listen.upgrade_timeout_ms)
    }
}

/// Parses scope names strictly (a typo in a grant is an error, not a silently smaller grant).
///
/// # Errors
/// The first unknown name.
pub fn scope_set(names: &[String]) -> Result<ScopeSet, String> {
    names
        .iter()
        .map(|n| {
            Scope::parse(n.trim()).ok_or_else(|| {
                let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope {n:?} (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// SHA-256 of `test`, the token of [`minimal_test_toml`]'s credential.
#[cfg(test)]
const TEST_TOKEN_HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// The smallest valid configuration, for unit tests: a plain listener, an upstream on
/// loopback, one credential `bridge` (token `test`, read + write).
#[cfg(test)]
pub(crate) fn minimal_test_toml() -> String {
    format!(
        r#"
[listen]
plain = "127.0.0.1:0"
[upstream]
url = "ws://127.0.0.1:18789"
token = "gw"
[[credentials]]
id = "bridge"
token_sha256 = "{}"
scopes = ["operator.read", "operator.write"]
"#,
        TEST_TOKEN_HASH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_file_gets_explicit_defaults() {
        let c = Config::from_toml(&minimal_test_toml()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.listen.max_connections, 1024);
        assert_eq!(c.identity.mode, IdentityMode::Exchange);
        assert_eq!(c.limits.chat_send_per_minute_per_session, 30);
        assert!(!format!("{c:?}").contains("\"gw\""));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let mut c = Config::from_toml(include_str!("../proxy.example.toml")).unwrap();
        c.upstream.token = Some(Secret::new("from-env".into()));
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = minimal_test_toml().replace("[upstream]", "[upstream]\ntokn = \"x\"");
        let err = Config::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn readable_validation_errors() {
        let cases = [
            (
                minimal_test_toml().replace("127.0.0.1:0", "0.0.0.0:0"),
                "not a loopback address",
            ),
            (
                minimal_test_toml().replace("ws://", "http://"),
                "must start with ws://",
            ),
            (
                minimal_test_toml().replace("operator.write", "operator.wrte"),
                "unknown scope \"operator.wrte\"",
            ),
            (
                minimal_test_toml().replace(TEST_TOKEN_HASH, "abc"),
                "token_sha256",
            ),
            (
                minimal_test_toml().replace("token = \"gw\"", ""),
                "GATEWAY_PROXY_UPSTREAM_TOKEN",
            ),
            (
                minimal_test_toml().replace("plain = \"127.0.0.1:0\"", "tls = \"127.0.0.1:0\""),
                "[tls] section",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::from_toml(&text)
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let insecure = minimal_test_toml().replace(
            "plain = \"127.0.0.1:0\"",
            "plain = \"0.0.0.0:0\"\nallow_insecure_listener = true",
        );
        Config::from_toml(&insecure).unwrap().validate().unwrap();
    }
}
