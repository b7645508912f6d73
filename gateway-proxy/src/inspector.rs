//! The frame inspector: decides, for each client frame after the handshake, whether it goes to
//! the gateway untouched or is answered by the proxy.
//!
//! A frame is parsed once, borrowing from its text (envelope only); params are decoded only for
//! methods whose scope depends on them and for `chat.send` (its session key). The caller forwards
//! the original bytes on [`Verdict::Forward`].

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use shared_protocol::frame::{Frame, encode_response_err};
use shared_protocol::session_key::{AgentId, DEFAULT_AGENT_ID, SessionKey};
use shared_protocol::{DetailCode, ErrorCode, ErrorShape, ScopeSet};

use crate::credential::Credential;
use crate::policy::Denial;
use crate::rate_limit::{Limited, RateLimits};
use crate::request_scan::scan_request;

/// What an authenticated connection may do.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who connected.
    pub credential: Arc<Credential>,
    /// Scopes granted to this connection (the request clamped to the credential's grant).
    pub scopes: ScopeSet,
}

/// The decision for one client frame.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// Send the original bytes upstream.
    Forward,
    /// Refused by policy.
    Deny {
        /// Request id to answer.
        id: Cow<'a, str>,
        /// Method asked for.
        method: Cow<'a, str>,
        /// Why.
        denial: Denial,
    },
    /// Refused by a rate limit (retryable).
    Limited {
        /// Request id to answer.
        id: Cow<'a, str>,
        /// Method asked for.
        method: Cow<'a, str>,
        /// Which limit and when to retry.
        limited: Limited,
    },
    /// Not a request frame: dropped (operators only send requests).
    Invalid,
}

#[derive(Deserialize)]
struct ChatSendKey<'a> {
    #[serde(rename = "sessionKey", borrow, default)]
    session_key: Option<Cow<'a, str>>,
}

/// The request fields decided on: from the [fast scan](crate::request_scan) when it answers,
/// else from serde.
struct Request<'a> {
    id: Cow<'a, str>,
    method: Cow<'a, str>,
    /// Raw JSON text.
    params: Option<&'a str>,
}

fn read_request(text: &str) -> Option<Request<'_>> {
    if let Some(r) = scan_request(text) {
        return Some(Request {
            id: Cow::Borrowed(r.id),
            method: Cow::Borrowed(r.method),
            params: r.params,
        });
    }
    match Frame::parse(text) {
        Ok(Frame::Request(r)) => Some(Request {
            id: r.id,
            method: r.method,
            params: r.params.map(RawValue::get),
        }),
        _ => None,
    }
}

/// Decides one client text frame.
pub fn inspect<'a>(text: &'a str, session: &Session, limits: &RateLimits) -> Verdict<'a> {
    let Some(req) = read_request(text) else {
        return Verdict::Invalid;
    };
    let cred = &session.credential;
    if let Err(denial) = cred.policy.check(&req.method, req.params, session.scopes) {
        return Verdict::Deny {
            id: req.id,
            method: req.method,
            denial,
        };
    }
    let mut limit = limits.check_request(cred.index);
    if limit.is_ok() && req.method == "chat.send" {
        // Absent params decode from `null` (and give no key), as serde's `params_as` does.
        let key = serde_json::from_str::<ChatSendKey<'_>>(req.params.unwrap_or("null"))
            .ok()
            .and_then(|p| p.session_key)
            .unwrap_or_default();
        limit = limits.check_chat_send(cred.index, &canonical_session_key(&key));
    }
    match limit {
        Ok(()) => Verdict::Forward,
        Err(limited) => Verdict::Limited {
            id: req.id,
            method: req.method,
            limited,
        },
    }
}

/// The key the gateway will use (lower-cased, `agent:main:` prefixed); a malformed key is kept
/// as sent, lower-cased (the gateway rejects it anyway, and it still counts against the limit).
pub fn canonical_session_key(raw: &str) -> String {
    AgentId::parse(DEFAULT_AGENT_ID)
        .ok()
        .and_then(|main| SessionKey::canonicalize(raw, &main).ok())
        .map_or_else(|| raw.to_lowercase(), |k| k.as_str().to_string())
}

