//! `bridge-bench`: the bridge's own overhead on loopback, as a table.
//!
//! Two gateways, both in-process on loopback:
//! - an instant stand-in ([`instant_gateway`]) that acks and finishes every `chat.send` at once
//!   and stamps when it read the `chat.send` and wrote the `final`. Against it the benchmark
//!   splits the cost into the two legs the bridge owns: **in** = HTTP request sent -> `chat.send`
//!   read at the gateway, **out** = `final` written -> HTTP response received;
//! - the mock gateway (`mock-gateway`, delta interval 0) for an end-to-end figure with realistic
//!   event traffic (status events, deltas, final).
//!
//! Paths, each a closed loop of N conversations (a conversation sends its next message when the
//! previous reply is back) for a bounded time: `direct-ws` (a bare WebSocket client multiplexing
//! `chat.send` on one connection: the floor), `pool` (the bridge's connection layer,
//! `GatewayHandle::run`, no HTTP) and `bridge` (Omni-shaped HTTP POST -> service -> pool ->
//! gateway -> HTTP reply). Loopback only; every pass is bounded in time.
//!
//! ```text
//! # closed loop: throughput, latency at saturation
//! cargo run --release -p omni-bridge --bin bridge-bench -- --conversations 1,64,512 --seconds 5
//! # open loop: latency at a fixed load (2000 runs/s over the conversations)
//! cargo run --release -p omni-bridge --bin bridge-bench -- --conversations 64,512 --seconds 5 --rate 2000
//! ```

mod instant_gateway;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use instant_gateway::{InstantGateway, Stamps};
use mock_gateway::MockGateway;
use omni_bridge::bridge::RunningBridge;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::gateway::{GatewayHandle, RunRequest};
use omni_bridge::http_client::HttpClient;
use omni_bridge::service::trigger::idempotency_key;
use parking_lot::Mutex;
use shared_protocol::chat::{ChatEvent, ChatSendParams};
use shared_protocol::connect::ConnectParams;
use shared_protocol::frame::{Frame, encode_request};
use shared_protocol::{AgentId, Scope, Secret, SessionKey};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "bench-token";
const INBOUND: &str = "bench-inbound";
const INSTANCE: &str = "bench";
/// Per-request deadline in every pass.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on queued outbound frames of the direct client.
const DIRECT_QUEUE: usize = 4096;
/// Runs in flight allowed on the bridge's gateway connection (above the largest pass).
const BENCH_MAX_IN_FLIGHT: usize = 4096;

#[derive(Parser)]
#[command(
    about = "Measure the bridge's added latency and throughput on loopback (prints a table)."
)]
struct Args {
    /// Concurrent conversations per pass, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64,512")]
    conversations: Vec<usize>,
    /// Seconds per pass.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Open loop: total runs per second spread evenly over the conversations (each still waits
    /// for its previous reply). 0 = closed loop (as fast as replies come back: throughput).
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

/// One timed call: when it started and ended on the client, and the run id it used.
struct Sample {
    start: Instant,
    end: Instant,
    run_id: String,
}

type Call = Arc<dyn Fn(usize, u64) -> BoxFuture<'static, Option<Sample>> + Send + Sync>;

#[derive(Clone)]
struct Hists {
    total: Histogram<u64>,
    leg_in: Histogram<u64>,
    leg_out: Histogram<u64>,
}

impl Hists {
    fn new() -> Self {
        let h =
            || Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 sig. digits is valid"));
        Self {
            total: h(),
            leg_in: h(),
            leg_out: h(),
        }
    }

