//! Admission of a `connect`: startup phase, protocol, origin, auth, device proof, scopes.
//!
//! Mirrors `admitGatewayConnect` and the auth helpers of the gateway
//! (`src/gateway/server/ws-connection/message-handler.ts`, `connect-auth.ts`, `connect-policy.ts`):
//! without a verified device, requested scopes survive only for `gateway-client`/`backend` and
//! `cli`/`cli` on a direct loopback link without an `Origin` header.

use serde_json::{Value, json};
use shared_protocol::connect::{ClientId, ClientMode, ConnectParams};
use shared_protocol::device::verify_proof;
use shared_protocol::limits::{MAX_PAYLOAD_BYTES, PROTOCOL_VERSION};
use shared_protocol::{ErrorCode, ErrorShape, ScopeSet, close_code};

use crate::config::MOCK_SERVER_VERSION;
use crate::state::{Gateway, PairedDevice, now_ms};

/// What the upgrade request told us.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpgradeInfo {
    /// `Origin` header, if any.
    pub origin: Option<String>,
}

/// A refused connect: the error response, then this close.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The response error.
    pub error: ErrorShape,
    /// Close code.
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

/// An admitted connect.
#[derive(Debug, Clone)]
pub(crate) struct Admitted {
    /// Scopes as granted (wire names, in request order).
    pub scope_names: Vec<String>,
    /// The same, parsed.
    pub scopes: ScopeSet,
    /// `hello-ok.auth.method`.
    pub method: &'static str,
    /// Token issued to a newly verified device.
    pub device_token: Option<String>,
}

fn refuse(error: ErrorShape, code: u16, reason: &str) -> Box<Refusal> {
    // The gateway truncates close reasons to the 123 bytes a close frame can carry.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    Box::new(Refusal {
        error,
        code,
        reason,
    })
}

fn with_details(code: ErrorCode, message: &str, details: Value) -> ErrorShape {
    ErrorShape {
        details: Some(details),
        ..ErrorShape::new(code, message)
    }
}

fn is_ui_client(p: &ConnectParams) -> bool {
    matches!(
        p.client.id,
        ClientId::OpenclawControlUi | ClientId::WebchatUi | ClientId::Webchat
    ) || p.client.mode == ClientMode::Webchat
}

fn is_loopback_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or(origin);
    let host = rest.split('/').next().unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// The retryable refusal sent while the gateway is starting.
pub(crate) fn startup_refusal() -> Box<Refusal> {
    refuse(
        ErrorShape::unavailable("gateway starting; retry shortly", "startup-sidecars", 500),
        close_code::TRY_AGAIN_LATER,
        "gateway starting",
    )
}

