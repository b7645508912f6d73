//! JSON read exactly as JavaScript's `JSON.parse` reads it, for decisions the gateway (Node)
//! makes on the same text.
//!
//! Where `serde_json` differs from `JSON.parse`, a decision taken on serde's reading is not the
//! gateway's: serde rejects a lone surrogate escape (`"\ud800"`) and nesting deeper than 128,
//! both of which `JSON.parse` accepts. Here:
//!
//! - **Any depth.** Validation is iterative (one bit per open container), and nothing recurses,
//!   so no input can exhaust the stack.
//! - **Lone surrogates** decode to U+FFFD with [`JsStr::lossless`] false (see [`crate::js_string`]
//!   for why that is exact for the rules applied to them).
//! - **Duplicate keys**: the last one wins ([`Value::get`]), as `JSON.parse` defines them in
//!   order; `__proto__` is an ordinary own key (`CreateDataProperty`).
//! - **Whitespace** between tokens is JSON's four characters only; a BOM or U+00A0 is an error.
//!
//! Nothing is built: a [`Value`] is the text of one value, validated once by [`parse`], and its
//! accessors walk that text on demand, so reading a few fields of a large frame allocates nothing.

use std::borrow::Cow;

use crate::js_string::JsStr;

/// Why a text is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError(pub usize);

// By hand rather than derived: this file is also compiled alone, in the fuzz targets.
impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not JSON (at byte {})", self.0)
    }
}

impl std::error::Error for JsonError {}

/// The kind of a JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// An array.
    Array,
    /// An object.
    Object,
}

/// One JSON value: its text, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a str,
}

/// Validates `text` as `JSON.parse` would and gives its top-level value.
///
/// # Errors
/// [`JsonError`] with the byte offset where the text stops being JSON.
pub fn parse(text: &str) -> Result<Value<'_>, JsonError> {
    let b = text.as_bytes();
    let start = skip_ws(b, 0);
    validate(b, start)?;
    let end = b.len() - trailing_ws(b);
    Ok(Value {
        raw: text.get(start..end).ok_or(JsonError(start))?,
    })
}

impl<'a> Value<'a> {
    /// A value whose text the caller has already validated as JSON (without surrounding
    /// whitespace). On text that is not, accessors give wrong answers but never panic or loop.
    pub fn assume_valid(raw: &'a str) -> Self {
        Self { raw }
    }

    /// The value's JSON text.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// What kind of value it is.
    pub fn kind(&self) -> Kind {
        match self.raw.as_bytes().first() {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') | None => Kind::Null,
            Some(_) => Kind::Number,
        }
    }

    /// JavaScript's `isRecord`: an object, not an array or null.
    pub fn is_object(&self) -> bool {
        self.kind() == Kind::Object
    }

    /// `value === true`.
    pub fn is_true(&self) -> bool {
        self.raw == "true"
    }

    /// The decoded string, if this is a string.
    pub fn as_str(&self) -> Option<JsStr<'a>> {
        let inner = self.raw.strip_prefix('"')?.strip_suffix('"')?;
        Some(decode(inner))
    }

    /// `value[key] === expected` for a string `expected`.
    pub fn str_equals(&self, expected: &str) -> bool {
        self.as_str().is_some_and(|s| s.equals(expected))
    }

    /// The members of an object in text order, duplicates included (nothing for other kinds).
    pub fn members(&self) -> Members<'a> {
        Members {
            text: self.raw,
            pos: if self.is_object() { 1 } else { usize::MAX },
        }
    }

    /// `value[key]` for an object: the last member with that key, as `JSON.parse` keeps it.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.members()
            .filter(|(k, _)| k.equals(key))
            .last()
            .map(|(_, v)| v)
    }

    /// `Object.hasOwn(value, key)`.
    pub fn has(&self, key: &str) -> bool {
        self.members().any(|(k, _)| k.equals(key))
    }
}

/// An object's key, as written (escapes not yet decoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key<'a> {
    inner: &'a str,
}

