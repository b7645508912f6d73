//! Device identity: an Ed25519 key whose signature over the challenge proves who connects.
//!
//! `device.id` = lowercase hex SHA-256 of the raw 32-byte public key; the public key and the
//! signature travel as base64url without padding. The signed payload is v3 (preferred) or v2
//! (`packages/gateway-client/src/device-auth.ts`). Ed25519 comes from `ring`, which rustls already
//! links, so no second crypto library is needed.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::connect::{ConnectParams, DeviceProof};
use crate::error::DetailCode;
use crate::limits::DEVICE_SIGNATURE_SKEW_MS;
use crate::secret::Secret;

/// Failures creating or using a device key.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The OS random source failed.
    #[error("cannot generate a device key: system random source failed")]
    Random,
    /// The seed is not a valid Ed25519 seed.
    #[error("invalid device key seed")]
    InvalidSeed,
}

/// An Ed25519 device identity. `Debug` shows only the device id.
pub struct DeviceIdentity {
    pair: Ed25519KeyPair,
    seed: Secret<[u8; 32]>,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id())
            .finish_non_exhaustive()
    }
}

impl DeviceIdentity {
    /// A new random identity.
    ///
    /// # Errors
    /// [`DeviceError::Random`].
    pub fn generate() -> Result<Self, DeviceError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| DeviceError::Random)?;
        Self::from_seed(seed)
    }

    /// The identity for a stored 32-byte seed.
    ///
    /// # Errors
    /// [`DeviceError::InvalidSeed`].
    pub fn from_seed(seed: [u8; 32]) -> Result<Self, DeviceError> {
        let pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| DeviceError::InvalidSeed)?;
        Ok(Self {
            pair,
            seed: Secret::new(seed),
        })
    }

    /// The seed, to store (file mode 0600): whoever has it is this device.
    pub fn seed(&self) -> &Secret<[u8; 32]> {
        &self.seed
    }

    /// Raw public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Hex SHA-256 of the raw public key.
    pub fn device_id(&self) -> String {
        device_id_for(self.public_key())
    }

    /// Signs the v3 payload for these connect params and challenge, returning the proof to put
    /// in `params.device`. `params.auth` must already be set (its token is signed).
    pub fn prove(&self, params: &ConnectParams, nonce: &str, signed_at_ms: u64) -> DeviceProof {
        let device_id = self.device_id();
        let payload = SignedFields::of(params, &device_id, nonce, signed_at_ms).v3();
        DeviceProof {
            id: device_id,
            public_key: URL_SAFE_NO_PAD.encode(self.public_key()),
            signature: Secret::new(
                URL_SAFE_NO_PAD.encode(self.pair.sign(payload.as_bytes()).as_ref()),
            ),
            signed_at: signed_at_ms,
            nonce: nonce.to_string(),
        }
    }
}

/// Hex SHA-256 of a raw public key.
pub fn device_id_for(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// The fields a device signature covers.
#[derive(Debug, Clone)]
pub struct SignedFields<'a> {
    /// Device id.
    pub device_id: &'a str,
    /// `client.id`.
    pub client_id: &'a str,
    /// `client.mode`.
    pub client_mode: &'a str,
    /// `role` (`operator` when absent).
    pub role: &'a str,
    /// Requested scopes, in the order sent.
    pub scopes: Vec<&'a str>,
    /// The challenge ts.
    pub signed_at_ms: u64,
    /// `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    pub token: &'a str,
    /// The challenge nonce.
    pub nonce: &'a str,
    /// `client.platform`.
    pub platform: &'a str,
    /// `client.deviceFamily`.
    pub device_family: &'a str,
}

impl<'a> SignedFields<'a> {
    /// Collects the signed fields from connect params.
    pub fn of(
        params: &'a ConnectParams,
        device_id: &'a str,
        nonce: &'a str,
        signed_at_ms: u64,
    ) -> Self {
        Self {
            device_id,
            client_id: params.client.id.as_str(),
            client_mode: params.client.mode.as_str(),
            role: params.role.map_or("operator", |r| r.as_str()),
            scopes: params.scopes.iter().flatten().map(String::as_str).collect(),
            signed_at_ms,
            token: params.auth.as_ref().map_or("", |a| a.signed_token()),
            nonce,
            platform: &params.client.platform,
            device_family: params.client.device_family.as_deref().unwrap_or(""),
        }
    }

    /// `v2|deviceId|clientId|clientMode|role|scopes|signedAtMs|token|nonce`
    pub fn v2(&self) -> String {
        format!(
            "v2|{}|{}|{}|{}|{}|{}|{}|{}",
            self.device_id,
            self.client_id,
            self.client_mode,
            self.role,
            self.scopes.join(","),
            self.signed_at_ms,
            self.token,
            self.nonce
        )
    }

    /// v2 plus `|platform|deviceFamily`, both trimmed and ASCII-lower-cased.
    pub fn v3(&self) -> String {
        let fold = |s: &str| s.trim().to_ascii_lowercase();
        format!(
            "v3{}|{}|{}",
            &self.v2()[2..],
            fold(self.platform),
            fold(self.device_family)
        )
    }
}

/// Why a device proof was refused; each maps to the gateway's detail code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceProofError {
    /// Public key is not 32 bytes of base64url/base64.
    #[error("device public key is invalid")]
    PublicKeyInvalid,
    /// `device.id` is not the hash of the key.
    #[error("device id does not match the public key")]
    DeviceIdMismatch,
    /// `device.nonce` is not this connection's challenge.
    #[error("device nonce does not match the challenge")]
    NonceMismatch,
    /// `signedAt` too far from now.
    #[error("device signature expired")]
    SignatureExpired,
    /// Neither the v3 nor the v2 payload verifies.
    #[error("device signature is invalid")]
    SignatureInvalid,
}

