//! A gateway stand-in that answers every `chat.send` at once (ack, then `final`) and records, per
//! run, when the `chat.send` frame was read and when the `final` frame was about to be written.
//! With those two instants the benchmark splits the bridge's cost into its two legs.

use std::net::SocketAddr;
use std::sync::Arc;

use dashmap::DashMap;
use futures_util::{SinkExt, StreamExt};
use shared_protocol::chat::{ChatEvent, ChatMessage, ChatSendParams, ChatState};
use shared_protocol::connect::{HelloAuth, HelloOk, ServerInfo};
use shared_protocol::frame::{Frame, encode_event, encode_response_ok};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// When the gateway saw a run's `chat.send` and when it wrote its `final`.
#[derive(Debug, Clone, Copy)]
pub struct Stamps {
    /// `chat.send` frame read.
    pub send_in: Instant,
    /// `final` frame handed to the socket.
    pub final_out: Instant,
}

/// The running stand-in.
pub struct InstantGateway {
    /// Its address.
    pub addr: SocketAddr,
    /// Stamps by run id.
    pub stamps: Arc<DashMap<String, Stamps>>,
    stop: CancellationToken,
}

impl InstantGateway {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stamps: Arc<DashMap<String, Stamps>> = Arc::default();
        let stop = CancellationToken::new();
        let (s, c) = (stamps.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = c.cancelled() => break,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, s.clone(), c.clone()));
            }
        });
        Ok(Self { addr, stamps, stop })
    }

    /// `ws://` URL.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for InstantGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    stamps: Arc<DashMap<String, Stamps>>,
    stop: CancellationToken,
) {
    let config = omni_bridge::gateway::transport::ws_config();
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let challenge = serde_json::json!({ "nonce": "bench-nonce", "ts": 0 });
    let Ok(frame) = encode_event("connect.challenge", &challenge, None) else {
        return;
    };
    if sink.send(Message::text(frame)).await.is_err() {
        return;
    }
    let mut seq = 0u64;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => return,
            m = source.next() => match m { Some(Ok(m)) => m, _ => return },
        };
        let Message::Text(text) = msg else { continue };
        let now = Instant::now();
        let Ok(Frame::Request(req)) = Frame::parse(text.as_str()) else {
            continue;
        };
        let mut out = Vec::with_capacity(2);
        match req.method.as_ref() {
            "connect" => {
                let hello = HelloOk {
                    kind: "hello-ok".into(),
                    protocol: shared_protocol::limits::PROTOCOL_VERSION,
                    server: ServerInfo {
                        version: "instant-bench".into(),
                        ..ServerInfo::default()
                    },
                    auth: HelloAuth {
                        method: "token".into(),
                        role: "operator".into(),
                        scopes: vec!["operator.read".into(), "operator.write".into()],
                        ..HelloAuth::default()
                    },
                    ..HelloOk::default()
                };
                out.extend(encode_response_ok(&req.id, &hello).ok());
            }
            "chat.send" => {
                let Ok(p) = req.params_as::<ChatSendParams>() else {
                    continue;
                };
                let ack = serde_json::json!({ "runId": p.idempotency_key, "status": "started" });
                out.extend(encode_response_ok(&req.id, &ack).ok());
                seq += 1;
                let mut ev = ChatEvent::new(&p.idempotency_key, &p.session_key, ChatState::Final);
                ev.message = Some(ChatMessage::assistant_text(
                    &format!("ok: {}", p.message),
                    0,
                ));
                ev.seq = Some(1);
                out.extend(encode_event("chat", &ev, Some(seq)).ok());
                stamps.insert(
                    p.idempotency_key.clone(),
                    Stamps {
                        send_in: now,
                        final_out: Instant::now(),
                    },
                );
            }
            "agents.list" => {
                let agents =
                    serde_json::json!({ "defaultId": "main", "agents": [{ "id": "main" }] });
                out.extend(encode_response_ok(&req.id, &agents).ok());
            }
            _ => out.extend(encode_response_ok(&req.id, &serde_json::json!({})).ok()),
        }
        for f in out {
            if sink.feed(Message::text(f)).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}
