//! The two clients the benchmark drives: a bare WebSocket client multiplexing `chat.send` on one
//! connection (the direct path a user would write instead of the bridge), and a lean HTTP/1.1
//! client, one keep-alive connection per conversation, posting Omni-shaped triggers (its own cost
//! kept small, so the bridge is what is measured).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use shared_protocol::chat::{ChatEvent, ChatSendParams};
use shared_protocol::connect::ConnectParams;
use shared_protocol::frame::{Frame, encode_request};
use shared_protocol::{Scope, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Per-request deadline of every client.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on queued outbound frames of the direct client.
const DIRECT_QUEUE: usize = 4096;
/// Largest HTTP response the lean client reads.
const MAX_RESPONSE: usize = 1 << 20;

/// A bare multiplexing WebSocket client: the floor the bridge is compared with.
pub struct Direct {
    out: mpsc::Sender<String>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl Direct {
    /// Connects and completes the handshake with `token`.
    pub async fn connect(url: &str, token: &str) -> Result<Arc<Self>, String> {
        let config = omni_bridge::gateway::transport::ws_config();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let _challenge = stream.next().await;
        let params = ConnectParams::backend(
            "0.1.0",
            &[Scope::Read, Scope::Write],
            Some(Secret::new(token.to_string())),
        );
        let frame = encode_request("c1", "connect", &params).map_err(|e| e.to_string())?;
        sink.send(Message::text(frame))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t)))
                    if matches!(Frame::parse(t.as_str()), Ok(Frame::Response(_))) =>
                {
                    break;
                }
                Some(Ok(_)) => {}
                _ => return Err("handshake failed".into()),
            }
        }
        let (out, mut rx) = mpsc::channel::<String>(DIRECT_QUEUE);
        tokio::spawn(async move {
            while let Some(f) = rx.recv().await {
                if sink.feed(Message::text(f)).await.is_err() {
                    break;
                }
                while let Ok(f) = rx.try_recv() {
                    if sink.feed(Message::text(f)).await.is_err() {
                        return;
                    }
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
        });
        let waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>> = Arc::default();
        let w = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(t) = msg else { continue };
                if let Ok(Frame::Event(ev)) = Frame::parse(t.as_str())
                    && ev.event == "chat"
                    && let Ok(ce) = ev.payload_as::<ChatEvent>()
                    && ce.state.is_terminal()
                    && let Some(tx) = w.lock().remove(&ce.run_id)
                {
                    let _ = tx.send(());
                }
            }
        });
        Ok(Arc::new(Self { out, waiting }))
    }

    /// One run: `chat.send`, then wait for its terminal event.
    pub async fn run(&self, key: &str, message: &str, run_id: String) -> bool {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().insert(run_id.clone(), tx);
        let params = ChatSendParams::new(key, message, run_id.clone());
        let Ok(frame) = encode_request(&run_id, "chat.send", &params) else {
            return false;
        };
        if self.out.send(frame).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(REQUEST_TIMEOUT, rx).await, Ok(Ok(())))
    }
}

/// One keep-alive HTTP/1.1 connection to a bridge.
pub struct Http {
    stream: TcpStream,
    host: String,
    auth: String,
    buf: Vec<u8>,
}

impl Http {
    /// Connects to `addr`; requests carry `Authorization: Bearer <inbound>`.
    pub async fn connect(addr: std::net::SocketAddr, inbound: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            auth: format!("Bearer {inbound}"),
            buf: Vec::with_capacity(4096),
        })
    }

    /// POSTs `body` to `path`; true for a 200 whose body contains `expect`.
    pub async fn post(&mut self, path: &str, body: &str, expect: &str) -> bool {
        matches!(
            tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, body)).await,
            Ok(Ok((200, ref text))) if text.contains(expect)
        )
    }

    async fn exchange(&mut self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            self.host,
            self.auth,
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body.as_bytes());
        self.stream.write_all(&request).await?;
        self.buf.clear();
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).map_err(|_| bad("head"))?;
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("status"))?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .ok_or_else(|| bad("content-length"))?;
                let total = end + 4 + length;
                if total > MAX_RESPONSE {
                    return Err(bad("response too large"));
                }
                while self.buf.len() < total {
                    self.read_more().await?;
                }
                let text = String::from_utf8_lossy(&self.buf[end + 4..total]).into_owned();
                return Ok((status, text));
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(bad("headers too large"));
            }
            self.read_more().await?;
        }
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
