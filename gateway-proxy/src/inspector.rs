//! The frame inspector: decides, for each client frame after the handshake, whether it goes to
//! the gateway untouched or is answered by the proxy.
//!
//! A frame is read once, as the gateway will read it ([`request_read`](crate::request_read)),
//! and decided on that reading: the policy, then the rate limits. Params are looked at only for
//! methods whose scope depends on them and for `chat.send` (its session). The caller forwards
//! the original bytes on [`Verdict::Forward`].

use std::borrow::Cow;
use std::sync::Arc;

use shared_protocol::{DetailCode, ErrorCode, ErrorShape, ScopeSet};

use crate::chat_session::{SessionDefaults, chat_send_session};
use crate::credential::Credential;
use crate::policy::{Denial, Policy};
use crate::rate_limit::{Limited, RateLimits};
use crate::request_read::{Read, read_request};

/// What an authenticated connection may do.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who connected.
    pub credential: Arc<Credential>,
    /// Scopes granted to this connection (the request clamped to the credential's grant).
    pub scopes: ScopeSet,
    /// The gateway's session defaults, from its hello (how `chat.send` keys resolve).
    pub defaults: SessionDefaults,
}

/// The decision for one client frame.
#[derive(Debug)]
pub enum Verdict<'a> {
    /// Send the original bytes upstream.
    Forward,
    /// Refused by policy.
    Deny {
        /// The request id's JSON text, to answer.
        id_json: &'a str,
        /// Method asked for (for logs and audit).
        method: Cow<'a, str>,
        /// Why.
        denial: Denial,
    },
    /// Refused by a rate limit (retryable).
    Limited {
        /// The request id's JSON text, to answer.
        id_json: &'a str,
        /// Method asked for (for logs and audit).
        method: Cow<'a, str>,
        /// Which limit and when to retry.
        limited: Limited,
    },
    /// JSON but not a request frame: answered `INVALID_REQUEST`, as the gateway would.
    NotRequest {
        /// The frame's `id` JSON text, if it has one.
        id_json: Option<&'a str>,
    },
    /// Not JSON: dropped (the gateway answers nothing either).
    NotJson,
}

/// The proxy's decision on a frame before any rate limit: what the policy says of it as the
/// gateway will read it. Pure, so that tests compare it with the gateway's own decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement<'a> {
    /// Allowed by policy.
    Allow {
        /// The request id's JSON text.
        id_json: &'a str,
        /// The method (a lone surrogate shown as U+FFFD; such a method is never allowed).
        method: Cow<'a, str>,
        /// For `chat.send`, the gateway session it addresses (its rate-limit bucket), when its
        /// params name one.
        chat_session: Option<String>,
    },
    /// Refused by policy.
    Deny {
        /// The request id's JSON text.
        id_json: &'a str,
        /// The method, for logs (a lone surrogate shown as U+FFFD).
        method: Cow<'a, str>,
        /// Why.
        denial: Denial,
    },
    /// JSON but not a request frame.
    NotRequest {
        /// The frame's `id` JSON text, if any.
        id_json: Option<&'a str>,
    },
    /// Not JSON.
    NotJson,
}

/// Judges one client text frame for a connection holding `scopes` under `policy`.
pub fn judge<'a>(
    text: &'a str,
    policy: &Policy,
    scopes: ScopeSet,
    defaults: &SessionDefaults,
) -> Judgement<'a> {
    let req = match read_request(text) {
        Read::Request(r) => r,
        Read::NotRequest { id_json } => return Judgement::NotRequest { id_json },
        Read::NotJson => return Judgement::NotJson,
    };
    let verdict = policy
        .check(&req.method, req.params, scopes)
        .and_then(|()| {
            if req.method.equals("chat.send") {
                chat_send_session(req.params, defaults).map_err(Denial::SessionKey)
            } else {
                Ok(None)
            }
        });
    match verdict {
        Ok(chat_session) => Judgement::Allow {
            id_json: req.id_json,
            method: req.method.text,
            chat_session,
        },
        Err(denial) => Judgement::Deny {
            id_json: req.id_json,
            method: req.method.text,
            denial,
        },
    }
}

/// Decides one client text frame: the [judgement](judge), then the rate limits. Every request
/// counts against the credential's request budget, refused ones included, so that refusals
/// cannot be sent faster than allowed requests.
pub fn inspect<'a>(text: &'a str, session: &Session, limits: &RateLimits) -> Verdict<'a> {
    let cred = &session.credential;
    let (id_json, method, chat_session) =
        match judge(text, &cred.policy, session.scopes, &session.defaults) {
            Judgement::NotJson => return Verdict::NotJson,
            Judgement::NotRequest { id_json } => return Verdict::NotRequest { id_json },
            Judgement::Deny {
                id_json,
                method,
                denial,
            } => {
                // Counted, whatever the budget says: the refusal is the answer either way.
                let _ = limits.check_request(cred.index);
                return Verdict::Deny {
                    id_json,
                    method,
                    denial,
                };
            }
            Judgement::Allow {
                id_json,
                method,
                chat_session,
            } => (id_json, method, chat_session),
        };
    let mut limit = limits.check_request(cred.index);
    if limit.is_ok() && method == "chat.send" {
        limit = limits.check_chat_send(cred.index, chat_session.as_deref());
    }
    match limit {
        Ok(()) => Verdict::Forward,
        Err(limited) => Verdict::Limited {
            id_json,
            method,
            limited,
        },
    }
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

