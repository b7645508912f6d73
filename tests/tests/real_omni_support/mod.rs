//! Harness of the real-Omni suite: the Omni of `../shared/real-omni/real-omni.sh`, its fake
//! Telegram (what a person sees is what `GET /_sent` shows), one bridge in-process per test, and
//! the gateway under test (the in-process mock, or the real one with `OPENCLAW_REAL=1`).
//!
//! Every address comes from the kit's environment (`eval "$(real-omni.sh env)"`), with the kit's
//! defaults when unset: `OMNI_URL`, `OMNI_API_KEY`, `REAL_OMNI_FAKE_TG_PORT`,
//! `REAL_OMNI_TG_INSTANCE_ID` (else the instance named `real-omni-tg`), `OMNI_NATS_URL` (else
//! `nats://127.0.0.1:$REAL_OMNI_NATS_PORT`, default port 14222), `REAL_OMNI_STATE` (for the
//! `omni` CLI).
//!
//! The kit has one Telegram instance and every Telegram instance would poll the same fake Bot
//! API, so tests run one at a time ([`Suite::lock`]); each binds the instance to a provider of
//! its own (a fresh provider id, so Omni's provider cache never serves a stale one).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use integration_tests::{Client, Target};
use omni_bridge::bridge::{RunningBridge, StartOptions};
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::http_client::{HttpClient, Method};
use omni_bridge::omni::api::{OmniApi, items, str_field};
use omni_bridge::register::{RegisterOptions, register};
use serde_json::{Value, json};
use shared_protocol::Secret;
use tokio::sync::{Mutex, MutexGuard};

/// The kit's defaults.
pub const DEFAULT_OMNI_URL: &str = "http://127.0.0.1:18882";
pub const DEFAULT_OMNI_KEY: &str = "omni_sk_realomniTestKey0123456789abcdefABCD";
pub const DEFAULT_TG_PORT: &str = "18081";
pub const DEFAULT_NATS_PORT: &str = "14222";
/// The bridge's inbound secret in these tests.
pub const INBOUND: &str = "real-omni-inbound-secret";
/// Longest wait for something to appear in the chat (a real gateway's first turn takes ~10 s;
/// a FAIL500 run on the real gateway ends after ~70 s).
pub const CHAT_DEADLINE: Duration = Duration::from_secs(100);
/// Deadline of one whole test.
pub const TEST_DEADLINE: Duration = Duration::from_secs(240);

static SERIAL: Mutex<()> = Mutex::const_new(());

