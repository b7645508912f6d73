//! The fast path for reading a client request's envelope: one pass over the text that validates
//! it as JSON and picks out `id`, `method` and the raw `params`, for the request shape clients
//! actually send. It is an optimisation only, never an authority: whenever the text steps
//! outside that shape (escapes in a key or in `type`/`id`/`method`, a duplicated field, any
//! member but those four, a lone surrogate, deep nesting, anything unusual) it gives up, and
//! [`request_read`](crate::request_read) reads the frame as `JSON.parse` does. What it does
//! return is what both serde and `JSON.parse` would: property tests check it on every input it
//! accepts (here against serde, in `request_read` against the `JSON.parse` reading).
//!
//! Why: serde's envelope parse was a fifth of the relay's userland time per request (its
//! field visitors and buffering, for a 190-byte frame), and the proxy runs it on every frame.

/// The fields of a request the inspector decides on, borrowed from the frame's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedRequest<'a> {
    /// The request id (non-empty).
    pub id: &'a str,
    /// The method (non-empty).
    pub method: &'a str,
    /// The raw text of `params`, without surrounding whitespace (`None` when absent or null).
    pub params: Option<&'a str>,
}

/// Deepest nesting the scanner follows inside a value before giving up (giving up only means
/// the full reading decides).
const MAX_DEPTH: usize = 32;

/// Scans `text` as a request frame; `None` means "read it fully".
pub fn scan_request(text: &str) -> Option<ScannedRequest<'_>> {
    scan_canonical(text).or_else(|| scan_any_order(text))
}

