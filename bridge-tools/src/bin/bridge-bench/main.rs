//! `bridge-bench`: the bridge's throughput and added latency on loopback, paired against the
//! direct path and against other builds of the bridge in one run, as a table.
//!
//! Processes: a gateway stand-in ([`stand_in`]: ack, `--deltas` deltas and the final per
//! `chat.send`) and one `omni-bridge serve` per `--bridge NAME=PATH` (any build: the current one,
//! and e.g. a release build of an older commit), all pinned to CPU 1 with `taskset`; the load
//! generator (this process, one thread) on CPU 0. Paths, each a closed loop of N conversations
//! (a conversation sends its next message when the previous reply is back):
//!
//! - `direct-ws`: a bare WebSocket client multiplexing `chat.send` on one connection: the floor;
//! - `pool`: this build's connection layer in-process (`GatewayHandle::run`), no HTTP;
//! - `bridge:<NAME>`: an Omni-shaped `POST /omni/agents/main/trigger` to that bridge process, one
//!   keep-alive connection per conversation (a lean client: the bridge is what is measured).
//!
//! Targets take turns in slices (`--slice-secs`), in a new random order every round, after a
//! warm-up; the table gives the median runs/s over the rounds with the spread (min-max), and
//! p50/p99 over all of them. Loopback only; every slice is bounded in time.
//!
//! ```text
//! cargo build --release -p omni-bridge -p bridge-tools
//! target/release/bridge-bench --bridge after=target/release/omni-bridge \
//!     --bridge before=/tmp/bridge-before/target/release/omni-bridge --conversations 1,64
//! ```

mod clients;
mod stand_in;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use clients::{Direct, Http};
use hdrhistogram::Histogram;
use omni_bridge::config::GatewayConfig;
use omni_bridge::gateway::{CancellationToken, GatewayHandle, GatewayPool, Registry, RunRequest};
use shared_protocol::{AgentId, Secret, SessionKey};
use tokio::time::Instant;

const TOKEN: &str = "bench-token";
const INBOUND: &str = "bench-inbound";
/// Runs in flight allowed on each bridge's gateway connection (above the largest pass).
const BENCH_MAX_IN_FLIGHT: usize = 4096;
/// Deadline for a bridge process to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    about = "Measure the bridge's throughput and added latency on loopback against the direct path and other builds (prints a table)."
)]
struct Args {
    #[command(subcommand)]
    role: Option<Role>,
    /// A bridge build to measure, NAME=PATH of an omni-bridge binary (repeatable).
    #[arg(long = "bridge", value_name = "NAME=PATH")]
    bridges: Vec<String>,
    /// Concurrent conversations per pass, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    conversations: Vec<usize>,
    /// Rounds: each target runs one slice per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per slice.
    #[arg(long, default_value_t = 2.0)]
    slice_secs: f64,
    /// Text deltas the stand-in sends per run (before the final).
    #[arg(long, default_value_t = 8)]
    deltas: u32,
    /// Leave out the in-process pool path.
    #[arg(long)]
    no_pool: bool,
    /// Do not pin with taskset.
    #[arg(long)]
    no_pin: bool,
}

#[derive(Subcommand)]
enum Role {
    /// (internal) the gateway stand-in.
    StandIn {
        /// Text deltas per run.
        #[arg(long, default_value_t = 8)]
        deltas: u32,
    },
}

