//! `[texts.<locale>]` and `[agents.<name>.texts]`: replacements for the user-facing texts, as
//! written in the config file. The built-in texts and which one goes with which outcome live in
//! the service (`crate::service::texts`, `crate::service::outcome`).

use serde::Deserialize;

/// Optional replacements, as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextOverrides {
    /// See `Texts::unavailable`.
    pub unavailable: Option<String>,
    /// See `Texts::taking_too_long`.
    pub taking_too_long: Option<String>,
    /// See `Texts::agent_error`.
    pub agent_error: Option<String>,
    /// See `Texts::busy`.
    pub busy: Option<String>,
    /// See `Texts::restarting`.
    pub restarting: Option<String>,
    /// See `Texts::message_too_long`.
    pub message_too_long: Option<String>,
    /// See `Texts::session_cleared`.
    pub session_cleared: Option<String>,
    /// See `Texts::reset_failed`.
    pub reset_failed: Option<String>,
}

impl TextOverrides {
    /// Refuses empty strings (a user would get an empty message).
    ///
    /// # Errors
    /// The name of the first empty field.
    pub fn validate(&self) -> Result<(), &'static str> {
        let fields = [
            ("unavailable", &self.unavailable),
            ("taking_too_long", &self.taking_too_long),
            ("agent_error", &self.agent_error),
            ("busy", &self.busy),
            ("restarting", &self.restarting),
            ("message_too_long", &self.message_too_long),
            ("session_cleared", &self.session_cleared),
            ("reset_failed", &self.reset_failed),
        ];
        match fields
            .into_iter()
            .find(|(_, v)| v.as_deref().is_some_and(|s| s.trim().is_empty()))
        {
            Some((name, _)) => Err(name),
            None => Ok(()),
        }
    }
}
