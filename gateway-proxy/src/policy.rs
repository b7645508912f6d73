//! Per-credential policy: which scopes a credential holds and which methods it may call.
//!
//! The decision for a request is, in order: deny list, allow list, unknown method, then the
//! gateway's own scope rule ([`shared_protocol::scopes::requirement`], dynamic rules included)
//! against the connection's granted scopes. A denial is answered by the proxy in the gateway's
//! own error shape and never reaches the gateway.

use std::collections::HashSet;

use shared_protocol::scopes::core_requirement;
use shared_protocol::{DetailCode, ErrorCode, ErrorShape, Scope, ScopeSet};

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
    /// Not in the gateway's core table and not explicitly allowed.
    UnknownMethod,
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
        }
    }

    /// Every reason (to pre-register metric series).
    pub const ALL: [Denial; 5] = [
        Denial::MissingScope(Scope::Admin),
        Denial::NodeRole,
        Denial::DenyList,
        Denial::NotAllowListed,
        Denial::UnknownMethod,
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

    /// Decides one request on a connection holding `scopes`. Params are parsed only for the few
    /// methods whose requirement depends on them.
    ///
    /// # Errors
    /// The [`Denial`] when refused.
    pub fn check(
        &self,
        method: &str,
        params: Option<&str>,
        scopes: ScopeSet,
    ) -> Result<(), Denial> {
        if self.deny.contains(method) {
            return Err(Denial::DenyList);
        }
        let allow_listed = match &self.allow {
            Some(allow) if !allow.contains(method) => return Err(Denial::NotAllowListed),
            Some(_) => true,
            None => false,
        };
        let Some(requirement) = core_requirement(method, params) else {
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
                let verdict = p.check(method, *params, held);
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
        assert_eq!(p.check("chat.send", None, rw), Err(Denial::DenyList));
        assert_eq!(p.check("health", None, rw), Ok(()));
        assert_eq!(
            p.check("plugin.thing", None, ScopeSet::from_iter([A])),
            Err(Denial::UnknownMethod)
        );
        assert_eq!(p.check("node.event", None, rw), Err(Denial::NodeRole));

        let p = Policy::new(rw, Some(&["health", "plugin.thing"]), &[]);
        assert_eq!(p.check("health", None, rw), Ok(()));
        assert_eq!(p.check("plugin.thing", None, rw), Ok(()));
        assert_eq!(p.check("status", None, rw), Err(Denial::NotAllowListed));
        // An allow list never widens the scope rule for core methods.
        let p = Policy::new(rw, Some(&["sessions.reset"]), &[]);
        assert_eq!(
            p.check("sessions.reset", None, rw),
            Err(Denial::MissingScope(A))
        );
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