/// The retryable error for a rate-limit hit: `UNAVAILABLE`, `retryAfterMs`,
/// `details.code = RATE_LIMITED`.
pub fn rate_limited_error(l: Limited) -> ErrorShape {
    let ms = u64::try_from(l.retry_after.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    ErrorShape {
        details: Some(serde_json::json!({
            "code": DetailCode::RateLimited.as_str(),
            "limit": l.kind.as_str(),
        })),
        retryable: Some(true),
        retry_after_ms: Some(ms),
        ..ErrorShape::new(
            ErrorCode::Unavailable,
            format!("rate limited ({}); retry after {ms} ms", l.kind.as_str()),
        )
    }
}

/// The response frame for a refused request.
pub fn error_response(id: &str, error: &ErrorShape) -> String {
    encode_response_err::<()>(id, error, None).unwrap_or_else(|_| {
        // Unreachable in practice (ErrorShape always serialises); keep the client answered.
        format!(r#"{{"type":"res","id":{},"ok":false,"error":{{"code":"UNAVAILABLE","message":"proxy error"}}}}"#,
            serde_json::Value::String(id.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CredentialConfig, LimitsConfig};
    use crate::credential::{CredentialStore, TokenHash};
    use crate::rate_limit::LimitKind;
    use shared_protocol::Scope;

    fn session(scopes: &[&str], deny: &[&str]) -> Session {
        let store = CredentialStore::from_config(&[CredentialConfig {
            id: "c".into(),
            token_sha256: TokenHash::of("t").to_hex(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            allow_methods: None,
            deny_methods: deny.iter().map(|s| s.to_string()).collect(),
            max_connections: 0,
            require_device: false,
            client_cert_pins: vec![],
        }])
        .unwrap();
        let credential = store.authenticate("t").unwrap();
        let scopes = credential.policy.grant;
        Session { credential, scopes }
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts() {
        let s = session(&["operator.read", "operator.write"], &["models.list"]);
        let l = RateLimits::new(&LimitsConfig::default());
        let req =
            |m: &str, p: &str| format!(r#"{{"type":"req","id":"r1","method":"{m}","params":{p}}}"#);
        assert!(matches!(
            inspect(&req("health", "{}"), &s, &l),
            Verdict::Forward
        ));
        let reset = req("sessions.reset", r#"{"key":"main"}"#);
        let Verdict::Deny { id, denial, .. } = inspect(&reset, &s, &l) else {
            panic!()
        };
        assert_eq!(
            (id.as_ref(), denial),
            ("r1", Denial::MissingScope(Scope::Admin))
        );
        assert!(matches!(
            inspect(&req("models.list", "{}"), &s, &l),
            Verdict::Deny {
                denial: Denial::DenyList,
                ..
            }
        ));
        assert!(matches!(
            inspect(r#"{"type":"event","event":"x"}"#, &s, &l),
            Verdict::Invalid
        ));
        assert!(matches!(inspect("not json", &s, &l), Verdict::Invalid));
    }

    #[tokio::test(start_paused = true)]
    async fn chat_send_is_limited_per_canonical_session_key() {
        let s = session(&["operator.write"], &[]);
        let l = RateLimits::new(&LimitsConfig {
            chat_send_per_minute_per_session: 1,
            ..LimitsConfig::default()
        });
        let send = |k: &str| {
            format!(
                r#"{{"type":"req","id":"x","method":"chat.send","params":{{"sessionKey":"{k}","message":"m","idempotencyKey":"i"}}}}"#
            )
        };
        assert!(matches!(
            inspect(&send("Main-Chat"), &s, &l),
            Verdict::Forward
        ));
        let Verdict::Limited { limited, .. } = inspect(&send("agent:main:main-chat"), &s, &l)
        else {
            panic!("same canonical key must share the budget")
        };
        assert_eq!(limited.kind, LimitKind::ChatSendSession);
        let e = rate_limited_error(limited);
        assert!(e.is_retryable() && e.retry_after_ms.unwrap() > 0);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.detail_code(), Some(DetailCode::RateLimited));
        assert!(matches!(inspect(&send("other"), &s, &l), Verdict::Forward));
    }
}
