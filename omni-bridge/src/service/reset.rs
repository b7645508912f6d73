//! `POST /omni/sessions/reset`: clears one conversation's OpenClaw session.
//!
//! Omni's `webhook` provider has no reset hook (omni-contract §2.5), so operators (or
//! `omni-bridge reset`) call this; users can also send the reset command as a message.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::http_util::{self, Bearer, BodyError, HttpResponse};
use super::{RESET_TIMEOUT, Service};

/// The reset request body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResetRequest {
    /// Agent name (as in the trigger path).
    pub agent_id: String,
    /// Omni instance id.
    pub instance_id: String,
    /// External chat id (used when `session_id` is absent).
    #[serde(default)]
    pub chat_id: Option<String>,
    /// Omni session id (`executionContext.session.id`), when the instance uses one.
    #[serde(default)]
    pub session_id: Option<String>,
}

impl Service {
    pub(super) async fn reset_endpoint(&self, req: Request<Incoming>) -> HttpResponse {
        if self.is_shutting_down() {
            return http_util::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the bridge is shutting down; retry",
            );
        }
        if http_util::bearer(req.headers(), &self.inner.inbound_token) != Bearer::Valid {
            return http_util::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            );
        }
        let body = match http_util::read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e @ BodyError::TooLarge) => {
                return http_util::error(StatusCode::PAYLOAD_TOO_LARGE, "invalid", &e.to_string());
            }
            Err(e) => return http_util::error(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        };
        let request: ResetRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return http_util::error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("expected {{agentId, instanceId, chatId | sessionId}}: {e}"),
                );
            }
        };
        let conversation = request
            .session_id
            .as_deref()
            .or(request.chat_id.as_deref())
            .map(str::trim)
            .filter(|c| !c.is_empty());
        let Some(conversation) = conversation else {
            return http_util::error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "chatId or sessionId is required",
            );
        };
        let Some(route) = self.route(&request.agent_id, Some(&request.instance_id)) else {
            return http_util::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "agent {:?} is not configured on this bridge",
                    request.agent_id
                ),
            );
        };
        let key = match self.session_key_for(&route, &request.instance_id, conversation) {
            Ok(k) => k,
            Err(e) => return http_util::error(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        };
        let result = tokio::time::timeout(
            RESET_TIMEOUT,
            self.inner.backend.reset(&route.gateway, &key),
        )
        .await;
        let (ok, response) = match result {
            Ok(Ok(())) => (
                true,
                http_util::json(
                    StatusCode::OK,
                    &serde_json::json!({ "reset": true, "sessionKey": key.as_str() }),
                ),
            ),
            Ok(Err(e)) => {
                // The one classification decides: a failure that may pass is "try again" (503).
                let status = if e.is_retryable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                };
                (
                    false,
                    http_util::error(status, e.kind().as_str(), &e.to_string()),
                )
            }
            Err(_) => (
                false,
                http_util::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "timeout",
                    "reset timed out",
                ),
            ),
        };
        self.inner.metrics.reset(ok);
        tracing::info!(
            instance_id = %request.instance_id,
            agent_id = %route.name,
            session_key = %key,
            outcome = if ok { "reset" } else { "reset_failed" },
            "session reset"
        );
        response
    }
}
