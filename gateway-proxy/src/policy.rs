//! Per-credential policy: which scopes a credential holds and which methods it may call.
//!
//! The decision for a request is, in order: deny list, allow list, unknown method, then the
//! gateway's own scope rule ([`shared_protocol::scopes::requirement`], dynamic rules included)
//! against the connection's granted scopes. A denial is answered by the proxy in the gateway's
//! own error shape and never reaches the gateway.

use std::collections::HashSet;

use shared_protocol::js_json::Value;
use shared_protocol::js_string::JsStr;
use shared_protocol::scopes::core_requirement;
use shared_protocol::{DetailCode, ErrorCode, ErrorShape, Scope, ScopeSet};

use crate::chat_session::KeyError;
use crate::config::{CredentialConfig, scope_set};

/// What a credential may do.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Scopes granted at most; a connect asking for more is clamped to these.
    pub grant: ScopeSet,
    allow: Option<HashSet<String>>,
    deny: HashSet<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The connection lacks this scope.
    MissingScope(Scope),
    /// A node-role method; operators can never call it.
    NodeRole,
    /// On the credential's deny list.
    DenyList,
    /// The credential has an allow list and the method is not on it.
    NotAllowListed,
    /// Not in the gateway's core table and not explicitly allowed (a method name holding a lone
    /// surrogate is always this: no list can name it exactly).
    UnknownMethod,
    /// A `chat.send` session key the proxy cannot resolve as the gateway would.
    SessionKey(KeyError),
}

impl Denial {
    /// Closed label value for metrics and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::MissingScope(_) => "missing_scope",
            Denial::NodeRole => "node_role",
            Denial::DenyList => "deny_list",
            Denial::NotAllowListed => "not_allow_listed",
            Denial::UnknownMethod => "unknown_method",
            Denial::SessionKey(_) => "session_key",
        }
    }

    /// Every reason (to pre-register metric series).
    pub const ALL: [Denial; 6] = [
        Denial::MissingScope(Scope::Admin),
        Denial::NodeRole,
        Denial::DenyList,
        Denial::NotAllowListed,
        Denial::UnknownMethod,
        Denial::SessionKey(KeyError::NotExact),
    ];

    /// The error the client receives, in the gateway's shape.
    pub fn to_error(self, method: &str) -> ErrorShape {
        let not_allowed = |reason: &str, message: String| ErrorShape {
            details: Some(serde_json::json!({
                "code": DetailCode::MethodNotAllowed.as_str(),
                "method": method,
                "reason": reason,
            })),
            ..ErrorShape::new(ErrorCode::Forbidden, message)
        };
        match self {
            Denial::MissingScope(scope) => ErrorShape::missing_scope(scope.as_str()),
            Denial::NodeRole => not_allowed(
                "node-role",
                format!("method {method} is for node-role clients"),
            ),
            Denial::DenyList => not_allowed(
                "deny-list",
                format!("method {method} is not allowed by proxy policy"),
            ),
            Denial::NotAllowListed => not_allowed(
                "not-allow-listed",
                format!("method {method} is not allowed by proxy policy"),
            ),
            Denial::UnknownMethod => not_allowed(
                "unknown-method",
                format!("unknown method {method} is not allowed by proxy policy"),
            ),
            Denial::SessionKey(e) => ErrorShape {
                details: Some(serde_json::json!({ "reason": "session-key-unresolvable" })),
                ..ErrorShape::new(
                    ErrorCode::InvalidRequest,
                    format!("invalid chat.send params: {}", e.explain()),
                )
            },
        }
    }
}

impl Policy {
    /// Builds a policy from a credential's config.
    ///
    /// # Errors
    /// A readable reason for an unknown scope.
    pub fn from_config(c: &CredentialConfig) -> Result<Self, String> {
        Ok(Self {
            grant: scope_set(&c.scopes)?,
            allow: c
                .allow_methods
                .as_ref()
                .map(|m| m.iter().cloned().collect()),
            deny: c.deny_methods.iter().cloned().collect(),
        })
    }