/// A child process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let Ok(runtime) = runtime else {
        eprintln!("error: no runtime");
        return std::process::ExitCode::FAILURE;
    };
    if let Some(Role::StandIn { deltas }) = args.role {
        runtime.block_on(stand_in::run(0, deltas));
        return std::process::ExitCode::SUCCESS;
    }
    match runtime.block_on(bench(&args)) {
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

fn pinned(pin: bool, cpu: u32, program: &std::path::Path) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpu.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn pin_self(cpu: u32) {
    let _ = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status();
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn start_stand_in(pin: bool, deltas: u32) -> Result<(Proc, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = pinned(pin, 1, &exe)
        .args(["stand-in", "--deltas", &deltas.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("stand-in: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("stand-in: no stdout")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("stand-in said {line:?}"))?;
    Ok((Proc(child), addr))
}

/// Starts `omni-bridge serve` from `binary` against the stand-in, with a config both old and new
/// builds read (no key whose name changed), at the production log level (lines to /dev/null).
fn start_bridge(
    pin: bool,
    binary: &std::path::Path,
    gateway: SocketAddr,
    dir: &std::path::Path,
    name: &str,
) -> Result<(Proc, SocketAddr), String> {
    let port = free_port()?;
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[gateways.default]\nurl = \"ws://{gateway}\"\nmax_in_flight = {BENCH_MAX_IN_FLIGHT}\n\n[agents.main]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = pinned(pin, 1, binary)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("OMNI_BRIDGE_GATEWAY_TOKEN", TOKEN)
        .env("OMNI_BRIDGE_INBOUND_TOKEN", INBOUND)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{name} ({}): {e}", binary.display()))?;
    Ok((Proc(child), SocketAddr::from(([127, 0, 0, 1], port))))
}

async fn wait_ready(addr: SocketAddr, name: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let ready = async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(b"GET /ready HTTP/1.1\r\nhost: b\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.ok()?;
            Some(buf.starts_with(b"HTTP/1.1 200"))
        };
        if tokio::time::timeout(Duration::from_secs(2), ready)
            .await
            .ok()
            .flatten()
            == Some(true)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{name} did not become ready within {READY_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One conversation's client of a path.
enum Client {
    Direct(Arc<Direct>),
    Pool(GatewayHandle),
    /// The bridge's address and the keep-alive connection, opened on first use.
    Bridge(SocketAddr, Option<Http>),
}

/// One measured path.
enum Path {
    Direct(Arc<Direct>),
    Pool(GatewayHandle),
    Bridge(SocketAddr),
}

struct Target {
    name: String,
    path: Path,
    /// Per conversations count: runs/s of each round.
    rates: Vec<Vec<f64>>,
    /// Per conversations count: latency in µs over every round.
    latency: Vec<Histogram<u64>>,
    errors: Vec<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"))
}

/// One slice of `target` with `conversations` closed loops for `duration`.
async fn slice(
    target: &Target,
    conversations: usize,
    duration: Duration,
    tag: &str,
    agent: &AgentId,
) -> (u64, u64, Histogram<u64>, Duration) {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conversations {
        let tag = format!("{tag}-{c}");
        let Ok(session_key) = SessionKey::build(agent, &tag) else {
            continue;
        };
        let mut client = match &target.path {
            Path::Direct(d) => Client::Direct(d.clone()),
            Path::Pool(h) => Client::Pool(h.clone()),
            Path::Bridge(addr) => Client::Bridge(*addr, None),
        };
        tasks.spawn(async move {
            let mut h = histogram();
            let (mut ok, mut err, mut n) = (0u64, 0u64, 0u64);
            while Instant::now() < deadline {
                let id = format!("{tag}-{n}");
                let t0 = Instant::now();
                let done = match &mut client {
                    Client::Direct(d) => d.run(session_key.as_str(), "[B]: hi", id).await,
                    Client::Pool(handle) => {
                        let request = RunRequest {
                            session_key: session_key.clone(),
                            message: "[B]: hi".into(),
                            idempotency_key: id,
                        };
                        handle.run(request).await.is_ok()
                    }
                    Client::Bridge(addr, http) => {
                        if http.is_none() {
                            *http = Http::connect(*addr, INBOUND).await.ok();
                        }
                        let body = format!(
                            r#"{{"instance":{{"id":"bench"}},"chat":{{"id":"{tag}"}},"sender":{{"id":"u","name":"B"}},"content":{{"text":"hi"}},"traceId":"{id}"}}"#
                        );
                        match http.as_mut() {
                            Some(http) => {
                                http.post("/omni/agents/main/trigger", &body, "\"reply\":\"ok:")
                                    .await
                            }
                            None => false,
                        }
                    }
                };
                if done {
                    let _ = h.record(micros(t0.elapsed()));
                    ok += 1;
                } else {
                    err += 1;
                }
                n += 1;
            }
            (ok, err, h)
        });
    }
    let mut all = histogram();
    let (mut ok, mut err) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        if let Ok((o, e, h)) = done {
            ok += o;
            err += e;
            let _ = all.add(&h);
        }
    }
    (ok, err, all, started.elapsed())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A small deterministic generator for the slice order.
struct Order(u64);

impl Order {
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let j = usize::try_from((self.0 >> 33) % (i as u64 + 1)).unwrap_or(0);
            items.swap(i, j);
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn bench(args: &Args) -> Result<String, String> {
    let pin = !args.no_pin && Command::new("taskset").arg("-V").output().is_ok();
    if pin {
        pin_self(0);
    }
    let load_before = loadavg();
    let dir = std::env::temp_dir().join(format!("bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (_stand_in, gateway) = start_stand_in(pin, args.deltas)?;
    let mut procs = Vec::new();
    let mut targets = Vec::new();
    let direct = Direct::connect(&format!("ws://{gateway}"), TOKEN).await?;
    targets.push(("direct-ws".to_string(), Path::Direct(direct)));
    let shutdown = CancellationToken::new();
    let pool = GatewayPool::new(&Registry::new(), shutdown.clone()).map_err(|e| e.to_string())?;
    if !args.no_pool {
        let mut config = GatewayConfig::new(format!("ws://{gateway}"), Secret::new(TOKEN.into()));
        config.max_in_flight = BENCH_MAX_IN_FLIGHT;
        pool.upsert("bench", config);
        let handle = pool.get("bench").ok_or("no pool gateway")?;
        handle.check().await.map_err(|e| e.to_string())?;
        targets.push(("pool".to_string(), Path::Pool(handle)));
    }
    for spec in &args.bridges {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| format!("--bridge {spec:?}: expected NAME=PATH"))?;
        let (proc, addr) = start_bridge(pin, &PathBuf::from(path), gateway, &dir, name)?;
        procs.push(proc);
        wait_ready(addr, name).await?;
        targets.push((format!("bridge:{name}"), Path::Bridge(addr)));
    }
    let mut targets: Vec<Target> = targets
        .into_iter()
        .map(|(name, path)| Target {
            name,
            path,
            rates: vec![Vec::new(); args.conversations.len()],
            latency: (0..args.conversations.len()).map(|_| histogram()).collect(),
            errors: vec![0; args.conversations.len()],
        })
        .collect();
    let agent = AgentId::parse("main").map_err(|e| e.to_string())?;
    let slice_for = Duration::from_secs_f64(args.slice_secs);
    let mut order = Order(0x5eed);
    for (ci, &conv) in args.conversations.iter().enumerate() {
        for t in &targets {
            let tag = format!("w{ci}-{}", t.name.replace(':', "-"));
            slice(t, conv, Duration::from_millis(500), &tag, &agent).await;
        }
        for round in 0..args.rounds {
            let mut turn: Vec<usize> = (0..targets.len()).collect();
            order.shuffle(&mut turn);
            for i in turn {
                let t = &targets[i];
                let tag = format!("r{ci}-{round}-{}", t.name.replace(':', "-"));
                let (ok, err, h, elapsed) = slice(t, conv, slice_for, &tag, &agent).await;
                let t = &mut targets[i];
                t.rates[ci].push(ok as f64 / elapsed.as_secs_f64());
                t.errors[ci] += err;
                let _ = t.latency[ci].add(&h);
            }
        }
    }
    pool.close().await;
    shutdown.cancel();
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(table(args, &targets, &load_before))
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn table(args: &Args, targets: &[Target], load_before: &str) -> String {
    let mut out = format!(
        "{} rounds x {} s slices per target, {} deltas per run, load average before {load_before}, after {}\n\n",
        args.rounds,
        args.slice_secs,
        args.deltas,
        loadavg()
    );
    out.push_str("| conv. | path | runs/s median (min-max) | % of direct-ws | p50 / p99 µs | added p50 / p99 µs | errors |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for (ci, conv) in args.conversations.iter().enumerate() {
        let direct = targets.iter().find(|t| t.name == "direct-ws");
        let direct_rate = direct.map_or(0.0, |d| median(&d.rates[ci]));
        let q = |h: &Histogram<u64>, p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        for t in targets {
            let rates = &t.rates[ci];
            let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let max = rates.iter().copied().fold(0.0, f64::max);
            let rate = median(rates);
            let h = &t.latency[ci];
            let (p50, p99) = (q(h, 0.5), q(h, 0.99));
            let added = match direct {
                Some(d) if t.name != "direct-ws" => {
                    let (d50, d99) = (q(&d.latency[ci], 0.5), q(&d.latency[ci], 0.99));
                    format!(
                        "{:+} / {:+}",
                        i64::try_from(p50).unwrap_or(0) - i64::try_from(d50).unwrap_or(0),
                        i64::try_from(p99).unwrap_or(0) - i64::try_from(d99).unwrap_or(0)
                    )
                }
                _ => "-".into(),
            };
            let share = if direct_rate > 0.0 {
                format!("{:.0}%", 100.0 * rate / direct_rate)
            } else {
                "-".into()
            };
            out.push_str(&format!(
                "| {conv} | {} | {rate:.0} ({min:.0}-{max:.0}) | {share} | {p50} / {p99} | {added} | {} |\n",
                t.name, t.errors[ci]
            ));
        }
    }
    out
}