impl<'a> Key<'a> {
    /// The decoded key.
    pub fn decode(&self) -> JsStr<'a> {
        decode(self.inner)
    }

    /// Whether the decoded key is exactly `name` (no allocation unless the key has escapes).
    pub fn equals(&self, name: &str) -> bool {
        if self.inner.contains('\\') {
            self.decode().equals(name)
        } else {
            self.inner == name
        }
    }

    /// Whether the decoded key is one of `names`.
    pub fn is_one_of(&self, names: &[&str]) -> bool {
        if self.inner.contains('\\') {
            let key = self.decode();
            names.iter().any(|n| key.equals(n))
        } else {
            names.contains(&self.inner)
        }
    }
}

/// Iterator over an object's members ([`Value::members`]).
#[derive(Debug, Clone)]
pub struct Members<'a> {
    text: &'a str,
    /// Where the next member (or the closing brace) may start; `usize::MAX` once done.
    pos: usize,
}

impl<'a> Iterator for Members<'a> {
    type Item = (Key<'a>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.text.as_bytes();
        let i = skip_ws(b, self.pos);
        let item = (|| {
            if *b.get(i)? != b'"' {
                return None;
            }
            let key_end = string_end(b, i)?;
            let colon = skip_ws(b, key_end);
            if *b.get(colon)? != b':' {
                return None;
            }
            let start = skip_ws(b, colon + 1);
            let end = value_end(b, start)?;
            let after = skip_ws(b, end);
            let next = match b.get(after)? {
                b',' => after + 1,
                _ => usize::MAX,
            };
            let key = Key {
                inner: self.text.get(i + 1..key_end - 1)?,
            };
            let value = Value {
                raw: self.text.get(start..end)?,
            };
            Some((key, value, next))
        })();
        match item {
            Some((key, value, next)) => {
                self.pos = next;
                Some((key, value))
            }
            None => {
                self.pos = usize::MAX;
                None
            }
        }
    }
}

/// JSON's whitespace: space, tab, line feed, carriage return (nothing else, unlike
/// JavaScript source text).
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

fn trailing_ws(b: &[u8]) -> usize {
    b.iter().rev().take_while(|c| is_ws(**c)).count()
}

/// The index just past the string starting (with its quote) at `i`; `None` if it is not one
/// (an unescaped control character, a bad escape, or no closing quote).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => match *b.get(j + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => j += 2,
                b'u' => {
                    let hex = b.get(j + 2..j + 6)?;
                    if !hex.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    j += 6;
                }
                _ => return None,
            },
            c if c < 0x20 => return None,
            _ => j += 1,
        }
    }
}

/// The index just past the value starting at `i`, in text already validated (containers are
/// skipped by bracket depth, strings by their quotes).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let len = b
                .get(i..)?
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
                .count();
            (len > 0).then_some(i + len)
        }
    }
}

/// One bit per open container (object or array), so depth costs 1/8 byte a level.
#[derive(Default)]
struct Containers {
    bits: Vec<u64>,
    depth: usize,
}

impl Containers {
    fn push(&mut self, object: bool) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        if word == self.bits.len() {
            self.bits.push(0);
        }
        if let Some(w) = self.bits.get_mut(word) {
            if object {
                *w |= 1 << bit;
            } else {
                *w &= !(1 << bit);
            }
        }
        self.depth += 1;
    }

    /// The innermost open container: `Some(true)` for an object.
    fn top(&self) -> Option<bool> {
        let d = self.depth.checked_sub(1)?;
        let w = self.bits.get(d / 64)?;
        Some(w & (1 << (d % 64)) != 0)
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

/// Validates the value starting at `start` and everything after it up to the end of `b`
/// (trailing whitespace only).
fn validate(b: &[u8], start: usize) -> Result<(), JsonError> {
    let mut open = Containers::default();
    let mut i = start;
    let err = |at: usize| JsonError(at);
    'value: loop {
        // A value starts at `i`.
        match b.get(i).copied() {
            Some(b'{') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b'}') {
                    i += 1;
                } else {
                    open.push(true);
                    i = member_value_start(b, i)?;
                    continue 'value;
                }
            }
            Some(b'[') => {
                i = skip_ws(b, i + 1);
                if b.get(i) == Some(&b']') {
                    i += 1;
                } else {
                    open.push(false);
                    continue 'value;
                }
            }
            Some(b'"') => i = string_end(b, i).ok_or(err(i))?,
            Some(b't') => i = literal(b, i, b"true")?,
            Some(b'f') => i = literal(b, i, b"false")?,
            Some(b'n') => i = literal(b, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number_end(b, i).ok_or(err(i))?,
            _ => return Err(err(i)),
        }
        // After a value: close containers, or go on to the next element.
        loop {
            i = skip_ws(b, i);
            let Some(object) = open.top() else {
                return if i == b.len() { Ok(()) } else { Err(err(i)) };
            };
            match b.get(i).copied() {
                Some(b',') => {
                    i = skip_ws(b, i + 1);
                    if object {
                        i = member_value_start(b, i)?;
                    }
                    continue 'value;
                }
                Some(b'}') if object => {
                    open.pop();
                    i += 1;
                }
                Some(b']') if !object => {
                    open.pop();
                    i += 1;
                }
                _ => return Err(err(i)),
            }
        }
    }
}

