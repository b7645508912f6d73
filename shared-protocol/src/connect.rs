//! The handshake: challenge, connect params (strict), hello-ok (tolerant).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::{Secret, serialize_exposed, serialize_exposed_str};

/// `connect.challenge` payload: the nonce a device proof must sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Challenge {
    /// UUID string.
    pub nonce: String,
    /// Server epoch ms; a device proof's `signedAt`.
    #[serde(default)]
    pub ts: u64,
    /// Server capabilities (e.g. `model-catalog-snapshot`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// `connect` params. Serialises exactly the fields the gateway's closed schema accepts and, when
/// read (by the mock or the proxy), rejects unknown fields as the gateway does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectParams {
    /// Lowest protocol the client speaks.
    pub min_protocol: u32,
    /// Highest protocol the client speaks; the range must include 4.
    pub max_protocol: u32,
    /// Who is connecting.
    pub client: ClientInfo,
    /// `operator` or `node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Requested scopes. Omitted means none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Client capabilities (`session-scoped-events`, `tool-events`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<String>>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<Value>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Value>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_env: Option<Value>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computer_use: Option<Value>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_runs: Option<Value>,
    /// Node/advanced: kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_catalog: Option<Value>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectAuth>,
    /// Signed device proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    /// e.g. `en-US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl ConnectParams {
    /// The connect a loopback backend sends: `gateway-client`/`backend`, operator, the given scopes,
    /// token auth. Scopes are kept by the gateway only for this client on a direct loopback link.
    pub fn backend(version: &str, scopes: &[crate::Scope], token: Option<Secret>) -> Self {
        Self::operator(
            ClientInfo::new(ClientId::GatewayClient, ClientMode::Backend, version),
            scopes.iter().copied(),
            token,
        )
    }

    /// An operator connect for `client` at this crate's protocol version: the given scopes, no
    /// caps, token auth when `token` is given, and nothing else (callers relaying another
    /// client's connect override `caps`, `auth`, `locale`, ... with struct-update syntax).
    pub fn operator(
        client: ClientInfo,
        scopes: impl IntoIterator<Item = crate::Scope>,
        token: Option<Secret>,
    ) -> Self {
        Self {
            min_protocol: crate::limits::PROTOCOL_VERSION,
            max_protocol: crate::limits::PROTOCOL_VERSION,
            client,
            role: Some(Role::Operator),
            scopes: Some(scopes.into_iter().map(|s| s.as_str().to_string()).collect()),
            caps: Some(Vec::new()),
            commands: None,
            permissions: None,
            path_env: None,
            computer_use: None,
            worker_runs: None,
            model_catalog: None,
            auth: token.map(|t| ConnectAuth {
                token: Some(t),
                ..ConnectAuth::default()
            }),
            device: None,
            locale: None,
            user_agent: None,
        }
    }

    /// True when `[min, max]` includes the server's protocol version.
    pub fn accepts_protocol(&self, version: u32) -> bool {
        self.min_protocol <= version && version <= self.max_protocol
    }

    /// The frame as it may be logged: every credential and the signature replaced by `***`.
    pub fn redacted_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(auth) = v.get_mut("auth").and_then(Value::as_object_mut) {
            for (_, val) in auth.iter_mut() {
                *val = Value::String("***".into());
            }
        }
        if let Some(sig) = v.pointer_mut("/device/signature") {
            *sig = Value::String("***".into());
        }
        v
    }
}

/// `client` in connect params. Closed schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientInfo {
    /// Closed enum of client ids.
    pub id: ClientId,
    /// Non-empty.
    pub version: String,
    /// Non-empty (`linux`, `omni`...).
    pub platform: String,
    /// Closed enum of modes.
    pub mode: ClientMode,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// ≤ 96 chars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Signed in v3 device proofs (lower-cased).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_identifier: Option<String>,
    /// ≤ 64 chars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
}

impl ClientInfo {
    /// Required fields only; `platform` is `linux`.
    pub fn new(id: ClientId, mode: ClientMode, version: &str) -> Self {
        Self {
            id,
            version: version.to_string(),
            platform: "linux".into(),
            mode,
            display_name: None,
            build_id: None,
            device_family: None,
            model_identifier: None,
            time_zone: None,
            instance_id: None,
        }
    }
}

macro_rules! closed_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)*
        }

        impl $name {
            /// Every allowed value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)*
                }
            }

            /// Parses the wire spelling; `None` for a value the gateway rejects.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some(Self::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

