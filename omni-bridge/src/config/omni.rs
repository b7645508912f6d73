//! `[omni]`: Omni's REST API and NATS, for what the bridge asks of Omni beyond answering
//! triggers. With `nats_url` set, the bridge consumes Omni's `message.received` events and
//! handles 🗑 resets (`crate::omni::reset_consumer`).

use std::time::Duration;

use serde::Deserialize;
use shared_protocol::Secret;

use super::duration;

/// Default durable consumer name (shared by every replica of one bridge deployment).
pub const DEFAULT_DURABLE: &str = "omni-bridge-resets";
/// Default time a delivered message may stay unacknowledged before JetStream redelivers it.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// Omni's REST API and NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OmniConfig {
    /// Omni's base URL, e.g. `http://omni:8882`.
    #[serde(default)]
    pub url: Option<String>,
    /// Omni API key (`x-api-key`).
    #[serde(default)]
    pub api_key: Secret,
    /// Omni's NATS server (its `NATS_URL`); enables the 🗑 reset consumer.
    #[serde(default)]
    pub nats_url: Option<String>,
    /// Durable consumer name, shared by the replicas of one deployment.
    #[serde(default = "default_nats_consumer")]
    pub nats_consumer: String,
    /// Time before an unacknowledged 🗑 is delivered again.
    #[serde(
        default = "default_ack_wait",
        deserialize_with = "duration::deserialize"
    )]
    pub nats_ack_wait: Duration,
}

impl Default for OmniConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: Secret::default(),
            nats_url: None,
            nats_consumer: default_nats_consumer(),
            nats_ack_wait: DEFAULT_ACK_WAIT,
        }
    }
}

fn default_nats_consumer() -> String {
    DEFAULT_DURABLE.to_string()
}
fn default_ack_wait() -> Duration {
    DEFAULT_ACK_WAIT
}

/// Where the 🗑 consumer is and how it behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetStreamConfig {
    /// Omni's NATS server, e.g. `nats://omni:4222`.
    pub nats_url: String,
    /// Durable consumer name; the done-marker bucket is `<durable>-done`.
    pub durable: String,
    /// Redelivery delay of an unacknowledged message.
    pub ack_wait: Duration,
}

impl ResetStreamConfig {
    /// The key-value bucket of done-markers.
    pub fn done_bucket(&self) -> String {
        format!("{}-done", self.durable)
    }

    /// Checks the names NATS would refuse.
    ///
    /// # Errors
    /// A sentence naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.nats_url.starts_with("nats://") || self.nats_url.starts_with("tls://")) {
            return Err(format!(
                "{:?} must start with nats:// or tls:// (Omni's NATS_URL)",
                self.nats_url
            ));
        }
        let ok = !self.durable.is_empty()
            && self.durable.len() <= 64
            && self
                .durable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "consumer name {:?}: 1-64 letters, digits, '-' or '_'",
                self.durable
            ));
        }
        if self.ack_wait < Duration::from_secs(1) {
            return Err("ack wait must be at least 1 second".into());
        }
        Ok(())
    }
}

impl OmniConfig {
    /// The reset consumer's settings, when `nats_url` is set.
    pub fn reset_stream(&self) -> Option<ResetStreamConfig> {
        self.nats_url.as_ref().map(|url| ResetStreamConfig {
            nats_url: url.clone(),
            durable: self.nats_consumer.clone(),
            ack_wait: self.nats_ack_wait,
        })
    }

    /// Checked only when the 🗑 consumer is on (`OMNI_URL` in the environment of a bridge that
    /// does not use it is no error). Returns the key at fault and why.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(stream) = self.reset_stream() else {
            return Ok(());
        };
        if let Some(url) = &self.url
            && !url.starts_with("http://")
        {
            return Err((
                "omni.url",
                format!("{url:?} must start with http:// (https is not supported by this client)"),
            ));
        }
        stream.validate().map_err(|m| ("omni.nats_url", m))?;
        if self.url.is_none() {
            return Err((
                "omni.url",
                "is required with omni.nats_url: 🗑 confirmations go through Omni's REST API (--omni-url or OMNI_URL)".into(),
            ));
        }
        if self.api_key.expose().trim().is_empty() {
            return Err((
                "omni.api_key",
                "is required with omni.nats_url (--omni-api-key or OMNI_API_KEY)".into(),
            ));
        }
        Ok(())
    }
}
