//! The gateway side: opening a WebSocket to it (plain or pinned TLS), its handshake, and the
//! readiness probe.
//!
//! The upgrade request is built from the URL alone, so it never carries `Origin` or
//! `X-Forwarded-*` (with those, the gateway clears scopes or answers 403).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use serde_json::value::RawValue;
use shared_protocol::connect::{Challenge, ConnectParams};
use shared_protocol::device::DeviceIdentity;
use shared_protocol::frame::{Frame, encode_request};
use shared_protocol::{ErrorShape, Secret};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::{UpstreamConfig, UpstreamIdentity};
use crate::error::ProxyError;
use crate::frame_gate::GatedIo;
use crate::pin::Pin;

/// The socket to the gateway, plain or TLS.
pub type UpstreamIo = MaybeTlsStream<TcpStream>;
/// An open upstream socket during the handshake.
pub type UpstreamWs = WebSocketStream<GatedIo<UpstreamIo>>;

/// Why the upstream side of a handshake failed.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// Could not connect (refused, TLS/pin failure, timeout, upgrade refused).
    Unreachable(String),
    /// The gateway answered the connect with an error (relayed to the client as is).
    Refused(ErrorShape),
    /// The gateway closed or broke the handshake without an answer.
    Broken(String, Option<CloseFrame>),
}

/// How to reach and authenticate to the gateway.
pub struct Upstream {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    token: Option<Secret>,
    /// The proxy's own device identity (identity = "device").
    device: Option<DeviceIdentity>,
    identity: UpstreamIdentity,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .field("identity", &self.identity)
            .finish()
    }
}

