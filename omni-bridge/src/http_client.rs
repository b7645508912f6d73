//! A small JSON-over-HTTP client (hyper-util's pooled client, plain `http://` only) used by the
//! CLI commands that talk to Omni's REST API or to a running bridge, and by the demo.
//!
//! HTTPS is not supported: put the bridge and Omni on a private network or loopback, or front
//! Omni with a local TLS-terminating proxy.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Re-exported so callers need no `http` dependency of their own.
pub use http::Method;

/// Per-request deadline unless the caller gives one.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a request failed before a status came back.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Not an `http://` URL.
    #[error("{0:?} is not an http:// URL (https is not supported by this client)")]
    BadUrl(String),
    /// Connect or I/O failure.
    #[error("could not reach {url}: {message}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// No answer in time.
    #[error("{url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct HttpReply {
    /// Status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Bytes,
}

impl HttpReply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The client. Cheap to clone (shares its connection pool).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new(DEFAULT_REQUEST_TIMEOUT)
    }
}

impl HttpClient {
    /// A client with a per-request deadline.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        Self {
            inner: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1024)
                .build(connector),
            timeout,
        }
    }

    /// Sends a request with an optional JSON body.
    ///
    /// # Errors
    /// [`HttpError`] when no response came back.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<HttpReply, HttpError> {
        let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        self.send_raw(method, url, headers, bytes).await
    }

    /// POSTs `body` as JSON with `Authorization: Bearer <token>`: how Omni, the CLI and the
    /// benchmark call the bridge.
    ///
    /// # Errors
    /// [`HttpError`] when no response came back.
    pub async fn post_bearer(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<HttpReply, HttpError> {
        let auth = format!("Bearer {token}");
        let headers = [("authorization", auth.as_str())];
        self.send(Method::POST, url, &headers, Some(body)).await
    }

    /// Sends a request with raw body bytes (`Content-Type: application/json` unless a header
    /// overrides it).
    ///
    /// # Errors
    /// [`HttpError`] when no response came back.
    pub async fn send_raw(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpReply, HttpError> {
        if !url.starts_with("http://") {
            return Err(HttpError::BadUrl(url.to_string()));
        }
        let mut builder = Request::builder().method(method).uri(url);
        let has_ct = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !has_ct && !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(HttpError::BadUrl(format!("bad header {k}")));
            };
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|_| HttpError::BadUrl(url.to_string()))?;
        let unreachable = |e: &dyn std::fmt::Display| HttpError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        };
        let exchange = async {
            let resp = self
                .inner
                .request(request)
                .await
                .map_err(|e| unreachable(&error_chain(&e)))?;
            let status = resp.status();
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(&e))?
                .to_bytes();
            Ok(HttpReply { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_string(),
                timeout: self.timeout,
            })?
    }
}

/// The error and its sources on one line ("client error (Connect): Connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
