//! The JSON body Omni's `webhook` provider POSTs (omni-contract §2.1), read tolerantly.
//!
//! Both shapes work: the February 2026 "snapshot" body (event, instance, chat, sender, content,
//! traceId, replyEndpoint) and the late one that adds `headers` and `executionContext`. Unknown
//! fields are ignored and every field may be missing; [`OmniTrigger::identify`] then decides
//! whether enough is left to address a conversation.

use serde::Deserialize;

/// The request body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OmniTrigger {
    /// `{id, channelType}`.
    #[serde(deserialize_with = "null_as_default")]
    pub instance: IdOnly,
    /// `{id}`: the external chat id.
    #[serde(deserialize_with = "null_as_default")]
    pub chat: IdOnly,
    /// `{id, name?, personId?}`.
    #[serde(deserialize_with = "null_as_default")]
    pub sender: Sender,
    /// `{text?, emoji?}`.
    #[serde(deserialize_with = "null_as_default")]
    pub content: Content,
    /// End-to-end trace id; the key for retries.
    #[serde(deserialize_with = "lenient_string")]
    pub trace_id: Option<String>,
    /// Late Omni only.
    #[serde(deserialize_with = "object_or_none")]
    pub execution_context: Option<ExecutionContext>,
}

/// An object of which only `id` matters.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IdOnly {
    /// The id.
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
}

/// The sender.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Sender {
    /// Platform user id.
    #[serde(deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// Display name.
    #[serde(deserialize_with = "lenient_string")]
    pub name: Option<String>,
}

/// The message content.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Content {
    /// Text (debounced messages joined by newlines).
    #[serde(deserialize_with = "lenient_string")]
    pub text: Option<String>,
    /// Reaction emoji.
    #[serde(deserialize_with = "lenient_string")]
    pub emoji: Option<String>,
    /// Message a reaction refers to (not sent by the webhook provider today; read if present).
    #[serde(deserialize_with = "lenient_string")]
    pub referenced_message_id: Option<String>,
}

/// `executionContext` (late Omni).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExecutionContext {
    /// `{channel, instanceId, chatId, threadId?, messageId}`.
    #[serde(deserialize_with = "null_as_default")]
    pub source: EcSource,
    /// `{id, strategy?}`: the strategy-computed session id.
    #[serde(deserialize_with = "null_as_default")]
    pub session: IdOnly,
    /// `{userId, displayName?, ...}`.
    #[serde(deserialize_with = "null_as_default")]
    pub identity: EcIdentity,
}

/// `executionContext.source`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EcSource {
    /// Omni instance id.
    #[serde(deserialize_with = "lenient_string")]
    pub instance_id: Option<String>,
    /// External chat id.
    #[serde(deserialize_with = "lenient_string")]
    pub chat_id: Option<String>,
    /// External message id.
    #[serde(deserialize_with = "lenient_string")]
    pub message_id: Option<String>,
}

/// `executionContext.identity`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EcIdentity {
    /// Display name.
    #[serde(deserialize_with = "lenient_string")]
    pub display_name: Option<String>,
}

/// What the bridge needs from a trigger, with every fallback applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// Omni instance id.
    pub instance_id: String,
    /// External chat id.
    pub chat_id: String,
    /// Conversation id: `executionContext.session.id`, else the chat id.
    pub conversation: String,
    /// Key for retries: `traceId`, else `executionContext.source.messageId`.
    pub retry_key: Option<String>,
    /// Sender display name.
    pub sender_name: Option<String>,
    /// Message id a reaction refers to.
    pub message_id: Option<String>,
}

/// Why a body cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerBodyError {
    /// No instance id anywhere.
    #[error("body has no instance.id (or executionContext.source.instanceId)")]
    NoInstance,
    /// No chat id or session id anywhere.
    #[error("body has no chat.id (or executionContext.source.chatId / session.id)")]
    NoChat,
}

/// Reads a string, a number (as its decimal text) or anything else as absent, without building
/// an intermediate JSON tree.
fn lenient_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Lenient;
    impl<'de> serde::de::Visitor<'de> for Lenient {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok(serde_json::Number::from_f64(v).map(|n| n.to_string()))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Lenient)
}

/// Reads an object as `T`, and `null` or a value of another type as the default, without
/// building an intermediate JSON tree (`T`'s own fields are lenient).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct OrDefault<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> serde::de::Visitor<'de> for OrDefault<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or anything else")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(T::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_bool<E>(self, _: bool) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_unit<E>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_none<E>(self) -> Result<T, E> {
            Ok(T::default())
        }
    }
    d.deserialize_any(OrDefault(std::marker::PhantomData))
}