    fn add(&mut self, other: &Self) {
        let _ = self.total.add(&other.total);
        let _ = self.leg_in.add(&other.leg_in);
        let _ = self.leg_out.add(&other.leg_out);
    }
}

struct PassResult {
    errors: u64,
    elapsed: Duration,
    hists: Hists,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs `conversations` closed loops of `call(conversation, n)` for `duration`; legs are
/// measured when the gateway stamped the run.
async fn pass(
    conversations: usize,
    duration: Duration,
    rate: u64,
    stamps: Option<Arc<DashMap<String, Stamps>>>,
    call: Call,
) -> PassResult {
    let all = Arc::new(Mutex::new(Hists::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conversations {
        let (call, all, errors, stamps) =
            (call.clone(), all.clone(), errors.clone(), stamps.clone());
        tasks.spawn(async move {
            let mut local = Hists::new();
            let mut n = 0u64;
            let mut ticker = (rate > 0).then(|| {
                let period = Duration::from_secs_f64(conversations as f64 / rate as f64);
                let phase = period.mul_f64(c as f64 / conversations as f64);
                let mut t = tokio::time::interval_at(started + phase, period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            while Instant::now() < deadline {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                match call(c, n).await {
                    Some(s) => {
                        let _ = local.total.record(micros(s.end - s.start));
                        if let Some((_, st)) = stamps.as_ref().and_then(|m| m.remove(&s.run_id)) {
                            let _ = local
                                .leg_in
                                .record(micros(st.send_in.saturating_duration_since(s.start)));
                            let _ = local
                                .leg_out
                                .record(micros(s.end.saturating_duration_since(st.final_out)));
                        }
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            all.lock().add(&local);
        });
    }
    while tasks.join_next().await.is_some() {}
    let hists = all.lock().clone();
    PassResult {
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        hists,
    }
}

/// A bare multiplexing WebSocket client: the floor the bridge is compared with.
struct Direct {
    out: mpsc::Sender<String>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl Direct {
    async fn connect(url: &str) -> Result<Arc<Self>, String> {
        let config = omni_bridge::gateway::transport::ws_config();
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let _challenge = stream.next().await;
        let params = ConnectParams::backend(
            "0.1.0",
            &[Scope::Read, Scope::Write],
            Some(Secret::new(TOKEN.to_string())),
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
                if sink.send(Message::text(f)).await.is_err() {
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

    async fn run(&self, key: &str, message: &str, run_id: String) -> bool {
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

async fn start_bridge(url: String) -> Result<RunningBridge, String> {
    {
        let mut gw = GatewayConfig::new(url, Secret::new(TOKEN.to_string()));
        gw.max_in_flight = BENCH_MAX_IN_FLIGHT;
        let mut config = BridgeConfig::single(gw, "main", Secret::new(INBOUND.to_string()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        config.listen = listener.local_addr().map_err(|e| e.to_string())?;
        let bridge =
            RunningBridge::start_standalone(&config, listener).map_err(|e| e.to_string())?;
        // The first check waits for the pooled connection too.
        if let Some(h) = bridge.pool().get("default") {
            h.check().await.map_err(|e| e.to_string())?;
        }
        Ok(bridge)
    }
}

fn direct_call(direct: Arc<Direct>, agent: AgentId, tag: String) -> Call {
    Arc::new(move |c, n| {
        let tag = tag.clone();
        let d = direct.clone();
        let key =
            SessionKey::build(&agent, &format!("{tag}-direct-{c}")).map(|k| k.as_str().to_string());
        Box::pin(async move {
            let key = key.ok()?;
            let run_id = format!("{tag}-d-{c}-{n}");
            let start = Instant::now();
            d.run(&key, "hi", run_id.clone()).await.then(|| Sample {
                start,
                end: Instant::now(),
                run_id,
            })
        })
    })
}

fn pool_call(handle: GatewayHandle, agent: AgentId, tag: String) -> Call {
    Arc::new(move |c, n| {
        let tag = tag.clone();
        let h = handle.clone();
        let key = SessionKey::build(&agent, &format!("{tag}-pool-{c}"));
        Box::pin(async move {
            let session_key = key.ok()?;
            let run_id = format!("{tag}-p-{c}-{n}");
            let start = Instant::now();
            let ok = h
                .run(RunRequest {
                    session_key,
                    message: "hi".into(),
                    idempotency_key: run_id.clone(),
                })
                .await
                .is_ok();
            ok.then(|| Sample {
                start,
                end: Instant::now(),
                run_id,
            })
        })
    })
}

fn bridge_call(client: HttpClient, bridge_addr: std::net::SocketAddr, tag: String) -> Call {
    let url = format!("http://{bridge_addr}/omni/agents/main/trigger");
    Arc::new(move |c, n| {
        let tag = tag.clone();
        let (client, url) = (client.clone(), url.clone());
        Box::pin(async move {
            let trace = format!("{tag}-t-{c}-{n}");
            let body = serde_json::json!({
                "instance": {"id": INSTANCE}, "chat": {"id": format!("{tag}-b-{c}")},
                "sender": {"id": "u", "name": "B"}, "content": {"text": "hi"}, "traceId": trace
            });
            let start = Instant::now();
            let r = client.post_bearer(&url, INBOUND, &body).await.ok()?;
            let end = Instant::now();
            // Only the agent's reply counts: a failure is a 200 with a text too (busy, ...).
            let agent_reply = r
                .json()
                .get("reply")
                .and_then(|v| v.as_str())
                .is_some_and(|t| t.starts_with("FAKE-REPLY"));
            (r.status.is_success() && agent_reply).then(|| Sample {
                start,
                end,
                run_id: idempotency_key("main", INSTANCE, &trace),
            })
        })
    })
}

fn row(out: &mut String, conv: usize, target: &str, path: &str, r: &PassResult) {
    let q = |h: &Histogram<u64>| {
        if h.is_empty() {
            "-".to_string()
        } else {
            format!(
                "{} / {}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99)
            )
        }
    };
    out.push_str(&format!(
        "| {conv:>5} | {target:<7} | {path:<9} | {:>7} | {:>6} | {:>8.0} | {:>15} | {:>13} | {:>13} |\n",
        r.hists.total.len(),
        r.errors,
        r.hists.total.len() as f64 / r.elapsed.as_secs_f64(),
        q(&r.hists.total),
        q(&r.hists.leg_in),
        q(&r.hists.leg_out),
    ));
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(table) => {
            println!("{table}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> Result<String, String> {
    let duration = Duration::from_secs(args.seconds);
    let agent = AgentId::parse("main").map_err(|e| e.to_string())?;
    let http = HttpClient::new(REQUEST_TIMEOUT);

    let instant = InstantGateway::start().await.map_err(|e| e.to_string())?;
    let ibridge = start_bridge(instant.url()).await?;
    let ihandle = ibridge.pool().get("default").ok_or("no gateway")?;
    let idirect = Direct::connect(&instant.url()).await?;

    let mock = MockGateway::builder()
        .token(TOKEN)
        .delta_interval(Duration::ZERO)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let mbridge = start_bridge(mock.url()).await?;
    let mhandle = mbridge.pool().get("default").ok_or("no gateway")?;

    let mut out = String::from(
        "| conv. | gateway | path      |    runs | errors |   runs/s | total p50/p99 µs | in p50/p99 µs | out p50/p99 µs |\n\
         |-------|---------|-----------|---------|--------|----------|------------------|---------------|----------------|\n",
    );
    let stamps = Some(instant.stamps.clone());
    for (index, &conv) in args.conversations.iter().enumerate() {
        // Unique per pass: a repeated trace would be answered from the bridge's cache.
        let i = format!("i{index}");
        let m = format!("m{index}");
        let r = pass(
            conv,
            duration,
            args.rate,
            stamps.clone(),
            direct_call(idirect.clone(), agent.clone(), i.clone()),
        )
        .await;
        row(&mut out, conv, "instant", "direct-ws", &r);
        let r = pass(
            conv,
            duration,
            args.rate,
            stamps.clone(),
            pool_call(ihandle.clone(), agent.clone(), i.clone()),
        )
        .await;
        row(&mut out, conv, "instant", "pool", &r);
        let r = pass(
            conv,
            duration,
            args.rate,
            stamps.clone(),
            bridge_call(http.clone(), ibridge.addr(), i.clone()),
        )
        .await;
        row(&mut out, conv, "instant", "bridge", &r);
        let r = pass(
            conv,
            duration,
            args.rate,
            None,
            pool_call(mhandle.clone(), agent.clone(), m.clone()),
        )
        .await;
        row(&mut out, conv, "mock", "pool", &r);
        let r = pass(
            conv,
            duration,
            args.rate,
            None,
            bridge_call(http.clone(), mbridge.addr(), m.clone()),
        )
        .await;
        row(&mut out, conv, "mock", "bridge", &r);
    }
    let _ = ibridge.stop().await;
    let _ = mbridge.stop().await;
    mock.stop().await;
    Ok(out)
}
