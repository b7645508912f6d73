//! TLS for `wss://` gateways: WebPKI by default, or certificate pinning.
//!
//! The pin type, its text format (`sha256/cert:<hex>` / `sha256/spki:<hex>`) and the verifier are
//! the workspace's one implementation in [`shared_protocol::pin`] (the proxy reads the same
//! strings); this module only chooses between it and the bundled WebPKI roots.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use shared_protocol::pin::{PinParseError, pinned_client_config};

use crate::error::Error;

/// One accepted server identity: [`shared_protocol::pin::Pin`] under the bridge's name.
pub use shared_protocol::pin::Pin as CertPin;

impl From<PinParseError> for Error {
    fn from(e: PinParseError) -> Self {
        Error::Config(e.to_string())
    }
}

/// The rustls client config for a gateway: ring provider, pinned or WebPKI roots.
///
/// # Errors
/// [`Error::Config`] if rustls refuses the protocol versions (a build problem).
pub fn client_config(pins: &[CertPin]) -> Result<Arc<ClientConfig>, Error> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let tls_err = |e: rustls::Error| Error::Config(format!("tls: {e}"));
    let config = if pins.is_empty() {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_root_certificates(roots)
            .with_no_client_auth()
    } else {
        pinned_client_config(pins, provider).map_err(tls_err)?
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pins_are_config_errors_and_both_configs_build() {
        let err = Error::from("sha256/cert:00".parse::<CertPin>().unwrap_err());
        assert!(
            matches!(&err, Error::Config(m) if m.contains("invalid pin")),
            "{err}"
        );
        client_config(&[CertPin::Spki([0xab; 32])]).unwrap();
        client_config(&[]).unwrap();
    }
}
