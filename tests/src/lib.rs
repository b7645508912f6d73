//! Test-side protocol client and targets for the conformance suite.
//!
//! [`Target`] is where a scenario runs: the in-process mock always, and the real gateway when
//! `OPENCLAW_REAL=1` (`OPENCLAW_URL`, default `ws://127.0.0.1:18789`; `OPENCLAW_TOKEN`, default
//! `test-token-123`). [`Client`] is a deliberately small client on tokio-tungstenite and
//! shared-protocol: it connects with any client id/mode/scopes/token/device/headers (including
//! ones the gateway must refuse), sends requests, and collects the events of a run, so the same
//! assertions can be made against both targets.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mock_gateway::{MockGateway, MockGatewayHandle};
use serde_json::{Value, json};
use shared_protocol::chat::ChatEvent;
use shared_protocol::connect::ConnectParams;
use shared_protocol::device::DeviceIdentity;
use shared_protocol::{ErrorShape, Frame};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Token of the real gateway when `OPENCLAW_TOKEN` is unset.
pub const DEFAULT_REAL_TOKEN: &str = "test-token-123";
/// URL of the real gateway when `OPENCLAW_URL` is unset.
pub const DEFAULT_REAL_URL: &str = "ws://127.0.0.1:18789";
/// Per-scenario deadline: the real gateway's first turn after start takes ~10 s.
pub const SCENARIO_DEADLINE: Duration = Duration::from_secs(60);
/// Events buffered while waiting for a response (a bound, not a tuning knob).
const MAX_BUFFERED_EVENTS: usize = 10_000;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// WebSocket or HTTP upgrade failure.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The peer closed (with this close frame, if any).
    #[error("connection closed: {0:?}")]
    Closed(Option<(u16, String)>),
    /// A deadline passed.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// A frame could not be read or written.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Where scenarios run. `Debug` redacts the token.