closed_enum! {
    /// `client.id`: the gateway rejects anything else.
    ClientId {
        /// Web chat UI.
        WebchatUi = "webchat-ui",
        /// Control UI.
        OpenclawControlUi = "openclaw-control-ui",
        /// Browser copilot.
        OpenclawBrowserCopilot = "openclaw-browser-copilot",
        /// TUI.
        OpenclawTui = "openclaw-tui",
        /// Web chat.
        Webchat = "webchat",
        /// The OpenClaw CLI.
        Cli = "cli",
        /// A backend integration (what the bridge and the proxy use).
        GatewayClient = "gateway-client",
        /// macOS app.
        OpenclawMacos = "openclaw-macos",
        /// Linux app.
        OpenclawLinux = "openclaw-linux",
        /// iOS app.
        OpenclawIos = "openclaw-ios",
        /// watchOS app.
        OpenclawWatchos = "openclaw-watchos",
        /// Android app.
        OpenclawAndroid = "openclaw-android",
        /// Node host.
        NodeHost = "node-host",
        /// Worker.
        OpenclawWorker = "openclaw-worker",
        /// Tests.
        Test = "test",
        /// Fingerprinting.
        Fingerprint = "fingerprint",
        /// Probes.
        OpenclawProbe = "openclaw-probe",
    }
}

closed_enum! {
    /// `client.mode`: the gateway rejects anything else.
    ClientMode {
        /// Web chat.
        Webchat = "webchat",
        /// CLI.
        Cli = "cli",
        /// UI.
        Ui = "ui",
        /// Backend integration.
        Backend = "backend",
        /// Node.
        Node = "node",
        /// Worker.
        Worker = "worker",
        /// Probe.
        Probe = "probe",
        /// Test.
        Test = "test",
    }
}

closed_enum! {
    /// `role`.
    Role {
        /// An operator (what we are).
        Operator = "operator",
        /// A node.
        Node = "node",
    }
}

/// `auth` in connect params. Every field is a secret: `Debug` prints `***`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectAuth {
    /// Shared gateway token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub token: Option<Secret>,
    /// Shared gateway password.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub password: Option<Secret>,
    /// One-time bootstrap token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub bootstrap_token: Option<Secret>,
    /// Token issued to a paired device in hello-ok.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub device_token: Option<Secret>,
    /// Approval runtime token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub approval_runtime_token: Option<Secret>,
    /// Agent runtime identity token.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub agent_runtime_identity_token: Option<Secret>,
}

impl ConnectAuth {
    /// The token a device proof signs: `token ?? deviceToken ?? bootstrapToken ?? ""`.
    pub fn signed_token(&self) -> &str {
        [&self.token, &self.device_token, &self.bootstrap_token]
            .into_iter()
            .find_map(|t| t.as_ref())
            .map_or("", |t| t.expose().as_str())
    }
}

/// `device` in connect params: a signature over the challenge by the device's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceProof {
    /// Hex SHA-256 of the raw public key.
    pub id: String,
    /// Raw 32-byte public key, base64url without padding.
    pub public_key: String,
    /// base64url Ed25519 signature over the v3 (or v2) payload.
    #[serde(serialize_with = "serialize_exposed_str")]
    pub signature: Secret,
    /// The challenge `ts`.
    pub signed_at: u64,
    /// The challenge nonce.
    pub nonce: String,
}

/// The `hello-ok` payload, read tolerantly: every field defaults, unknown ones are ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HelloOk {
    /// Always `hello-ok`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Negotiated protocol.
    pub protocol: u32,
    /// Server identity.
    pub server: ServerInfo,
    /// Advertised methods, events and capabilities.
    pub features: Features,
    /// State snapshot (session defaults, presence, health); kept opaque.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Value>,
    /// The socket's live authority.
    pub auth: HelloAuth,
    /// Limits and timing.
    pub policy: Policy,
}

impl HelloOk {
    /// Parsed `auth.scopes`; unknown scope names are dropped.
    pub fn granted_scopes(&self) -> crate::ScopeSet {
        crate::ScopeSet::from_names(self.auth.scopes.iter().map(String::as_str))
    }
}

/// `hello-ok.server`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServerInfo {
    /// e.g. `2026.9.6`.
    pub version: String,
    /// Build id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_id: Option<String>,
    /// Changes on every gateway start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// This connection's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conn_id: Option<String>,
}

/// `hello-ok.features`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Features {
    /// Method names.
    pub methods: Vec<String>,
    /// Event names.
    pub events: Vec<String>,
    /// Capability names.
    pub capabilities: Vec<String>,
}

