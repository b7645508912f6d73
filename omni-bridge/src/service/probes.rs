//! `/health`, `/ready` and `/metrics`.
//!
//! Readiness rule: ready when every configured gateway has completed a handshake at least once
//! since start and no gateway's circuit breaker is open, and the bridge is not shutting down.
//! (A gateway that drops later keeps the bridge ready: the connection layer reconnects, and Omni
//! gets the "unavailable" text meanwhile rather than a dead endpoint.)

use http::{HeaderMap, StatusCode};
use prometheus::{Encoder, TextEncoder};

use super::Service;
use super::http_util::{self, Bearer, HttpResponse};

impl Service {
    /// Liveness plus per-gateway state. Accepts the bearer secret or no `Authorization` at all
    /// (Omni's provider health check sends it); a wrong one gets 401.
    pub(super) fn health(&self, headers: &HeaderMap) -> HttpResponse {
        if http_util::bearer(headers, &self.inner.inbound_token) == Bearer::Invalid {
            return http_util::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "wrong bearer token",
            );
        }
        let gateways = self.inner.backend.health();
        http_util::json(
            StatusCode::OK,
            &serde_json::json!({
                "status": if self.is_shutting_down() { "shutting_down" } else { "ok" },
                "gateways": gateways,
                "inFlight": self.inner.backend.runs_in_flight(),
            }),
        )
    }

    /// Readiness (see the module docs for the rule).
    pub(super) fn ready(&self) -> HttpResponse {
        let health = self.inner.backend.health();
        let mut waiting = Vec::new();
        for name in &self.inner.gateways {
            match health.iter().find(|h| &h.name == name) {
                Some(h) if h.breaker_open => waiting.push(format!("{name}: circuit breaker open")),
                Some(h) if h.ever_connected => {}
                _ => waiting.push(format!("{name}: never connected yet")),
            }
        }
        if self.is_shutting_down() {
            waiting.push("shutting down".into());
        }
        if waiting.is_empty() {
            http_util::json(StatusCode::OK, &serde_json::json!({ "ready": true }))
        } else {
            http_util::json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "ready": false, "waiting": waiting }),
            )
        }
    }

    /// Prometheus text format of the registry (service and gateway metrics).
    pub(super) fn metrics_text(&self) -> HttpResponse {
        self.inner
            .metrics
            .set_in_flight(self.inner.backend.runs_in_flight());
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf) {
            return http_util::error(StatusCode::INTERNAL_SERVER_ERROR, "metrics", &e.to_string());
        }
        let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(buf)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        resp
    }
}
