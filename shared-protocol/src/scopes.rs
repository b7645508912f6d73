//! Operator scopes, their implications, and what each method requires.
//!
//! Mirrors `src/gateway/method-scopes.ts` and `src/shared/session-method-scopes-base.ts` of
//! openclaw 2026.9.6: a static table (`method_table`, generated) plus the dynamic rules
//! that look at params. A method the table does not know needs admin: fail closed.

use std::fmt;

use crate::js_json::{self, Value};
use crate::js_string::{is_js_space, js_lower, js_trim};

/// An operator scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `operator.read`
    Read,
    /// `operator.write` (implies read and talk)
    Write,
    /// `operator.admin` (implies everything)
    Admin,
    /// `operator.approvals`
    Approvals,
    /// `operator.questions`
    Questions,
    /// `operator.pairing`
    Pairing,
    /// `operator.talk`
    Talk,
    /// `operator.talk.secrets`
    TalkSecrets,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 8] = [
        Scope::Read,
        Scope::Write,
        Scope::Admin,
        Scope::Approvals,
        Scope::Questions,
        Scope::Pairing,
        Scope::Talk,
        Scope::TalkSecrets,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "operator.read",
            Scope::Write => "operator.write",
            Scope::Admin => "operator.admin",
            Scope::Approvals => "operator.approvals",
            Scope::Questions => "operator.questions",
            Scope::Pairing => "operator.pairing",
            Scope::Talk => "operator.talk",
            Scope::TalkSecrets => "operator.talk.secrets",
        }
    }

    /// Parses a wire name; `None` for anything else (dropped, never granted).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes (a bit set: copying and checking it costs nothing on the hot path).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u8);

impl ScopeSet {
    /// No scopes.
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Parses wire names, dropping unknown ones.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        names.into_iter().filter_map(Scope::parse).collect()
    }

    /// Adds a scope.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// Literally present (no implication).
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// True when this set satisfies `required`: admin satisfies everything; write satisfies read
    /// and talk (`docs/gateway/operator-scopes.md`).
    pub fn satisfies(self, required: Scope) -> bool {
        self.contains(Scope::Admin)
            || self.contains(required)
            || (matches!(required, Scope::Read | Scope::Talk) && self.contains(Scope::Write))
    }

    /// The scopes present in both.
    pub fn intersection(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }

    /// Each scope of `self` that `grant` satisfies (how a request is clamped to a grant).
    pub fn clamp_to(self, grant: ScopeSet) -> ScopeSet {
        self.iter().filter(|s| grant.satisfies(*s)).collect()
    }

    /// True when every scope of `self` is satisfied by `other`.
    pub fn is_satisfied_by(self, other: ScopeSet) -> bool {
        self.iter().all(|s| other.satisfies(s))
    }

    /// True when empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in [`Scope::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Wire names, in [`Scope::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::EMPTY;
        for s in iter {
            set.insert(s);
        }
        set
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Scope::as_str))
            .finish()
    }
}

/// A method's entry in the gateway's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodPolicy {
    /// Needs read.
    Read,
    /// Needs write.
    Write,
    /// Needs admin.
    Admin,
    /// Needs talk.
    Talk,
    /// Needs pairing.
    Pairing,
    /// Needs approvals.
    Approvals,
    /// Depends on params.
    Dynamic,
    /// For node-role clients; operators are refused.
    NodeRole,
}

/// What a call requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// An operator holding all of these scopes.
    Scopes(&'static [Scope]),
    /// A node-role client; an operator can never call it.
    NodeRole,
}

impl Requirement {
    /// Checks a grant; on refusal returns the first missing scope (`None` for node-role methods).
    ///
    /// # Errors
    /// The scope that is missing, as the gateway reports it in `details.missingScope`.
    pub fn check(self, granted: ScopeSet) -> Result<(), Option<Scope>> {
        match self {
            Requirement::NodeRole => Err(None),
            Requirement::Scopes(required) => {
                match required.iter().find(|s| !granted.satisfies(**s)) {
                    Some(missing) => Err(Some(*missing)),
                    None => Ok(()),
                }
            }
        }
    }
}

