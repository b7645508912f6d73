//! TLS material: the ring crypto provider, PEM loading, a server certificate that can be swapped
//! on SIGHUP without touching open connections, and the upstream client config (pinned or web
//! PKI).
//!
//! Reload works by resolving the certificate per handshake from an [`ArcSwap`]: new handshakes
//! see the new key at once, established sessions keep theirs.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::ProxyError;
use crate::pin::{Pin, pinned_client_config};

/// The one crypto provider (ring); passed explicitly so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(path: &Path, what: &str, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Tls(format!("{}: {what}: {e}", path.display()))
}

/// Reads a PEM certificate chain (leaf first).
///
/// # Errors
/// [`ProxyError::Tls`] when unreadable or empty.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, "cannot read certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, "bad PEM certificate", e))?;
    if certs.is_empty() {
        return Err(tls_err(
            path,
            "no certificate",
            "no CERTIFICATE block found",
        ));
    }
    Ok(certs)
}

/// Reads a certificate chain and its private key and checks they belong together.
///
/// # Errors
/// [`ProxyError::Tls`] naming the file at fault.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, ProxyError> {
    let certs = load_certs(cert)?;
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, "cannot read key", e))?;
    let ck = CertifiedKey::from_der(certs, key_der, &provider())
        .map_err(|e| tls_err(key, "key does not fit the certificate", e))?;
    Ok(Arc::new(ck))
}

/// The server certificate, swappable at run time.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadableCert {
    /// Starts with a loaded key.
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(key),
        }
    }

    /// Replaces the certificate for all future handshakes.
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The certificate now served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The listener's TLS config: the reloadable certificate, optional client certificates checked
/// against `client_ca` (not required: credentials decide), HTTP/1.1 ALPN.
///
/// # Errors
/// [`ProxyError::Tls`] for an unusable CA bundle.
pub fn server_config(
    cert: Arc<ReloadableCert>,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, ProxyError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in load_certs(path)? {
                roots
                    .add(c)
                    .map_err(|e| tls_err(path, "bad CA certificate", e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| tls_err(path, "client CA", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The upstream TLS config: pinned when pins are given, else `None` (tokio-tungstenite then
/// verifies against the bundled web PKI roots).
///
/// # Errors
/// [`ProxyError::Tls`] if rustls refuses the protocol versions (a bug).
pub fn upstream_client_config(pins: &[Pin]) -> Result<Option<Arc<ClientConfig>>, ProxyError> {
    if pins.is_empty() {
        return Ok(None);
    }
    let config =
        pinned_client_config(pins, provider()).map_err(|e| ProxyError::Tls(e.to_string()))?;
    Ok(Some(Arc::new(config)))
}

/// A generated self-signed certificate.
#[derive(Debug)]
pub struct SelfSigned {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: shared_protocol::Secret,
    /// Certificate pin.
    pub cert_pin: Pin,
    /// Public-key pin.
    pub spki_pin: Pin,
}

/// Generates a self-signed certificate for `hosts` (DNS names or IP addresses).
///
/// # Errors
/// [`ProxyError::Tls`] if rcgen refuses a name.
pub fn self_signed(hosts: &[String]) -> Result<SelfSigned, ProxyError> {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(hosts.to_vec())
            .map_err(|e| ProxyError::Tls(format!("cannot generate certificate: {e}")))?;
    let der = cert.der().clone();
    Ok(SelfSigned {
        cert_pem: cert.pem(),
        key_pem: shared_protocol::Secret::new(signing_key.serialize_pem()),
        cert_pin: Pin::cert_of(&der),
        spki_pin: Pin::spki_of(&der).map_err(|e| ProxyError::Tls(e.to_string()))?,
    })
}

/// Writes a file readable only by its owner (0600 on Unix), replacing any existing one.
///
/// # Errors
/// [`ProxyError::File`].
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ProxyError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| ProxyError::file(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| ProxyError::file(path, e))?;
    }
    f.write_all(contents).map_err(|e| ProxyError::file(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_files_load_back_and_are_private() {
        let dir = std::env::temp_dir().join(format!("gwp-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        write_private(&c, s.cert_pem.as_bytes()).unwrap();
        write_private(&k, s.key_pem.expose().as_bytes()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ck = load_certified_key(&c, &k).unwrap();
        assert!(s.cert_pin.matches(&ck.cert[0]) && s.spki_pin.matches(&ck.cert[0]));
        // A key from another certificate is refused with the file named.
        let other = self_signed(&["localhost".into()]).unwrap();
        write_private(&k, other.key_pem.expose().as_bytes()).unwrap();
        let err = load_certified_key(&c, &k).unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
        assert!(load_certs(&dir.join("missing.pem")).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
