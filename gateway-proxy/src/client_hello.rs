//! The hello-ok an exchange-mode client receives: built from an allow-list of the gateway's
//! hello-ok fields known to be safe to show, never by deleting known-bad ones, so that a field
//! the gateway adds later (or one derived from the gateway's credentials, such as
//! `auth.recoveryScope`, an unsalted hash of the token, or `snapshot.appliedConfigHash`, a hash
//! of a config that holds it) stays inside the proxy.
//!
//! Kept: protocol and server identity, the method/event/capability lists, the state snapshot's
//! public parts (presence, health, versions, uptime, session defaults, suspension, update
//! notice), the role and the scopes the client holds (clamped), and the limits (`policy`).
//! Dropped, among others: every device token, `recoveryScope`, `recoveryMigrationAllowed`,
//! config hash and paths, the Control UI and plugin-surface addresses (they point at the
//! gateway, which the client cannot reach).

use serde_json::{Map, Value};
use shared_protocol::ScopeSet;

use crate::chat_session::SessionDefaults;

/// A field kept as it is, or an object of which only the listed fields are kept.
enum Keep {
    Whole(&'static str),
    Fields(&'static str, &'static [Keep]),
}

use Keep::{Fields, Whole};

/// The fields an exchange-mode client may see (`HelloOkSchema`, openclaw 2026.9.6).
const HELLO: &[Keep] = &[
    Whole("type"),
    Whole("protocol"),
    Fields(
        "server",
        &[
            Whole("version"),
            Whole("buildId"),
            Whole("bootId"),
            Whole("controlUiBuildSource"),
            Whole("connId"),
        ],
    ),
    Fields(
        "features",
        &[Whole("methods"), Whole("events"), Whole("capabilities")],
    ),
    Fields(
        "snapshot",
        &[
            Whole("suspension"),
            Whole("presence"),
            Whole("health"),
            Whole("stateVersion"),
            Whole("uptimeMs"),
            Whole("sessionDefaults"),
            Whole("updateAvailable"),
        ],
    ),
    Fields("auth", &[Whole("method"), Whole("role")]),
    Fields(
        "policy",
        &[
            Whole("maxPayload"),
            Whole("maxBufferedBytes"),
            Whole("tickIntervalMs"),
            Whole("attachments"),
            Whole("allowedSessionVisibilities"),
            Whole("hasMultipleSessionSharingIdentities"),
        ],
    ),
];

/// The client's hello-ok from the gateway's (`raw`, JSON), and the scopes the client holds: the
/// ones it was granted that the gateway also granted the proxy's session.
///
/// # Errors
/// A reason when the gateway's hello is not JSON or has no `auth` object.
pub fn client_hello(raw: &str, granted: ScopeSet) -> Result<(Value, ScopeSet), String> {
    let upstream: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let auth = upstream
        .get("auth")
        .and_then(Value::as_object)
        .ok_or("hello-ok without auth")?;
    let upstream_scopes = ScopeSet::from_names(
        auth.get("scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str),
    );
    let effective = granted.clamp_to(upstream_scopes);
    let mut hello = keep(&upstream, HELLO);
    if let Some(auth) = hello.get_mut("auth").and_then(Value::as_object_mut) {
        auth.insert("scopes".into(), serde_json::json!(effective.names()));
    }
    Ok((hello, effective))
}

/// The gateway's session defaults, from a hello-ok payload (its or the client's).
pub fn session_defaults(hello: &Value) -> SessionDefaults {
    let d = &hello["snapshot"]["sessionDefaults"];
    SessionDefaults::from_fields(
        d["defaultAgentId"].as_str(),
        d["mainKey"].as_str(),
        d["scope"].as_str(),
    )
}

/// The allowed part of `value` (an empty object if it is not one).
fn keep(value: &Value, allowed: &[Keep]) -> Value {
    let mut out = Map::new();
    for k in allowed {
        let (name, inner) = match k {
            Whole(name) => (*name, None),
            Fields(name, fields) => (*name, Some(*fields)),
        };
        if let Some(v) = value.get(name) {
            let v = match inner {
                None => v.clone(),
                Some(fields) => keep(v, fields),
            };
            out.insert(name.to_string(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::Scope;

    /// A hello-ok as the real gateway sends it (2026.9.6, every optional field present).
    fn gateway_hello() -> Value {
        serde_json::json!({
            "type": "hello-ok", "protocol": 4,
            "server": {"version": "2026.9.6", "buildId": "b", "bootId": "boot", "controlUiBuildSource": "bundled", "connId": "c"},
            "features": {"methods": ["health"], "events": ["tick"], "capabilities": ["x"]},
            "snapshot": {
                "suspension": {"phase": "accepting"}, "presence": [], "health": {},
                "stateVersion": {"presence": 1, "health": 2}, "uptimeMs": 5,
                "appliedConfigHash": "CONFIG-HASH", "configPath": "/etc/oc.json", "stateDir": "/var/oc",
                "sessionDefaults": {"defaultAgentId": "main", "mainKey": "main"},
                "controlUiIdentityUrl": "http://gw/id", "authMode": "token",
                "updateAvailable": {"version": "x"}, "updateSchedule": {"at": 1}
            },
            "controlUiUrl": "http://127.0.0.1:18789/", "controlUiTabs": [{}],
            "controlUiWidgetKinds": [{}], "controlUiLinkReaders": [{}],
            "pluginSurfaceUrls": {"p": "http://gw/p?cap=SECRET-CAP"},
            "auth": {
                "method": "token", "role": "operator", "scopes": ["operator.read", "operator.write"],
                "recoveryScope": "HASH-OF-THE-GATEWAY-TOKEN", "recoveryMigrationAllowed": true,
                "deviceToken": "SECRET-DT", "issuedAtMs": 5,
                "deviceTokens": [{"deviceToken": "SECRET-DT2"}]
            },
            "policy": {"maxPayload": 26214400, "maxBufferedBytes": 52428800, "tickIntervalMs": 30000,
                       "attachments": {"maxBytes": 1, "maxImageBytes": 1},
                       "allowedSessionVisibilities": ["private"], "hasMultipleSessionSharingIdentities": false},
            "someFutureField": "SECRET-FUTURE"
        })
    }

    #[test]
    fn only_allow_listed_fields_reach_the_client() {
        let granted = ScopeSet::from_iter([Scope::Read]);
        let (v, eff) = client_hello(&gateway_hello().to_string(), granted).unwrap();
        assert_eq!(eff, granted);
        assert_eq!(
            v["auth"],
            serde_json::json!({"method": "token", "role": "operator", "scopes": ["operator.read"]})
        );
        let text = v.to_string();
        for secret in [
            "HASH-OF-THE-GATEWAY-TOKEN",
            "recoveryScope",
            "recoveryMigrationAllowed",
            "SECRET-DT",
            "CONFIG-HASH",
            "/etc/oc.json",
            "/var/oc",
            "SECRET-CAP",
            "SECRET-FUTURE",
            "controlUiUrl",
            "controlUiTabs",
            "controlUiIdentityUrl",
            "authMode",
            "updateSchedule",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["policy"], gateway_hello()["policy"]);
        assert_eq!(v["features"], gateway_hello()["features"]);
        assert_eq!(v["server"], gateway_hello()["server"]);
        assert_eq!(v["snapshot"]["sessionDefaults"]["defaultAgentId"], "main");
        assert_eq!(session_defaults(&v), SessionDefaults::default());
        // What the workspace's own client reads still parses.
        let hello: shared_protocol::connect::HelloOk = serde_json::from_value(v).unwrap();
        assert_eq!(hello.policy.tick_interval_ms, 30000);
    }

    #[test]
    fn a_hello_without_auth_is_refused() {
        assert!(client_hello(r#"{"type":"hello-ok"}"#, ScopeSet::EMPTY).is_err());
        assert!(client_hello("not json", ScopeSet::EMPTY).is_err());
    }
}