const READ: &[Scope] = &[Scope::Read];
const WRITE: &[Scope] = &[Scope::Write];
const ADMIN: &[Scope] = &[Scope::Admin];
const TALK: &[Scope] = &[Scope::Talk];
const PAIRING: &[Scope] = &[Scope::Pairing];
const APPROVALS: &[Scope] = &[Scope::Approvals];
const READ_TALK_SECRETS: &[Scope] = &[Scope::Read, Scope::TalkSecrets];
const PAIRING_ADMIN: &[Scope] = &[Scope::Pairing, Scope::Admin];
const WRITE_ADMIN: &[Scope] = &[Scope::Write, Scope::Admin];

/// What calling `method` with `params` (the raw JSON text of the request's params) requires.
/// Params are parsed only for the few methods whose requirement depends on them, as
/// `JSON.parse` reads them ([`crate::js_json`]); text that is not JSON counts as absent params.
/// A method outside the core table requires admin.
pub fn requirement(method: &str, params: Option<&str>) -> Requirement {
    let params = params.and_then(|p| js_json::parse(p).ok());
    core_requirement(method, params).unwrap_or(Requirement::Scopes(ADMIN))
}

/// [`requirement`] for a method of the gateway's core table, on params already read as
/// `JSON.parse` reads them; `None` for any other method (one lookup for both questions, on a
/// proxy's per-frame path).
pub fn core_requirement(method: &str, params: Option<Value<'_>>) -> Option<Requirement> {
    let scopes = match crate::method_table::core_method_policy(method)? {
        MethodPolicy::Read => READ,
        MethodPolicy::Write => WRITE,
        MethodPolicy::Admin => ADMIN,
        MethodPolicy::Talk => TALK,
        MethodPolicy::Pairing => PAIRING,
        MethodPolicy::Approvals => APPROVALS,
        MethodPolicy::NodeRole => return Some(Requirement::NodeRole),
        MethodPolicy::Dynamic => dynamic_requirement(method, params.filter(Value::is_object)),
    };
    Some(Requirement::Scopes(scopes))
}

/// True when `method` is in the gateway's core method table (anything else is a plugin method or
/// a typo; a proxy denies it unless its policy names it explicitly).
pub fn is_core_method(method: &str) -> bool {
    crate::method_table::core_method_policy(method).is_some()
}

const PATCH_MUTATIONS: &[&str] = &[
    "label",
    "autoLabel",
    "icon",
    "color",
    "category",
    "boardFace",
    "boardPresentation",
    "pinned",
    "archived",
    "unread",
    "model",
    "agentRuntime",
    "thinkingLevel",
    "fastMode",
    "permissionMode",
];
const PATCH_ENVELOPE: &[&str] = &[
    "key",
    "agentId",
    "expectedSessionId",
    "expectedLifecycleRevision",
    "expectedPermissionMode",
    "expectedMarkedUnreadAt",
];
const DELETE_WRITE_FIELDS: &[&str] = &[
    "key",
    "agentId",
    "deleteTranscript",
    "expectedSessionId",
    "archivedOnly",
];

