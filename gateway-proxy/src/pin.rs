//! Certificate pins: `sha256/cert:<hex>` (the whole certificate) or `sha256/spki:<hex>` (its
//! public key, which survives re-issuing with the same key), and a rustls verifier that accepts
//! exactly the pinned gateway while still checking the TLS handshake signature.
//!
//! The text format is the one omni-bridge's `--gateway-pin` accepts.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// A SHA-256 pin of a certificate or of its SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// SHA-256 of the DER certificate (what `openssl x509 -fingerprint -sha256` prints).
    Cert([u8; 32]),
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    Spki([u8; 32]),
}

/// A pin string that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pin {0:?}: expected sha256/cert:<64 hex> or sha256/spki:<64 hex>")]
pub struct PinParseError(String);

impl Pin {
    /// Parses `sha256/cert:<hex>` or `sha256/spki:<hex>` (hex may contain `:` separators).
    ///
    /// # Errors
    /// [`PinParseError`] for anything else.
    pub fn parse(text: &str) -> Result<Self, PinParseError> {
        let err = || PinParseError(text.to_string());
        let (kind, hex_part) = text.trim().split_once(':').ok_or_else(err)?;
        let cleaned: String = hex_part.chars().filter(|c| *c != ':').collect();
        let bytes: [u8; 32] = hex::decode(cleaned)
            .map_err(|_| err())?
            .try_into()
            .map_err(|_| err())?;
        match kind.to_ascii_lowercase().as_str() {
            "sha256/cert" => Ok(Pin::Cert(bytes)),
            "sha256/spki" => Ok(Pin::Spki(bytes)),
            _ => Err(err()),
        }
    }

    /// The certificate pin of a DER certificate.
    pub fn cert_of(cert: &CertificateDer<'_>) -> Self {
        Pin::Cert(Sha256::digest(cert.as_ref()).into())
    }

    /// The SPKI pin of a DER certificate.
    ///
    /// # Errors
    /// When the certificate cannot be parsed.
    pub fn spki_of(cert: &CertificateDer<'_>) -> Result<Self, rustls::Error> {
        let ee = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(Pin::Spki(
            Sha256::digest(ee.subject_public_key_info().as_ref()).into(),
        ))
    }

    /// True when `cert` matches this pin.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            Pin::Cert(_) => Pin::cert_of(cert) == *self,
            Pin::Spki(_) => Pin::spki_of(cert).is_ok_and(|p| p == *self),
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Cert(h) => write!(f, "sha256/cert:{}", hex::encode(h)),
            Pin::Spki(h) => write!(f, "sha256/spki:{}", hex::encode(h)),
        }
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Accepts a server whose end-entity certificate matches one of the pins (name and chain are not
/// checked: the pin is the trust anchor) and verifies the handshake signature with its key.
#[derive(Debug)]
pub struct PinnedVerifier {
    pins: Vec<Pin>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVerifier {
    /// A verifier for these pins.
    pub fn new(pins: Vec<Pin>, provider: Arc<CryptoProvider>) -> Self {
        Self { pins, provider }
    }
}

impl ServerCertVerifier for PinnedVerifier {
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
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let hex64 = "ab".repeat(32);
        for kind in ["cert", "spki"] {
            let text = format!("sha256/{kind}:{hex64}");
            assert_eq!(Pin::parse(&text).unwrap().to_string(), text);
        }
        let colons = format!("sha256/cert:{}", vec!["AB"; 32].join(":"));
        assert_eq!(
            Pin::parse(&colons).unwrap(),
            Pin::parse(&format!("sha256/cert:{hex64}")).unwrap()
        );
        for bad in ["", "sha256/cert:zz", "sha1/cert:ab", &format!("sha256/x:{hex64}")] {
            assert!(Pin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins_match_only_their_certificate() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (a, b) = (a.cert.der().clone(), b.cert.der().clone());
        let (ca, sa) = (Pin::cert_of(&a), Pin::spki_of(&a).unwrap());
        assert!(ca.matches(&a) && sa.matches(&a));
        assert!(!ca.matches(&b) && !sa.matches(&b));
        assert_ne!(ca.to_string()[12..], sa.to_string()[12..]);
    }
}
