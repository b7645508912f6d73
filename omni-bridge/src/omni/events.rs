//! The `message.received` events Omni publishes on NATS JetStream, read tolerantly.
//!
//! Omni's event bus (`packages/core/src/events/nats/client.ts`) publishes every event as JSON on
//! the subject `<type>.<channelType>.<instanceId>` of the `MESSAGE` stream:
//! `{id, type, payload, timestamp, metadata: {correlationId, instanceId, channelType, personId,
//! traceId, source, ...}}`; for `message.received` the payload is
//! `{externalId, chatId, from, content: {type, text?, ...}, ...}`
//! (`packages/core/src/events/types.ts`). Every field may be missing or of another type here:
//! [`MessageReceived::parse`] says what is missing instead of failing on it.

use serde::Deserialize;

/// Subject filter of the `message.received` events of every channel and instance.
pub const MESSAGE_RECEIVED_SUBJECTS: &str = "message.received.>";
/// The JetStream stream Omni keeps message events in.
pub const MESSAGE_STREAM: &str = "MESSAGE";

/// One `message.received` event, with what the 🗑 consumer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReceived {
    /// The event's id (unique per published event).
    pub event_id: Option<String>,
    /// Omni instance id.
    pub instance_id: String,
    /// External chat id (what triggers carry as `chat.id`).
    pub chat_id: String,
    /// Platform id of the sender.
    pub from: Option<String>,
    /// External message id.
    pub external_id: Option<String>,
    /// Message text, if any.
    pub text: Option<String>,
}

/// Why an event cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not an object.
    #[error("not a JSON event: {0}")]
    NotJson(String),
    /// No `metadata.instanceId`.
    #[error("event has no metadata.instanceId")]
    NoInstance,
    /// No `payload.chatId`.
    #[error("event has no payload.chatId")]
    NoChat,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Raw {
    id: serde_json::Value,
    payload: RawPayload,
    metadata: RawMetadata,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawPayload {
    external_id: serde_json::Value,
    chat_id: serde_json::Value,
    from: serde_json::Value,
    content: serde_json::Value,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawMetadata {
    instance_id: serde_json::Value,
}

/// A non-empty string, or a number as its decimal text (Telegram ids); anything else is absent.
fn text_of(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl MessageReceived {
    /// Reads one event.
    ///
    /// # Errors
    /// [`EventError`] when it is not JSON or names no instance or chat.
    pub fn parse(bytes: &[u8]) -> Result<Self, EventError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(EventError::NotJson("not an object".into()));
        }
        let raw: Raw = serde_json::from_value(value).unwrap_or_default();
        Ok(Self {
            event_id: text_of(&raw.id),
            instance_id: text_of(&raw.metadata.instance_id).ok_or(EventError::NoInstance)?,
            chat_id: text_of(&raw.payload.chat_id).ok_or(EventError::NoChat)?,
            from: text_of(&raw.payload.from),
            external_id: text_of(&raw.payload.external_id),
            text: raw
                .payload
                .content
                .get("text")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
        })
    }

    /// The key that names this message for deduplication: the event id, else the instance,
    /// chat and external message id.
    pub fn dedupe_source(&self) -> String {
        match &self.event_id {
            Some(id) => format!("event\n{id}"),
            None => format!(
                "message\n{}\n{}\n{}",
                self.instance_id,
                self.chat_id,
                self.external_id.as_deref().unwrap_or("")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_real_shape_and_tolerates_odd_types() {
        let e = br#"{"id":"e1","type":"message.received","timestamp":1,
            "payload":{"externalId":"77","chatId":"4242","from":"4242","content":{"type":"text","text":"\ud83d\uddd1"}},
            "metadata":{"instanceId":"i1","channelType":"telegram","traceId":"t"}}"#;
        let m = MessageReceived::parse(e).unwrap();
        assert_eq!(m.instance_id, "i1");
        assert_eq!(m.chat_id, "4242");
        assert_eq!(m.text.as_deref(), Some("🗑"));
        let m = MessageReceived::parse(
            br#"{"payload":{"chatId":-100,"content":null},"metadata":{"instanceId":"i"}}"#,
        )
        .unwrap();
        assert_eq!(m.chat_id, "-100");
        assert_eq!(m.text, None);
        assert!(m.dedupe_source().starts_with("message\ni\n-100"));
        assert_eq!(
            MessageReceived::parse(br#"{"payload":{"chatId":"c"}}"#),
            Err(EventError::NoInstance)
        );
        assert!(matches!(
            MessageReceived::parse(b"\xff"),
            Err(EventError::NotJson(_))
        ));
        assert!(matches!(
            MessageReceived::parse(b"[1]"),
            Err(EventError::NotJson(_))
        ));
    }
}