/// The gateway's dynamic rules (`resolveDynamicLeastPrivilegeOperatorScopesForMethod`,
/// `src/gateway/method-scopes.ts`, and the session rules of
/// `src/shared/session-method-scopes-base.ts`). `params` is `Some` only for an object
/// (`isRecord`); every lookup takes the last duplicate, as `JSON.parse` does.
fn dynamic_requirement(method: &str, params: Option<Value<'_>>) -> &'static [Scope] {
    let field = |name: &str| params.and_then(|p| p.get(name));
    let is_true = |name: &str| field(name).is_some_and(|v| v.is_true());
    let has = |name: &str| params.is_some_and(|p| p.has(name));
    match method {
        "agent" => match field("message").and_then(|m| m.as_str()) {
            Some(m) if matches_reset(m.as_str()) => ADMIN,
            // Only after the handler's trim(): its scope check wants write, then the handler
            // refuses the reset without admin.
            Some(m) if matches_reset(js_trim(m.as_str())) => WRITE_ADMIN,
            _ => WRITE,
        },
        "talk.config" if is_true("includeSecrets") => READ_TALK_SECRETS,
        "talk.config" => READ,
        "environments.list"
            if field("runtimeId")
                .and_then(|r| r.as_str())
                .is_some_and(|r| !r.is_empty()) =>
        {
            WRITE
        }
        "environments.list" => READ,
        "channels.pairing.approve" if is_true("bootstrapCommandOwner") => PAIRING_ADMIN,
        "channels.pairing.approve" => PAIRING,
        "fs.listDir" if has("nodeId") => ADMIN,
        "sessions.patch" => match params {
            None => WRITE,
            Some(p) => patch_scope(p, PATCH_ENVELOPE),
        },
        "sessions.patchMany" => {
            match params.and_then(|p| p.get("patch")).filter(Value::is_object) {
                None => WRITE,
                Some(p) => patch_scope(p, &[]),
            }
        }
        "sessions.create" => {
            let incognito = |f| {
                field(f)
                    .and_then(|v| v.as_str())
                    .is_some_and(|k| is_incognito_key(k.as_str()))
            };
            let full = field("permissionMode").is_some_and(|v| v.str_equals("full"));
            if is_true("incognito")
                || incognito("key")
                || incognito("parentSessionKey")
                || has("execNode")
                || has("toolOverrides")
                || full
            {
                ADMIN
            } else {
                WRITE
            }
        }
        "sessions.delete" => match params {
            Some(p)
                if is_true("archivedOnly")
                    && p.members().all(|(k, _)| k.is_one_of(DELETE_WRITE_FIELDS)) =>
            {
                WRITE
            }
            _ => ADMIN,
        },
        // The gateway validates these params deeply and may grant write; we cannot, so an
        // operator without admin is refused here rather than trusted (fail closed).
        "sessions.dispatch" if has("deviceId") || is_true("autoDevice") => WRITE,
        "sessions.dispatch" => ADMIN,
        "sessions.move" => {
            let to_profile = field("target")
                .and_then(|t| t.get("kind"))
                .is_some_and(|k| k.str_equals("profile"));
            if to_profile { ADMIN } else { WRITE }
        }
        // node.invoke: which commands are admin-only lives in the gateway's node registry;
        // plugins.sessionAction: its scopes live in the plugin registry. Neither is known here.
        "node.invoke" | "plugins.sessionAction" => ADMIN,
        _ => WRITE,
    }
}

/// `sessions.patch` (and a `sessions.patchMany` patch): admin for `permissionMode: "full"`, a
/// `sandboxMode` key, or any key outside the write-scope mutations and `envelope`; one pass.
fn patch_scope(patch: Value<'_>, envelope: &[&str]) -> &'static [Scope] {
    let mut full = false;
    let mut admin_key = false;
    for (key, value) in patch.members() {
        if key.equals("permissionMode") {
            // The last duplicate is the one JSON.parse keeps.
            full = value.str_equals("full");
        } else if key.equals("sandboxMode")
            || !(key.is_one_of(envelope) || key.is_one_of(PATCH_MUTATIONS))
        {
            admin_key = true;
        }
    }
    if full || admin_key { ADMIN } else { WRITE }
}

/// `agent` with `/new` or `/reset`: `AGENT_SESSION_RESET_COMMAND_RE`
/// (`^\/(new|reset)(?:\s+([\s\S]*))?$`, `i`, `\s` being JavaScript's whitespace). The gateway's
/// scope check matches it on the message as sent; its handler (`prepareAgentContentPhase`,
/// `runAgentResetPhase`) trims the message with JavaScript's `trim()` and matches again.
fn matches_reset(message: &str) -> bool {
    let Some(rest) = message.strip_prefix('/') else {
        return false;
    };
    ["new", "reset"].into_iter().any(|cmd| {
        rest.get(..cmd.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(cmd))
            && rest[cmd.len()..].chars().next().is_none_or(is_js_space)
    })
}

/// `isIncognitoSessionKey`: the key JavaScript-trimmed and lower-cased matches
/// `^agent:[^:]+:(dashboard|subagent|internal-session-effects):incognito-[^:]+$`.
fn is_incognito_key(key: &str) -> bool {
    let key = js_lower(js_trim(key));
    let mut parts = key.splitn(4, ':');
    let (Some("agent"), Some(id), Some(kind), Some(tail)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !id.is_empty()
        && matches!(kind, "dashboard" | "subagent" | "internal-session-effects")
        && tail
            .strip_prefix("incognito-")
            .is_some_and(|t| !t.is_empty() && !t.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, params: &str) -> Requirement {
        requirement(method, Some(params))
    }

    const RW: ScopeSet = ScopeSet(0b11);

    #[test]
    fn implications() {
        let write = ScopeSet::from_iter([Scope::Write]);
        assert!(write.satisfies(Scope::Read) && write.satisfies(Scope::Talk));
        assert!(!write.satisfies(Scope::Admin) && !write.satisfies(Scope::Pairing));
        let admin = ScopeSet::from_iter([Scope::Admin]);
        assert!(Scope::ALL.iter().all(|s| admin.satisfies(*s)));
        let asked = ScopeSet::from_names(["operator.admin", "operator.read", "operator.bogus"]);
        assert_eq!(asked.clamp_to(write), ScopeSet::from_iter([Scope::Read]));
        assert_eq!(format!("{RW:?}"), r#"{"operator.read", "operator.write"}"#);
    }

    #[test]
    fn static_table_matches_the_reference_table() {
        for (method, scope) in [
            ("health", Scope::Read),
            ("agents.list", Scope::Read),
            ("chat.history", Scope::Read),
            ("sessions.describe", Scope::Read),
            ("config.get", Scope::Read),
            ("chat.send", Scope::Write),
            ("chat.abort", Scope::Write),
            ("sessions.abort", Scope::Write),
            ("agent.wait", Scope::Write),
            ("sessions.reset", Scope::Admin),
            ("chat.inject", Scope::Admin),
            ("config.set", Scope::Admin),
            ("update.run", Scope::Admin),
            ("no.such.method", Scope::Admin),
        ] {
            let Requirement::Scopes(required) = requirement(method, None) else {
                panic!("{method} is node-only")
            };
            assert_eq!(required, &[scope], "{method}");
        }
        assert_eq!(requirement("node.event", None), Requirement::NodeRole);
        assert!(is_core_method("chat.send") && !is_core_method("no.such.method"));
        assert_eq!(
            requirement("node.event", None).check(ScopeSet::from_iter([Scope::Admin])),
            Err(None)
        );
    }

    #[test]
    fn dynamic_rules() {
        let w = Requirement::Scopes(WRITE);
        let a = Requirement::Scopes(ADMIN);
        assert_eq!(
            req(
                "sessions.patch",
                r#"{"key":"k","archived":true,"expectedSessionId":"s"}"#
            ),
            w
        );
        assert_eq!(
            req("sessions.patch", r#"{"key":"k","permissionMode":"full"}"#),
            a
        );
        assert_eq!(req("sessions.patch", r#"{"key":"k","sandboxMode":"x"}"#), a);
        assert_eq!(
            req("sessions.patch", r#"{"key":"k","systemPrompt":"x"}"#),
            a
        );
        assert_eq!(
            req(
                "sessions.delete",
                r#"{"key":"k","archivedOnly":true,"expectedSessionId":"s"}"#
            ),
            w
        );
        assert_eq!(req("sessions.delete", r#"{"key":"k"}"#), a);
        assert_eq!(
            req(
                "sessions.delete",
                r#"{"key":"k","archivedOnly":true,"force":true}"#
            ),
            a
        );
        assert_eq!(requirement("sessions.delete", None), a);
        assert_eq!(req("agent", r#"{"message":"/reset"}"#), a);
        assert_eq!(req("agent", r#"{"message":"/NEW please"}"#), a);
        assert_eq!(req("agent", r#"{"message":"/newer"}"#), w);
        assert_eq!(req("agent", r#"{"message":"hello"}"#), w);
        assert_eq!(
            req(
                "sessions.create",
                r#"{"key":"agent:main:dashboard:incognito-1"}"#
            ),
            a
        );
        assert_eq!(req("sessions.create", r#"{"key":"agent:main:x"}"#), w);
        assert_eq!(
            req("talk.config", r#"{"includeSecrets":true}"#),
            Requirement::Scopes(READ_TALK_SECRETS)
        );
        assert_eq!(req("fs.listDir", r#"{"nodeId":"n"}"#), a);
        assert_eq!(req("sessions.patch", "[1]"), w);
        assert_eq!(
            req(
                "plugins.sessionAction",
                r#"{"pluginId":"p","actionId":"a"}"#
            ),
            a
        );
    }

    /// Params the gateway reads with `JSON.parse` and serde would refuse (a lone surrogate,
    /// nesting past 128) are still read: the param-dependent rule applies, not the cheaper one.
    #[test]
    fn dynamic_rules_read_params_as_json_parse_does() {
        let a = Requirement::Scopes(ADMIN);
        let secrets = Requirement::Scopes(READ_TALK_SECRETS);
        let deep = format!("{}0{}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<(&str, String, Requirement)> = vec![
            (
                "talk.config",
                r#"{"x":"\ud800","includeSecrets":true}"#.into(),
                secrets,
            ),
            (
                "talk.config",
                format!(r#"{{"x":{deep},"includeSecrets":true}}"#),
                secrets,
            ),
            (
                "sessions.patch",
                r#"{"key":"\udfff","permissionMode":"full"}"#.into(),
                a,
            ),
            (
                "sessions.create",
                format!(r#"{{"n":{deep},"execNode":null}}"#),
                a,
            ),
            ("fs.listDir", r#"{"path":"\ud83d","nodeId":"n"}"#.into(), a),
            // Duplicates: the last one counts, in both directions.
            (
                "talk.config",
                r#"{"includeSecrets":false,"includeSecrets":true}"#.into(),
                secrets,
            ),
            (
                "talk.config",
                r#"{"includeSecrets":true,"includeSecrets":false}"#.into(),
                Requirement::Scopes(READ),
            ),
            (
                "sessions.patch",
                r#"{"key":"k","permissionMode":"full","permissionMode":"ask"}"#.into(),
                Requirement::Scopes(WRITE),
            ),
            (
                "sessions.patch",
                r#"{"key":"k","permissionMode":"ask","permissionMode":"full"}"#.into(),
                a,
            ),
            // Escaped keys are the same keys; __proto__ is an own key.
            ("fs.listDir", r#"{"node\u0049d":"n"}"#.into(), a),
            ("sessions.patch", r#"{"key":"k","__proto__":{}}"#.into(), a),
        ];
        for (method, params, want) in cases {
            assert_eq!(req(method, &params), want, "{method} {params}");
        }
    }

    /// `/reset` as the gateway sees it: JavaScript's `\s` (U+FEFF included) after the command,
    /// and the handler's `trim()` before it.
    #[test]
    fn reset_commands_use_javascript_whitespace() {
        let a = Requirement::Scopes(ADMIN);
        let w = Requirement::Scopes(WRITE);
        let wa = Requirement::Scopes(WRITE_ADMIN);
        for (message, want) in [
            ("/reset\u{feff}", a),
            ("/reset\u{feff}now", a),
            (" /reset", wa),
            ("\u{feff}/new", wa),
            ("\u{2028}/RESET\u{3000}", wa),
            ("/reset\u{85}", w),
            ("\u{85}/reset", w),
            ("/resetx", w),
            ("x /reset", w),
        ] {
            let params = serde_json::json!({ "message": message }).to_string();
            assert_eq!(req("agent", &params), want, "{message:?}");
        }
        assert_eq!(req("agent", r#"{"message":"/reset\ud800"}"#), w);
        assert_eq!(req("agent", r#"{"message":"\ud800/reset"}"#), w);
    }

    #[test]
    fn check_reports_the_missing_scope() {
        assert_eq!(
            requirement("sessions.reset", None).check(RW),
            Err(Some(Scope::Admin))
        );
        assert_eq!(requirement("chat.send", None).check(RW), Ok(()));
        assert_eq!(
            requirement("chat.send", None).check(ScopeSet::from_iter([Scope::Read])),
            Err(Some(Scope::Write))
        );
        assert_eq!(
            req("talk.config", r#"{"includeSecrets":true}"#).check(RW),
            Err(Some(Scope::TalkSecrets))
        );
    }

    /// One lookup answers both questions: a core method's requirement, or "not core".
    #[test]
    fn core_requirement_is_requirement_for_core_methods_only() {
        for method in [
            "health",
            "chat.send",
            "sessions.reset",
            "node.event",
            "sessions.patch",
        ] {
            assert!(is_core_method(method), "{method}");
            assert_eq!(
                core_requirement(method, js_json::parse(r#"{"key":"k"}"#).ok()),
                Some(requirement(method, Some(r#"{"key":"k"}"#))),
                "{method}"
            );
        }
        for method in ["plugin.thing", "Health", ""] {
            assert!(!is_core_method(method), "{method}");
            assert_eq!(core_requirement(method, None), None, "{method}");
            assert_eq!(requirement(method, None), Requirement::Scopes(ADMIN));
        }
    }
}
