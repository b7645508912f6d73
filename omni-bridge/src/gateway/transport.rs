//! Opening a socket to a gateway and completing the handshake.
//!
//! ws:// or wss:// (rustls, ring, optional pins), `read_buffer_size` 8 KiB, no `Origin` or
//! `X-Forwarded-*` headers (the gateway clears scopes or refuses them). Then: wait for
//! `connect.challenge`, send `connect` as `gateway-client`/`backend`, operator, scopes exactly
//! read + write, token auth, optional signed device proof (v3); read `hello-ok`. The connect
//! frame is logged only through [`ConnectParams::redacted_json`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::ClientConfig;
use serde::Serialize;
use shared_protocol::connect::{Challenge, ConnectAuth, ConnectParams, HelloOk};
use shared_protocol::error::DetailCode;
use shared_protocol::frame::{Frame, encode_request};
use shared_protocol::{Scope, Secret};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::device_store::DeviceStore;
use super::pin;
use crate::config::GatewayConfig;
use crate::error::{ConnectError, Error};

/// A gateway WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per socket (tungstenite's 128 KiB default costs CPU and memory, performance.md).
pub const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Write buffer per socket.
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024;
/// Largest inbound frame: the gateway's own `maxPayload`.
pub const MAX_FRAME_BYTES: usize = shared_protocol::limits::MAX_PAYLOAD_BYTES;
/// Budget from opening the socket to hello-ok (the gateway's own pre-auth deadline is 15 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The scopes we ask for, in this order (signed in the device proof): never admin.
pub const SCOPES: [Scope; 2] = [Scope::Read, Scope::Write];

/// The WebSocket settings every gateway socket uses.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// Everything needed to (re)open a connection to one gateway.
pub struct Dialer {
    url: String,
    token: Secret,
    tls: Option<Arc<ClientConfig>>,
    device_path: Option<std::path::PathBuf>,
    device: OnceCell<Arc<DeviceStore>>,
    warned_plain: AtomicBool,
}

/// A completed handshake.
pub struct Established {
    /// The socket, ready for requests.
    pub ws: Ws,
    /// The gateway's hello.
    pub hello: HelloOk,
    /// Socket open to hello-ok.
    pub latency: Duration,
}

impl Dialer {
    /// Prepares TLS once per configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL or TLS setup is unusable.
    pub fn new(config: &GatewayConfig) -> Result<Self, Error> {
        config
            .validate()
            .map_err(|e| Error::Config(e.to_string()))?;
        let tls = if config.url.starts_with("wss://") {
            Some(pin::client_config(&config.pins)?)
        } else {
            None
        };
        Ok(Self {
            url: config.url.clone(),
            token: config.token.clone(),
            tls,
            device_path: config.device_key_path.clone(),
            device: OnceCell::new(),
            warned_plain: AtomicBool::new(false),
        })
    }

    /// Opens a socket and completes the handshake within [`HANDSHAKE_TIMEOUT`].
    ///
    /// # Errors
    /// A [`ConnectError`] saying exactly what failed.
    pub async fn dial(&self) -> Result<Established, ConnectError> {
        let started = Instant::now();
        let device = match &self.device_path {
            Some(path) => Some(
                self.device
                    .get_or_try_init(|| async { DeviceStore::open(path).await.map(Arc::new) })
                    .await?
                    .clone(),
            ),
            None => None,
        };
        let (ws, hello) = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(device))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        Ok(Established {
            ws,
            hello,
            latency: started.elapsed(),
        })
    }

    async fn handshake(
        &self,
        device: Option<Arc<DeviceStore>>,
    ) -> Result<(Ws, HelloOk), ConnectError> {
        self.warn_if_plain_remote();
        let connector = match &self.tls {
            Some(tls) => Connector::Rustls(tls.clone()),
            None => Connector::Plain,
        };
        let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            self.url.as_str(),
            Some(ws_config()),
            true,
            Some(connector),
        )
        .await
        .map_err(map_ws_error)?;

        let challenge = wait_challenge(&mut ws).await?;
        let token = (!self.token.is_empty()).then(|| self.token.clone());
        let mut params = ConnectParams::backend(env!("CARGO_PKG_VERSION"), &SCOPES, token.clone());
        if let Some(device) = &device {
            if token.is_none()
                && let Some(device_token) = device.device_token()
            {
                params.auth = Some(ConnectAuth {
                    device_token: Some(device_token),
                    ..ConnectAuth::default()
                });
            }
            let signed_at = if challenge.ts > 0 {
                challenge.ts
            } else {
                epoch_ms()
            };
            params.device = Some(
                device
                    .identity()
                    .prove(&params, &challenge.nonce, signed_at),
            );
        }
        tracing::debug!(url = %self.url, connect = %params.redacted_json(), "sending connect");
        let id = uuid::Uuid::new_v4().to_string();
        send_request(
            &mut ws,
            &id,
            shared_protocol::methods::names::CONNECT,
            &params,
        )
        .await?;
        let response = read_response(&mut ws, &id).await?;
        match response {
            Ok(payload) => {
                let hello: HelloOk = serde_json::from_str(&payload)
                    .map_err(|e| ConnectError::Protocol(format!("bad hello-ok: {e}")))?;
                if let (Some(device), Some(issued)) = (&device, &hello.auth.device_token)
                    && let Err(e) = device.store_token(issued).await
                {
                    tracing::warn!(error = %e, "cannot store the issued device token");
                }
                Ok((ws, hello))
            }
            Err(shape) => {
                if let (Some(device), Some(DetailCode::AuthDeviceTokenMismatch)) =
                    (&device, shape.detail_code())
                {
                    device.forget_token().await;
                }
                Err(ConnectError::from_shape(&shape))
            }
        }
    }

    fn warn_if_plain_remote(&self) {
        if self.tls.is_none()
            && !is_loopback_url(&self.url)
            && !self.warned_plain.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(url = %self.url, "connecting over unencrypted ws:// to a non-loopback host: the token travels in clear text; use wss://");
        }
    }
}

