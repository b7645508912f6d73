//! Proxy-issued client credentials: random tokens, stored only as SHA-256 hashes, compared in
//! constant time.
//!
//! Tokens are 256 random bits, so a plain SHA-256 is enough (no password stretching needed): the
//! hash cannot be reversed and guessing is hopeless. Lookup compares the presented hash with
//! every configured hash without an early exit, so timing reveals neither which credential
//! nearly matched nor where.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use shared_protocol::Secret;
use subtle::ConstantTimeEq;

use crate::config::CredentialConfig;
use crate::error::ProxyError;
use crate::policy::Policy;

/// Prefix of generated tokens, so a leaked one is recognisable in a secret scanner.
pub const TOKEN_PREFIX: &str = "gwp_";

/// SHA-256 of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a presented token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// A readable reason.
    pub fn from_hex(hex_str: &str) -> Result<Self, String> {
        let bytes = hex::decode(hex_str.trim())
            .map_err(|e| format!("not hex ({e}); expected 64 hex digits"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "expected 64 hex digits (a SHA-256)".to_string())?;
        Ok(Self(arr))
    }

    /// Lower-case hex.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// Generates a new random token (`gwp_` + 43 base64url chars = 256 bits).
///
/// # Errors
/// [`ProxyError::Config`] if the system RNG fails.
pub fn generate_token() -> Result<Secret, ProxyError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ProxyError::Config("system random number generator failed".into()))?;
    Ok(Secret::new(format!(
        "{TOKEN_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(bytes)
    )))
}

/// A configured credential with its live state.
#[derive(Debug)]
pub struct Credential {
    /// Name from the config (logs, audit).
    pub id: String,
    /// Index in the store: a cheap rate-limiter key.
    pub index: u32,
    hash: TokenHash,
    /// What it may do.
    pub policy: Policy,
    /// Open connections at once (0 = unlimited).
    pub max_connections: u32,
    /// A connect without a valid device proof is refused.
    pub require_device: bool,
    /// Accepted client-certificate pins (mutual TLS); empty = no client certificate needed.
    pub client_cert_pins: Vec<crate::pin::Pin>,
    open: AtomicU32,
}

/// Holds one slot of a credential's connection budget; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Credential>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Credential {
    /// Takes a connection slot, or `None` when the credential is at its limit.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let max = self.max_connections;
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(Arc::clone(self)))
    }

    /// Connections open now.
    pub fn open_connections(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

/// All credentials.
#[derive(Debug, Default)]
pub struct CredentialStore {
    creds: Vec<Arc<Credential>>,
}

impl CredentialStore {
    /// Builds the store from validated config.
    ///
    /// # Errors
    /// [`ProxyError::Config`] for a malformed entry (already caught by `validate`).
    pub fn from_config(configs: &[CredentialConfig]) -> Result<Self, ProxyError> {
        let creds = configs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let at = |e: String| ProxyError::Config(format!("credentials[{}]: {e}", c.id));
                Ok(Arc::new(Credential {
                    id: c.id.clone(),
                    index: u32::try_from(i).map_err(|_| at("too many credentials".into()))?,
                    hash: TokenHash::from_hex(&c.token_sha256).map_err(at)?,
                    policy: Policy::from_config(c).map_err(at)?,
                    max_connections: c.max_connections,
                    require_device: c.require_device,
                    client_cert_pins: c
                        .client_cert_pins
                        .iter()
                        .map(|p| crate::pin::Pin::parse(p).map_err(|e| at(e.to_string())))
                        .collect::<Result<_, _>>()?,
                    open: AtomicU32::new(0),
                }))
            })
            .collect::<Result<_, ProxyError>>()?;
        Ok(Self { creds })
    }

    /// The credential whose hash matches `token`, compared in constant time against every entry.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Credential>> {
        let presented = TokenHash::of(token);
        let mut found = None;
        for c in &self.creds {
            if bool::from(c.hash.0.ct_eq(&presented.0)) {
                found = Some(Arc::clone(c));
            }
        }
        found
    }

    /// Number of credentials.
    pub fn len(&self) -> usize {
        self.creds.len()
    }

    /// True when no credential is configured.
    pub fn is_empty(&self) -> bool {
        self.creds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, token: &str, max: u32) -> CredentialConfig {
        CredentialConfig {
            id: id.into(),
            token_sha256: TokenHash::of(token).to_hex(),
            scopes: vec!["operator.read".into()],
            allow_methods: None,
            deny_methods: vec![],
            max_connections: max,
            require_device: false,
            client_cert_pins: vec![],
        }
    }

    #[test]
    fn generated_tokens_are_random_and_authenticate_only_themselves() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(TOKEN_PREFIX) && a.expose().len() == 47);
        let store =
            CredentialStore::from_config(&[config("a", a.expose(), 1), config("b", b.expose(), 1)])
                .unwrap();
        assert_eq!(store.authenticate(a.expose()).unwrap().id, "a");
        assert_eq!(store.authenticate(b.expose()).unwrap().id, "b");
        assert!(store.authenticate("gwp_wrong").is_none());
        assert!(store.authenticate("").is_none());
    }

    #[test]
    fn connection_slots_are_bounded_and_released() {
        let store = CredentialStore::from_config(&[config("a", "t", 2)]).unwrap();
        let c = store.authenticate("t").unwrap();
        let s1 = c.try_acquire().unwrap();
        let _s2 = c.try_acquire().unwrap();
        assert!(c.try_acquire().is_none());
        drop(s1);
        assert_eq!(c.open_connections(), 1);
        assert!(c.try_acquire().is_some());
    }

    #[test]
    fn hash_parsing_is_strict_and_debug_is_short() {
        assert!(TokenHash::from_hex("zz").is_err());
        assert!(TokenHash::from_hex(&"ab".repeat(31)).is_err());
        let h = TokenHash::of("test");
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(!format!("{h:?}").contains(&h.to_hex()));
    }
}
