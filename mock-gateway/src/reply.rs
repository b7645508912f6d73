//! The fake LLM's reply, chunk by chunk, as the real gateway streams it.
//!
//! `fake-llm.py` answers `FAKE-REPLY: you said <<M>>. chunk-a chunk-b chunk-c` in 7 chunks, where M
//! is the user text with whitespace runs collapsed and cut to 120 characters. The gateway trims
//! trailing whitespace from each cumulative snapshot, so the deltas carry leading spaces only.

/// Longest part of the user's words echoed in the reply (`said[:120]` in fake-llm.py).
const MAX_ECHO_CHARS: usize = 120;

/// The full reply the real gateway + fake LLM give to `message`.
pub fn fake_reply(message: &str) -> String {
    reply_chunks(message).concat().trim_end().to_string()
}

/// The model's chunks, in order (the concatenation, right-trimmed, is [`fake_reply`]).
pub(crate) fn reply_chunks(message: &str) -> Vec<String> {
    let said: String = message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_ECHO_CHARS)
        .collect();
    vec![
        "FAKE-REPLY: ".into(),
        "you said ".into(),
        format!("<<{said}>>"),
        ". ".into(),
        "chunk-a ".into(),
        "chunk-b ".into(),
        "chunk-c".into(),
    ]
}

/// True when the fake LLM would pace this message at 1 s per chunk.
pub(crate) fn is_slow(message: &str) -> bool {
    message.contains("SLOW")
}

/// True when the fake LLM would answer this message with HTTP 500.
pub(crate) fn is_provider_failure(message: &str) -> bool {
    message.contains("FAIL500")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_matches_the_fake_llm() {
        assert_eq!(
            fake_reply("Hello gateway, this is the probe."),
            "FAKE-REPLY: you said <<Hello gateway, this is the probe.>>. chunk-a chunk-b chunk-c"
        );
        assert_eq!(
            fake_reply("  a \n b  "),
            "FAKE-REPLY: you said <<a b>>. chunk-a chunk-b chunk-c"
        );
        let long = "x".repeat(300);
        assert!(fake_reply(&long).contains(&format!("<<{}>>", "x".repeat(120))));
        assert_eq!(reply_chunks("m").len(), 7);
    }
}