/// `hello-ok.auth`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HelloAuth {
    /// `token`, `device-token`, `none`...
    pub method: String,
    /// `operator`.
    pub role: String,
    /// Granted scopes: what RPC dispatch enforces.
    pub scopes: Vec<String>,
    /// Issued to device connects; store it and reuse it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_exposed"
    )]
    pub device_token: Option<Secret>,
    /// When the device token was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at_ms: Option<u64>,
}

/// `hello-ok.policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Policy {
    /// Max frame size after hello.
    pub max_payload: u64,
    /// Outbound buffer cap before a slow consumer is closed.
    pub max_buffered_bytes: u64,
    /// Tick period; the liveness watchdog fires after twice this.
    pub tick_interval_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_payload: crate::limits::MAX_PAYLOAD_BYTES as u64,
            max_buffered_bytes: crate::limits::MAX_BUFFERED_BYTES as u64,
            tick_interval_ms: crate::limits::TICK_INTERVAL_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;

    #[test]
    fn backend_connect_serialises_exactly_the_observed_fields() {
        let p = ConnectParams::backend(
            "0.1.0",
            &[Scope::Read, Scope::Write],
            Some(Secret::new("tok".into())),
        );
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"minProtocol":4,"maxProtocol":4,
                "client":{"id":"gateway-client","version":"0.1.0","platform":"linux","mode":"backend"},
                "role":"operator","scopes":["operator.read","operator.write"],"caps":[],
                "auth":{"token":"tok"}})
        );
        let logged = p.redacted_json().to_string();
        assert!(!logged.contains("tok\"") && logged.contains("***"));
        assert!(!format!("{p:?}").contains("\"tok\""));
    }

    #[test]
    fn operator_connect_keeps_the_given_client_and_has_no_auth_without_a_token() {
        let client = ClientInfo::new(ClientId::Cli, ClientMode::Cli, "9.9");
        let p = ConnectParams::operator(client, [Scope::Admin, Scope::Read], None);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"minProtocol":4,"maxProtocol":4,
                "client":{"id":"cli","version":"9.9","platform":"linux","mode":"cli"},
                "role":"operator","scopes":["operator.admin","operator.read"],"caps":[]})
        );
    }

    #[test]
    fn connect_rejects_unknown_fields_and_client_ids() {
        let ok = r#"{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}}"#;
        assert!(serde_json::from_str::<ConnectParams>(ok).is_ok());
        let extra = r#"{"minProtocol":4,"maxProtocol":4,"foo":1,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}}"#;
        assert!(serde_json::from_str::<ConnectParams>(extra).is_err());
        let bad_id = r#"{"minProtocol":4,"maxProtocol":4,"client":{"id":"my-rust-proxy","version":"1","platform":"linux","mode":"cli"}}"#;
        assert!(serde_json::from_str::<ConnectParams>(bad_id).is_err());
        assert_eq!(
            ClientId::parse("gateway-client"),
            Some(ClientId::GatewayClient)
        );
        assert_eq!(ClientMode::parse("robot"), None);
    }

    #[test]
    fn hello_ok_is_read_tolerantly() {
        let raw = r#"{"type":"hello-ok","protocol":4,"server":{"version":"2026.9.6","connId":"c"},
            "features":{"methods":["health"],"events":["tick"],"capabilities":[]},
            "auth":{"method":"token","role":"operator","scopes":["operator.read","operator.write","operator.future"]},
            "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000,"attachments":{}},
            "pluginSurfaceUrls":{}}"#;
        let h: HelloOk = serde_json::from_str(raw).unwrap();
        assert_eq!(h.policy.tick_interval_ms, 30_000);
        assert_eq!(
            h.granted_scopes(),
            crate::ScopeSet::from_iter([Scope::Read, Scope::Write])
        );
        let minimal: HelloOk = serde_json::from_str(r#"{"type":"hello-ok"}"#).unwrap();
        assert_eq!(minimal.policy.tick_interval_ms, 30_000);
    }

    #[test]
    fn signed_token_prefers_token_then_device_then_bootstrap() {
        let a = ConnectAuth {
            device_token: Some(Secret::new("d".into())),
            ..Default::default()
        };
        assert_eq!(a.signed_token(), "d");
        let a = ConnectAuth {
            token: Some(Secret::new("t".into())),
            device_token: Some(Secret::new("d".into())),
            ..Default::default()
        };
        assert_eq!(a.signed_token(), "t");
        assert_eq!(ConnectAuth::default().signed_token(), "");
    }
}
