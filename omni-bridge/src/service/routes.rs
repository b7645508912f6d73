//! Request dispatch by method and path.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::Service;
use super::http_util::{self, HttpResponse};

/// Path prefix of the trigger endpoint: `/omni/agents/{agentId}/trigger`.
pub const TRIGGER_PREFIX: &str = "/omni/agents/";
/// Path suffix of the trigger endpoint.
pub const TRIGGER_SUFFIX: &str = "/trigger";
/// Session reset endpoint.
pub const RESET_PATH: &str = "/omni/sessions/reset";

impl Service {
    /// Answers one request.
    pub async fn handle(&self, req: Request<Incoming>) -> HttpResponse {
        let path = req.uri().path();
        let agent = path
            .strip_prefix(TRIGGER_PREFIX)
            .and_then(|rest| rest.strip_suffix(TRIGGER_SUFFIX))
            .filter(|a| !a.is_empty() && !a.contains('/'));
        if req.method() == Method::POST
            && let Some(agent) = agent
        {
            let agent = agent.to_owned();
            return self.trigger(&agent, req).await;
        }
        let trigger_path = agent.is_some();
        let path = path.to_owned();
        let method = req.method().clone();
        match (&method, path.as_str(), trigger_path) {
            (&Method::HEAD, _, true) => http_util::empty(StatusCode::OK),
            (&Method::POST, RESET_PATH, false) => self.reset_endpoint(req).await,
            (&Method::GET | &Method::HEAD, "/health", false) => self.health(req.headers()),
            (&Method::GET | &Method::HEAD, "/ready", false) => self.ready(),
            (&Method::GET, "/metrics", false) => self.metrics_text(),
            (_, _, true) | (_, RESET_PATH | "/health" | "/ready" | "/metrics", false) => {
                http_util::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "method not allowed on this path",
                )
            }
            _ => http_util::error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
        }
    }
}