/// The gateway's answer to a frame that is JSON but not a request.
pub fn invalid_request_error() -> ErrorShape {
    ErrorShape::new(ErrorCode::InvalidRequest, "invalid request frame")
}

/// The response frame for a refused request (`id` a plain string).
pub fn error_response(id: &str, error: &ErrorShape) -> String {
    error_response_json(
        &serde_json::Value::String(id.to_string()).to_string(),
        error,
    )
}

/// The response frame for a refused request whose `id` is given as JSON text (echoed as the
/// client wrote it).
pub fn error_response_json(id_json: &str, error: &ErrorShape) -> String {
    let error = serde_json::to_string(error).unwrap_or_else(|_| {
        // Unreachable in practice (ErrorShape always serialises); keep the client answered.
        r#"{"code":"UNAVAILABLE","message":"proxy error"}"#.to_string()
    });
    format!(r#"{{"type":"res","id":{id_json},"ok":false,"error":{error}}}"#)
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
        Session {
            credential,
            scopes,
            defaults: SessionDefaults::default(),
        }
    }

    fn req(m: &str, p: &str) -> String {
        format!(r#"{{"type":"req","id":"r1","method":"{m}","params":{p}}}"#)
    }

    #[tokio::test(start_paused = true)]
    async fn verdicts() {
        let s = session(&["operator.read", "operator.write"], &["models.list"]);
        let l = RateLimits::new(&LimitsConfig::default());
        assert!(matches!(
            inspect(&req("health", "{}"), &s, &l),
            Verdict::Forward
        ));
        let reset = req("sessions.reset", r#"{"key":"main"}"#);
        let Verdict::Deny {
            id_json, denial, ..
        } = inspect(&reset, &s, &l)
        else {
            panic!()
        };
        assert_eq!(
            (id_json, denial),
            (r#""r1""#, Denial::MissingScope(Scope::Admin))
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
            Verdict::NotRequest { id_json: None }
        ));
        assert!(matches!(
            inspect(r#"["req","a1","health"]"#, &s, &l),
            Verdict::NotRequest { id_json: None }
        ));
        assert!(matches!(inspect("not json", &s, &l), Verdict::NotJson));
    }

    /// Refused requests spend the credential's request budget too: once it is spent, an
    /// allowed request is rate-limited.
    #[tokio::test(start_paused = true)]
    async fn refused_requests_count_against_the_request_budget() {
        let s = session(&["operator.read"], &[]);
        let l = RateLimits::new(&LimitsConfig {
            requests_per_second_per_credential: 3,
            ..LimitsConfig::default()
        });
        for _ in 0..3 {
            assert!(matches!(
                inspect(&req("sessions.reset", "{}"), &s, &l),
                Verdict::Deny { .. }
            ));
        }
        assert!(matches!(
            inspect(&req("health", "{}"), &s, &l),
            Verdict::Limited { .. }
        ));
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
        // One session to the gateway, however it is spelled: JavaScript's whitespace (U+FEFF
        // included), case, the agent prefix.
        for spelling in [
            "agent:main:main-chat",
            r"\ufeffMain-Chat",
            r" MAIN-CHAT\u3000",
        ] {
            let Verdict::Limited { limited, .. } = inspect(&send(spelling), &s, &l) else {
                panic!("{spelling} must share the budget")
            };
            assert_eq!(limited.kind, LimitKind::ChatSendSession);
            let e = rate_limited_error(limited);
            assert!(e.is_retryable() && e.retry_after_ms.unwrap() > 0);
            assert_eq!(e.code, ErrorCode::Unavailable);
            assert_eq!(e.detail_code(), Some(DetailCode::RateLimited));
        }
        assert!(matches!(inspect(&send("other"), &s, &l), Verdict::Forward));
        // A key that cannot be resolved exactly is refused, not given a bucket of its own.
        assert!(matches!(
            inspect(&send(r"\ud800main-chat"), &s, &l),
            Verdict::Deny {
                denial: Denial::SessionKey(_),
                ..
            }
        ));
    }

    #[test]
    fn answers_echo_the_id_as_written() {
        let e = invalid_request_error();
        let text = error_response_json(r#""\ud800""#, &e);
        assert!(
            text.starts_with(r#"{"type":"res","id":"\ud800","ok":false"#),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&error_response("a\"b", &e)).unwrap();
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["error"]["code"], "INVALID_REQUEST");
    }
}
