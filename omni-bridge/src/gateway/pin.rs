//! TLS for `wss://` gateways: WebPKI by default, or certificate pinning.
//!
//! A pin is the SHA-256 of the server's end-entity certificate (`sha256/cert:<64 hex>`, what
//! `openssl x509 -noout -fingerprint -sha256` prints, colons allowed) or of its
//! SubjectPublicKeyInfo (`sha256/spki:<64 hex>`, survives re-issuing the certificate with the
//! same key). With pins, the chain and name are not checked against CAs (self-signed gateways
//! are the point), but the handshake signature still is, so the peer must hold the pinned key.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

use super::error::GatewayError;

/// One accepted server identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertPin {
    /// SHA-256 of the DER end-entity certificate.
    Certificate([u8; 32]),
    /// SHA-256 of the DER SubjectPublicKeyInfo of the end-entity certificate.
    PublicKey([u8; 32]),
}

impl CertPin {
    /// The certificate pin of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Self {
        Self::Certificate(Sha256::digest(der).into())
    }

    /// The SPKI pin of a DER certificate.
    ///
    /// # Errors
    /// [`GatewayError::Config`] when the certificate cannot be parsed.
    pub fn of_public_key(der: &[u8]) -> Result<Self, GatewayError> {
        let cert = CertificateDer::from(der);
        let spki = spki_sha256(&cert).ok_or_else(|| {
            GatewayError::Config("cannot parse the certificate for an SPKI pin".into())
        })?;
        Ok(Self::PublicKey(spki))
    }

    fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            Self::Certificate(want) => Sha256::digest(cert.as_ref()).as_slice() == want,
            Self::PublicKey(want) => spki_sha256(cert).is_some_and(|got| &got == want),
        }
    }
}

fn spki_sha256(cert: &CertificateDer<'_>) -> Option<[u8; 32]> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    Some(Sha256::digest(ee.subject_public_key_info().as_ref()).into())
}

impl fmt::Display for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Certificate(h) => write!(f, "sha256/cert:{}", hex::encode(h)),
            Self::PublicKey(h) => write!(f, "sha256/spki:{}", hex::encode(h)),
        }
    }
}

impl fmt::Debug for CertPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for CertPin {
    type Err = GatewayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            GatewayError::Config(format!(
                "invalid pin {s:?}: {why} (expected sha256/cert:<64 hex> or sha256/spki:<64 hex>)"
            ))
        };
        let (kind, hex_part) = s
            .trim()
            .strip_prefix("sha256/")
            .and_then(|rest| rest.split_once(':'))
            .ok_or_else(|| bad("missing prefix"))?;
        let cleaned: String = hex_part.chars().filter(|c| *c != ':').collect();
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&cleaned, &mut hash).map_err(|_| bad("not 32 bytes of hex"))?;
        match kind {
            "cert" => Ok(Self::Certificate(hash)),
            "spki" => Ok(Self::PublicKey(hash)),
            _ => Err(bad("unknown kind")),
        }
    }
}

impl<'de> Deserialize<'de> for CertPin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Accepts exactly the pinned certificates and still verifies the handshake signature.
#[derive(Debug)]
struct PinVerifier {
    pins: Vec<CertPin>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.pins.iter().any(|p| p.matches(end_entity)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client config for a gateway: ring provider, pinned or WebPKI roots.
///
/// # Errors
/// [`GatewayError::Config`] if rustls refuses the protocol versions (a build problem).
pub fn client_config(pins: &[CertPin]) -> Result<Arc<ClientConfig>, GatewayError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::Config(format!("tls: {e}")))?;
    let config = if pins.is_empty() {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pins: pins.to_vec(),
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let hex64 = "ab".repeat(32);
        let pin: CertPin = format!("sha256/spki:{hex64}").parse().unwrap();
        assert_eq!(pin, CertPin::PublicKey([0xab; 32]));
        assert_eq!(pin.to_string(), format!("sha256/spki:{hex64}"));
        let colons = ["AB"; 32].join(":");
        let pin: CertPin = format!("sha256/cert:{colons}").parse().unwrap();
        assert_eq!(pin, CertPin::Certificate([0xab; 32]));
        for bad in ["sha1/cert:ab", "sha256/cert:abc", "sha256/x:00", "cert:00"] {
            assert!(bad.parse::<CertPin>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pins_of_a_generated_certificate_match_only_it() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (da, db) = (a.cert.der().clone(), b.cert.der().clone());
        assert!(CertPin::of_certificate(&da).matches(&da));
        assert!(!CertPin::of_certificate(&da).matches(&db));
        let spki = CertPin::of_public_key(&da).unwrap();
        assert!(spki.matches(&da) && !spki.matches(&db));
        // Same key, new certificate: the SPKI pin still matches, the cert pin does not.
        let params = rcgen::CertificateParams::new(vec!["other".into()]).unwrap();
        let reissued = params.self_signed(&a.signing_key).unwrap();
        assert!(spki.matches(reissued.der()));
        assert!(!CertPin::of_certificate(&da).matches(reissued.der()));
        client_config(&[spki]).unwrap();
        client_config(&[]).unwrap();
    }
}
