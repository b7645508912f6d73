//! Reads a client frame's request envelope exactly as the gateway will: `JSON.parse`, then its
//! `RequestFrameSchema` (a closed object: `type: "req"`, non-empty string `id` and `method`,
//! optional `params`, `traceparent` (a string of at most 128 characters) and `expectedProfileId`
//! (1 to 128 characters); nothing else).
//!
//! The [request scanner](crate::request_scan) answers first, for the shape clients send; it
//! answers only on text where its reading and `JSON.parse`'s agree (checked by a property test
//! below). Everything else is read by [`shared_protocol::js_json`], which reads any text the
//! way `JSON.parse` does: lone surrogates, any depth, duplicate keys (the last one wins),
//! `__proto__` as an ordinary key. A frame is never read more leniently or strictly than the
//! gateway reads it, so a decision taken here is a decision about what the gateway will do.

use shared_protocol::js_json::{self, Kind, Value};
use shared_protocol::js_string::JsStr;

use crate::request_scan::scan_request;

/// A request, as the gateway will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The JSON text of the `id` string, quotes included: answers echo it byte for byte (it may
    /// hold escapes, lone surrogates among them, that a Rust string could not).
    pub id_json: &'a str,
    /// The method.
    pub method: JsStr<'a>,
    /// `params` when present (`null` included).
    pub params: Option<Value<'a>>,
}

/// What a client text frame is to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<'a> {
    /// A request frame.
    Request(Request<'a>),
    /// JSON, but not a request frame: the gateway answers `INVALID_REQUEST` with the frame's
    /// `id` (its JSON text, whatever its type but null) or `"invalid"`.
    NotRequest {
        /// The JSON text of the object's `id` member, if it has one.
        id_json: Option<&'a str>,
    },
    /// Not JSON: the gateway logs it and answers nothing.
    NotJson,
}

/// The members `RequestFrameSchema` allows.
const REQUEST_KEYS: &[&str] = &[
    "type",
    "id",
    "method",
    "params",
    "traceparent",
    "expectedProfileId",
];
/// `traceparent`'s and `expectedProfileId`'s `maxLength`.
const MAX_ENVELOPE_STRING: usize = 128;

/// Reads one client text frame.
pub fn read_request(text: &str) -> Read<'_> {
    if let Some(r) = scan_request(text) {
        // The scanner only answers for a plain (escape-free) id: its literal is the id quoted.
        let id_json = id_literal(text, r.id);
        return Read::Request(Request {
            id_json,
            method: JsStr::exact(r.method),
            params: r.params.map(Value::assume_valid),
        });
    }
    read_request_fully(text)
}

/// Reads one client text frame without the fast path: what [`read_request`] gives whenever the
/// scanner does not answer (for tests that hold the two readings side by side).
pub fn read_request_fully(text: &str) -> Read<'_> {
    match js_json::parse(text) {
        Ok(root) => read_envelope(root),
        Err(_) => Read::NotJson,
    }
}

