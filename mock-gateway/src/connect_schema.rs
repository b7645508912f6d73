//! Connect params checked the way the gateway's closed schema (AJV) reports them.
//!
//! Serde would reject the same inputs, but with other words; clients and the conformance suite
//! compare the gateway's messages (`invalid connect params: at root: unexpected property 'foo'`),
//! so the structural checks are done here first and serde only decodes what passed.

use serde_json::{Map, Value};
use shared_protocol::connect::{ClientId, ClientMode, ConnectParams, Role};

/// Root fields of `ConnectParamsSchema`.
const ROOT_FIELDS: &[&str] = &[
    "minProtocol",
    "maxProtocol",
    "client",
    "role",
    "scopes",
    "caps",
    "commands",
    "permissions",
    "pathEnv",
    "computerUse",
    "workerRuns",
    "modelCatalog",
    "auth",
    "device",
    "locale",
    "userAgent",
];
/// Fields of `client`.
const CLIENT_FIELDS: &[&str] = &[
    "id",
    "version",
    "platform",
    "mode",
    "displayName",
    "buildId",
    "deviceFamily",
    "modelIdentifier",
    "timeZone",
    "instanceId",
];
/// Fields of `auth`.
const AUTH_FIELDS: &[&str] = &[
    "token",
    "password",
    "bootstrapToken",
    "deviceToken",
    "approvalRuntimeToken",
    "agentRuntimeIdentityToken",
];
/// Fields of `device`.
const DEVICE_FIELDS: &[&str] = &["id", "publicKey", "signature", "signedAt", "nonce"];

/// Why connect params were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectParamsError {
    /// Schema violation; the text follows `invalid connect params: `.
    Schema(String),
    /// `role` is neither `operator` nor `node`.
    InvalidRole,
}

/// Validates and decodes connect params.
pub(crate) fn validate(params: &Value) -> Result<ConnectParams, ConnectParamsError> {
    let schema = ConnectParamsError::Schema;
    let root = params
        .as_object()
        .ok_or_else(|| schema("at root: must be object".into()))?;
    closed(root, "root", ROOT_FIELDS)?;
    for field in ["minProtocol", "maxProtocol", "client"] {
        if !root.contains_key(field) {
            return Err(schema(format!(
                "at root: must have required property '{field}'"
            )));
        }
    }
    for field in ["minProtocol", "maxProtocol"] {
        if root[field].as_u64().is_none_or(|v| v < 1) {
            return Err(schema(format!("at /{field}: must be integer >= 1")));
        }
    }
    let client = root["client"]
        .as_object()
        .ok_or_else(|| schema("at /client: must be object".into()))?;
    closed(client, "/client", CLIENT_FIELDS)?;
    for field in ["id", "version", "platform", "mode"] {
        if !client.contains_key(field) {
            return Err(schema(format!(
                "at /client: must have required property '{field}'"
            )));
        }
    }
    let allowed = "must be equal to one of the allowed values";
    if client["id"].as_str().and_then(ClientId::parse).is_none() {
        return Err(schema(format!("at /client/id: {allowed}")));
    }
    if client["mode"]
        .as_str()
        .and_then(ClientMode::parse)
        .is_none()
    {
        return Err(schema(format!("at /client/mode: {allowed}")));
    }
    for field in ["version", "platform"] {
        if client[field].as_str().is_none_or(str::is_empty) {
            return Err(schema(format!(
                "at /client/{field}: must NOT have fewer than 1 characters"
            )));
        }
    }
    if let Some(auth) = root.get("auth") {
        let auth = auth
            .as_object()
            .ok_or_else(|| schema("at /auth: must be object".into()))?;
        closed(auth, "/auth", AUTH_FIELDS)?;
    }
    if let Some(device) = root.get("device") {
        let device = device
            .as_object()
            .ok_or_else(|| schema("at /device: must be object".into()))?;
        closed(device, "/device", DEVICE_FIELDS)?;
        for field in DEVICE_FIELDS {
            if !device.contains_key(*field) {
                return Err(schema(format!(
                    "at /device: must have required property '{field}'"
                )));
            }
        }
    }
    if let Some(role) = root.get("role") {
        let role = role
            .as_str()
            .ok_or_else(|| schema("at /role: must be string".into()))?;
        if Role::parse(role).is_none() {
            return Err(ConnectParamsError::InvalidRole);
        }
    }
    serde_json::from_value(params.clone()).map_err(|e| schema(format!("at root: {e}")))
}

fn closed(
    object: &Map<String, Value>,
    at: &str,
    allowed: &[&str],
) -> Result<(), ConnectParamsError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(ConnectParamsError::Schema(format!(
            "at {at}: unexpected property '{extra}'"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"minProtocol":4,"maxProtocol":4,
               "client":{"id":"gateway-client","version":"1","platform":"linux","mode":"backend"}})
    }

    #[test]
    fn messages_match_the_gateway() {
        assert!(validate(&base()).is_ok());
        let mut extra = base();
        extra["foo"] = json!(1);
        assert_eq!(
            validate(&extra).unwrap_err(),
            ConnectParamsError::Schema("at root: unexpected property 'foo'".into())
        );
        let mut bad_id = base();
        bad_id["client"]["id"] = json!("my-rust-proxy");
        assert_eq!(
            validate(&bad_id).unwrap_err(),
            ConnectParamsError::Schema(
                "at /client/id: must be equal to one of the allowed values".into()
            )
        );
        let mut role = base();
        role["role"] = json!("king");
        assert_eq!(
            validate(&role).unwrap_err(),
            ConnectParamsError::InvalidRole
        );
        let mut nested = base();
        nested["auth"] = json!({"token":"t","bogus":1});
        assert_eq!(
            validate(&nested).unwrap_err(),
            ConnectParamsError::Schema("at /auth: unexpected property 'bogus'".into())
        );
    }
}