#[derive(Clone)]
pub struct Target {
    /// `mock` or `real`.
    pub name: &'static str,
    /// WebSocket URL.
    pub url: String,
    /// Shared token.
    pub token: String,
    /// The mock's handle (mock target only).
    pub mock: Option<MockGatewayHandle>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl Target {
    /// A fresh in-process mock with the real gateway's token.
    ///
    /// # Errors
    /// When the mock cannot bind.
    pub async fn mock() -> std::io::Result<Self> {
        let handle = MockGateway::builder()
            .token(DEFAULT_REAL_TOKEN)
            .start()
            .await?;
        Ok(Self {
            name: "mock",
            url: handle.url(),
            token: DEFAULT_REAL_TOKEN.into(),
            mock: Some(handle),
        })
    }

    /// A target for a mock started by the caller (custom builder settings).
    pub fn from_mock(handle: MockGatewayHandle, token: &str) -> Self {
        Self {
            name: "mock",
            url: handle.url(),
            token: token.into(),
            mock: Some(handle),
        }
    }

    /// The real gateway, when `OPENCLAW_REAL=1`.
    pub fn real() -> Option<Self> {
        (std::env::var("OPENCLAW_REAL").as_deref() == Ok("1")).then(|| Self {
            name: "real",
            url: std::env::var("OPENCLAW_URL").unwrap_or_else(|_| DEFAULT_REAL_URL.into()),
            token: std::env::var("OPENCLAW_TOKEN").unwrap_or_else(|_| DEFAULT_REAL_TOKEN.into()),
            mock: None,
        })
    }

    /// [`Target::real`], or `None` after saying on stderr how to enable it: for tests that only
    /// make sense against the real gateway and return early without it.
    pub fn real_or_skip() -> Option<Self> {
        let real = Self::real();
        if real.is_none() {
            eprintln!(
                "skipped: set OPENCLAW_REAL=1 to run against the real gateway (OPENCLAW_URL, OPENCLAW_TOKEN)"
            );
        }
        real
    }

    /// The mock, plus the real gateway when enabled.
    ///
    /// # Errors
    /// When the mock cannot bind.
    pub async fn all() -> std::io::Result<Vec<Self>> {
        let mut targets = vec![Self::mock().await?];
        targets.extend(Self::real());
        Ok(targets)
    }

    /// Options for a loopback backend with read+write and this target's token.
    pub fn backend(&self) -> ConnectOptions {
        ConnectOptions::new("gateway-client", "backend", &self.token)
            .scopes(&["operator.read", "operator.write"])
    }

    /// Connects as a read+write backend.
    ///
    /// # Errors
    /// When the connect is not answered with hello-ok.
    pub async fn connect_backend(&self) -> Result<Client, ClientError> {
        self.connect(&self.backend()).await?.into_client()
    }

    /// Connects with `opts`, whatever the outcome.
    ///
    /// # Errors
    /// Only transport failures other than an HTTP refusal of the upgrade.
    pub async fn connect(&self, opts: &ConnectOptions) -> Result<Outcome, ClientError> {
        Client::connect(&self.url, opts).await
    }

    /// Stops the mock (no-op for the real gateway).
    pub async fn stop(self) {
        if let Some(mock) = self.mock {
            mock.stop().await;
        }
    }
}

/// How to connect. `Debug` redacts the credentials.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `client.id` (any string, even invalid ones).
    pub client_id: String,
    /// `client.mode`.
    pub mode: String,
    /// `scopes`; `None` omits the field.
    pub scopes: Option<Vec<String>>,
    /// `auth.token`; `None` omits `auth`.
    pub token: Option<String>,
    /// `auth.deviceToken`.
    pub device_token: Option<String>,
    /// `minProtocol`, `maxProtocol`.
    pub protocol: (u32, u32),
    /// Extra root fields (to provoke schema errors).
    pub extra: Vec<(String, Value)>,
    /// Extra upgrade headers (`Origin`, `X-Forwarded-For`).
    pub headers: Vec<(String, String)>,
    /// Send this method instead of `connect` as the first frame.
    pub first_method: Option<String>,
    /// Sign a device proof with this seed.
    pub device_seed: Option<[u8; 32]>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("ConnectOptions")
            .field("client_id", &self.client_id)
            .field("mode", &self.mode)
            .field("scopes", &self.scopes)
            .field("token", &redact(&self.token))
            .field("device_token", &redact(&self.device_token))
            .field("protocol", &self.protocol)
            .field("headers", &self.headers)
            .field("first_method", &self.first_method)
            .field("device", &self.device_seed.map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    /// A connect as `client_id`/`mode` with a token and no scopes field.
    pub fn new(client_id: &str, mode: &str, token: &str) -> Self {
        Self {
            client_id: client_id.into(),
            mode: mode.into(),
            scopes: None,
            token: Some(token.into()),
            device_token: None,
            protocol: (4, 4),
            extra: Vec::new(),
            headers: Vec::new(),
            first_method: None,
            device_seed: None,
        }
    }

    /// Sets the requested scopes.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Adds an upgrade header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn params(&self, challenge: &Value) -> Result<Value, ClientError> {
        let mut p = json!({
            "minProtocol": self.protocol.0, "maxProtocol": self.protocol.1,
            "client": {"id": self.client_id, "version": "0.1.0", "platform": "linux", "mode": self.mode},
            "role": "operator", "caps": []
        });
        if let Some(scopes) = &self.scopes {
            p["scopes"] = json!(scopes);
        }
        let mut auth = serde_json::Map::new();
        if let Some(t) = &self.token {
            auth.insert("token".into(), json!(t));
        }
        if let Some(t) = &self.device_token {
            auth.insert("deviceToken".into(), json!(t));
        }
        if !auth.is_empty() {
            p["auth"] = Value::Object(auth);
        }
        if let Some(seed) = self.device_seed {
            let identity = DeviceIdentity::from_seed(seed)
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let typed: ConnectParams = serde_json::from_value(p.clone())
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let nonce = challenge["nonce"].as_str().unwrap_or_default();
            let ts = challenge["ts"].as_u64().unwrap_or_default();
            let proof = identity.prove(&typed, nonce, ts);
            p["device"] =
                serde_json::to_value(&proof).map_err(|e| ClientError::Protocol(e.to_string()))?;
        }
        for (k, v) in &self.extra {
            p[k.as_str()] = v.clone();
        }
        Ok(p)
    }
}