/// The shape clients serialise (the order of OpenClaw's frames on the wire, and of ours):
/// `{"type":"req","id":"…","method":"…"}` with `,"params":…` before the brace or not, and no
/// whitespace. Three comparisons replace reading and matching four keys; anything else goes to
/// [`scan_any_order`].
fn scan_canonical(text: &str) -> Option<ScannedRequest<'_>> {
    let mut s = Scanner::new(text);
    s.literal(r#"{"type":"req","id":""#)?;
    let id = s.plain_rest()?;
    s.literal(r#","method":""#)?;
    let method = s.plain_rest()?;
    let params = if s.peek()? == b'}' {
        None
    } else {
        s.literal(r#","params":"#)?;
        let start = s.pos;
        s.value(0)?;
        Some(&text[start..s.pos])
    };
    s.expect(b'}')?;
    if s.pos != s.bytes.len() || id.is_empty() || method.is_empty() {
        return None;
    }
    Some(ScannedRequest {
        id,
        method,
        params: params.filter(|p| *p != "null"),
    })
}

/// Any member order and whitespace (no other members).
fn scan_any_order(text: &str) -> Option<ScannedRequest<'_>> {
    let mut s = Scanner::new(text);
    let (mut kind, mut id, mut method, mut params) = (None, None, None, None);
    s.skip_ws();
    if s.peek()? != b'{' {
        return None;
    }
    s.sequence(b'}', |s| {
        let key = s.plain_string()?;
        s.colon()?;
        match key {
            "type" => set_once(&mut kind, s.plain_string()?),
            "id" => set_once(&mut id, s.plain_string()?),
            "method" => set_once(&mut method, s.plain_string()?),
            "params" => {
                let start = s.pos;
                s.value(0)?;
                set_once(&mut params, &text[start..s.pos])
            }
            // Any other member (the gateway's schema allows two rare ones, refuses the rest):
            // the full reading decides.
            _ => None,
        }
    })?;
    s.skip_ws();
    if s.pos != s.bytes.len() || kind? != "req" {
        return None;
    }
    let (id, method) = (
        id.filter(|v| !v.is_empty())?,
        method.filter(|v| !v.is_empty())?,
    );
    Some(ScannedRequest {
        id,
        method,
        params: params.filter(|p| *p != "null"),
    })
}

/// Stores a field's value; a second occurrence gives up (serde rejects duplicate fields).
fn set_once<'a>(slot: &mut Option<&'a str>, value: &'a str) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Moves to the next byte that ends a run of plain string bytes: a quote, a backslash or a
    /// control character (or to the end). Eight bytes at a time, as serde_json does.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let stop = has_zero(v ^ (ONES * u64::from(b'"')))
                | has_zero(v ^ (ONES * u64::from(b'\\')))
                | (v.wrapping_sub(ONES * 0x20) & !v & HIGH);
            if stop != 0 {
                // The lowest flagged byte is exact (only bytes above it can be false alarms).
                self.pos += (stop.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(b) = self.peek() {
            if b == b'"' || b == b'\\' || b < 0x20 {
                return;
            }
            self.pos += 1;
        }
    }

    /// A string without escapes, returned without its quotes.
    fn plain_string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        self.plain_rest()
    }

    /// The rest of a string without escapes whose opening quote was read: its text, and the
    /// closing quote read.
    fn plain_rest(&mut self) -> Option<&'a str> {
        let start = self.pos;
        self.skip_plain();
        match self.next()? {
            b'"' => self.text.get(start..self.pos - 1),
            _ => None,
        }
    }

    /// Any string, escapes checked.
    fn string(&mut self) -> Option<()> {
        self.expect(b'"')?;
        loop {
            self.skip_plain();
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.text.get(self.pos..self.pos + 4)?;
                        let unit = u16::from_str_radix(hex, 16).ok()?;
                        // Surrogates (paired or not): serde's rules for them are its own.
                        if hex.starts_with('+') || (0xD800..=0xDFFF).contains(&unit) {
                            return None;
                        }
                        self.pos += 4;
                    }
                    _ => return None,
                },
                b if b < 0x20 => return None,
                _ => {}
            }
        }
    }

    /// The `:` between a member's key and value, with the whitespace around it.
    fn colon(&mut self) -> Option<()> {
        self.skip_ws();
        self.expect(b':')?;
        self.skip_ws();
        Some(())
    }

    /// An object or array whose opening bracket is the next byte: `item` for each element,
    /// comma-separated, up to `close`.
    fn sequence(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.pos += 1;
        self.skip_ws();
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            item(self)?;
            self.skip_ws();
            match self.next()? {
                b',' => self.skip_ws(),
                b if b == close => return Some(()),
                _ => return None,
            }
        }
    }

    /// Any JSON value.
    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string(),
            b'{' => self.sequence(b'}', |s| {
                s.string()?;
                s.colon()?;
                s.value(depth + 1)
            }),
            b'[' => self.sequence(b']', |s| s.value(depth + 1)),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word.as_bytes()).then(|| self.pos = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next()? {
            b'0' => {
                if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.pos;
        self.digits();
        (self.pos > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use shared_protocol::frame::Frame;

    use super::*;

    /// What serde makes of `text`, in the scanner's terms (`None`: not a request).
    fn by_serde(text: &str) -> Option<(String, String, Option<String>)> {
        match Frame::parse(text) {
            Ok(Frame::Request(r)) => Some((
                r.id.into_owned(),
                r.method.into_owned(),
                r.params.map(|p| RawValue::get(p).to_string()),
            )),
            _ => None,
        }
    }

    fn agrees(text: &str) -> Result<(), TestCaseError> {
        agrees_on(text, scan_request)
    }

    /// Whenever `path` answers on `text`, it reads what serde reads.
    fn agrees_on(
        text: &str,
        path: fn(&str) -> Option<ScannedRequest<'_>>,
    ) -> Result<(), TestCaseError> {
        if let Some(s) = path(text) {
            let scanned = Some((
                s.id.to_string(),
                s.method.to_string(),
                s.params.map(str::to_string),
            ));
            prop_assert_eq!(scanned, by_serde(text), "on {:?}", text);
        }
        Ok(())
    }

    /// The shapes clients send take the fast path, with what serde reads from them.
    #[test]
    fn common_requests_take_the_fast_path() {
        for (text, params) in [
            (
                r#"{"type":"req","id":"1","method":"health","params":{"probe":"x"}}"#,
                Some(r#"{"probe":"x"}"#),
            ),
            (
                r#" { "method" : "health" , "id" : "1", "type":"req" } "#,
                None,
            ),
            (
                r#"{"type":"req","id":"a-1","method":"chat.send","params":{"sessionKey":"k","message":"h\u00e9 \"x\"\n","n":[1,-2.5e+3,true,null,{}],"e":[]}}"#,
                Some(
                    r#"{"sessionKey":"k","message":"h\u00e9 \"x\"\n","n":[1,-2.5e+3,true,null,{}],"e":[]}"#,
                ),
            ),
            (
                r#"{"type":"req","id":"1","method":"m","params":null}"#,
                None,
            ),
        ] {
            let s = scan_request(text).unwrap_or_else(|| panic!("slow path for {text}"));
            assert_eq!(s.params, params, "{text}");
            agrees(text).unwrap();
        }
    }

    /// The eight-bytes-at-a-time string skip stops at the right byte wherever it falls.
    #[test]
    fn string_ends_and_escapes_are_found_at_every_offset() {
        for len in 0..24 {
            let run = "a".repeat(len);
            for (inner, fast) in [
                (format!("{run}\\\"{run}"), true),
                (format!("{run}\\n"), true),
                (format!("{run}\u{1f}{run}"), false),
                (format!("{run}\u{7f}é{run}"), true),
            ] {
                let text = format!(
                    r#"{{"type":"req","id":"{run}1","method":"m","params":["{inner}","{run}"]}}"#
                );
                assert_eq!(scan_request(&text).is_some(), fast, "{text:?}");
                agrees(&text).unwrap();
            }
        }
    }

    /// Everything serde would read differently, or reject, is left to serde.
    #[test]
    fn gives_up_where_serde_must_decide() {
        for text in [
            // Duplicates: serde rejects them; the gateway would take the last one.
            r#"{"type":"req","id":"1","method":"health","method":"sessions.reset"}"#,
            r#"{"type":"req","id":"1","method":"health","params":{},"params":{}}"#,
            // Escapes in what is decided on.
            r#"{"type":"req","id":"1","method":"sessions\u002ereset"}"#,
            r#"{"type":"req","id":"1","meth\u006fd":"health"}"#,
            // Other frame kinds and their fields, and members the schema does not allow.
            r#"{"type":"res","id":"1","ok":true}"#,
            r#"{"type":"req","id":"1","method":"m","ok":"yes"}"#,
            r#"{"type":"req","id":"1","method":"m","x":0}"#,
            // Not a request, or not JSON.
            r#"{"type":"req","id":"","method":"m"}"#,
            r#"{"type":"req","id":"1"}"#,
            r#"["req","1","m"]"#,
            r#"{"type":"req","id":"1","method":"m"} x"#,
            r#"{"type":"req","id":"1","method":"m","params":01}"#,
            r#"{"type":"req","id":"1","method":"m","params":"\ud800"}"#,
            "{\"type\":\"req\",\"id\":\"1\",\"method\":\"m\",\"params\":\"\u{1}\"}",
            "",
            "{",
        ] {
            assert_eq!(scan_request(text), None, "{text}");
        }
        let deep = format!(
            r#"{{"type":"req","id":"1","method":"m","params":{}1{}}}"#,
            "[".repeat(40),
            "]".repeat(40)
        );
        assert_eq!(scan_request(&deep), None);
    }

    /// JSON values, nested, with now and then a broken literal, a bad escape, a control
    /// character or a lone surrogate.
    fn value_text() -> impl Strategy<Value = String> + Clone {
        let scalar = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("fals".to_string()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{0,2})?([eE][+-]?[0-9]{0,2})?",
            "\"([a-z .]|\\\\[\"\\\\/bfnrtx]|\\\\u[0-9a-fA-F+]{4}|\\\\ud8[0-9a-f]{2}|\u{1}|é)*\"",
        ];
        scalar.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z]{1,3}", inner), 0..4).prop_map(|v| {
                    let members: Vec<String> =
                        v.iter().map(|(k, x)| format!("\"{k}\" : {x}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// An id or method: mostly plain, sometimes empty, escaped or not a string.
    fn name_text() -> impl Strategy<Value = String> + Clone {
        prop_oneof![
            8 => Just("\"health\"".to_string()),
            1 => Just("\"\"".to_string()),
            1 => Just("\"sessions\\u002ereset\"".to_string()),
            1 => Just("1".to_string()),
        ]
    }

    /// Damage spliced into `text` one time in six: a comma, brace, quote, backslash or space.
    fn damaged(
        text: String,
        damage: prop::sample::Index,
        at: prop::sample::Index,
        splice: &str,
    ) -> String {
        let mut text = text;
        if damage.index(6) == 0 {
            let boundaries: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .collect();
            text.insert_str(boundaries[at.index(boundaries.len())], splice);
        }
        text
    }

    fn splice() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(""),
            Just(","),
            Just("}"),
            Just("\""),
            Just("\\"),
            Just(" ")
        ]
    }

    /// Requests in the shape clients serialise (canonical order, no whitespace), with
    /// now and then damage spliced in.
    fn canonical_framish() -> impl Strategy<Value = String> {
        (
            name_text(),
            name_text(),
            prop::option::of(value_text()),
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            splice(),
        )
            .prop_map(|(id, method, params, damage, at, splice)| {
                let params = params.map_or(String::new(), |p| format!(",\"params\":{p}"));
                let text = format!(r#"{{"type":"req","id":{id},"method":{method}{params}}}"#);
                damaged(text, damage, at, splice)
            })
    }

    /// JSON-ish text: a request's parts in any order, with extra members (duplicates, fields of
    /// other frame kinds, escaped keys), nested values, and now and then damage spliced in.
    fn framish() -> impl Strategy<Value = String> {
        let (value, name) = (value_text(), name_text());
        let extra_key = prop_oneof![
            Just("type"),
            Just("id"),
            Just("method"),
            Just("params"),
            Just("ok"),
            Just("meth\\u006fd"),
            Just("x"),
            Just("y"),
        ];
        let required = (name.clone(), name, prop::option::of(value.clone())).prop_map(
            |(id, method, params)| {
                let mut members = vec![
                    ("type".to_string(), "\"req\"".to_string()),
                    ("id".to_string(), id),
                    ("method".to_string(), method),
                ];
                members.extend(params.map(|p| ("params".to_string(), p)));
                members
            },
        );
        let extras = prop::collection::vec((extra_key, value), 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(k, x)| (k.to_string(), x))
                .collect::<Vec<_>>()
        });
        (
            (required, extras)
                .prop_map(|(mut r, e)| {
                    r.extend(e);
                    r
                })
                .prop_shuffle(),
            "[ \t\n]{0,1}",
            any::<prop::sample::Index>(),
            any::<prop::sample::Index>(),
            splice(),
        )
            .prop_map(|(members, ws, damage, at, splice)| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("{ws}\"{k}\"{ws}:{ws}{v}{ws}"))
                    .collect();
                damaged(
                    format!("{ws}{{{}}}{ws}", members.join(",")),
                    damage,
                    at,
                    splice,
                )
            })
    }

    /// How many of 2000 texts from `strategy` `path` answers.
    fn answered(
        strategy: impl Strategy<Value = String>,
        path: fn(&str) -> Option<ScannedRequest<'_>>,
    ) -> usize {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        (0..2000)
            .filter(|_| path(&strategy.new_tree(&mut runner).unwrap().current()).is_some())
            .count()
    }

    /// The properties below are not vacuous: a good share of the generated texts take each
    /// path (and a good share do not).
    #[test]
    fn the_generators_exercise_every_path() {
        let fast = answered(framish(), scan_request);
        assert!(
            (100..1900).contains(&fast),
            "{fast} of 2000 on the fast path"
        );
        let canonical = answered(canonical_framish(), scan_canonical);
        assert!(
            (100..1900).contains(&canonical),
            "{canonical} of 2000 on the canonical path"
        );
    }

    /// The canonical shape is matched directly; the same request with whitespace or in
    /// another order is left to the general scan, which reads it the same.
    #[test]
    fn the_canonical_shape_is_matched_directly() {
        let canonical = r#"{"type":"req","id":"7","method":"health","params":{"a":[1]}}"#;
        let read = scan_canonical(canonical).unwrap();
        assert_eq!(
            (read.id, read.method, read.params),
            ("7", "health", Some(r#"{"a":[1]}"#))
        );
        let bare = scan_canonical(r#"{"type":"req","id":"7","method":"health"}"#).unwrap();
        assert_eq!(bare.params, None);
        for other in [
            r#"{"type":"req", "id":"7","method":"health","params":{"a":[1]}}"#,
            r#"{"id":"7","type":"req","method":"health","params":{"a":[1]}}"#,
        ] {
            assert_eq!(scan_canonical(other), None, "{other}");
            assert_eq!(
                scan_request(other).map(|r| r.method),
                Some("health"),
                "{other}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whenever the scanner answers, serde reads the same request from the same text.
        #[test]
        fn the_scanner_never_disagrees_with_serde(text in framish()) {
            agrees(&text)?;
        }

        /// The same for the shape clients serialise.
        #[test]
        fn nor_on_the_canonical_shape(text in canonical_framish()) {
            agrees_on(&text, scan_canonical)?;
        }

        /// The same for arbitrary text.
        #[test]
        fn nor_on_arbitrary_text(text in "\\PC{0,40}") {
            agrees(&text)?;
        }
    }
}