/// Reads an object as `Some(T)`, anything else as `None`.
fn object_or_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    /// `Some` only for an object.
    struct Present<T>(Option<T>);
    impl<T> Default for Present<T> {
        fn default() -> Self {
            Self(None)
        }
    }
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
        fn deserialize<D2: serde::Deserializer<'de>>(d: D2) -> Result<Self, D2::Error> {
            T::deserialize(d).map(|t| Self(Some(t)))
        }
    }
    null_as_default::<D, Present<T>>(d).map(|p| p.0)
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl OmniTrigger {
    /// Applies the fallbacks between the snapshot and late fields.
    ///
    /// # Errors
    /// [`TriggerBodyError`] when no instance or no conversation can be found.
    pub fn identify(&self) -> Result<Identified, TriggerBodyError> {
        let ec = self.execution_context.as_ref();
        let instance_id = non_empty(&self.instance.id)
            .or_else(|| ec.and_then(|e| non_empty(&e.source.instance_id)))
            .ok_or(TriggerBodyError::NoInstance)?;
        let session = ec.and_then(|e| non_empty(&e.session.id));
        let chat_id = non_empty(&self.chat.id)
            .or_else(|| ec.and_then(|e| non_empty(&e.source.chat_id)))
            .or_else(|| session.clone())
            .ok_or(TriggerBodyError::NoChat)?;
        let message_id = ec.and_then(|e| non_empty(&e.source.message_id));
        Ok(Identified {
            conversation: session.unwrap_or_else(|| chat_id.clone()),
            retry_key: non_empty(&self.trace_id).or_else(|| message_id.clone()),
            sender_name: non_empty(&self.sender.name)
                .or_else(|| ec.and_then(|e| non_empty(&e.identity.display_name))),
            message_id: non_empty(&self.content.referenced_message_id).or(message_id),
            instance_id,
            chat_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_body_without_execution_context() {
        let body = r#"{"event":{},"instance":{"id":"i1","channelType":"whatsapp"},"chat":{"id":"c1"},
            "sender":{"id":"u1","name":"Ana"},"content":{"text":"hi"},"traceId":"t1",
            "replyEndpoint":"POST /api/v2/messages/send","somethingNew":[1]}"#;
        let t: OmniTrigger = serde_json::from_str(body).unwrap();
        let id = t.identify().unwrap();
        assert_eq!(id.instance_id, "i1");
        assert_eq!(id.conversation, "c1");
        assert_eq!(id.retry_key.as_deref(), Some("t1"));
        assert_eq!(id.sender_name.as_deref(), Some("Ana"));
    }

    #[test]
    fn late_body_prefers_the_session_id_and_falls_back_to_the_message_id() {
        let body = r#"{"instance":{"id":"i1"},"chat":{"id":"c1"},"content":{"text":"hi"},
            "executionContext":{"source":{"instanceId":"i1","chatId":"c1","messageId":"m9"},
            "session":{"id":"u1:c1","strategy":"per_user_per_chat"},"trace":{"id":"x"}}}"#;
        let t: OmniTrigger = serde_json::from_str(body).unwrap();
        let id = t.identify().unwrap();
        assert_eq!(id.conversation, "u1:c1");
        assert_eq!(id.retry_key.as_deref(), Some("m9"));
    }

    #[test]
    fn odd_types_are_tolerated() {
        let body = r#"{"instance":{"id":"i"},"chat":{"id":12345},"sender":null,"content":{"text":"x","emoji":7},"traceId":null}"#;
        let t: OmniTrigger = serde_json::from_str(body).unwrap();
        let id = t.identify().unwrap();
        assert_eq!(id.chat_id, "12345");
        assert_eq!(id.retry_key, None);
    }

    #[test]
    fn values_of_the_wrong_type_anywhere_are_read_as_absent() {
        let body = r#"{"instance":{"id":"i","extra":{"deep":[1,{"x":null}]}},"chat":{"id":1.5},
            "sender":{"name":{"first":"A"}},"content":[1,2],"traceId":true,
            "executionContext":"later","event":{"a":[]}}"#;
        let t: OmniTrigger = serde_json::from_str(body).unwrap();
        let id = t.identify().unwrap();
        assert_eq!((id.instance_id.as_str(), id.chat_id.as_str()), ("i", "1.5"));
        assert_eq!((id.sender_name, id.retry_key), (None, None));
        assert!(t.execution_context.is_none() && t.content.text.is_none());
        let t: OmniTrigger =
            serde_json::from_str(r#"{"instance":5,"chat":null,"executionContext":{"session":7}}"#)
                .unwrap();
        assert!(t.execution_context.is_some());
        assert_eq!(t.identify(), Err(TriggerBodyError::NoInstance));
    }

    #[test]
    fn missing_instance_or_chat_is_refused() {
        let t: OmniTrigger = serde_json::from_str(r#"{"chat":{"id":"c"}}"#).unwrap();
        assert_eq!(t.identify(), Err(TriggerBodyError::NoInstance));
        let t: OmniTrigger = serde_json::from_str(r#"{"instance":{"id":"i"}}"#).unwrap();
        assert_eq!(t.identify(), Err(TriggerBodyError::NoChat));
    }
}