/// Reads `"key" :` at `i`; gives where the member's value starts.
fn member_value_start(b: &[u8], i: usize) -> Result<usize, JsonError> {
    let key_end = string_end(b, i).ok_or(JsonError(i))?;
    let colon = skip_ws(b, key_end);
    if b.get(colon) != Some(&b':') {
        return Err(JsonError(colon));
    }
    Ok(skip_ws(b, colon + 1))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, JsonError> {
    let end = i + word.len();
    if b.get(i..end) == Some(word) {
        Ok(end)
    } else {
        Err(JsonError(i))
    }
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: usize| {
        b.get(i..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i += digits(i),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
    }
    Some(i)
}

/// Decodes the inside of a string literal (validated): escapes resolved, surrogate pairs
/// joined, lone surrogates replaced by U+FFFD (`lossless` false).
fn decode(inner: &str) -> JsStr<'_> {
    if !inner.contains('\\') {
        return JsStr::exact(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut lossless = true;
    let mut rest = inner;
    // A high surrogate waiting for its low half.
    let mut high: Option<u16> = None;
    while let Some(at) = rest.find('\\') {
        let (plain, tail) = rest.split_at(at);
        if !plain.is_empty() {
            flush_high(&mut high, &mut out, &mut lossless);
            out.push_str(plain);
        }
        let mut chars = tail.chars();
        chars.next();
        let escaped = chars.next().unwrap_or('\\');
        rest = chars.as_str();
        let c = match escaped {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let unit = rest
                    .get(..4)
                    .and_then(|h| u16::from_str_radix(h, 16).ok())
                    .unwrap_or(0xFFFD);
                rest = rest.get(4..).unwrap_or("");
                match unit {
                    0xD800..=0xDBFF => {
                        flush_high(&mut high, &mut out, &mut lossless);
                        high = Some(unit);
                        continue;
                    }
                    0xDC00..=0xDFFF => {
                        if let Some(h) = high.take() {
                            let c = 0x10000
                                + ((u32::from(h) - 0xD800) << 10)
                                + (u32::from(unit) - 0xDC00);
                            out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                        } else {
                            out.push('\u{fffd}');
                            lossless = false;
                        }
                        continue;
                    }
                    _ => char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}'),
                }
            }
            other => other,
        };
        flush_high(&mut high, &mut out, &mut lossless);
        out.push(c);
    }
    flush_high(&mut high, &mut out, &mut lossless);
    out.push_str(rest);
    JsStr {
        text: Cow::Owned(out),
        lossless,
    }
}

/// A high surrogate not followed by a low one stays alone: U+FFFD.
fn flush_high(high: &mut Option<u16>, out: &mut String, lossless: &mut bool) {
    if high.take().is_some() {
        out.push('\u{fffd}');
        *lossless = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_what_json_parse_accepts() {
        for ok in [
            "0",
            " -0.5e+10 ",
            "\"\\ud800\"",
            "\"\\udc00\\ud800\"",
            "{\"a\":1,\"a\":2}",
            "{\"__proto__\":{}}",
            "[[[[[]]]]]",
            "\"\u{2028}\"",
            "\t{ \"k\" : [ true , false , null ] }\r\n",
        ] {
            parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
        parse(&deep).unwrap();
    }

    #[test]
    fn rejects_what_json_parse_rejects() {
        for bad in [
            "",
            "\u{feff}{}",
            "\u{a0}1",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "[1,]",
            "{\"a\":1,}",
            "{'a':1}",
            "\"\u{1}\"",
            "\"\\x\"",
            "\"\\u12\"",
            "[1] 2",
            "{\"a\" 1}",
            "[}",
            "{]",
            "nul",
            "NaN",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let unclosed = "[".repeat(10_000);
        assert!(parse(&unclosed).is_err());
    }

    #[test]
    fn last_duplicate_wins_and_keys_decode() {
        let v = parse(r#"{"x":1,"\u0078":2,"y":{"z":true},"x":"last"}"#).unwrap();
        assert_eq!(v.get("x").unwrap().raw(), "\"last\"");
        assert!(v.get("y").unwrap().get("z").unwrap().is_true());
        assert!(v.has("y") && !v.has("z"));
        assert_eq!(v.members().count(), 4);
        assert!(v.get("missing").is_none());
        assert_eq!(parse("[1]").unwrap().members().count(), 0);
    }

    #[test]
    fn strings_decode_as_javascript_holds_them() {
        fn s(t: &str) -> JsStr<'_> {
            parse(t).unwrap().as_str().unwrap()
        }
        assert_eq!(s(r#""a\u00e9\n\"""#).text, "aé\n\"");
        assert_eq!(s(r#""\ud83d\ude00""#).text, "😀");
        let lone = s(r#""\ud800x""#);
        assert_eq!((lone.text.as_ref(), lone.lossless), ("\u{fffd}x", false));
        let low_first = s(r#""\ude00\ud83d""#);
        assert_eq!(low_first.text, "\u{fffd}\u{fffd}");
        assert!(!low_first.lossless);
        assert!(s(r#""\ufffd""#).lossless);
    }

    /// JSON text generated with the odd corners mixed in.
    fn json_text() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,2})?([eE][+-]?[0-9]{1,2})?",
            "\"([a-z ]|\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-f]|é|😀)*\"",
        ];
        scalar.prop_recursive(5, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-c]{1,2}", inner), 0..5).prop_map(|v| {
                    let m: Vec<String> = v.iter().map(|(k, x)| format!("\"{k}\": {x}")).collect();
                    format!("{{ {} }}", m.join(" ,"))
                }),
            ]
        })
    }

    proptest! {
        /// On text without lone surrogates, JSON.parse and serde agree on validity, and every
        /// member serde sees (its map keeps the last duplicate) is what `get` finds.
        #[test]
        fn agrees_with_serde_where_serde_is_right(text in json_text()) {
            let ours = parse(&text);
            let theirs: Result<serde_json::Value, _> = serde_json::from_str(&text);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{}", text);
            if let (Ok(v), Ok(serde_json::Value::Object(m))) = (ours, theirs) {
                for (k, want) in &m {
                    let got = v.get(k).unwrap();
                    let got: serde_json::Value = serde_json::from_str(got.raw()).unwrap();
                    prop_assert_eq!(&got, want);
                }
            }
        }

        /// Damaged text: never a panic, and never valid where serde says invalid (serde is
        /// stricter only on surrogates, which this generator does not produce).
        #[test]
        fn never_panics_on_damaged_text(text in json_text(), at in any::<prop::sample::Index>(), cut in 0usize..3) {
            let mut t = text.clone();
            let boundaries: Vec<usize> = (0..=t.len()).filter(|i| t.is_char_boundary(*i)).collect();
            let i = boundaries[at.index(boundaries.len())];
            match cut {
                0 => t.truncate(i),
                1 => t.insert(i, ','),
                _ => t.insert(i, '"'),
            }
            let ours = parse(&t).is_ok();
            let theirs = serde_json::from_str::<serde_json::Value>(&t).is_ok();
            prop_assert_eq!(ours, theirs, "{}", t);
            if let Ok(v) = parse(&t) {
                for (k, x) in v.members() { let _ = (k.decode(), x.as_str(), x.kind()); }
            }
        }
    }
}
