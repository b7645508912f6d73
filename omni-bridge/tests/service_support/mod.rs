//! Shared helpers for the service tests: a deterministic in-memory backend, a service started
//! on 127.0.0.1:0 in-process, and a tiny HTTP client.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::error::Error;
use omni_bridge::gateway::{ReplyOutcome, RunReply, RunRequest, RunStats};
use omni_bridge::http_client::{HttpClient, HttpReply};
use omni_bridge::service::Service;
use omni_bridge::service::agent_backend::{AgentBackend, GatewayHealth, ReplyFuture, Started};
use parking_lot::Mutex;
use shared_protocol::{Secret, SessionKey};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const INBOUND: &str = "inbound-secret-123";
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// What the fake does with the next run.
pub enum Step {
    Reply(String),
    Fail(Error),
}

/// One run a test asked for.
#[derive(Debug, Clone)]
pub struct FakeRun {
    pub gateway: String,
    pub session_key: SessionKey,
    pub message: String,
    pub idempotency_key: String,
}

type Shared = watch::Receiver<Option<Result<RunReply, Error>>>;

/// A backend that answers like the fake LLM, records every call, can hold runs until
/// released, and joins a second run of an idempotency key in flight (like the gateway layer).
#[derive(Default)]
pub struct FakeBackend {
    pub runs: Mutex<Vec<FakeRun>>,
    pub resets: Mutex<Vec<(String, SessionKey)>>,
    pub script: Mutex<VecDeque<Step>>,
    pub reset_results: Mutex<VecDeque<Error>>,
    pub health: Mutex<Vec<GatewayHealth>>,
    /// When set, every run waits for a permit.
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    /// Number of runs started so far.
    pub started: watch::Sender<usize>,
    /// Runs in flight by idempotency key.
    in_flight: Arc<Mutex<HashMap<String, Shared>>>,
}

impl FakeBackend {
    pub fn new() -> Arc<Self> {
        let f = Self::default();
        *f.health.lock() = vec![healthy("default")];
        Arc::new(f)
    }

    pub fn hold(&self) -> Arc<Semaphore> {
        let s = Arc::new(Semaphore::new(0));
        *self.gate.lock() = Some(s.clone());
        s
    }

    pub async fn wait_started(&self, n: usize) {
        let mut rx = self.started.subscribe();
        rx.wait_for(|c| *c >= n).await.unwrap();
    }

    pub fn run_count(&self) -> usize {
        self.runs.lock().len()
    }
}

pub fn healthy(name: &str) -> GatewayHealth {
    GatewayHealth {
        name: name.into(),
        state: "connected".into(),
        connected: true,
        ever_connected: true,
        breaker_open: false,
        in_flight: 0,
        queued: 0,
        last_error: None,
    }
}

pub fn fake_reply(message: &str) -> String {
    format!("FAKE-REPLY: you said <<{message}>>. chunk-a chunk-b chunk-c")
}

fn reply(run_id: String, text: String) -> RunReply {
    RunReply {
        run_id,
        text,
        outcome: ReplyOutcome::Completed,
        stats: RunStats {
            time_to_first_delta: Some(Duration::from_millis(3)),
            ..RunStats::default()
        },
    }
}

fn wait(mut rx: Shared) -> ReplyFuture {
    async move {
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Err(Error::Closed)),
            Err(_) => Err(Error::Closed),
        }
    }
    .boxed()
}

impl AgentBackend for FakeBackend {
    fn run(&self, gateway: &str, request: RunRequest) -> Started {
        let key = request.idempotency_key.clone();
        if let Some(rx) = self.in_flight.lock().get(&key).cloned() {
            return Started {
                joined: true,
                reply: wait(rx),
            };
        }
        self.runs.lock().push(FakeRun {
            gateway: gateway.to_string(),
            session_key: request.session_key.clone(),
            message: request.message.clone(),
            idempotency_key: key.clone(),
        });
        let step = self.script.lock().pop_front();
        let gate = self.gate.lock().clone();
        let (tx, rx) = watch::channel(None);
        self.in_flight.lock().insert(key.clone(), rx.clone());
        self.started.send_modify(|n| *n += 1);
        let in_flight = self.in_flight.clone();
        // The run goes on without its caller, like the gateway's.
        tokio::spawn(async move {
            if let Some(g) = gate {
                let _permit = g.acquire().await;
            }
            let result = match step {
                Some(Step::Fail(e)) => Err(e),
                Some(Step::Reply(text)) => Ok(reply(key.clone(), text)),
                None => Ok(reply(key.clone(), fake_reply(&request.message))),
            };
            in_flight.lock().remove(&key);
            tx.send_replace(Some(result));
        });
        Started {
            joined: false,
            reply: wait(rx),
        }
    }

    fn attach(&self, _gateway: &str, idempotency_key: &str) -> Option<ReplyFuture> {
        let rx = self.in_flight.lock().get(idempotency_key).cloned()?;
        Some(wait(rx))
    }

    fn reset(&self, gateway: &str, key: &SessionKey) -> BoxFuture<'static, Result<(), Error>> {
        self.resets.lock().push((gateway.to_string(), key.clone()));
        let result = self.reset_results.lock().pop_front();
        async move { result.map_or(Ok(()), Err) }.boxed()
    }

    fn health(&self) -> Vec<GatewayHealth> {
        self.health.lock().clone()
    }

    fn runs_in_flight(&self) -> usize {
        self.in_flight.lock().len()
    }
}

pub fn base_config() -> BridgeConfig {
    BridgeConfig::single(
        GatewayConfig::new("ws://127.0.0.1:1", Secret::new("gw".to_string())),
        "main",
        Secret::new(INBOUND.to_string()),
    )
}

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
    pub client: HttpClient,
    pub registry: prometheus::Registry,
}

pub async fn start(config: BridgeConfig, backend: Arc<FakeBackend>) -> Running {
    config.validate().unwrap();
    let registry = prometheus::Registry::new();
    let service = Service::new(&config, backend, &registry).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(omni_bridge::service::run(
        listener,
        service,
        shutdown.clone(),
    ));
    Running {
        addr,
        shutdown,
        task,
        client: HttpClient::new(TEST_TIMEOUT),
        registry,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn trigger_raw(&self, agent: &str, body: &str, auth: Option<&str>) -> HttpReply {
        let mut headers = vec![("x-omni-provider", "webhook")];
        let bearer = auth.map(|a| format!("Bearer {a}"));
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        self.client
            .send_raw(
                http::Method::POST,
                &self.url(&format!("/omni/agents/{agent}/trigger")),
                &headers,
                bytes::Bytes::from(body.to_string()),
            )
            .await
            .unwrap()
    }

    pub async fn trigger(&self, body: &serde_json::Value) -> HttpReply {
        self.trigger_raw("main", &body.to_string(), Some(INBOUND))
            .await
    }

    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .send(http::Method::GET, &self.url("/metrics"), &[], None)
            .await
            .unwrap();
        String::from_utf8_lossy(&r.body).into_owned()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub fn golden(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An Omni-shaped message body.
pub fn message(
    instance: &str,
    chat: &str,
    sender: &str,
    text: &str,
    trace: &str,
) -> serde_json::Value {
    serde_json::json!({
        "event": {},
        "instance": { "id": instance, "channelType": "whatsapp-baileys" },
        "chat": { "id": chat },
        "sender": { "id": format!("{sender}-id"), "name": sender },
        "content": { "text": text },
        "traceId": trace,
        "replyEndpoint": "POST /api/v2/messages/send"
    })
}