impl DeviceProofError {
    /// The gateway's `details.code` for this failure.
    pub fn detail_code(self) -> DetailCode {
        match self {
            Self::PublicKeyInvalid => DetailCode::DeviceAuthPublicKeyInvalid,
            Self::DeviceIdMismatch => DetailCode::DeviceAuthDeviceIdMismatch,
            Self::NonceMismatch => DetailCode::DeviceAuthNonceMismatch,
            Self::SignatureExpired => DetailCode::DeviceAuthSignatureExpired,
            Self::SignatureInvalid => DetailCode::DeviceAuthSignatureInvalid,
        }
    }
}

/// Verifies `params.device` against the nonce this server issued, as the gateway does: key,
/// id, nonce, clock skew, then the v3 payload and, failing that, v2.
///
/// # Errors
/// The first check that fails.
pub fn verify_proof(
    params: &ConnectParams,
    proof: &DeviceProof,
    expected_nonce: &str,
    now_ms: u64,
) -> Result<(), DeviceProofError> {
    let public_key = decode_b64(&proof.public_key)
        .filter(|k| k.len() == 32)
        .ok_or(DeviceProofError::PublicKeyInvalid)?;
    if device_id_for(&public_key) != proof.id {
        return Err(DeviceProofError::DeviceIdMismatch);
    }
    if proof.nonce != expected_nonce {
        return Err(DeviceProofError::NonceMismatch);
    }
    if now_ms.abs_diff(proof.signed_at) > DEVICE_SIGNATURE_SKEW_MS {
        return Err(DeviceProofError::SignatureExpired);
    }
    let signature =
        decode_b64(proof.signature.expose()).ok_or(DeviceProofError::SignatureInvalid)?;
    let key = UnparsedPublicKey::new(&ED25519, &public_key);
    let fields = SignedFields::of(params, &proof.id, &proof.nonce, proof.signed_at);
    [fields.v3(), fields.v2()]
        .iter()
        .any(|payload| key.verify(payload.as_bytes(), &signature).is_ok())
        .then_some(())
        .ok_or(DeviceProofError::SignatureInvalid)
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let trimmed = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| STANDARD.decode(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{ClientId, ClientInfo, ClientMode};
    use crate::{Scope, Secret};

    fn params() -> ConnectParams {
        let mut p = ConnectParams::backend(
            "1.0",
            &[Scope::Read, Scope::Write],
            Some(Secret::new("tok".into())),
        );
        p.client = ClientInfo {
            device_family: Some(" Desktop ".into()),
            ..ClientInfo::new(ClientId::Cli, ClientMode::Cli, "1")
        };
        p
    }

    #[test]
    fn payloads_have_the_documented_layout() {
        let p = params();
        let f = SignedFields::of(&p, "dev", "nonce-1", 42);
        assert_eq!(
            f.v2(),
            "v2|dev|cli|cli|operator|operator.read,operator.write|42|tok|nonce-1"
        );
        assert_eq!(
            f.v3(),
            "v3|dev|cli|cli|operator|operator.read,operator.write|42|tok|nonce-1|linux|desktop"
        );
    }

    #[test]
    fn prove_then_verify_and_each_refusal() {
        let id = DeviceIdentity::generate().unwrap();
        assert_eq!(id.device_id().len(), 64);
        let mut p = params();
        let proof = id.prove(&p, "n1", 1_000_000);
        assert_eq!(verify_proof(&p, &proof, "n1", 1_050_000), Ok(()));
        assert_eq!(
            verify_proof(&p, &proof, "n2", 1_000_000),
            Err(DeviceProofError::NonceMismatch)
        );
        assert_eq!(
            verify_proof(&p, &proof, "n1", 1_200_001),
            Err(DeviceProofError::SignatureExpired)
        );
        let wrong_id = DeviceProof {
            id: "00".repeat(32),
            ..proof.clone()
        };
        assert_eq!(
            verify_proof(&p, &wrong_id, "n1", 1_000_000),
            Err(DeviceProofError::DeviceIdMismatch)
        );
        let bad_key = DeviceProof {
            public_key: "abc".into(),
            ..proof.clone()
        };
        assert_eq!(
            verify_proof(&p, &bad_key, "n1", 1_000_000),
            Err(DeviceProofError::PublicKeyInvalid)
        );
        // Asking for more scopes than were signed breaks the signature.
        p.scopes = Some(vec!["operator.admin".into()]);
        assert_eq!(
            verify_proof(&p, &proof, "n1", 1_000_000),
            Err(DeviceProofError::SignatureInvalid)
        );
        assert!(!format!("{id:?}").contains(&hex::encode(id.seed().expose())));
    }

    #[test]
    fn seed_round_trip_keeps_the_identity() {
        let id = DeviceIdentity::generate().unwrap();
        let again = DeviceIdentity::from_seed(*id.seed().expose()).unwrap();
        assert_eq!(id.device_id(), again.device_id());
    }

    #[test]
    fn v2_signatures_are_still_accepted() {
        let id = DeviceIdentity::generate().unwrap();
        let p = params();
        let device_id = id.device_id();
        let f = SignedFields::of(&p, &device_id, "n", 5);
        let sig = URL_SAFE_NO_PAD.encode(id.pair.sign(f.v2().as_bytes()).as_ref());
        let proof = DeviceProof {
            id: id.device_id(),
            public_key: URL_SAFE_NO_PAD.encode(id.public_key()),
            signature: Secret::new(sig),
            signed_at: 5,
            nonce: "n".into(),
        };
        assert_eq!(verify_proof(&p, &proof, "n", 5), Ok(()));
    }
}
