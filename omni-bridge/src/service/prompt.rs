//! Turns an Omni trigger into the text the agent receives (or into "nothing to do").
//!
//! Matches Omni's own OpenClaw provider (omni-contract §4.6): `[Name]: text` when the sender
//! prefix is on, `[Reaction: <emoji> on message <id>]` for reactions, nothing for an empty
//! message, and a 100 KiB cap measured after prefixing.

use super::omni_request::{Content, Identified};

/// Largest message (UTF-8 bytes, after the sender prefix) sent to an agent.
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024;
/// Longest sender name kept in the prefix (characters).
pub const MAX_SENDER_NAME_CHARS: usize = 64;

/// What a trigger asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// No text and no emoji: answer with no parts, call nobody.
    Empty,
    /// The message is the reset command.
    Reset,
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLong,
    /// Send this to the agent.
    Message(String),
}

/// Builds the prompt for one trigger.
pub fn build(
    content: &Content,
    who: &Identified,
    sender_prefix: bool,
    reset_command: &str,
) -> Prompt {
    let text = content.text.as_deref().map(str::trim).unwrap_or_default();
    let emoji = content.emoji.as_deref().map(str::trim).unwrap_or_default();
    let body = if !text.is_empty() {
        if text.eq_ignore_ascii_case(reset_command) {
            return Prompt::Reset;
        }
        match who.sender_name.as_deref().map(sanitize_name) {
            Some(name) if sender_prefix && !name.is_empty() => format!("[{name}]: {text}"),
            _ => text.to_string(),
        }
    } else if !emoji.is_empty() {
        let target = who.message_id.as_deref().unwrap_or("unknown");
        format!("[Reaction: {emoji} on message {target}]")
    } else {
        return Prompt::Empty;
    };
    if body.len() > MAX_MESSAGE_BYTES {
        Prompt::TooLong
    } else {
        Prompt::Message(body)
    }
}

/// A display name safe to put inside `[...]`: no brackets, newlines or control characters,
/// whitespace collapsed, at most [`MAX_SENDER_NAME_CHARS`] characters.
pub fn sanitize_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| !matches!(c, '[' | ']'))
        .collect();
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_SENDER_NAME_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: Option<&str>) -> Identified {
        Identified {
            instance_id: "i".into(),
            chat_id: "c".into(),
            conversation: "c".into(),
            retry_key: None,
            sender_name: name.map(str::to_string),
            message_id: Some("m1".into()),
        }
    }

    fn text(t: &str) -> Content {
        Content {
            text: Some(t.into()),
            ..Content::default()
        }
    }

    #[test]
    fn prefix_reaction_empty_reset_and_cap() {
        assert_eq!(
            build(
                &text(" hi "),
                &who(Some("Ana\n[admin]\u{7}")),
                true,
                "/reset"
            ),
            Prompt::Message("[Ana admin]: hi".into())
        );
        assert_eq!(
            build(&text("hi"), &who(Some("Ana")), false, "/reset"),
            Prompt::Message("hi".into())
        );
        assert_eq!(
            build(&text("hi"), &who(Some(" [] ")), true, "/reset"),
            Prompt::Message("hi".into())
        );
        let reaction = Content {
            emoji: Some("👍".into()),
            ..Content::default()
        };
        assert_eq!(
            build(&reaction, &who(None), true, "/reset"),
            Prompt::Message("[Reaction: 👍 on message m1]".into())
        );
        assert_eq!(
            build(&Content::default(), &who(None), true, "/reset"),
            Prompt::Empty
        );
        assert_eq!(
            build(&text("  "), &who(None), true, "/reset"),
            Prompt::Empty
        );
        assert_eq!(
            build(&text("/RESET"), &who(Some("A")), true, "/reset"),
            Prompt::Reset
        );
        let big = "x".repeat(MAX_MESSAGE_BYTES - 4);
        assert!(matches!(
            build(&text(&big), &who(None), true, "/r"),
            Prompt::Message(_)
        ));
        assert_eq!(
            build(&text(&big), &who(Some("Ana")), true, "/r"),
            Prompt::TooLong
        );
    }
}