/// True for `ws://localhost`, `127.x`, `[::1]`.
pub fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, r)| r) else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn map_ws_error(e: tungstenite::Error) -> ConnectError {
    use tungstenite::Error as E;
    match e {
        E::Url(u) => ConnectError::BadScheme(u.to_string()),
        E::Tls(t) => tls_error(&t.to_string(), is_pin_failure_text(&t.to_string())),
        E::Io(io) => {
            let pin = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(|r| {
                    matches!(
                        r,
                        rustls::Error::InvalidCertificate(
                            rustls::CertificateError::ApplicationVerificationFailure
                        )
                    )
                });
            match pin {
                Some(is_pin) => tls_error(&io.to_string(), is_pin),
                None => ConnectError::Refused(io.to_string()),
            }
        }
        E::Http(resp) => ConnectError::Protocol(format!("upgrade refused: HTTP {}", resp.status())),
        E::ConnectionClosed | E::AlreadyClosed => {
            ConnectError::Refused("connection closed during upgrade".into())
        }
        other => ConnectError::Protocol(other.to_string()),
    }
}

fn is_pin_failure_text(text: &str) -> bool {
    text.contains("ApplicationVerificationFailure")
}

fn tls_error(text: &str, pin_failure: bool) -> ConnectError {
    if pin_failure {
        ConnectError::PinMismatch
    } else {
        ConnectError::Tls(text.to_string())
    }
}

async fn wait_challenge(ws: &mut Ws) -> Result<Challenge, ConnectError> {
    loop {
        let text = next_text(ws).await?;
        if let Ok(Frame::Event(e)) = Frame::parse(&text)
            && e.event == shared_protocol::events::names::CONNECT_CHALLENGE
        {
            return e
                .payload_as::<Challenge>()
                .map_err(|e| ConnectError::Protocol(e.to_string()));
        }
    }
}

/// Sends one request frame.
///
/// # Errors
/// [`ConnectError::Refused`] when the socket is gone.
pub async fn send_request<P: Serialize>(
    ws: &mut Ws,
    id: &str,
    method: &str,
    params: &P,
) -> Result<(), ConnectError> {
    let text =
        encode_request(id, method, params).map_err(|e| ConnectError::Protocol(e.to_string()))?;
    ws.send(Message::text(text))
        .await
        .map_err(|e| ConnectError::Refused(e.to_string()))
}

/// Reads frames until the response `id`: the payload text, or the error shape.
///
/// # Errors
/// [`ConnectError`] when the socket closes or speaks something else.
pub async fn read_response(
    ws: &mut Ws,
    id: &str,
) -> Result<Result<String, shared_protocol::ErrorShape>, ConnectError> {
    loop {
        let text = next_text(ws).await?;
        if let Ok(Frame::Response(r)) = Frame::parse(&text)
            && r.id == id
        {
            if r.ok {
                return Ok(Ok(r.payload.map_or("null", |p| p.get()).to_string()));
            }
            return Ok(Err(r.error().unwrap_or_else(|| {
                shared_protocol::ErrorShape::new(
                    shared_protocol::ErrorCode::Unknown("NO_ERROR".into()),
                    "failed response without an error",
                )
            })));
        }
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, ConnectError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::Protocol(match frame {
                    Some(f) => format!("closed {} {}", u16::from(f.code), f.reason),
                    None => "closed".into(),
                }));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(map_ws_error(e)),
            None => return Err(ConnectError::Refused("connection closed".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for url in [
            "ws://127.0.0.1:18789",
            "ws://localhost/",
            "ws://[::1]:1",
            "ws://u@127.0.0.2",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "ws://10.0.0.1",
            "ws://gateway.example:1",
            "ws://[2001:db8::1]",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }
}
