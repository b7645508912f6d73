//! A lean in-process gateway stand-in for the proxy's tests and benchmark: the real handshake
//! shape (challenge, connect, hello-ok), then every `req` answered at once with a ~190 B `res`.
//!
//! Test hooks: it records connect params and upgrade headers, can serve TLS, can flood events
//! (`status` with params `{"flood": n, "size": bytes}`), and signals each closed connection.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

/// What the stub saw.
#[derive(Default)]
pub struct Seen {
    pub connects: Mutex<Vec<serde_json::Value>>,
    pub headers: Mutex<Vec<Vec<(String, String)>>>,
    pub methods: Mutex<Vec<String>>,
    pub closed: Mutex<usize>,
    pub closed_notify: Notify,
}

pub struct Stub {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    stop: CancellationToken,
}

impl Stub {
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
    pub fn wss_url(&self) -> String {
        format!("wss://localhost:{}", self.addr.port())
    }
    pub fn stop(&self) {
        self.stop.cancel();
    }
    /// Waits until at least `n` connections have closed.
    pub async fn wait_closed(&self, n: usize) {
        loop {
            let notified = self.seen.closed_notify.notified();
            if *self.seen.closed.lock() >= n {
                return;
            }
            notified.await;
        }
    }
}

pub async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Stub {
    start_on("127.0.0.1:0".parse().unwrap(), tls).await
}

pub async fn start_on(addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Stub {
    start_with(addr, tls, 0).await
}

/// Like [`start_on`], with the hello-ok padded by about `hello_pad` bytes (a `snapshot` field,
/// like the real gateway's ~16 KB hello-ok).
pub async fn start_with(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    hello_pad: usize,
) -> Stub {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let stop = CancellationToken::new();
    let (s, st) = (Arc::clone(&seen), stop.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                () = st.cancelled() => return,
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            };
            let _ = tcp.set_nodelay(true);
            let (s, st) = (Arc::clone(&s), st.clone());
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve(tcp, s, st, hello_pad).await,
                    Some(cfg) => {
                        if let Ok(t) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                            serve(t, s, st, hello_pad).await;
                        }
                    }
                }
            });
        }
    });
    Stub { addr, seen, stop }
}

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    seen: Arc<Seen>,
    stop: CancellationToken,
    hello_pad: usize,
) {
    let s2 = Arc::clone(&seen);
    let callback = move |req: &Request, resp: Response| {
        let h = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        s2.headers.lock().push(h);
        Ok(resp)
    };
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(ws_config())).await
    else {
        return;
    };
    let challenge = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"stub-nonce-1","ts":1795311041463}}"#;
    if ws.send(Message::text(challenge)).await.is_err() {
        return;
    }
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => {
                // As the real gateway closes on shutdown.
                let restart = CloseFrame { code: CloseCode::from(1012), reason: "service restart".into() };
                let _ = ws.close(Some(restart)).await;
                break;
            }
            m = ws.next() => m,
        };
        let t = match msg {
            Some(Ok(Message::Text(t))) => t,
            // tungstenite answers pings and closes itself (the close reply goes out on the next
            // read, which then ends the stream), as the real gateway does.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Close(_))) => continue,
            _ => break,
        };
        let v: serde_json::Value = match serde_json::from_str(&t) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let id = v["id"].as_str().unwrap_or("").to_string();
        let method = v["method"].as_str().unwrap_or("").to_string();
        let reply = if method == "connect" {
            let params = v["params"].clone();
            seen.connects.lock().push(params.clone());
            let scopes = params["scopes"].clone();
            let mut hello = serde_json::json!({"type":"res","id":id,"ok":true,"payload":{
                "type":"hello-ok","protocol":4,"server":{"version":"stub","connId":"c1"},
                "features":{"methods":["health","chat.send"],"events":["tick"]},
                "auth":{"method":"token","role":"operator","scopes":scopes,
                        "deviceToken":"STUB-DEVICE-TOKEN","issuedAtMs":1,
                        "recoveryScope":"STUB-RECOVERY-SCOPE"},
                "policy":{"maxPayload":26214400,"maxBufferedBytes":52428800,"tickIntervalMs":30000}}});
            if hello_pad > 0 {
                hello["payload"]["snapshot"] = serde_json::json!({"pad": "s".repeat(hello_pad)});
            }
            hello.to_string()
        } else {
            seen.methods.lock().push(method.clone());
            if method == "status" {
                let n = v["params"]["flood"].as_u64().unwrap_or(0);
                let size = v["params"]["size"].as_u64().unwrap_or(100) as usize;
                let pad = "x".repeat(size);
                for i in 0..n {
                    let ev = format!(
                        r#"{{"type":"event","event":"tick","payload":{{"pad":"{pad}"}},"seq":{i}}}"#
                    );
                    if ws.send(Message::text(ev)).await.is_err() {
                        break;
                    }
                }
            }
            format!(
                r#"{{"type":"res","id":"{id}","ok":true,"payload":{{"ok":true,"method":"{method}","ts":1795311041463,"durationMs":0,"note":"stub reply padded to ~190 bytes"}}}}"#
            )
        };
        if ws.send(Message::text(reply)).await.is_err() {
            break;
        }
    }
    *seen.closed.lock() += 1;
    seen.closed_notify.notify_waiters();
}
