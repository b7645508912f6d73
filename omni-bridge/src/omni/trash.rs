//! Omni's trash-emoji rule: a message that is only 🗑 asks to clear the conversation.
//!
//! A port of `isTrashEmojiOnly` (`packages/api/src/plugins/session-cleaner.ts` and
//! `agent-dispatcher.ts`, which share it): trim the text as JavaScript's `String.trim` does, then
//! match `/^[\uFE0F\u200D]*(?:🗑️|🗑)[\uFE0F\u200D]*$/u`. Omni's dispatcher drops such a message
//! before any provider sees it, so the bridge reads it from the event stream instead.

/// The wastebasket, U+1F5D1.
pub const TRASH: char = '\u{1F5D1}';

/// True when `text` is exactly one 🗑 (with variation selectors or joiners around it).
pub fn is_trash_only(text: &str) -> bool {
    let trimmed = text.trim_matches(is_js_whitespace);
    let mut trash = 0usize;
    for c in trimmed.chars() {
        match c {
            TRASH => trash += 1,
            '\u{FE0F}' | '\u{200D}' => {}
            _ => return false,
        }
    }
    // The pattern allows FE0F/200D anywhere around one trash can, and nothing else.
    trash == 1
}

/// What JavaScript's `trim` removes: Unicode white space, line terminators and the BOM.
fn is_js_whitespace(c: char) -> bool {
    c.is_whitespace() || c == '\u{FEFF}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_omnis_pattern() {
        for yes in [
            "🗑",
            "🗑️",
            " 🗑 ",
            "\n🗑️\t",
            "\u{200D}🗑\u{FE0F}\u{FE0F}",
            "\u{FEFF}🗑",
            "\u{FE0F}🗑",
        ] {
            assert!(is_trash_only(yes), "{yes:?}");
        }
        for no in [
            "",
            " ",
            "🗑🗑",
            "🗑 x",
            "x🗑",
            "trash",
            "\u{FE0F}",
            "🗑 🗑",
            "/reset",
        ] {
            assert!(!is_trash_only(no), "{no:?}");
        }
    }
}
