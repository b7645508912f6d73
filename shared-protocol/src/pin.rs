//! Certificate pins and the rustls verifier that trusts exactly them, shared by every TLS client
//! in the workspace (the bridge towards `wss://` gateways, the proxy towards its upstream and for
//! client certificates).
//!
//! A pin is the SHA-256 of the server's end-entity certificate (`sha256/cert:<64 hex>`, what
//! `openssl x509 -noout -fingerprint -sha256` prints, colons allowed) or of its
//! SubjectPublicKeyInfo (`sha256/spki:<64 hex>`, survives re-issuing the certificate with the
//! same key). With pins, the chain and name are not checked against CAs (self-signed gateways
//! are the point), but the handshake signature still is, so the peer must hold the pinned key.
//!
//! One implementation so that the text format, the matching rule and the verifier cannot drift
//! between the components that read the same `--gateway-pin` / `pins` values.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// A SHA-256 pin of a certificate or of its SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    /// SHA-256 of the DER end-entity certificate (what `openssl x509 -fingerprint -sha256`
    /// prints).
    Cert([u8; 32]),
    /// SHA-256 of the DER SubjectPublicKeyInfo of the end-entity certificate.
    Spki([u8; 32]),
}

/// A pin string that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pin {text:?}: {reason} (expected sha256/cert:<64 hex> or sha256/spki:<64 hex>)")]
pub struct PinParseError {
    text: String,
    reason: &'static str,
}