/// The result of a connect attempt.
#[derive(Debug)]
pub enum Outcome {
    /// hello-ok.
    Hello(Box<Client>),
    /// An error response, then (usually) a close frame.
    Refused {
        /// The error.
        error: ErrorShape,
        /// Close code and reason, if a close frame came.
        close: Option<(u16, String)>,
    },
    /// The upgrade was refused with this HTTP status.
    Http(u16),
}

impl Outcome {
    /// The client, or an error describing the refusal.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when the connect was refused.
    pub fn into_client(self) -> Result<Client, ClientError> {
        match self {
            Outcome::Hello(c) => Ok(*c),
            other => Err(ClientError::Protocol(format!("connect refused: {other:?}"))),
        }
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Success flag.
    pub ok: bool,
    /// Payload (`null` when absent).
    pub payload: Value,
    /// Error, when `ok` is false.
    pub error: Option<ErrorShape>,
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Event name.
    pub name: String,
    /// Frame seq.
    pub seq: Option<u64>,
    /// Payload.
    pub payload: Value,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected client.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    events: VecDeque<Event>,
    next_id: u64,
    /// The hello-ok payload.
    pub hello: Value,
    /// Ids of responses that arrived while waiting for another one.
    pub stray_responses: Vec<String>,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024)
}

