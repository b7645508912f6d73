//! Shared test harness: a proxy started in-process on 127.0.0.1:0 in front of a gateway stand-in,
//! and a small WebSocket client speaking the handshake.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

#[path = "../../benches/support/stub.rs"]
pub mod stub;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_proxy::credential::TokenHash;
use gateway_proxy::pin::{Pin, PinnedVerifier};
use gateway_proxy::{Config, Listeners, Proxy, Shutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

pub const TOKEN: &str = "gwp_test-client-token-AAAAAAAAAAAAAAAAAAAAAAAAAAAA";
pub const GATEWAY_TOKEN: &str = "gateway-secret-token-BBBBBBBBBB";
pub const T: Duration = Duration::from_secs(10);
/// The masking key of the frames tests write by hand.
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Running {
    pub proxy: Proxy,
    pub plain: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub shutdown: Shutdown,
    pub registry: prometheus::Registry,
    pub task: tokio::task::JoinHandle<()>,
    pub dir: PathBuf,
    pub cert_pin: Option<Pin>,
}

impl Running {
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.plain)
    }
    pub fn metrics(&self) -> String {
        gateway_proxy::metrics::render(&self.registry)
    }
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default()
    }
    pub async fn stop(self) {
        self.shutdown.now();
        tokio::time::timeout(T, self.task).await.unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("gwp-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Base config; `extra` is appended (e.g. more `[[credentials]]` or a `[limits]` table), and
/// `edit` may rewrite the text.
pub fn config_text(upstream: &str, dir: &std::path::Path, tls: bool) -> String {
    let (listen_tls, tls_table) = if tls {
        (
            "tls = \"127.0.0.1:0\"\n".to_string(),
            format!(
                "[tls]\ncert = {:?}\nkey = {:?}\n",
                dir.join("cert.pem"),
                dir.join("key.pem")
            ),
        )
    } else {
        (String::new(), String::new())
    };
    format!(
        r#"
[listen]
plain = "127.0.0.1:0"
{listen_tls}admin = "127.0.0.1:0"
handshake_timeout_ms = 5000
drain_grace_ms = 200
{tls_table}
[upstream]
url = "{upstream}"
token = "{GATEWAY_TOKEN}"
probe_interval_ms = 50
connect_timeout_ms = 2000

[audit]
path = {audit:?}

[[credentials]]
id = "bridge"
token_sha256 = "{hash}"
scopes = ["operator.read", "operator.write"]
deny_methods = ["models.list"]
"#,
        audit = dir.join("audit.jsonl"),
        hash = TokenHash::of(TOKEN).to_hex(),
    )
}

pub async fn start_proxy_with(text: &str, dir: PathBuf, cert_pin: Option<Pin>) -> Running {
    let config = Config::from_toml(text).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = if config.listen.tls.is_some() {
        Some(TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let (plain_addr, admin_addr) = (plain.local_addr().unwrap(), admin.local_addr().unwrap());
    let tls_addr = tls.as_ref().map(|l| l.local_addr().unwrap());
    let registry = prometheus::Registry::new();
    let proxy = Proxy::new(config, registry.clone()).unwrap();
    let shutdown = Shutdown::new();
    let listeners = Listeners {
        tls,
        plain: Some(plain),
        admin: Some(admin),
    };
    let (p, s) = (proxy.clone(), shutdown.clone());
    let task = tokio::spawn(async move { p.run(listeners, s).await.unwrap() });
    Running {
        proxy,
        plain: plain_addr,
        tls: tls_addr,
        admin: admin_addr,
        shutdown,
        registry,
        task,
        dir,
        cert_pin,
    }
}

/// A proxy in exchange mode in front of `upstream`, optionally with a TLS listener (rcgen).
pub async fn start_proxy(upstream: &str, tls: bool, extra: &str) -> Running {
    let dir = temp_dir();
    let pin = tls.then(|| write_cert(&dir));
    let text = format!("{}{extra}", config_text(upstream, &dir, tls));
    start_proxy_with(&text, dir, pin).await
}

/// Writes a fresh self-signed cert.pem/key.pem for localhost into `dir`; returns its pin.
pub fn write_cert(dir: &std::path::Path) -> Pin {
    let s = gateway_proxy::tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    gateway_proxy::tls::write_private(&dir.join("cert.pem"), s.cert_pem.as_bytes()).unwrap();
    gateway_proxy::tls::write_private(&dir.join("key.pem"), s.key_pem.expose().as_bytes()).unwrap();
    s.cert_pin
}

pub fn pinned_client(pin: Pin) -> Arc<rustls::ClientConfig> {
    let p = gateway_proxy::tls::provider();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::clone(&p))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(vec![pin], p)))
            .with_no_client_auth(),
    )
}

pub async fn open(url: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        tls.map(Connector::Rustls),
    )
    .await
    .unwrap();
    ws
}

pub async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            _ => return None,
        }
    }
}

pub fn connect_frame(token: &str, scopes: &[&str]) -> String {
    serde_json::json!({"type":"req","id":"c1","method":"connect","params":{
        "minProtocol":4,"maxProtocol":4,
        "client":{"id":"openclaw-tui","version":"1.0","platform":"linux","mode":"ui"},
        "role":"operator","scopes":scopes,"auth":{"token":token}}})
    .to_string()
}

/// Challenge, connect, response; returns (challenge, response).
pub async fn handshake(
    ws: &mut Ws,
    token: &str,
    scopes: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let challenge = next_json(ws).await;
    assert_eq!(challenge["event"], "connect.challenge");
    ws.send(Message::text(connect_frame(token, scopes)))
        .await
        .unwrap();
    let res = next_json(ws).await;
    (challenge, res)
}

pub async fn connected(url: &str, scopes: &[&str]) -> Ws {
    let mut ws = open(url, None).await;
    let (_, res) = handshake(&mut ws, TOKEN, scopes).await;
    assert_eq!(res["ok"], true, "{res}");
    ws
}

pub async fn call(
    ws: &mut Ws,
    id: &str,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let req = serde_json::json!({"type":"req","id":id,"method":method,"params":params}).to_string();
    ws.send(Message::text(req)).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "res" && v["id"] == id {
            return v;
        }
    }
}

/// GET on the admin listener; returns (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    tokio::time::timeout(T, s.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An admitted client's raw socket (after hello-ok nothing else is in flight).
pub async fn raw_client(p: &Running, scopes: &[&str]) -> TcpStream {
    match connected(&p.ws_url(), scopes).await.into_inner() {
        MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain listener"),
    }
}

/// A WebSocket reader on a raw client socket (what the proxy sends back).
pub async fn reader(tcp: TcpStream) -> Ws {
    WebSocketStream::from_raw_socket(MaybeTlsStream::Plain(tcp), Role::Client, None).await
}