impl Pin {
    /// Parses `sha256/cert:<hex>` or `sha256/spki:<hex>` (hex may contain `:` separators; the
    /// kind is case-insensitive).
    ///
    /// # Errors
    /// [`PinParseError`] for anything else.
    pub fn parse(text: &str) -> Result<Self, PinParseError> {
        let bad = |reason| PinParseError {
            text: text.to_string(),
            reason,
        };
        let (kind, hex_part) = text.trim().split_once(':').ok_or_else(|| bad("no kind"))?;
        let cleaned: String = hex_part.chars().filter(|c| *c != ':').collect();
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&cleaned, &mut hash).map_err(|_| bad("not 32 bytes of hex"))?;
        match kind.to_ascii_lowercase().as_str() {
            "sha256/cert" => Ok(Self::Cert(hash)),
            "sha256/spki" => Ok(Self::Spki(hash)),
            _ => Err(bad("unknown kind")),
        }
    }

    /// The certificate pin of a DER certificate.
    pub fn cert_of(der: &[u8]) -> Self {
        Self::Cert(Sha256::digest(der).into())
    }

    /// The SPKI pin of a DER certificate.
    ///
    /// # Errors
    /// [`rustls::Error::InvalidCertificate`] when the certificate cannot be parsed.
    pub fn spki_of(der: &[u8]) -> Result<Self, rustls::Error> {
        let cert = CertificateDer::from(der);
        let ee = webpki::EndEntityCert::try_from(&cert)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(Self::Spki(
            Sha256::digest(ee.subject_public_key_info().as_ref()).into(),
        ))
    }

    /// [`Pin::cert_of`] under the name omni-bridge's API has always used.
    pub fn of_certificate(der: &[u8]) -> Self {
        Self::cert_of(der)
    }

    /// [`Pin::spki_of`] under the name omni-bridge's API has always used.
    ///
    /// # Errors
    /// [`rustls::Error::InvalidCertificate`] when the certificate cannot be parsed.
    pub fn of_public_key(der: &[u8]) -> Result<Self, rustls::Error> {
        Self::spki_of(der)
    }

    /// True when the DER certificate `cert` matches this pin.
    pub fn matches(&self, cert: &[u8]) -> bool {
        match self {
            Self::Cert(_) => Self::cert_of(cert) == *self,
            Self::Spki(_) => Self::spki_of(cert).is_ok_and(|p| p == *self),
        }
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cert(h) => write!(f, "sha256/cert:{}", hex::encode(h)),
            Self::Spki(h) => write!(f, "sha256/spki:{}", hex::encode(h)),
        }
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Pin {
    type Err = PinParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for Pin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
    /// A verifier for these pins, checking signatures with `provider`'s algorithms.
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

/// A client config (safe default protocol versions, no client certificate) that trusts exactly
/// `pins` through a [`PinnedVerifier`].
///
/// # Errors
/// The rustls error if `provider` supports none of the default protocol versions (a build
/// problem).
pub fn pinned_client_config(
    pins: &[Pin],
    provider: Arc<CryptoProvider>,
) -> Result<ClientConfig, rustls::Error> {
    let verifier = PinnedVerifier::new(pins.to_vec(), Arc::clone(&provider));
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
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
            assert_eq!(text.parse::<Pin>().unwrap().to_string(), text);
        }
        let pin: Pin = format!("sha256/spki:{hex64}").parse().unwrap();
        assert_eq!(pin, Pin::Spki([0xab; 32]));
        let colons = ["AB"; 32].join(":");
        let pin: Pin = format!("sha256/cert:{colons}").parse().unwrap();
        assert_eq!(pin, Pin::Cert([0xab; 32]));
        assert_eq!(
            Pin::parse(&format!(" SHA256/Cert:{hex64} ")).unwrap(),
            Pin::Cert([0xab; 32])
        );
        for bad in [
            "",
            "sha256/cert:zz",
            "sha256/cert:abc",
            "sha1/cert:ab",
            "sha256/x:00",
            "cert:00",
            &format!("sha256/x:{hex64}"),
            &format!("sha1/cert:{hex64}"),
        ] {
            let err = Pin::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("expected sha256/cert:<64 hex>"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn deserialises_from_a_string_and_rejects_bad_ones() {
        let hex64 = "cd".repeat(32);
        let pins: Vec<Pin> =
            serde_json::from_str(&format!(r#"["sha256/cert:{hex64}","sha256/spki:{hex64}"]"#))
                .unwrap();
        assert_eq!(pins, [Pin::Cert([0xcd; 32]), Pin::Spki([0xcd; 32])]);
        let err = serde_json::from_str::<Pin>(r#""sha256/cert:00""#).unwrap_err();
        assert!(err.to_string().contains("invalid pin"), "{err}");
    }

    #[test]
    fn pins_of_a_generated_certificate_match_only_it() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (da, db) = (a.cert.der().clone(), b.cert.der().clone());
        let (cert, spki) = (Pin::cert_of(&da), Pin::spki_of(&da).unwrap());
        assert_eq!(Pin::of_certificate(&da), cert);
        assert_eq!(Pin::of_public_key(&da).unwrap(), spki);
        assert!(cert.matches(&da) && spki.matches(&da));
        assert!(!cert.matches(&db) && !spki.matches(&db));
        assert_ne!(cert.to_string()[12..], spki.to_string()[12..]);
        // Same key, new certificate: the SPKI pin still matches, the cert pin does not.
        let params = rcgen::CertificateParams::new(vec!["other".into()]).unwrap();
        let reissued = params.self_signed(&a.signing_key).unwrap();
        assert!(spki.matches(reissued.der()));
        assert!(!cert.matches(reissued.der()));
        // Garbage is no certificate: no SPKI pin, and no pin matches it.
        assert!(Pin::spki_of(b"not a certificate").is_err());
        assert!(!spki.matches(b"not a certificate"));
    }

    #[test]
    fn verifier_accepts_only_pinned_end_entities() {
        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedVerifier::new(
            vec![Pin::spki_of(a.cert.der()).unwrap()],
            Arc::clone(&provider),
        );
        let name = ServerName::try_from("elsewhere.example").unwrap();
        let verify = |der: &CertificateDer<'_>| {
            verifier.verify_server_cert(der, &[], &name, &[], UnixTime::now())
        };
        assert!(verify(a.cert.der()).is_ok(), "name is not checked");
        assert!(matches!(
            verify(b.cert.der()),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure
            ))
        ));
        assert!(!verifier.supported_verify_schemes().is_empty());
        pinned_client_config(&[Pin::Cert([0; 32])], provider).unwrap();
    }
}
