//! User-facing texts: what the chat user reads when the assistant cannot answer.
//!
//! Omni forwards a 200 reply to the chat as is, so these are the bridge's voice; which text goes
//! with which outcome is decided in [`super::outcome`]. Defaults are the English texts of Omni's
//! own OpenClaw provider (omni-contract §4.7) and the Portuguese ones of its session cleaner, plus
//! the bridge's own for what that provider never said (agent error, busy, restarting); a config
//! file overrides them per locale and per agent.

use crate::config::texts::TextOverrides;

/// The resolved set of texts for one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// Circuit open, gateway down, or misconfiguration.
    pub unavailable: String,
    /// The run did not finish in time.
    pub taking_too_long: String,
    /// The agent's run ended in an error.
    pub agent_error: String,
    /// More runs at once than the bridge allows.
    pub busy: String,
    /// The bridge is shutting down (a restart or a deploy) and starts no new run.
    pub restarting: String,
    /// Message over the 100 KiB limit.
    pub message_too_long: String,
    /// Reset done.
    pub session_cleared: String,
    /// Reset failed.
    pub reset_failed: String,
}

impl Texts {
    /// Omni's English texts.
    pub fn english() -> Self {
        Self {
            unavailable: "The assistant is temporarily unavailable. Please try again in a moment."
                .into(),
            taking_too_long:
                "The assistant is taking longer than expected. Please try again in a moment.".into(),
            agent_error: "The assistant ran into a problem and could not answer. Please try again."
                .into(),
            busy: "The assistant is busy with many conversations right now. Please try again in a moment."
                .into(),
            restarting: "The assistant is restarting. Please send your message again in a moment."
                .into(),
            message_too_long: "Your message is too long. Please shorten it and try again.".into(),
            session_cleared: "✅ Conversation cleared! Your session with the assistant was reset."
                .into(),
            reset_failed: "❌ Could not clear the session. Please try again.".into(),
        }
    }

    /// Portuguese texts (Omni's session cleaner wording).
    pub fn portuguese() -> Self {
        Self {
            unavailable:
                "O assistente está temporariamente indisponível. Tente novamente em instantes."
                    .into(),
            taking_too_long:
                "O assistente está demorando mais que o esperado. Tente novamente em instantes."
                    .into(),
            agent_error:
                "O assistente teve um problema e não conseguiu responder. Tente novamente.".into(),
            busy:
                "O assistente está atendendo muitas conversas agora. Tente novamente em instantes."
                    .into(),
            restarting: "O assistente está reiniciando. Envie sua mensagem novamente em instantes."
                .into(),
            message_too_long: "Sua mensagem é muito longa. Encurte-a e tente novamente.".into(),
            session_cleared: "✅ Conversa limpa! Sua sessão com o assistente foi resetada.".into(),
            reset_failed: "❌ Erro ao limpar sessão. Tente novamente.".into(),
        }
    }

    /// Built-in texts for a locale: Portuguese for `pt*`, English otherwise.
    pub fn builtin(locale: &str) -> Self {
        if locale.to_ascii_lowercase().starts_with("pt") {
            Self::portuguese()
        } else {
            Self::english()
        }
    }

    /// The built-in texts of `locale` with the config's `[texts.<locale>]` over them.
    pub fn for_locale(
        locale: &str,
        overrides: &std::collections::BTreeMap<String, TextOverrides>,
    ) -> Self {
        let texts = Self::builtin(locale);
        match overrides.get(locale) {
            Some(over) => texts.with(over),
            None => texts,
        }
    }

    /// These texts with every set field of `over` replacing its own.
    pub fn with(mut self, over: &TextOverrides) -> Self {
        let pairs = [
            (&mut self.unavailable, &over.unavailable),
            (&mut self.taking_too_long, &over.taking_too_long),
            (&mut self.agent_error, &over.agent_error),
            (&mut self.busy, &over.busy),
            (&mut self.restarting, &over.restarting),
            (&mut self.message_too_long, &over.message_too_long),
            (&mut self.session_cleared, &over.session_cleared),
            (&mut self.reset_failed, &over.reset_failed),
        ];
        for (slot, value) in pairs {
            if let Some(v) = value {
                slot.clone_from(v);
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_set() {
        let over = TextOverrides {
            unavailable: Some("down".into()),
            ..TextOverrides::default()
        };
        let t = Texts::builtin("pt-BR").with(&over);
        assert_eq!(t.unavailable, "down");
        assert_eq!(t.reset_failed, "❌ Erro ao limpar sessão. Tente novamente.");
        assert_eq!(
            Texts::builtin("en").message_too_long,
            "Your message is too long. Please shorten it and try again."
        );
        let empty = TextOverrides {
            reset_failed: Some(" ".into()),
            ..TextOverrides::default()
        };
        assert_eq!(empty.validate(), Err("reset_failed"));
    }
}