    /// A policy from parts (tests, tools).
    pub fn new(grant: ScopeSet, allow: Option<&[&str]>, deny: &[&str]) -> Self {
        Self {
            grant,
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Decides one request on a connection holding `scopes`. Params are looked at only for the
    /// few methods whose requirement depends on them.
    ///
    /// # Errors
    /// The [`Denial`] when refused.
    pub fn check(
        &self,
        method: &JsStr<'_>,
        params: Option<Value<'_>>,
        scopes: ScopeSet,
    ) -> Result<(), Denial> {
        // A method holding a lone surrogate is no name on any list and no core method.
        let exact = method.lossless.then(|| method.as_str());
        if exact.is_some_and(|m| self.deny.contains(m)) {
            return Err(Denial::DenyList);
        }
        let allow_listed = match &self.allow {
            Some(allow) if !exact.is_some_and(|m| allow.contains(m)) => {
                return Err(Denial::NotAllowListed);
            }
            Some(_) => true,
            None => false,
        };
        let Some(requirement) = exact.and_then(|m| core_requirement(m, params)) else {
            // Plugin methods: the gateway enforces its own scope for them on our clamped
            // upstream session; the proxy only lets through what the policy names.
            return if allow_listed {
                Ok(())
            } else {
                Err(Denial::UnknownMethod)
            };
        };
        match requirement.check(scopes) {
            Ok(()) => Ok(()),
            Err(Some(scope)) => Err(Denial::MissingScope(scope)),
            Err(None) => Err(Denial::NodeRole),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_protocol::js_json;

    fn chk(p: &Policy, method: &str, params: Option<&str>, held: ScopeSet) -> Result<(), Denial> {
        let params = params.map(|t| js_json::parse(t).unwrap());
        p.check(&JsStr::exact(method), params, held)
    }

    const R: Scope = Scope::Read;
    const W: Scope = Scope::Write;
    const A: Scope = Scope::Admin;

    /// The method -> scope matrix, checked against read-only, read+write and admin connections.
    #[test]
    fn verdict_table_over_the_scope_matrix() {
        let read = ScopeSet::from_iter([R]);
        let rw = ScopeSet::from_iter([R, W]);
        let admin = ScopeSet::from_iter([A]);
        let p = Policy::new(admin, None, &[]);
        // (method, params, needed scope)
        let table: &[(&str, Option<&str>, Scope)] = &[
            ("health", None, R),
            ("status", None, R),
            ("agents.list", None, R),
            ("models.list", None, R),
            ("config.get", None, R),
            ("chat.history", None, R),
            ("sessions.list", None, R),
            ("sessions.describe", None, R),
            ("chat.send", None, W),
            ("chat.abort", None, W),
            ("sessions.send", None, W),
            ("sessions.abort", None, W),
            ("agent.wait", None, W),
            ("agent", Some(r#"{"message":"hi"}"#), W),
            ("agent", Some(r#"{"message":"/reset"}"#), A),
            ("sessions.patch", Some(r#"{"key":"k","archived":true}"#), W),
            (
                "sessions.patch",
                Some(r#"{"key":"k","permissionMode":"full"}"#),
                A,
            ),
            (
                "sessions.delete",
                Some(r#"{"key":"k","archivedOnly":true}"#),
                W,
            ),
            ("sessions.delete", Some(r#"{"key":"k"}"#), A),
            ("sessions.create", Some(r#"{"key":"agent:main:x"}"#), W),
            ("sessions.create", Some(r#"{"incognito":true}"#), A),
            ("sessions.reset", Some(r#"{"key":"k"}"#), A),
            ("chat.inject", None, A),
            ("config.set", None, A),
            ("config.apply", None, A),
            ("config.patch", None, A),
            ("update.run", None, A),
            ("wizard.start", None, A),
            ("exec.approvals.set", None, A),
        ];
        for (method, params, needed) in table {
            for (held, name) in [(read, "read"), (rw, "rw"), (admin, "admin")] {
                let verdict = chk(&p, method, *params, held);
                if held.satisfies(*needed) {
                    assert_eq!(verdict, Ok(()), "{method} with {name}");
                } else {
                    assert_eq!(
                        verdict,
                        Err(Denial::MissingScope(*needed)),
                        "{method} with {name}"
                    );
                }
            }
        }
    }

    #[test]
    fn lists_and_unknown_methods() {
        let rw = ScopeSet::from_iter([R, W]);
        let p = Policy::new(rw, None, &["chat.send"]);
        assert_eq!(chk(&p, "chat.send", None, rw), Err(Denial::DenyList));
        assert_eq!(chk(&p, "health", None, rw), Ok(()));
        assert_eq!(
            chk(&p, "plugin.thing", None, ScopeSet::from_iter([A])),
            Err(Denial::UnknownMethod)
        );
        assert_eq!(chk(&p, "node.event", None, rw), Err(Denial::NodeRole));

        let p = Policy::new(rw, Some(&["health", "plugin.thing"]), &[]);
        assert_eq!(chk(&p, "health", None, rw), Ok(()));
        assert_eq!(chk(&p, "plugin.thing", None, rw), Ok(()));
        assert_eq!(chk(&p, "status", None, rw), Err(Denial::NotAllowListed));
        // An allow list never widens the scope rule for core methods.
        let p = Policy::new(rw, Some(&["sessions.reset"]), &[]);
        assert_eq!(
            chk(&p, "sessions.reset", None, rw),
            Err(Denial::MissingScope(A))
        );
    }

    /// A method name holding a lone surrogate is never on a list, so never allowed.
    #[test]
    fn inexact_method_names_match_no_list() {
        let rw = ScopeSet::from_iter([R, W]);
        let lossy = JsStr {
            text: "x\u{fffd}".into(),
            lossless: false,
        };
        let p = Policy::new(rw, Some(&["x\u{fffd}"]), &[]);
        assert_eq!(p.check(&lossy, None, rw), Err(Denial::NotAllowListed));
        let p = Policy::new(ScopeSet::from_iter([A]), None, &["x\u{fffd}"]);
        assert_eq!(p.check(&lossy, None, rw), Err(Denial::UnknownMethod));
    }

    #[test]
    fn errors_have_the_gateway_shape() {
        let e = Denial::MissingScope(A).to_error("sessions.reset");
        assert_eq!(e, ErrorShape::missing_scope("operator.admin"));
        let e = Denial::DenyList.to_error("chat.send");
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(e.detail_code(), Some(DetailCode::MethodNotAllowed));
        assert_eq!(
            Denial::UnknownMethod.to_error("x").reason(),
            Some("unknown-method")
        );
    }
}
