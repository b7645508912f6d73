//! A proxy on loopback with a fresh self-signed certificate and one credential.
//!
//! This is how the demo and the end-to-end tests put the real proxy, unchanged, between the
//! bridge and a gateway in-process: `wss://127.0.0.1:<port>` with a certificate the client pins
//! by its SPKI hash, exchange mode, the gateway token held only here. Files (certificate, key,
//! audit log) live in a private temporary directory removed by [`LoopbackProxy::stop`].

use std::net::SocketAddr;
use std::path::PathBuf;

use shared_protocol::Secret;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use gateway_proxy::config::LimitsConfig;
use gateway_proxy::credential::TokenHash;
use gateway_proxy::pin::Pin;
use gateway_proxy::{Config, Listeners, Proxy, ProxyError, Shutdown};

/// A running loopback proxy.
#[derive(Debug)]
pub struct LoopbackProxy {
    /// `wss://127.0.0.1:<port>`: where clients connect.
    pub wss_url: String,
    /// SPKI pin of the proxy's certificate, for the client's pin list.
    pub pin: Pin,
    /// `/metrics`, `/healthz`, `/readyz`.
    pub admin: SocketAddr,
    proxy: Proxy,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), ProxyError>>,
    dir: PathBuf,
}

impl LoopbackProxy {
    /// Starts a proxy in front of `upstream_url` that admits one credential, `client_token`, with
    /// `operator.read` + `operator.write`, under `limits` (`LimitsConfig::default()` for the
    /// production defaults; tests pick rates whose refill is far longer than the test).
    ///
    /// # Errors
    /// [`ProxyError`] when the certificate, the config or a socket cannot be set up.
    pub async fn start(
        upstream_url: &str,
        upstream_token: &Secret,
        client_token: &Secret,
        limits: LimitsConfig,
    ) -> Result<Self, ProxyError> {
        let dir =
            std::env::temp_dir().join(format!("gateway-proxy-loopback-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).map_err(ProxyError::Io)?;
        let result = Self::start_in(
            dir.clone(),
            upstream_url,
            upstream_token,
            client_token,
            limits,
        )
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn start_in(
        dir: PathBuf,
        upstream_url: &str,
        upstream_token: &Secret,
        client_token: &Secret,
        limits: LimitsConfig,
    ) -> Result<Self, ProxyError> {
        let cert = gateway_proxy::tls::self_signed(&["localhost".into(), "127.0.0.1".into()])?;
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        gateway_proxy::tls::write_private(&cert_path, cert.cert_pem.as_bytes())?;
        gateway_proxy::tls::write_private(&key_path, cert.key_pem.expose().as_bytes())?;
        let mut config = Config::from_toml(&config_text(
            &dir,
            upstream_url,
            upstream_token,
            &TokenHash::of(client_token.expose()).to_hex(),
        )?)?;
        config.limits = limits;
        config.validate()?;
        let tls = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ProxyError::Io)?;
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(ProxyError::Io)?;
        let wss_url = format!("wss://{}", tls.local_addr().map_err(ProxyError::Io)?);
        let admin_addr = admin.local_addr().map_err(ProxyError::Io)?;
        let proxy = Proxy::new(config, prometheus::Registry::new())?;
        let shutdown = Shutdown::new();
        let listeners = Listeners {
            tls: Some(tls),
            plain: None,
            admin: Some(admin),
        };
        let task = tokio::spawn({
            let (proxy, shutdown) = (proxy.clone(), shutdown.clone());
            async move { proxy.run(listeners, shutdown).await }
        });
        Ok(Self {
            wss_url,
            pin: cert.spki_pin,
            admin: admin_addr,
            proxy,
            shutdown,
            task,
            dir,
        })
    }

    /// The proxy (metrics, reload).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Closes every connection (1012), waits for the proxy to end and removes its files.
    pub async fn stop(self) {
        self.shutdown.now();
        let _ = self.task.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config as TOML, built with the TOML serialiser so paths and URLs are quoted correctly.
fn config_text(
    dir: &std::path::Path,
    upstream_url: &str,
    upstream_token: &Secret,
    token_hash: &str,
) -> Result<String, ProxyError> {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut listen = toml::Table::new();
    listen.insert("tls".into(), "127.0.0.1:0".into());
    listen.insert("admin".into(), "127.0.0.1:0".into());
    let mut tls = toml::Table::new();
    tls.insert("cert".into(), path("cert.pem").into());
    tls.insert("key".into(), path("key.pem").into());
    let mut upstream = toml::Table::new();
    upstream.insert("url".into(), upstream_url.into());
    upstream.insert("token".into(), upstream_token.expose().as_str().into());
    let mut audit = toml::Table::new();
    audit.insert("path".into(), path("audit.jsonl").into());
    let mut credential = toml::Table::new();
    credential.insert("id".into(), "omni-bridge".into());
    credential.insert("token_sha256".into(), token_hash.into());
    credential.insert(
        "scopes".into(),
        vec!["operator.read", "operator.write"].into(),
    );
    let mut root = toml::Table::new();
    root.insert("listen".into(), listen.into());
    root.insert("tls".into(), tls.into());
    root.insert("upstream".into(), upstream.into());
    root.insert("audit".into(), audit.into());
    root.insert(
        "credentials".into(),
        toml::Value::Array(vec![credential.into()]),
    );
    toml::to_string(&root).map_err(|e| ProxyError::Config(format!("loopback proxy config: {e}")))
}
