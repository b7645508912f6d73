//! Session keys for Omni conversations: one OpenClaw session per (instance, conversation).
//!
//! The rest of the key is `omni-<instanceId>-<session or chat id>`, so two Omni instances never
//! share a conversation. With a `session_key_secret` it is `omni-<hex HMAC-SHA256(secret,
//! "instance:conversation")>` instead, so keys cannot be enumerated from chat ids (phone numbers).

use ring::hmac;
use shared_protocol::{AgentId, Secret, SessionKey, SessionKeyError};

/// Hex characters of the HMAC kept in a key (128 bits).
pub const HASHED_REST_HEX_CHARS: usize = 32;

/// Builds the session key for a conversation.
///
/// # Errors
/// [`SessionKeyError::EmptyRest`] cannot happen for the readable form (it always has the `omni-`
/// prefix) but is passed on from [`SessionKey::build`].
pub fn session_key(
    agent: &AgentId,
    instance_id: &str,
    conversation: &str,
    secret: Option<&Secret>,
) -> Result<SessionKey, SessionKeyError> {
    match secret {
        Some(secret) => {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes());
            let tag = hmac::sign(&key, format!("{instance_id}:{conversation}").as_bytes());
            let hex = hex::encode(tag.as_ref());
            SessionKey::build(agent, &format!("omni-{}", &hex[..HASHED_REST_HEX_CHARS]))
        }
        None => SessionKey::build(agent, &format!("omni-{instance_id}-{conversation}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_and_hashed_keys() {
        let a = AgentId::parse("main").unwrap();
        assert_eq!(
            session_key(&a, "inst1", "5511:99@s.whatsapp.net", None)
                .unwrap()
                .as_str(),
            "agent:main:omni-inst1-5511-99@s.whatsapp.net"
        );
        assert_ne!(
            session_key(&a, "inst1", "c", None).unwrap(),
            session_key(&a, "inst2", "c", None).unwrap()
        );
        let s = Secret::new("0123456789abcdef".to_string());
        let h1 = session_key(&a, "inst1", "chat", Some(&s)).unwrap();
        let h2 = session_key(&a, "inst2", "chat", Some(&s)).unwrap();
        assert_ne!(h1, h2);
        assert!(!h1.as_str().contains("chat"));
        assert_eq!(
            h1.as_str().len(),
            "agent:main:omni-".len() + HASHED_REST_HEX_CHARS
        );
        assert_eq!(h1, session_key(&a, "inst1", "chat", Some(&s)).unwrap());
    }
}