impl Upstream {
    /// Builds the connector from validated config.
    ///
    /// # Errors
    /// [`ProxyError`] for bad pins or an unreadable device key file.
    pub fn from_config(c: &UpstreamConfig) -> Result<Self, ProxyError> {
        let pins = c
            .pins
            .iter()
            .map(|p| Pin::parse(p).map_err(|e| ProxyError::Config(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let device = match (&c.identity, &c.device_key_file) {
            (UpstreamIdentity::Device, Some(path)) => Some(load_or_create_device(path)?),
            _ => None,
        };
        Ok(Self {
            url: c.url.clone(),
            tls: match crate::tls::upstream_client_config(&pins)? {
                Some(pinned) => Some(pinned),
                None if c.url.starts_with("wss://") => Some(web_pki_client_config()?),
                None => None,
            },
            token: c.token.clone(),
            device,
            identity: c.identity,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
        })
    }

    /// Upstream identity mode.
    pub fn identity(&self) -> UpstreamIdentity {
        self.identity
    }

    /// The gateway token (exchange mode).
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// Opens the WebSocket (TCP + TLS + upgrade) within the connect timeout. The socket is
    /// wrapped in a [`GatedIo`], armed once the challenge is read (see [`crate::frame_gate`]).
    ///
    /// # Errors
    /// [`UpstreamFailure::Unreachable`].
    pub async fn open(&self) -> Result<UpstreamWs, UpstreamFailure> {
        match tokio::time::timeout(self.connect_timeout, self.connect()).await {
            Ok(Ok(ws)) => Ok(ws),
            Ok(Err(e)) => Err(UpstreamFailure::Unreachable(e)),
            Err(_) => Err(UpstreamFailure::Unreachable(format!(
                "no connection within {:?}",
                self.connect_timeout
            ))),
        }
    }

    async fn connect(&self) -> Result<UpstreamWs, String> {
        let (host, port) = host_port(&self.url).ok_or("upstream url without a host")?;
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let io = match &self.tls {
            None => MaybeTlsStream::Plain(tcp),
            Some(config) => {
                let name = ServerName::try_from(host).map_err(|e| e.to_string())?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                MaybeTlsStream::Rustls(tls)
            }
        };
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            self.url.as_str(),
            GatedIo::new(io),
            Some(crate::ws::config()),
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(ws)
    }

    /// Runs the gateway handshake on an open socket: waits for the challenge, sends the connect
    /// built by `build` (signed with the proxy's device when configured), returns the raw
    /// hello-ok payload.
    ///
    /// # Errors
    /// [`UpstreamFailure`] for a refusal or a broken handshake.
    pub async fn hello(
        &self,
        ws: &mut UpstreamWs,
        mut params: ConnectParams,
        deadline: Instant,
    ) -> Result<Box<RawValue>, UpstreamFailure> {
        let challenge = read_challenge(ws, deadline).await?;
        // The gateway says nothing more until our connect: a frame boundary.
        ws.get_mut().arm();
        if let Some(device) = &self.device {
            let signed_at = if challenge.ts > 0 {
                challenge.ts
            } else {
                crate::clock::unix_ms()
            };
            params.device = Some(device.prove(&params, &challenge.nonce, signed_at));
        }
        let id = format!("gwp-{}", uuid::Uuid::new_v4());
        let text = encode_request(&id, "connect", &params)
            .map_err(|e| UpstreamFailure::Broken(e.to_string(), None))?;
        ws.send(Message::text(text))
            .await
            .map_err(|e| UpstreamFailure::Broken(e.to_string(), None))?;
        loop {
            let text = next_text(ws, deadline).await?;
            let Ok(Frame::Response(res)) = Frame::parse(&text) else {
                continue;
            };
            if res.id != id {
                continue;
            }
            if !res.ok {
                let err = res.error().unwrap_or_else(|| {
                    ErrorShape::unavailable("gateway refused", "upstream", 1000)
                });
                return Err(UpstreamFailure::Refused(err));
            }
            let payload = res.payload.map(|p| p.to_owned());
            return payload
                .ok_or_else(|| UpstreamFailure::Broken("hello-ok without payload".into(), None));
        }
    }

    /// TCP reachability of the gateway (the `/readyz` probe): no WebSocket, so it costs the
    /// gateway nothing and never shows up as a client.
    pub async fn probe(&self) -> bool {
        let Some((host, port)) = host_port(&self.url) else {
            return false;
        };
        matches!(
            tokio::time::timeout(
                self.connect_timeout,
                TcpStream::connect((host.as_str(), port))
            )
            .await,
            Ok(Ok(_))
        )
    }
}

/// TLS to an unpinned `wss://` gateway: the Web PKI roots (what tokio-tungstenite's own
/// connector would use).
fn web_pki_client_config() -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Host (without IPv6 brackets) and port of a ws/wss URL (default ports 80/443).
fn host_port(url: &str) -> Option<(String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    Some((host.to_string(), port))
}

async fn next_text(ws: &mut UpstreamWs, deadline: Instant) -> Result<String, UpstreamFailure> {
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(UpstreamFailure::Broken(
                    "gateway handshake timed out".into(),
                    None,
                ));
            }
            Ok(None) => return Err(UpstreamFailure::Broken("gateway closed".into(), None)),
            Ok(Some(Err(e))) => return Err(UpstreamFailure::Broken(e.to_string(), None)),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(UpstreamFailure::Broken("gateway closed".into(), frame));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Reads frames until the `connect.challenge` event.
async fn read_challenge(
    ws: &mut UpstreamWs,
    deadline: Instant,
) -> Result<Challenge, UpstreamFailure> {
    loop {
        let text = next_text(ws, deadline).await?;
        if let Ok(Frame::Event(ev)) = Frame::parse(&text)
            && ev.event == "connect.challenge"
        {
            return ev
                .payload_as::<Challenge>()
                .map_err(|e| UpstreamFailure::Broken(e.to_string(), None));
        }
    }
}

/// Reads the first text frame of the gateway as raw bytes (passthrough relays it untouched).
///
/// # Errors
/// [`UpstreamFailure::Broken`].
pub async fn read_raw(ws: &mut UpstreamWs, deadline: Instant) -> Result<String, UpstreamFailure> {
    next_text(ws, deadline).await
}

/// Loads the proxy's device seed (64 hex digits), creating it 0600 if absent.
fn load_or_create_device(path: &std::path::Path) -> Result<DeviceIdentity, ProxyError> {
    let bad = |e: String| ProxyError::Config(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .map_err(|e| bad(e.to_string()))?
                .try_into()
                .map_err(|_| bad("expected 64 hex digits".into()))?;
            DeviceIdentity::from_seed(seed).map_err(|e| bad(e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = DeviceIdentity::generate().map_err(|e| bad(e.to_string()))?;
            crate::tls::write_private(path, hex::encode(id.seed().expose()).as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(ProxyError::file(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_address_from_url() {
        let hp = |u: &str| host_port(u).map(|(h, p)| format!("{h} {p}"));
        assert_eq!(
            hp("ws://127.0.0.1:18789").as_deref(),
            Some("127.0.0.1 18789")
        );
        assert_eq!(hp("wss://gw.example").as_deref(), Some("gw.example 443"));
        assert_eq!(hp("ws://[::1]:9/").as_deref(), Some("::1 9"));
    }
}
