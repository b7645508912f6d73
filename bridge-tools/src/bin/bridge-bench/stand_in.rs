//! The gateway stand-in (run as a child process, `bridge-bench stand-in`): the real handshake
//! shape, then every `chat.send` answered at once with its ack, `--deltas` text deltas and the
//! `final`, written in one batch. Frames are encoded with the workspace's own encoders; nothing
//! else is done per run, so it is a lean peer for both the direct client and the bridge.

use futures_util::{SinkExt, StreamExt};
use shared_protocol::chat::{ChatEvent, ChatMessage, ChatSendParams, ChatState};
use shared_protocol::connect::{HelloAuth, HelloOk, ServerInfo};
use shared_protocol::frame::{Frame, encode_event, encode_response_ok};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Serves on 127.0.0.1:`port` (0: any), prints `ready <addr>` and runs until killed.
pub async fn run(port: u16, deltas: u32) {
    let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
        eprintln!("stand-in: cannot bind");
        return;
    };
    let Ok(addr) = listener.local_addr() else {
        return;
    };
    println!("ready {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, deltas));
    }
}

async fn serve(stream: tokio::net::TcpStream, deltas: u32) {
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
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(Frame::Request(req)) = Frame::parse(text.as_str()) else {
            continue;
        };
        let mut out = Vec::with_capacity(2 + deltas as usize);
        match req.method.as_ref() {
            "connect" => {
                let hello = HelloOk {
                    kind: "hello-ok".into(),
                    protocol: shared_protocol::limits::PROTOCOL_VERSION,
                    server: ServerInfo {
                        version: "bench-stand-in".into(),
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
                let mut text = String::from("ok:");
                for i in 0..deltas {
                    let piece = format!(" chunk-{i}");
                    text.push_str(&piece);
                    seq += 1;
                    let mut ev =
                        ChatEvent::new(&p.idempotency_key, &p.session_key, ChatState::Delta);
                    ev.delta_text = Some(piece);
                    ev.seq = Some(u64::from(i) + 1);
                    out.extend(encode_event("chat", &ev, Some(seq)).ok());
                }
                seq += 1;
                let mut ev = ChatEvent::new(&p.idempotency_key, &p.session_key, ChatState::Final);
                ev.message = Some(ChatMessage::assistant_text(&text, 0));
                ev.seq = Some(u64::from(deltas) + 1);
                out.extend(encode_event("chat", &ev, Some(seq)).ok());
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
