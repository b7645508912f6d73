//! The loopback demo (`cargo run --release -p bridge-tools --bin demo`): the whole path with
//! nothing installed.
//!
//! Starts the in-process mock OpenClaw gateway, the gateway-proxy in front of it (TLS with a fresh
//! self-signed certificate, which the bridge pins) and the bridge (real HTTP service, real pooled
//! WebSocket), then plays Omni: posts a few webhook bodies over HTTP — two people, a retry of the
//! same trace, a reset, and two messages at once on one chat — and prints what came back with the
//! latency of each, as a table. `--direct` leaves the proxy out.

use std::fmt::Write as _;
use std::time::Duration;

use clap::Parser;
use gateway_proxy::config::LimitsConfig;
use http::Method;
use mock_gateway::MockGateway;
use omni_bridge::bridge::{RunningBridge, StartError};
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::http_client::HttpClient;
use shared_protocol::Secret;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::loopback::LoopbackProxy;

/// Long help for `demo`.
pub const LONG_ABOUT: &str = "Start a mock OpenClaw gateway, gateway-proxy in front of it (TLS with a \
fresh self-signed certificate that the bridge pins) and the bridge on loopback, act as Omni (two \
people chatting, a retried delivery, a /reset, two messages at once on one chat), and print the \
replies and latencies as a table. Needs no config, no network and no gateway. --direct leaves the \
proxy out.\n\n\
Example:\n  cargo run --release -p bridge-tools --bin demo";

/// Token shared by the demo's mock gateway and bridge.
const DEMO_GATEWAY_TOKEN: &str = "demo-gateway-token";
/// Inbound secret of the demo bridge.
const DEMO_INBOUND_TOKEN: &str = "demo-inbound-secret";
/// The bridge's credential at the demo's gateway-proxy.
const DEMO_PROXY_CREDENTIAL: &str = "demo-proxy-credential";
/// Deadline for the bridge to connect to the mock.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between polls of `/ready` while waiting for the first connection.
const READY_POLL: Duration = Duration::from_millis(20);