/// One test's view of the suite.
pub struct Suite {
    pub omni: OmniApi,
    pub omni_url: String,
    pub api_key: String,
    pub tg: String,
    pub instance: String,
    pub nats_url: String,
    pub http: HttpClient,
    /// The gateway the bridges talk to.
    pub gateway: Target,
    /// Unique per test run, for provider, agent and consumer names.
    pub run_id: String,
    _guard: MutexGuard<'static, ()>,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

impl Suite {
    /// `None` (after saying why) unless `OMNI_REAL=1`.
    pub async fn start() -> Option<Self> {
        if std::env::var("OMNI_REAL").as_deref() != Ok("1") {
            eprintln!(
                "skipped: set OMNI_REAL=1 with the real Omni running (bash ../shared/real-omni/real-omni.sh start; eval \"$(bash ../shared/real-omni/real-omni.sh env)\")"
            );
            return None;
        }
        let guard = SERIAL.lock().await;
        let omni_url = env_or("OMNI_URL", DEFAULT_OMNI_URL);
        let api_key = env_or("OMNI_API_KEY", DEFAULT_OMNI_KEY);
        let http = HttpClient::new(Duration::from_secs(30));
        let omni = OmniApi::new(http.clone(), &omni_url, Secret::new(api_key.clone()));
        let instance = match std::env::var("REAL_OMNI_TG_INSTANCE_ID")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(i) => i,
            None => {
                let list = omni
                    .call_ok(Method::GET, "/instances?limit=100", None, "instances")
                    .await
                    .unwrap();
                items(&list)
                    .iter()
                    .find(|i| str_field(i, "name") == Some("real-omni-tg"))
                    .and_then(|i| str_field(i, "id").map(str::to_string))
                    .expect("no Telegram instance: run `real-omni.sh instance` first")
            }
        };
        let nats_url = std::env::var("OMNI_NATS_URL")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "nats://127.0.0.1:{}",
                    env_or("REAL_OMNI_NATS_PORT", DEFAULT_NATS_PORT)
                )
            });
        let gateway = match Target::real() {
            Some(t) => t,
            None => Target::mock().await.unwrap(),
        };
        Some(Self {
            omni,
            omni_url,
            api_key,
            tg: format!(
                "http://127.0.0.1:{}",
                env_or("REAL_OMNI_FAKE_TG_PORT", DEFAULT_TG_PORT)
            ),
            instance,
            nats_url,
            http,
            gateway,
            run_id: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            _guard: guard,
        })
    }

    /// A bridge config for agent `tag` on the gateway under test, listening on a fresh port.
    pub async fn config(&self, tag: &str) -> (BridgeConfig, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let agent = format!("t{}-{tag}", self.run_id);
        let mut config = BridgeConfig::single(
            GatewayConfig::new(
                self.gateway.url.clone(),
                Secret::new(self.gateway.token.clone()),
            ),
            &agent,
            Secret::new(INBOUND.to_string()),
        );
        config.listen = listener.local_addr().unwrap();
        config.public_url = Some(format!("http://{}", config.listen));
        if let Some(a) = config.agents.get_mut(&agent) {
            a.openclaw_agent = Some("main".into());
        }
        (config, listener)
    }

    /// Starts a bridge and registers it for the Telegram instance (the bridge's own `register`).
    pub async fn bridge(&self, config: &BridgeConfig, listener: tokio::net::TcpListener) -> Bridge {
        let running = RunningBridge::start_standalone(config, listener).unwrap();
        self.register(config).await;
        Bridge {
            addr: running.addr(),
            running: Some(running),
        }
    }

    /// A bridge with [`StartOptions`] (already registered by an earlier one with this config).
    pub fn bridge_with(
        &self,
        config: &BridgeConfig,
        listener: tokio::net::TcpListener,
        options: StartOptions,
    ) -> Bridge {
        let running =
            RunningBridge::start_with(config, &prometheus_registry(), listener, options).unwrap();
        Bridge {
            addr: running.addr(),
            running: Some(running),
        }
    }

    /// `register` for the config's agent, binding the Telegram instance.
    pub async fn register(&self, config: &BridgeConfig) -> omni_bridge::register::RegisterReport {
        register(&self.http, &self.register_options(config))
            .await
            .unwrap()
    }

    /// What `register` would be given for this config.
    pub fn register_options(&self, config: &BridgeConfig) -> RegisterOptions {
        let agent = config.agents.keys().next().unwrap().clone();
        RegisterOptions {
            omni_url: self.omni_url.clone(),
            api_key: Secret::new(self.api_key.clone()),
            openclaw_agent: "main".into(),
            trigger_url: config.trigger_url(&agent),
            inbound_token: Secret::new(INBOUND.into()),
            bridge_deadline: config.max_run_budget(),
            instance: Some(self.instance.clone()),
            // As `register --omni-nats-url`: the 🗑 consumer exists before the first 🗑.
            nats: config.omni.reset_stream(),
            dry_run: false,
            agent,
        }
    }

    /// One inbound Telegram message, as a person would send it.
    pub async fn say(&self, chat: i64, from: i64, name: &str, text: &str) {
        let body = json!({"chat_id": chat, "from_id": from, "first_name": name, "text": text});
        let r = self
            .http
            .send(
                Method::POST,
                &format!("{}/_inject", self.tg),
                &[],
                Some(&body),
            )
            .await
            .unwrap();
        assert!(r.status.is_success(), "inject: {}", r.status);
    }

    /// Every text the bot sent to `chat` so far (HTML entities undone).
    pub async fn chat(&self, chat: i64) -> Vec<String> {
        let r = self
            .http
            .send(Method::GET, &format!("{}/_sent", self.tg), &[], None)
            .await
            .unwrap();
        let sent: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        sent.iter()
            .filter(|s| s["method"] == "sendMessage")
            .filter(|s| s["params"]["chat_id"].to_string().trim_matches('"') == chat.to_string())
            .filter_map(|s| s["params"]["text"].as_str().map(unescape))
            .collect()
    }

    /// Waits until `chat` has at least `n` texts; returns them.
    pub async fn wait_chat(&self, chat: i64, n: usize) -> Vec<String> {
        let got = tokio::time::timeout(CHAT_DEADLINE, async {
            loop {
                let texts = self.chat(chat).await;
                if texts.len() >= n {
                    return texts;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match got {
            Ok(t) => t,
            Err(_) => panic!(
                "chat {chat}: fewer than {n} messages after {CHAT_DEADLINE:?}: {:?}",
                self.chat(chat).await
            ),
        }
    }

    /// Unbinds the instance and deletes the providers this test made.
    pub async fn finish(self, providers: &[&str]) {
        let _ = self
            .omni
            .call(
                Method::PATCH,
                &format!("/instances/{}", self.instance),
                Some(&json!({"agentProviderId": null})),
            )
            .await;
        let list = self
            .omni
            .call_ok(Method::GET, "/providers", None, "providers")
            .await
            .unwrap();
        for p in items(&list) {
            let name = str_field(&p, "name").unwrap_or("");
            if providers.contains(&name) || name.contains(&self.run_id) {
                let id = str_field(&p, "id").unwrap_or("");
                let _ = self
                    .omni
                    .call(Method::DELETE, &format!("/providers/{id}"), None)
                    .await;
            }
        }
        if let Some(m) = self.gateway.mock.clone() {
            m.stop().await;
        }
    }

    /// The transcript of a session on the gateway under test (`chat.history`).
    pub async fn history(&self, session_key: &str) -> Vec<Value> {
        let mut c: Client = self.gateway.connect_backend().await.unwrap();
        let r = c
            .request("chat.history", json!({"sessionKey": session_key}))
            .await
            .unwrap();
        r.payload["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A bridge running in-process.
pub struct Bridge {
    pub addr: SocketAddr,
    pub running: Option<RunningBridge>,
}

impl Bridge {
    /// `GET path` on the bridge.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = HttpClient::new(Duration::from_secs(10))
            .send(
                Method::GET,
                &format!("http://{}{path}", self.addr),
                &[],
                None,
            )
            .await
            .unwrap();
        (
            r.status.as_u16(),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    }

    /// Waits until the bridge has `n` runs in flight.
    pub async fn wait_in_flight(&self, n: u64) {
        tokio::time::timeout(CHAT_DEADLINE, async {
            loop {
                let (_, body) = self.get("/health").await;
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if v["inFlight"].as_u64() == Some(n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("runs in flight");
    }

    /// A metric's value (the line `name value`), 0 when absent.
    pub async fn metric(&self, series: &str) -> u64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Waits until `series` reaches `n`.
    pub async fn wait_metric(&self, series: &str, n: u64) {
        let ok = tokio::time::timeout(CHAT_DEADLINE, async {
            while self.metric(series).await < n {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(ok.is_ok(), "{series} never reached {n}");
    }

    /// Stops it (drain included).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }
}

/// A registry of its own for one bridge.
pub fn prometheus_registry() -> omni_bridge::gateway::Registry {
    omni_bridge::gateway::Registry::new()
}

/// A fresh chat id (Omni limits each sender to 5 triggers a minute).
pub fn chat_id() -> i64 {
    i64::from(rand_u32() % 90_000_000) + 10_000
}

fn rand_u32() -> u32 {
    let b = uuid::Uuid::new_v4();
    u32::from_le_bytes(b.as_bytes()[..4].try_into().unwrap())
}

/// The fake LLM's (and the mock's) answer to `text`.
pub fn fake_reply(text: &str) -> String {
    mock_gateway::fake_reply(text)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Runs a test body within [`TEST_DEADLINE`].
pub async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_DEADLINE, f)
        .await
        .expect("test deadline");
}

/// A load balancer in front of the bridge that breaks once: the first POST is handed to the
/// bridge (its run starts) and answered 502 at once; everything else is passed through. Omni
/// retries a 5xx once when the provider's `schemaConfig.retries` is 1.
pub struct FlakyFront {
    pub addr: SocketAddr,
    /// POSTs seen.
    pub posts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FlakyFront {
    pub async fn start(bridge: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = posts.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = front_connection(conn, bridge, counter).await;
                });
            }
        });
        Self { addr, posts, task }
    }
}

impl Drop for FlakyFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn front_connection(
    mut client: tokio::net::TcpStream,
    bridge: SocketAddr,
    posts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    loop {
        let Some(request) = read_message(&mut client).await? else {
            return Ok(());
        };
        let mut upstream = tokio::net::TcpStream::connect(bridge).await?;
        upstream.write_all(&request).await?;
        let is_post = request.starts_with(b"POST ");
        if is_post && posts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::spawn(async move {
                let _ = read_message(&mut upstream).await;
            });
            client
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
            return Ok(());
        }
        let Some(response) = read_message(&mut upstream).await? else {
            return Ok(());
        };
        client.write_all(&response).await?;
    }
}

/// One HTTP/1.1 message with a `content-length` body (what Bun and the bridge send); `None` at EOF.
async fn read_message(s: &mut tokio::net::TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        assert!(buf.len() < 1 << 20, "headers too large");
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf))
}
