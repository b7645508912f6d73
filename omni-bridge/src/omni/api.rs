//! Omni's REST API (`/api/v2`, header `x-api-key`): one small client shared by `register`, the
//! 🗑 reset consumer and (later) the asynchronous delivery mode.
//!
//! It speaks JSON over plain `http://` ([`HttpClient`]), reads Omni's two envelope shapes
//! (`{data: ...}` and `{items: [...]}`), and turns every failure into an [`OmniError`] that says
//! what to fix. The API key never appears in an error or a log line.

use ::http::{Method, StatusCode};
use serde_json::Value;
use shared_protocol::Secret;

use crate::http_client::{HttpClient, HttpError, HttpReply};

/// Longest part of a response body quoted in an error.
pub const MAX_QUOTED_BODY_CHARS: usize = 300;

/// Why a call to Omni failed, as sentences for the operator.
#[derive(Debug, thiserror::Error)]
pub enum OmniError {
    /// 401/403 from Omni.
    #[error(
        "Omni rejected the API key (HTTP {0}). Check --omni-api-key / OMNI_API_KEY (the key Omni printed at first boot, or its OMNI_API_KEY)."
    )]
    Unauthorized(u16),
    /// No answer.
    #[error("Could not talk to Omni: {0}. Is the Omni URL right and Omni running?")]
    Http(#[from] HttpError),
    /// Any other unexpected status.
    #[error("Omni answered HTTP {status} to {what}: {body}")]
    Unexpected {
        /// Status code.
        status: u16,
        /// Which request (method and path template, no ids from input).
        what: String,
        /// The start of the body.
        body: String,
    },
}

impl OmniError {
    /// True when trying again later may succeed (no answer, or a 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Unexpected { status, .. } => *status >= 500,
            Self::Unauthorized(_) => false,
        }
    }
}

/// A client for one Omni.
#[derive(Clone)]
pub struct OmniApi {
    client: HttpClient,
    base: String,
    key: Secret,
}

impl std::fmt::Debug for OmniApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OmniApi")
            .field("base", &self.base)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl OmniApi {
    /// A client for the Omni at `base_url` (e.g. `http://localhost:8882`).
    pub fn new(client: HttpClient, base_url: &str, key: Secret) -> Self {
        Self {
            client,
            base: base_url.trim_end_matches('/').to_string(),
            key,
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One request to `/api/v2{path}`; 401/403 become [`OmniError::Unauthorized`], any other
    /// status is returned.
    ///
    /// # Errors
    /// [`OmniError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpReply, OmniError> {
        let url = format!("{}/api/v2{path}", self.base);
        let reply = self
            .client
            .send(
                method,
                &url,
                &[("x-api-key", self.key.expose().as_str())],
                body,
            )
            .await?;
        if matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(OmniError::Unauthorized(reply.status.as_u16()));
        }
        Ok(reply)
    }

    /// [`OmniApi::call`] that also refuses any non-2xx status, naming the request as `what`.
    ///
    /// # Errors
    /// [`OmniError`].
    pub async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, OmniError> {
        let reply = self.call(method, path, body).await?;
        if !reply.status.is_success() {
            return Err(unexpected(what, &reply));
        }
        Ok(reply.json())
    }

    /// `GET /api/v2/health`: Omni's uptime in seconds, when it says.
    ///
    /// # Errors
    /// [`OmniError`].
    pub async fn uptime_secs(&self) -> Result<Option<u64>, OmniError> {
        let health = self
            .call_ok(Method::GET, "/health", None, "GET /api/v2/health")
            .await?;
        Ok(health.get("uptime").and_then(Value::as_u64))
    }

    /// `GET /api/v2/instances/{id}`; `None` for a 404.
    ///
    /// # Errors
    /// [`OmniError`].
    pub async fn instance(&self, id: &str) -> Result<Option<Value>, OmniError> {
        self.get_one(
            &format!("/instances/{}", path_segment(id)),
            "GET /api/v2/instances/{id}",
        )
        .await
    }

    /// `GET /api/v2/providers/{id}`; `None` for a 404.
    ///
    /// # Errors
    /// [`OmniError`].
    pub async fn provider(&self, id: &str) -> Result<Option<Value>, OmniError> {
        self.get_one(
            &format!("/providers/{}", path_segment(id)),
            "GET /api/v2/providers/{id}",
        )
        .await
    }

    async fn get_one(&self, path: &str, what: &str) -> Result<Option<Value>, OmniError> {
        let reply = self.call(Method::GET, path, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !reply.status.is_success() {
            return Err(unexpected(what, &reply));
        }
        Ok(Some(data(reply.json())))
    }
}

/// The error for an unexpected status.
pub fn unexpected(what: &str, reply: &HttpReply) -> OmniError {
    let body = String::from_utf8_lossy(&reply.body);
    OmniError::Unexpected {
        status: reply.status.as_u16(),
        what: what.to_string(),
        body: body.chars().take(MAX_QUOTED_BODY_CHARS).collect(),
    }
}

/// `{items: [...]}` or `{data: [...]}` or a bare array.
pub fn items(v: &Value) -> Vec<Value> {
    v.get("items")
        .or_else(|| v.get("data"))
        .unwrap_or(v)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `{data: {...}}` or the object itself.
pub fn data(v: Value) -> Value {
    match v {
        Value::Object(mut m) if m.get("data").is_some_and(Value::is_object) => {
            m.remove("data").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// `{data: {id}}` or `{id}`.
pub fn id_of(v: &Value) -> Option<String> {
    v.get("data")
        .unwrap_or(v)
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A string field of an object.
pub fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// An id from input, safe as one path segment (Omni ids are UUIDs; anything else is escaped).
pub fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_api_key_never_shows() {
        let api = OmniApi::new(
            HttpClient::default(),
            "http://omni:8882/",
            Secret::new("omni_sk_topsecret".into()),
        );
        let shown = format!("{api:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert_eq!(api.base_url(), "http://omni:8882");
    }

    #[test]
    fn envelopes_and_path_segments() {
        assert_eq!(items(&json!({"items": [1]})), vec![json!(1)]);
        assert_eq!(items(&json!([2])), vec![json!(2)]);
        assert_eq!(data(json!({"data": {"id": "x"}})), json!({"id": "x"}));
        assert_eq!(id_of(&json!({"data": {"id": "x"}})).as_deref(), Some("x"));
        assert_eq!(path_segment("a-1_b"), "a-1_b");
        assert_eq!(path_segment("../x y"), "%2E%2E%2Fx%20y");
    }
}