/// Flags of `demo`.
#[derive(Debug, Clone, Parser)]
#[command(name = "demo", about = "Mock gateway, gateway-proxy and omni-bridge on loopback: plays Omni and prints the replies.", long_about = LONG_ABOUT)]
pub struct DemoArgs {
    /// Pause between streamed reply chunks at the mock gateway, in milliseconds.
    #[arg(long, default_value_t = 10)]
    pub delta_interval_ms: u64,
    /// Connect the bridge straight to the mock gateway instead of through gateway-proxy (wss://,
    /// self-signed certificate pinned by its SPKI hash).
    #[arg(long)]
    pub direct: bool,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Socket setup failed.
    #[error("demo: could not open a loopback socket: {0}")]
    Io(#[from] std::io::Error),
    /// The proxy did not start.
    #[error("demo: gateway-proxy did not start: {0}")]
    Proxy(#[from] gateway_proxy::ProxyError),
    /// The bridge did not start.
    #[error("demo: the bridge did not start: {0}")]
    Start(#[from] StartError),
    /// The bridge never became ready.
    #[error("demo: the bridge did not connect to the mock gateway within {0:?}")]
    NotReady(Duration),
    /// A request failed.
    #[error("demo: request failed: {0}")]
    Http(#[from] omni_bridge::http_client::HttpError),
}

struct Row {
    step: &'static str,
    who: &'static str,
    chat: &'static str,
    sent: String,
    status: u16,
    reply: String,
    ms: f64,
}

/// Runs the demo and returns the table.
///
/// # Errors
/// [`DemoError`] when something on loopback fails.
pub async fn run(args: &DemoArgs) -> Result<String, DemoError> {
    let mock = MockGateway::builder()
        .token(DEMO_GATEWAY_TOKEN)
        .delta_interval(Duration::from_millis(args.delta_interval_ms))
        .start()
        .await?;
    let gateway_token = Secret::new(DEMO_GATEWAY_TOKEN.to_string());
    let proxy = if args.direct {
        None
    } else {
        let credential = Secret::new(DEMO_PROXY_CREDENTIAL.to_string());
        match LoopbackProxy::start(
            &mock.url(),
            &gateway_token,
            &credential,
            LimitsConfig::default(),
        )
        .await
        {
            Ok(proxy) => Some(proxy),
            Err(e) => {
                mock.stop().await;
                return Err(e.into());
            }
        }
    };
    let (gateway, path) = match &proxy {
        Some(p) => {
            let mut entry = GatewayConfig::new(
                p.wss_url.clone(),
                Secret::new(DEMO_PROXY_CREDENTIAL.to_string()),
            );
            entry.pins = vec![p.pin];
            (
                entry,
                format!(
                    "bridge -> gateway-proxy {} (TLS, pinned {}) -> mock gateway {}",
                    p.wss_url,
                    p.pin,
                    mock.url()
                ),
            )
        }
        None => (
            GatewayConfig::new(mock.url(), gateway_token),
            format!("bridge -> mock gateway {}", mock.url()),
        ),
    };
    let result = play_through(gateway).await;
    if let Some(p) = proxy {
        p.stop().await;
    }
    let requests = mock.requests();
    mock.stop().await;
    let (rows, base) = result?;
    let sends = requests.iter().filter(|r| r.method == "chat.send").count();
    let mut out = table(&rows);
    let _ = writeln!(
        out,
        "\nPath: {path}.\nBridge on {base}; the mock gateway saw {sends} chat.send for {} deliveries: the retry (3) was answered from the bridge's cache, the reset (4) archived and deleted the session, and 5a/5b ran one after the other on their shared conversation.",
        rows.len()
    );
    let _ = writeln!(
        out,
        "Next: point the bridge at a real gateway with `omni-bridge check-gateway --gateway-url ws://127.0.0.1:18789`, then `omni-bridge serve` and `omni-bridge register`."
    );
    Ok(out)
}

/// Starts the bridge on loopback for `gateway`, plays Omni against it, stops it.
async fn play_through(gateway: GatewayConfig) -> Result<(Vec<Row>, String), DemoError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut config =
        BridgeConfig::single(gateway, "main", Secret::new(DEMO_INBOUND_TOKEN.to_string()));
    config.listen = listener.local_addr()?;
    let registry = prometheus::Registry::new();
    let bridge = RunningBridge::start(&config, &registry, listener)?;
    let base = format!("http://{}", bridge.addr());
    let client = HttpClient::new(Duration::from_secs(30));
    let result = play(&client, &base).await;
    let _ = bridge.stop().await;
    Ok((result?, base))
}

async fn play(client: &HttpClient, base: &str) -> Result<Vec<Row>, DemoError> {
    wait_ready(client, base).await?;
    let mut rows = Vec::new();
    rows.push(
        send(
            client,
            base,
            "1",
            "Ana",
            "chat-ana",
            "Hi, I'm Ana. What can you do?",
            "t-1",
        )
        .await?,
    );
    rows.push(
        send(
            client,
            base,
            "2",
            "Bruno",
            "chat-bruno",
            "Hello from Bruno!",
            "t-2",
        )
        .await?,
    );
    rows.push(
        send(
            client,
            base,
            "3 (retry of 1)",
            "Ana",
            "chat-ana",
            "Hi, I'm Ana. What can you do?",
            "t-1",
        )
        .await?,
    );
    rows.push(send(client, base, "4", "Ana", "chat-ana", "/reset", "t-4").await?);
    let (a, b) = tokio::join!(
        send(
            client,
            base,
            "5a (same time)",
            "Carla",
            "chat-group",
            "first question",
            "t-5a"
        ),
        send(
            client,
            base,
            "5b (same time)",
            "Dan",
            "chat-group",
            "second question",
            "t-5b"
        ),
    );
    rows.push(a?);
    rows.push(b?);
    Ok(rows)
}

async fn wait_ready(client: &HttpClient, base: &str) -> Result<(), DemoError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = client
            .send(Method::GET, &format!("{base}/ready"), &[], None)
            .await
            .is_ok_and(|r| r.status.is_success());
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DemoError::NotReady(READY_TIMEOUT));
        }
        tokio::time::sleep(READY_POLL).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn send(
    client: &HttpClient,
    base: &str,
    step: &'static str,
    who: &'static str,
    chat: &'static str,
    text: &str,
    trace: &str,
) -> Result<Row, DemoError> {
    let body = serde_json::json!({
        "event": {},
        "instance": { "id": "demo-instance", "channelType": "whatsapp-baileys" },
        "chat": { "id": chat },
        "sender": { "id": format!("{who}-id"), "name": who },
        "content": { "text": text },
        "traceId": trace,
        "replyEndpoint": "POST /api/v2/messages/send"
    });
    let auth = format!("Bearer {DEMO_INBOUND_TOKEN}");
    let started = Instant::now();
    let reply = client
        .send(
            Method::POST,
            &format!("{base}/omni/agents/main/trigger"),
            &[
                ("authorization", auth.as_str()),
                ("x-omni-provider", "webhook"),
            ],
            Some(&body),
        )
        .await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let json = reply.json();
    let text_back = json
        .get("reply")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| json.get("parts").map(|p| p.to_string()))
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).to_string());
    Ok(Row {
        step,
        who,
        chat,
        sent: text.to_string(),
        status: reply.status.as_u16(),
        reply: text_back,
        ms,
    })
}

fn table(rows: &[Row]) -> String {
    let headers = ["step", "from", "chat", "sent", "HTTP", "reply", "ms"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.step.to_string(),
                r.who.to_string(),
                r.chat.to_string(),
                r.sent.clone(),
                r.status.to_string(),
                r.reply.clone(),
                format!("{:.1}", r.ms),
            ]
        })
        .collect();
    let mut widths = headers.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: &[String]| {
        let mut s = String::from("|");
        for (v, w) in values.iter().zip(widths) {
            let _ = write!(s, " {v:<w$} |");
        }
        s.push('\n');
        s
    };
    let mut out = line(&headers.map(String::from));
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&sep));
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::DemoArgs::command().debug_assert();
    }
}
