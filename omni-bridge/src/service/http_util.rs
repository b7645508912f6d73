//! Small HTTP helpers: JSON answers, machine-readable errors, bearer check, bounded body read.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use shared_protocol::Secret;
use subtle::ConstantTimeEq;

/// Largest request body accepted (a 100 KiB message plus Omni's envelope, with room).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The response type of every handler.
pub type HttpResponse = Response<Full<Bytes>>;

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// `200 {"reply": text}`, or `200 {"parts": []}` for nothing to say (encoded directly, no
/// intermediate JSON tree).
pub fn reply(text: Option<&str>) -> HttpResponse {
    #[derive(serde::Serialize)]
    struct Reply<'a> {
        reply: &'a str,
    }
    let body = match text {
        Some(reply) => serde_json::to_vec(&Reply { reply })
            .map_or_else(|_| Bytes::from_static(b"{\"parts\":[]}"), Bytes::from),
        None => Bytes::from_static(b"{\"parts\":[]}"),
    };
    let mut resp = Response::new(Full::new(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A machine-readable error: `{"error": {"kind", "message", "retryable"}}`; 503 adds
/// `Retry-After: 1`.
pub fn error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    let retryable = status == StatusCode::SERVICE_UNAVAILABLE;
    let mut resp = json(
        status,
        &serde_json::json!({ "error": { "kind": kind, "message": message, "retryable": retryable } }),
    );
    if retryable {
        resp.headers_mut()
            .insert(RETRY_AFTER, http::HeaderValue::from_static("1"));
    }
    resp
}

/// An empty response.
pub fn empty(status: StatusCode) -> HttpResponse {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// How the `Authorization` header compares with the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    /// Right token.
    Valid,
    /// No header.
    Missing,
    /// Wrong token or scheme.
    Invalid,
}

/// Checks `Authorization: Bearer <secret>` in constant time.
pub fn bearer(headers: &HeaderMap, secret: &Secret) -> Bearer {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Bearer::Missing;
    };
    let bytes = value.as_bytes();
    let token = match bytes.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &bytes[7..],
        _ => return Bearer::Invalid,
    };
    if bool::from(token.ct_eq(secret.expose().as_bytes())) {
        Bearer::Valid
    } else {
        Bearer::Invalid
    }
}

/// True when the content type is absent or JSON.
pub fn is_json(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_none_or(|v| {
        v.to_str()
            .map(|s| s.to_ascii_lowercase().contains("json"))
            .unwrap_or(false)
    })
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over [`MAX_BODY_BYTES`].
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The connection failed mid-body.
    #[error("could not read the request body: {0}")]
    Read(String),
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`].
///
/// # Errors
/// [`BodyError`].
pub async fn read_body(body: Incoming) -> Result<Bytes, BodyError> {
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_checks() {
        let s = Secret::new("abc".to_string());
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h, &s), Bearer::Missing);
        h.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h, &s), Bearer::Valid);
        h.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&h, &s), Bearer::Valid);
        h.insert(AUTHORIZATION, "Bearer abd".parse().unwrap());
        assert_eq!(bearer(&h, &s), Bearer::Invalid);
        h.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&h, &s), Bearer::Invalid);
        h.insert(AUTHORIZATION, "Bearer ab".parse().unwrap());
        assert_eq!(bearer(&h, &s), Bearer::Invalid);
    }
}