/// The quoted literal around `id` (a sub-slice of `text` the scanner returned).
fn id_literal<'a>(text: &'a str, id: &'a str) -> &'a str {
    let start = (id.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    text.get(start.saturating_sub(1)..start + id.len() + 1)
        .unwrap_or(id)
}

fn read_envelope(root: Value<'_>) -> Read<'_> {
    fn string<'a>(v: Option<Value<'a>>) -> Option<JsStr<'a>> {
        v.and_then(|v| v.as_str())
    }
    let (mut kind, mut id, mut method, mut params) = (None, None, None, None);
    let (mut traceparent, mut profile) = (None, None);
    let mut closed = root.is_object();
    for (key, value) in root.members() {
        // Later duplicates replace earlier ones, as JSON.parse defines them.
        let slot = match REQUEST_KEYS.iter().position(|k| key.equals(k)) {
            Some(0) => &mut kind,
            Some(1) => &mut id,
            Some(2) => &mut method,
            Some(3) => &mut params,
            Some(4) => &mut traceparent,
            Some(5) => &mut profile,
            _ => {
                closed = false;
                continue;
            }
        };
        *slot = Some(value);
    }
    // The gateway answers with `parsed?.id ?? "invalid"`: a null id is no id.
    let not_request = Read::NotRequest {
        id_json: id.filter(|v| v.kind() != Kind::Null).map(|v| v.raw()),
    };
    let bounded = |v: Option<Value<'_>>, min: usize| {
        v.is_none_or(|v| {
            v.as_str()
                .is_some_and(|s| (min..=MAX_ENVELOPE_STRING).contains(&s.code_points()))
        })
    };
    if !closed
        || !kind.is_some_and(|k| k.str_equals("req"))
        || !bounded(traceparent, 0)
        || !bounded(profile, 1)
    {
        return not_request;
    }
    let (Some(id_value), Some(method)) = (id, string(method)) else {
        return not_request;
    };
    if string(id).is_none_or(|s| s.is_empty()) || method.is_empty() {
        return not_request;
    }
    Read::Request(Request {
        id_json: id_value.raw(),
        method,
        params,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn request(text: &str) -> Request<'_> {
        match read_request(text) {
            Read::Request(r) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_requests_as_the_gateway_does() {
        let r = request(r#"{"type":"req","id":"7","method":"health","params":{"a":1}}"#);
        assert_eq!(
            (r.id_json, r.method.as_str(), r.params.map(|p| p.raw())),
            (r#""7""#, "health", Some(r#"{"a":1}"#))
        );
        // Escapes, lone surrogates, depth, duplicates: all read (the scanner gives up on them).
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let text = format!(
            r#"{{"type":"req","id":"\ud800","method":"sessions\u002epatch","params":{{"d":{deep},"permissionMode":"full"}}}}"#
        );
        let r = request(&text);
        assert_eq!(
            (r.id_json, r.method.as_str()),
            (r#""\ud800""#, "sessions.patch")
        );
        assert!(
            r.params
                .unwrap()
                .get("permissionMode")
                .unwrap()
                .str_equals("full")
        );
        let r = request(r#"{"type":"req","id":"1","method":"health","method":"sessions.reset"}"#);
        assert!(r.method.equals("sessions.reset"));
        let r = request(
            r#"{"type":"req","id":"1","method":"m","traceparent":"00-x","expectedProfileId":"p"}"#,
        );
        assert!(r.method.equals("m"));
        let r = request(r#"{"type":"req","id":"1","method":"m","params":null}"#);
        assert_eq!(r.params, None);
    }

    #[test]
    fn what_the_gateway_refuses_is_not_a_request() {
        for (text, id) in [
            (r#"["req","1","health"]"#, None),
            (
                r#"{"type":"req","id":"1","method":"m","extra":0}"#,
                Some(r#""1""#),
            ),
            (r#"{"type":"req","id":7,"method":"m"}"#, Some("7")),
            (r#"{"type":"req","id":"","method":"m"}"#, Some(r#""""#)),
            (r#"{"type":"req","id":"1","method":""}"#, Some(r#""1""#)),
            (
                r#"{"type":"req","id":"1","method":"m","type":"res"}"#,
                Some(r#""1""#),
            ),
            (
                r#"{"type":"req","id":"1","method":"m","traceparent":1}"#,
                Some(r#""1""#),
            ),
            (
                r#"{"type":"req","id":"1","method":"m","expectedProfileId":""}"#,
                Some(r#""1""#),
            ),
            ("null", None),
            ("\"req\"", None),
        ] {
            assert_eq!(
                read_request(text),
                Read::NotRequest { id_json: id },
                "{text}"
            );
        }
        let long = format!(
            r#"{{"type":"req","id":"1","method":"m","traceparent":"{}"}}"#,
            "é".repeat(129)
        );
        assert!(matches!(read_request(&long), Read::NotRequest { .. }));
        for text in ["\u{feff}{}", "{\"type\":\"req\"", "", "{} {}"] {
            assert_eq!(read_request(text), Read::NotJson, "{text:?}");
        }
    }

    /// Requests, mostly in the shape clients send, with now and then an escape, a duplicate, an
    /// extra member, whitespace or damage.
    fn framish() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            6 => Just("\"health\"".to_string()),
            1 => Just("\"\"".to_string()),
            1 => Just("\"sessions\\u002ereset\"".to_string()),
            1 => Just("\"\\ud800\"".to_string()),
            1 => Just("3".to_string()),
        ];
        let params = prop_oneof![
            Just("{}".to_string()),
            Just("null".to_string()),
            Just("{\"a\":[1,{\"b\":\"\\ud800\"}],\"a\":true}".to_string()),
            Just("[]".to_string()),
        ];
        let extra = prop_oneof![
            Just(String::new()),
            Just(",\"x\":1".to_string()),
            Just(",\"method\":\"m2\"".to_string()),
            Just(",\"traceparent\":\"t\"".to_string()),
        ];
        (
            name.clone(),
            name,
            prop::option::of(params),
            extra,
            "[ ]{0,1}",
            any::<prop::sample::Index>(),
            0usize..8,
        )
            .prop_map(|(id, method, params, extra, ws, at, damage)| {
                let params = params.map_or(String::new(), |p| format!(",{ws}\"params\":{p}"));
                let mut t =
                    format!(r#"{{"type":"req",{ws}"id":{id},"method":{method}{params}{extra}}}"#);
                if damage == 0 {
                    let cut = at.index(t.len() + 1);
                    if t.is_char_boundary(cut) {
                        t.truncate(cut);
                    }
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whenever the fast scanner answers, JSON.parse's reading gives the same request.
        #[test]
        fn the_scanner_never_disagrees_with_json_parse(text in framish()) {
            if scan_request(&text).is_some() {
                let fast = read_request(&text);
                let slow = read_request_fully(&text);
                match (fast, slow) {
                    (Read::Request(f), Read::Request(s)) => {
                        prop_assert_eq!(f.id_json, s.id_json);
                        prop_assert_eq!(&f.method, &s.method);
                        // Absent and null params are the same to every rule.
                        fn p<'a>(r: &Request<'a>) -> Option<&'a str> {
                            r.params.map(|p| p.raw()).filter(|p| *p != "null")
                        }
                        prop_assert_eq!(p(&f), p(&s));
                    }
                    (f, s) => prop_assert!(false, "{:?} vs {:?} on {}", f, s, text),
                }
            }
        }
    }
}