impl Client {
    /// Opens a socket and performs a connect with `opts`.
    ///
    /// # Errors
    /// Transport failures other than an HTTP refusal of the upgrade.
    pub async fn connect(url: &str, opts: &ConnectOptions) -> Result<Outcome, ClientError> {
        let mut request = url.into_client_request()?;
        for (name, value) in &opts.headers {
            let name: tungstenite::http::HeaderName = name
                .parse()
                .map_err(|_| ClientError::Protocol(format!("bad header {name}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| ClientError::Protocol(format!("bad header value {value}")))?;
            request.headers_mut().insert(name, value);
        }
        let ws =
            match tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), true)
                .await
            {
                Ok((ws, _)) => ws,
                Err(tungstenite::Error::Http(resp)) => {
                    return Ok(Outcome::Http(resp.status().as_u16()));
                }
                Err(e) => return Err(e.into()),
            };
        let mut client = Client {
            ws,
            events: VecDeque::new(),
            next_id: 0,
            hello: Value::Null,
            stray_responses: Vec::new(),
        };
        let challenge = client.next_event(SCENARIO_DEADLINE).await?;
        if challenge.name != "connect.challenge" || challenge.seq.is_some() {
            return Err(ClientError::Protocol(format!(
                "expected an unsequenced connect.challenge, got {challenge:?}"
            )));
        }
        let method = opts.first_method.as_deref().unwrap_or("connect");
        let params = opts.params(&challenge.payload)?;
        let res = client.request(method, params).await?;
        if res.ok {
            client.hello = res.payload;
            return Ok(Outcome::Hello(Box::new(client)));
        }
        let close = client.close_frame(SCENARIO_DEADLINE).await;
        Ok(Outcome::Refused {
            error: res
                .error
                .unwrap_or_else(|| ErrorShape::new("NO_ERROR".into(), "")),
            close,
        })
    }

    /// Events received and not yet consumed (e.g. while waiting for a response).
    pub fn buffered_events(&self) -> usize {
        self.events.len()
    }

    /// The scopes granted in hello-ok.
    pub fn granted_scopes(&self) -> Vec<String> {
        self.hello["auth"]["scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends a raw text frame.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    /// Sends a request without waiting; returns its id.
    ///
    /// # Errors
    /// Transport failures.
    pub async fn send_request(
        &mut self,
        method: &str,
        params: Value,
    ) -> Result<String, ClientError> {
        self.next_id += 1;
        let id = format!("t{}", self.next_id);
        let text = shared_protocol::frame::encode_request(&id, method, &params)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_text(text).await?;
        Ok(id)
    }

    /// Sends a request and waits for its response (events meanwhile are kept).
    ///
    /// # Errors
    /// Transport failures, close, or [`SCENARIO_DEADLINE`].
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Response, ClientError> {
        let id = self.send_request(method, params).await?;
        self.response(&id).await
    }

    /// Waits for the response to `id`.
    ///
    /// # Errors
    /// Transport failures, close, or [`SCENARIO_DEADLINE`].
    pub async fn response(&mut self, id: &str) -> Result<Response, ClientError> {
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        loop {
            let text = self.read_text(deadline, "a response").await?;
            match Frame::parse(&text) {
                Ok(Frame::Response(r)) if r.id == id => {
                    return Ok(Response {
                        ok: r.ok,
                        payload: r.payload_as::<Value>().unwrap_or(Value::Null),
                        error: r.error(),
                    });
                }
                Ok(Frame::Event(e)) => self.buffer(&e),
                Ok(Frame::Response(r)) => self.stray_responses.push(r.id.to_string()),
                _ => {}
            }
        }
    }

    fn buffer(&mut self, e: &shared_protocol::frame::EventFrame<'_>) {
        if self.events.len() < MAX_BUFFERED_EVENTS {
            self.events.push_back(Event {
                name: e.event.to_string(),
                seq: e.seq,
                payload: e.payload_as::<Value>().unwrap_or(Value::Null),
            });
        }
    }

    async fn read_text(
        &mut self,
        deadline: tokio::time::Instant,
        what: &'static str,
    ) -> Result<String, ClientError> {
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout(what))?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed(
                        frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())),
                    ));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed(None)),
            }
        }
    }

    /// The next event (buffered first).
    ///
    /// # Errors
    /// Transport failures, close, or `within`.
    pub async fn next_event(&mut self, within: Duration) -> Result<Event, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(e);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let text = self.read_text(deadline, "an event").await?;
            if let Ok(Frame::Event(e)) = Frame::parse(&text) {
                self.buffer(&e);
                if let Some(e) = self.events.pop_front() {
                    return Ok(e);
                }
            }
        }
    }

    /// The `chat` events of `run_id` up to and including its first terminal event; other events
    /// are skipped.
    ///
    /// # Errors
    /// Transport failures, close, or [`SCENARIO_DEADLINE`].
    pub async fn collect_run(&mut self, run_id: &str) -> Result<Vec<ChatEvent>, ClientError> {
        let deadline = tokio::time::Instant::now() + SCENARIO_DEADLINE;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let e = self.next_event(left).await?;
            if e.name != "chat" || e.payload["runId"] != run_id {
                continue;
            }
            let ev: ChatEvent = serde_json::from_value(e.payload)
                .map_err(|err| ClientError::Protocol(err.to_string()))?;
            let terminal = ev.state.is_terminal();
            out.push(ev);
            if terminal {
                return Ok(out);
            }
        }
    }

    /// Reads frames until the socket ends: `Some(close)` for a close frame, `None` for a drop
    /// without one (or nothing within `within`).
    pub async fn until_closed(
        &mut self,
        within: Duration,
    ) -> Result<Option<(u16, String)>, ClientError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.read_text(deadline, "the end of the socket").await {
                Ok(_) => continue,
                Err(ClientError::Closed(frame)) => return Ok(frame),
                Err(ClientError::Ws(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the close frame (or EOF); `None` if none came within `within`.
    pub async fn close_frame(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.read_text(deadline, "a close frame").await {
                Ok(_) => continue,
                Err(ClientError::Closed(frame)) => return frame,
                Err(_) => return None,
            }
        }
    }
}

/// A unique suffix for session keys and idempotency keys, so reruns against the persistent real
/// gateway never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

/// `chat.send` params.
pub fn send_params(session_key: &str, message: &str, idempotency_key: &str) -> Value {
    json!({"sessionKey": session_key, "message": message, "idempotencyKey": idempotency_key})
}
