//! JavaScript's view of strings, for rules the gateway (Node) applies to client text: its
//! whitespace set (`String.prototype.trim`, the regex class `\s`), which is not Rust's
//! (`char::is_whitespace` has U+0085 and lacks U+FEFF), and its lower-casing.
//!
//! Strings decoded from JSON may hold lone surrogates (`"\ud800"`), which JavaScript keeps and a
//! Rust `str` cannot. [`crate::js_json`] decodes them to U+FFFD and says so ([`JsStr::lossless`]):
//! for every rule here that is exact, because neither a lone surrogate nor U+FFFD is whitespace,
//! cased, case-ignorable or ASCII, so trimming, lower-casing and matching ASCII patterns give the
//! same answer on both. Where the exact text matters (a method name, a session key), the caller
//! checks `lossless` and refuses what it cannot read exactly.

use std::borrow::Cow;

/// JavaScript's WhiteSpace and LineTerminator code points (ECMA-262 §12.2, §12.3): what `trim()`
/// removes and what the regex class `\s` matches.
pub fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{d}'
            | ' '
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
            | '\u{feff}'
    )
}

/// `s.trim()` as JavaScript does it.
pub fn js_trim(s: &str) -> &str {
    s.trim_matches(is_js_space)
}

/// `s.toLowerCase()`: Unicode's default full case mapping, with the final-sigma rule (Rust's
/// `str::to_lowercase` implements the same algorithm).
pub fn js_lower(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| !b.is_ascii_uppercase() && b.is_ascii()) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// A string value as JavaScript holds it, decoded from JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsStr<'a> {
    /// The text; each lone surrogate replaced by U+FFFD.
    pub text: Cow<'a, str>,
    /// No lone surrogate was replaced: `text` is exactly the JavaScript string.
    pub lossless: bool,
}

impl<'a> JsStr<'a> {
    /// A string known to be exact.
    pub fn exact(text: &'a str) -> Self {
        Self {
            text: Cow::Borrowed(text),
            lossless: true,
        }
    }

    /// The text (lone surrogates as U+FFFD).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// JavaScript `===` against a Rust string.
    pub fn equals(&self, other: &str) -> bool {
        self.lossless && self.text == other
    }

    /// True for `""` (JavaScript's falsy string).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Length as the gateway's schema validator (AJV) counts it: code points, a surrogate pair
    /// being one, a lone surrogate one as well.
    pub fn code_points(&self) -> usize {
        self.text.chars().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_javascripts_not_rusts() {
        assert!(is_js_space('\u{feff}') && !'\u{feff}'.is_whitespace());
        assert!(!is_js_space('\u{85}') && '\u{85}'.is_whitespace());
        assert!(!is_js_space('\u{180e}') && !is_js_space('\u{200b}'));
        assert_eq!(js_trim("\u{feff} /reset\u{3000}\n"), "/reset");
        assert_eq!(js_trim("\u{85}x"), "\u{85}x");
        // Every char Rust and JavaScript agree on, apart from the two above.
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            if c != '\u{85}' {
                assert_eq!(is_js_space(c), c.is_whitespace(), "{:x}", c as u32);
            }
        }
    }

    #[test]
    fn lower_casing_keeps_the_final_sigma_rule() {
        assert_eq!(js_lower("ΑΣ"), "ας");
        assert_eq!(js_lower("ΑΣΑ"), "ασα");
        assert_eq!(js_lower("İ"), "i\u{307}");
        assert!(matches!(js_lower("agent:main:x"), Cow::Borrowed(_)));
    }

    #[test]
    fn lossy_strings_never_equal_exact_ones() {
        let lossy = JsStr {
            text: Cow::Borrowed("\u{fffd}"),
            lossless: false,
        };
        assert!(!lossy.equals("\u{fffd}"));
        assert!(JsStr::exact("x").equals("x"));
        assert_eq!(JsStr::exact("a😀").code_points(), 2);
    }
}