/// Decides a connect.
pub(crate) fn admit(
    gw: &Gateway,
    params: &ConnectParams,
    upgrade: &UpgradeInfo,
    nonce: &str,
) -> Result<Admitted, Box<Refusal>> {
    if gw.starting() {
        return Err(startup_refusal());
    }
    let probe_ok = params.client.mode == ClientMode::Probe
        && params.max_protocol >= 3
        && params.min_protocol <= PROTOCOL_VERSION;
    if !params.accepts_protocol(PROTOCOL_VERSION) && !probe_ok {
        let error = with_details(
            ErrorCode::InvalidRequest,
            "protocol mismatch",
            json!({"code":"PROTOCOL_MISMATCH","clientMinProtocol":params.min_protocol,
                   "clientMaxProtocol":params.max_protocol,"expectedProtocol":PROTOCOL_VERSION,
                   "minimumProbeProtocol":3}),
        );
        return Err(refuse(
            error,
            close_code::PROTOCOL_MISMATCH,
            "protocol mismatch",
        ));
    }
    let ui = is_ui_client(params);
    let origin_ok = upgrade.origin.as_deref().map(is_loopback_origin);
    if origin_ok == Some(false) || (ui && origin_ok.is_none()) {
        let message = "origin not allowed (open the Control UI from the gateway host or allow it in gateway.controlUi.allowedOrigins)";
        let reason = if origin_ok.is_none() {
            "origin missing or invalid"
        } else {
            "origin not allowed"
        };
        let error = with_details(
            ErrorCode::InvalidRequest,
            message,
            json!({"code":"CONTROL_UI_ORIGIN_NOT_ALLOWED","reason":reason}),
        );
        return Err(refuse(error, close_code::POLICY_VIOLATION, message));
    }
    if ui && params.device.is_none() {
        let message = "control ui requires device identity (use HTTPS or localhost secure context)";
        let error = with_details(
            ErrorCode::InvalidRequest,
            message,
            json!({"code":"CONTROL_UI_DEVICE_IDENTITY_REQUIRED"}),
        );
        return Err(refuse(error, close_code::POLICY_VIOLATION, message));
    }

    let requested: Vec<String> = params.scopes.clone().unwrap_or_default();
    let auth = params.auth.clone().unwrap_or_default();
    let (method, paired_scopes) = match (&auth.token, &auth.device_token) {
        (Some(token), _) if token.expose() == &gw.config.token => ("token", None),
        (None, Some(dt)) => match gw.devices.lock().get(dt.expose()) {
            Some(device) => ("device-token", Some(device.scopes.clone())),
            None => {
                return Err(auth_refusal(
                    "device_token_mismatch",
                    false,
                    "unauthorized: device token mismatch (rotate/reissue device token)",
                ));
            }
        },
        (Some(_), _) => {
            let can_retry = params.device.is_some() && auth.device_token.is_none();
            let message = format!(
                "unauthorized: gateway token mismatch ({})",
                token_hint(params)
            );
            return Err(auth_refusal("token_mismatch", can_retry, &message));
        }
        (None, None) if params.device.is_none() && auth.password.is_none() => {
            // No shared secret and no device: the role cannot skip device identity.
            let error = with_details(
                ErrorCode::NotPaired,
                "device identity required",
                json!({"code": "DEVICE_IDENTITY_REQUIRED"}),
            );
            return Err(refuse(
                error,
                close_code::POLICY_VIOLATION,
                "device identity required",
            ));
        }
        (None, None) => {
            let hint = if ui {
                "paste in Control UI settings or openclaw doctor --generate-gateway-token; restart"
                    .to_string()
            } else {
                token_hint(params)
            };
            let message = format!("unauthorized: gateway token missing ({hint})");
            return Err(auth_refusal("token_missing", false, &message));
        }
    };

    let mut device_token = None;
    let scope_names = if let Some(proof) = &params.device {
        if let Err(e) = verify_proof(params, proof, nonce, now_ms()) {
            let message = e.to_string();
            let error = with_details(
                ErrorCode::InvalidRequest,
                &message,
                json!({"code": e.detail_code().as_str(), "reason": message}),
            );
            return Err(refuse(error, close_code::POLICY_VIOLATION, &message));
        }
        let granted = match &paired_scopes {
            Some(paired) => requested
                .iter()
                .filter(|s| paired.contains(s))
                .cloned()
                .collect(),
            None => requested.clone(),
        };
        if method == "token" {
            let token = uuid::Uuid::new_v4().to_string();
            gw.pair_device(
                token.clone(),
                PairedDevice {
                    scopes: granted.clone(),
                },
            );
            device_token = Some(token);
        }
        granted
    } else {
        let local_backend = params.client.id == ClientId::GatewayClient
            && params.client.mode == ClientMode::Backend;
        let local_cli = params.client.id == ClientId::Cli && params.client.mode == ClientMode::Cli;
        if (local_backend || local_cli) && upgrade.origin.is_none() {
            requested
        } else {
            Vec::new()
        }
    };
    let mut unique: Vec<String> = Vec::with_capacity(scope_names.len());
    for s in scope_names {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    Ok(Admitted {
        scopes: ScopeSet::from_names(unique.iter().map(String::as_str)),
        scope_names: unique,
        method,
        device_token,
    })
}

fn token_hint(params: &ConnectParams) -> String {
    if params.client.id == ClientId::Cli {
        "use this gateway's gateway.auth.token or pair the device".into()
    } else if is_ui_client(params) {
        "open the dashboard URL and paste the token in Control UI settings".into()
    } else {
        "provide gateway auth token".into()
    }
}

fn auth_refusal(reason: &str, can_retry: bool, message: &str) -> Box<Refusal> {
    let code = match reason {
        "token_missing" => "AUTH_TOKEN_MISSING",
        "token_mismatch" => "AUTH_TOKEN_MISMATCH",
        _ => "AUTH_DEVICE_TOKEN_MISMATCH",
    };
    let next = if can_retry {
        "retry_with_device_token"
    } else if reason == "token_missing" {
        "update_auth_configuration"
    } else {
        "update_auth_credentials"
    };
    let error = with_details(
        ErrorCode::InvalidRequest,
        message,
        json!({"code":code,"authReason":reason,"canRetryWithDeviceToken":can_retry,
               "recommendedNextStep":next}),
    );
    refuse(error, close_code::POLICY_VIOLATION, message)
}

/// Methods advertised in `hello-ok.features.methods` (what the mock implements).
pub(crate) const METHODS: &[&str] = &[
    "health",
    "agents.list",
    "chat.send",
    "chat.abort",
    "chat.history",
    "sessions.describe",
    "sessions.patch",
    "sessions.delete",
    "sessions.reset",
];

/// Events advertised in `hello-ok.features.events`.
pub(crate) const EVENTS: &[&str] = &["connect.challenge", "chat", "tick", "shutdown"];

/// The `hello-ok` payload for an admitted connect.
pub(crate) fn hello_ok(gw: &Gateway, admitted: &Admitted, conn_id: &str) -> Value {
    let mut auth =
        json!({"method": admitted.method, "role": "operator", "scopes": admitted.scope_names});
    if let Some(token) = &admitted.device_token {
        auth["deviceToken"] = json!(token);
        auth["issuedAtMs"] = json!(now_ms());
    }
    let tick_ms = u64::try_from(gw.config.tick_interval.as_millis()).unwrap_or(u64::MAX);
    let uptime_ms = u64::try_from(gw.started_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    json!({
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": {"version": MOCK_SERVER_VERSION, "connId": conn_id, "bootId": gw.boot_id.lock().clone()},
        "features": {"methods": METHODS, "events": EVENTS, "capabilities": []},
        "snapshot": {
            "sessionDefaults": {"defaultAgentId":"main","mainKey":"main","mainSessionKey":"agent:main:main","scope":"per-sender"},
            "stateVersion": {"presence": 1, "health": 1},
            "uptimeMs": uptime_ms
        },
        "auth": auth,
        "policy": {"maxPayload": MAX_PAYLOAD_BYTES, "maxBufferedBytes": gw.config.max_buffered_bytes, "tickIntervalMs": tick_ms}
    })
}
