//! Shared helpers of the gateway integration tests: configs with short budgets, a pool, keys,
//! and a minimal hand-written gateway (handshake + `agents.list`) for what the mock cannot do
//! (TLS termination, a peer that goes silent).
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use omni_bridge::config::{BackoffConfig, GatewayConfig};
use omni_bridge::gateway::{GatewayPool, RunRequest};
use shared_protocol::frame::Frame;
use shared_protocol::{AgentId, Secret, SessionKey};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-secret-123";
/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);

pub fn config(url: &str) -> GatewayConfig {
    let mut c = GatewayConfig::new(url, Secret::new(TOKEN.into()));
    c.send_ack_timeout = Duration::from_secs(3);
    c.run_timeout = Duration::from_secs(5);
    c.backoff = BackoffConfig {
        min_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        factor: 2.0,
        jitter: false,
    };
    c
}

pub fn pool() -> (GatewayPool, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let pool = GatewayPool::new(&registry, CancellationToken::new()).unwrap();
    (pool, registry)
}

pub fn key(rest: &str) -> SessionKey {
    SessionKey::build(&AgentId::parse("main").unwrap(), rest).unwrap()
}

pub fn request(session: &str, message: &str, idempotency: &str) -> RunRequest {
    RunRequest {
        session_key: key(session),
        message: message.to_string(),
        idempotency_key: idempotency.to_string(),
    }
}

pub fn metrics_text(registry: &prometheus::Registry) -> String {
    let mut out = String::new();
    for family in registry.gather() {
        for metric in family.get_metric() {
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}={}", l.name(), l.value()))
                .collect();
            let value = match family.get_field_type() {
                prometheus::proto::MetricType::GAUGE => metric.get_gauge().get_value(),
                prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                _ => metric.get_histogram().get_sample_count() as f64,
            };
            out.push_str(&format!(
                "{}{{{}}} {}\n",
                family.name(),
                labels.join(","),
                value
            ));
        }
    }
    out
}

/// A minimal gateway: challenge, hello-ok (with `tick_ms`), then answers every request with
/// `ok` (`agents.list` with one agent; the first `chat.send` of a connection gets a retryable
/// `UNAVAILABLE` with `retryAfterMs` 50, later ones are acked `started` and then nothing). `silent` stops reading after hello (no pongs, nothing).
pub struct MiniGateway {
    pub addr: SocketAddr,
    accepted: tokio::sync::watch::Sender<usize>,
    stop: CancellationToken,
}

impl MiniGateway {
    pub async fn start(tls: Option<tokio_rustls::TlsAcceptor>, tick_ms: u64, silent: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = tokio::sync::watch::Sender::new(0usize);
        let stop = CancellationToken::new();
        let (acc, stop2) = (accepted.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    r = listener.accept() => r.unwrap(),
                    () = stop2.cancelled() => return,
                };
                acc.send_modify(|n| *n += 1);
                let tls = tls.clone();
                let stop3 = stop2.clone();
                tokio::spawn(async move {
                    let config = omni_bridge::gateway::transport::ws_config();
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(tcp).await else {
                                return;
                            };
                            let Ok(ws) =
                                tokio_tungstenite::accept_async_with_config(stream, Some(config))
                                    .await
                            else {
                                return;
                            };
                            serve(ws, tick_ms, silent, stop3).await;
                        }
                        None => {
                            let Ok(ws) =
                                tokio_tungstenite::accept_async_with_config(tcp, Some(config))
                                    .await
                            else {
                                return;
                            };
                            serve(ws, tick_ms, silent, stop3).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            accepted,
            stop,
        }
    }

    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// Resolves once `n` connections were accepted.
    pub async fn wait_accepted(&self, n: usize) {
        let mut rx = self.accepted.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }
}

impl Drop for MiniGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    tick_ms: u64,
    silent: bool,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let challenge =
        r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"nonce-1","ts":1}}"#;
    if ws.send(Message::text(challenge)).await.is_err() {
        return;
    }
    let mut sends = 0;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            () = stop.cancelled() => return,
        };
        let Some(Ok(Message::Text(text))) = msg else {
            return;
        };
        let Ok(Frame::Request(req)) = Frame::parse(text.as_str()) else {
            continue;
        };
        if req.method == "chat.send" {
            sends += 1;
            if sends == 1 {
                // The first chat.send of a connection meets a starting gateway.
                let busy =
                    shared_protocol::ErrorShape::unavailable("starting", "startup-sidecars", 50);
                let res = shared_protocol::frame::encode_response_err::<()>(&req.id, &busy, None)
                    .unwrap();
                if ws.send(Message::text(res)).await.is_err() {
                    return;
                }
                continue;
            }
        }
        let payload = match req.method.as_ref() {
            "connect" => serde_json::json!({"type":"hello-ok","protocol":4,
                "server":{"version":"mini-1"},
                "auth":{"method":"token","role":"operator","scopes":["operator.read","operator.write"]},
                "policy":{"tickIntervalMs": tick_ms}}),
            "agents.list" => serde_json::json!({"defaultId":"main","agents":[{"id":"main"}]}),
            // Acknowledged, then the agent never says anything.
            "chat.send" => {
                let params: serde_json::Value = req.params_as().unwrap_or_default();
                serde_json::json!({"runId": params["idempotencyKey"], "status": "started"})
            }
            _ => serde_json::json!({}),
        };
        let res = shared_protocol::frame::encode_response_ok(&req.id, &payload).unwrap();
        if ws.send(Message::text(res)).await.is_err() {
            return;
        }
        if silent && req.method == "connect" {
            // Hold the socket open without reading: no pongs, no frames.
            stop.cancelled().await;
            return;
        }
    }
}
