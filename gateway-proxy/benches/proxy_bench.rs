//! proxy-bench: round-trip latency and throughput through gateway-proxy versus direct to the
//! same gateway stand-in and versus nginx as a plain WebSocket proxy, plus memory per idle
//! proxied connection. Prints a markdown table.
//!
//! Run: `cargo bench -p gateway-proxy --bench proxy_bench -- [--secs 3] [--rounds 1] [--idle 500]
//! [--loads 1,10,100] [--slice-ms 200] [--hello-bytes 16000] [--before-exe PATH]`
//!
//! `--hello-bytes` pads the stand-in's hello-ok (the real gateway's is ~16 KB; buffers that grow
//! for it must not stay per idle connection). `--before-exe` adds a second proxy target run from
//! another build of this bench (e.g. a copy made before a change), for before/after in one run.
//!
//! The stand-in, the proxy and nginx each run as a child process (this binary re-executed in a
//! role) pinned with `taskset` to CPU 1; the load generator is pinned to CPU 0. Loopback only.
//! Each cell: N connections per target, closed loop (send `req`, wait for `res`, repeat), for
//! `--secs` per target in slices of `--slice-ms` (default 200) taken in turn, in a new random
//! order each cycle: the host's slow swings then fall on every target alike, and no target always
//! follows the same one.
//! The paired summary compares gateway-proxy and nginx slice by slice.

// A benchmark harness, not service code: any failure should abort the run loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err,
    missing_docs
)]

#[path = "support/stub.rs"]
mod stub;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_proxy::credential::TokenHash;
use hdrhistogram::Histogram;
use rand::seq::SliceRandom;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "gwp_bench-token-0000000000000000000000000000000";
/// Connection counts measured, unless `--loads` names others.
const LOADS: &str = "1,10,100";

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    match role.as_str() {
        "role-stub" => rt().block_on(run_stub(
            arg("--port", "0").parse().unwrap(),
            arg("--hello-bytes", "0").parse().unwrap(),
        )),
        // As `gateway-proxy serve` runs: handshakes on the runtime, relays on relay loops.
        "role-proxy" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run_proxy(arg("--upstream", ""), arg("--port", "0"))),
        _ if std::env::args().any(|a| a == "--inspect-only") => inspect_costs(),
        _ => {
            pin_self(0);
            rt().block_on(bench());
        }
    }
}

fn pin_self(cpu: usize) {
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

async fn run_stub(port: u16, hello_pad: usize) {
    let s = stub::start_with(SocketAddr::from(([127, 0, 0, 1], port)), None, hello_pad).await;
    println!("ready {}", s.addr);
    std::future::pending::<()>().await;
}

async fn run_proxy(upstream: String, port: String) {
    // Logging as in production (info, per-connection spans), written nowhere.
    tracing_subscriber::fmt()
        .with_env_filter(shared_protocol::log_filter::env_filter("info"))
        .with_writer(std::io::sink)
        .init();
    let text = format!(
        r#"
[listen]
plain = "127.0.0.1:{port}"
max_connections = 4096
max_pending_connections = 4096
max_pending_per_ip = 4096
workers = 1
[upstream]
url = "{upstream}"
token = "gateway-token"
[limits]
requests_per_second_per_credential = 0
handshakes_per_minute_per_ip = 0
# On, so that its check is measured, and far above what one closed-loop connection sends.
frames_per_second_per_connection = 1000000000
[[credentials]]
id = "bench"
token_sha256 = "{hash}"
scopes = ["operator.read", "operator.write"]
max_connections = 0
"#,
        hash = TokenHash::of(TOKEN).to_hex()
    );
    let config = gateway_proxy::Config::from_toml(&text).unwrap();
    let listeners = gateway_proxy::Listeners::bind(&config).await.unwrap();
    let addr = listeners.plain.as_ref().unwrap().local_addr().unwrap();
    let proxy = gateway_proxy::Proxy::new(config, prometheus::Registry::new()).unwrap();
    println!("ready {addr}");
    proxy
        .run(listeners, gateway_proxy::Shutdown::new())
        .await
        .unwrap();
}

struct Proc {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM (not SIGKILL) so nginx's master also stops its worker.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn spawn_role(args: &[&str]) -> Proc {
    spawn_role_of(std::env::current_exe().unwrap(), args)
}

fn spawn_role_of(exe: std::path::PathBuf, args: &[&str]) -> Proc {
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
    Proc { child, addr }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_nginx(upstream: SocketAddr) -> Option<(Proc, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("proxy-bench-nginx-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("logs")).ok()?;
    let port = free_port();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream gw {{ server {upstream}; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://gw;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_read_timeout 3600s;
    }}
  }}
}}
"#,
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::File::create(&path)
        .ok()?
        .write_all(conf.as_bytes())
        .ok()?;
    let child = Command::new("taskset")
        .args(["-c", "1", "nginx", "-p"])
        .arg(&dir)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some((Proc { child, addr }, dir));
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    None
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, token: &str) -> Ws {
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}"), Some(cfg), true)
            .await
            .unwrap();
    let _challenge = ws.next().await;
    let connect = serde_json::json!({"type":"req","id":"c","method":"connect","params":{
        "minProtocol":4,"maxProtocol":4,
        "client":{"id":"gateway-client","version":"1","platform":"linux","mode":"backend"},
        "role":"operator","scopes":["operator.read","operator.write"],"auth":{"token":token}}});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await
            && t.contains("\"type\":\"res\"")
        {
            assert!(t.contains("\"ok\":true"), "{t}");
            return ws;
        }
    }
}

/// Nanoseconds per call of `f`, the best of five batches (a warm cache: an upper bound on
/// what the relay pays when the frame path stays in cache, a lower bound otherwise).
fn ns_per_call(mut f: impl FnMut() -> bool) -> f64 {
    const CALLS: u32 = 200_000;
    (0..5)
        .map(|_| {
            let t0 = Instant::now();
            let mut hits = 0u32;
            for _ in 0..CALLS {
                hits += u32::from(std::hint::black_box(f()));
            }
            assert_eq!(hits, CALLS);
            t0.elapsed().as_nanos() as f64 / f64::from(CALLS)
        })
        .fold(f64::INFINITY, f64::min)
}

/// What reading the bench's request costs the inspector, path by path (`--inspect-only`).
fn inspect_costs() {
    use gateway_proxy::request_scan::scan_request;
    use shared_protocol::frame::Frame;
    let canonical = request(7);
    let reordered = canonical.replace(
        r#"{"type":"req","id":"00000007","#,
        r#"{ "id": "00000007", "type": "req", "#,
    );
    let bytes = canonical.as_bytes();
    println!("| reading a {} B request | ns |", canonical.len());
    println!("|---|---|");
    let rows: [(&str, &dyn Fn() -> bool); 4] = [
        ("UTF-8 check (std)", &|| {
            std::str::from_utf8(std::hint::black_box(bytes)).is_ok()
        }),
        ("scan, canonical shape", &|| {
            scan_request(std::hint::black_box(&canonical)).is_some()
        }),
        ("scan, other order and whitespace", &|| {
            scan_request(std::hint::black_box(&reordered)).is_some()
        }),
        ("serde (Frame::parse)", &|| {
            matches!(
                Frame::parse(std::hint::black_box(&canonical)),
                Ok(Frame::Request(_))
            )
        }),
    ];
    for (name, f) in rows {
        println!("| {name} | {:.0} |", ns_per_call(f));
    }
}

/// ~190 B request frame.
fn request(i: u64) -> String {
    let pad = "p".repeat(100);
    format!(r#"{{"type":"req","id":"{i:08}","method":"health","params":{{"probe":"{pad}"}}}}"#)
}

struct Cell {
    rps: f64,
    p50: u64,
    p99: u64,
    /// CPU time of the relaying process per request+response (µs), when it has one.
    cpu_us: Option<f64>,
    /// The userland part of `cpu_us`.
    user_us: Option<f64>,
}

/// Voluntary and involuntary context switches of all threads of a process.
fn context_switches(pid: u32) -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    let mut total = (0, 0);
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            let value = |l: &str| l.split_whitespace().nth(1).and_then(|v| v.parse().ok());
            if line.starts_with("voluntary_ctxt_switches") {
                total.0 += value(line).unwrap_or(0);
            } else if line.starts_with("nonvoluntary_ctxt_switches") {
                total.1 += value(line).unwrap_or(0);
            }
        }
    }
    total
}

/// `USER_HZ` of /proc/<pid>/stat (100 on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// User and system CPU time of a process (utime, stime), in clock ticks.
fn cpu_ticks(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    // Fields after the comm: state is #3, utime #14 and stime #15 of the whole line.
    let mut f = after_comm
        .split_whitespace()
        .skip(11)
        .map(|v| v.parse().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// CPU 1's softirq+irq and idle time (from /proc/stat), in clock ticks. Softirq ticks are also
/// charged to whichever process was running, so relay + stand-in + idle account for CPU 1.
fn cpu1_irq_idle() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu1 ")) else {
        return (0, 0);
    };
    // user nice system idle iowait irq softirq ...
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    (at(5) + at(6), at(3) + at(4))
}

/// The counters a slice is charged with: the relaying process's CPU ticks (user, system) and
/// context switches, the stand-in's CPU ticks and switches, CPU 1's irq and idle ticks.
#[derive(Clone, Copy, Default)]
struct Counters {
    relay_cpu: (u64, u64),
    relay_switches: (u64, u64),
    stub_cpu: u64,
    stub_switches: (u64, u64),
    cpu1: (u64, u64),
}

impl Counters {
    fn read(relay: Option<u32>, stub: u32) -> Self {
        let (relay_cpu, relay_switches) = relay.map_or(((0, 0), (0, 0)), |pid| {
            (cpu_ticks(pid), context_switches(pid))
        });
        let stub_cpu = cpu_ticks(stub);
        Self {
            relay_cpu,
            relay_switches,
            stub_cpu: stub_cpu.0 + stub_cpu.1,
            stub_switches: context_switches(stub),
            cpu1: cpu1_irq_idle(),
        }
    }

    /// `self` plus what happened between `before` and `after`.
    fn add_delta(&mut self, before: &Self, after: &Self) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.relay_cpu.0 += d(after.relay_cpu.0, before.relay_cpu.0);
        self.relay_cpu.1 += d(after.relay_cpu.1, before.relay_cpu.1);
        self.relay_switches.0 += d(after.relay_switches.0, before.relay_switches.0);
        self.relay_switches.1 += d(after.relay_switches.1, before.relay_switches.1);
        self.stub_cpu += d(after.stub_cpu, before.stub_cpu);
        self.stub_switches.0 += d(after.stub_switches.0, before.stub_switches.0);
        self.stub_switches.1 += d(after.stub_switches.1, before.stub_switches.1);
        self.cpu1.0 += d(after.cpu1.0, before.cpu1.0);
        self.cpu1.1 += d(after.cpu1.1, before.cpu1.1);
    }
}

/// Latencies and duration of one target's share of a cell, slice by slice.
struct Share {
    hist: Histogram<u64>,
    elapsed: Duration,
    counters: Counters,
}

impl Share {
    fn new() -> Self {
        Self {
            hist: Histogram::new(3).unwrap(),
            elapsed: Duration::ZERO,
            counters: Counters::default(),
        }
    }

    fn rps(&self) -> f64 {
        self.hist.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs every socket closed loop (send `req`, wait for `res`, repeat) for `length`; each
/// finishes its request in flight, so no request spans two slices. Gives the sockets back.
async fn run_slice(sockets: Vec<Ws>, length: Duration) -> (Vec<Ws>, Share) {
    let started = Instant::now();
    let end = started + length;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                let mut i = 0u64;
                while Instant::now() < end {
                    let t0 = Instant::now();
                    ws.send(Message::text(request(i))).await.unwrap();
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(_))) => break,
                            Some(Ok(_)) => {}
                            other => panic!("{other:?}"),
                        }
                    }
                    let _ = h.record(t0.elapsed().as_micros() as u64);
                    i += 1;
                }
                (ws, h)
            })
        })
        .collect();
    let mut share = Share::new();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (ws, h) = t.await.unwrap();
        share.hist.add(h).unwrap();
        back.push(ws);
    }
    share.elapsed = started.elapsed();
    (back, share)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// RSS delta (KiB per connection) of `pid` over `n` idle connections through `addr`.
async fn idle_memory(addr: SocketAddr, pid: u32, n: usize) -> f64 {
    // Warm up allocator pools with a few connections first.
    let warm: Vec<_> = futures_util::future::join_all((0..10).map(|_| connect(addr, TOKEN))).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib(pid);
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(connect(addr, TOKEN).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(pid);
    drop(held);
    (after.saturating_sub(before)) as f64 / n as f64
}

async fn bench() {
    let secs: u64 = arg("--secs", "3").parse().unwrap();
    let memory_only = std::env::args().any(|a| a == "--memory-only");
    let rounds: usize = arg("--rounds", "1").parse().unwrap();
    let idle: usize = arg("--idle", "500").parse().unwrap();
    let hello_bytes = arg("--hello-bytes", "16000");
    let before_exe = arg("--before-exe", "");
    let slice_ms: u64 = arg("--slice-ms", "200").parse().unwrap();
    let loads: Vec<usize> = arg("--loads", LOADS)
        .split(',')
        .map(|n| n.trim().parse().unwrap())
        .collect();
    println!("load average at start: {}", load_average());
    let stub = spawn_role(&["role-stub", "--port", "0", "--hello-bytes", &hello_bytes]);
    let stub_url = format!("ws://{}", stub.addr);
    let stub_pid = stub.child.id();
    let proxy_args = ["role-proxy", "--upstream", &stub_url, "--port", "0"];
    let proxy = spawn_role(&proxy_args);
    let before = (!before_exe.is_empty()).then(|| spawn_role_of(before_exe.into(), &proxy_args));
    let nginx = spawn_nginx(stub.addr);
    // (name, address, process whose CPU time is charged to the relayed requests)
    let mut targets = vec![
        ("direct", stub.addr, None),
        ("gateway-proxy", proxy.addr, Some(proxy.child.id())),
    ];
    if let Some(b) = &before {
        targets.push(("proxy-before", b.addr, Some(b.child.id())));
    }
    if let Some((n, _)) = &nginx {
        let worker = children(n.child.id()).first().copied();
        targets.push(("nginx", n.addr, worker));
    } else {
        eprintln!("nginx not available: skipped");
    }
    // results[target][load] = one cell per round; slices[target][load] = one per slice cycle.
    let mut results: Vec<Vec<Vec<Cell>>> = targets
        .iter()
        .map(|_| loads.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut slices: Vec<Vec<Vec<Cell>>> = targets
        .iter()
        .map(|_| loads.iter().map(|_| Vec::new()).collect())
        .collect();
    let slice = Duration::from_millis(slice_ms);
    let cycles = (secs * 1000).div_ceil(slice_ms).max(1);
    for round in 0..if memory_only { 0 } else { rounds } {
        for (li, conns) in loads.iter().enumerate() {
            let mut sockets = Vec::new();
            for (_, addr, _) in &targets {
                let mut set = Vec::with_capacity(*conns);
                for _ in 0..*conns {
                    set.push(connect(*addr, TOKEN).await);
                }
                sockets.push(set);
            }
            let mut shares: Vec<Share> = targets.iter().map(|_| Share::new()).collect();
            let mut order: Vec<usize> = (0..targets.len()).collect();
            for _ in 0..cycles {
                // Each cycle gives every target one slice, in a new random order: a slice runs
                // a little faster or slower depending on the target before it (measured: 2–3%
                // between two instances of one build in a fixed rotation), so no target may
                // always follow the same one.
                order.shuffle(&mut rand::rng());
                for &ti in &order {
                    let pid = targets[ti].2;
                    let before = Counters::read(pid, stub_pid);
                    let (back, one) = run_slice(std::mem::take(&mut sockets[ti]), slice).await;
                    let after = Counters::read(pid, stub_pid);
                    sockets[ti] = back;
                    slices[ti][li].push(Cell {
                        rps: one.rps(),
                        p50: one.hist.value_at_quantile(0.5),
                        p99: one.hist.value_at_quantile(0.99),
                        cpu_us: None,
                        user_us: None,
                    });
                    let share = &mut shares[ti];
                    share.hist.add(&one.hist).unwrap();
                    share.elapsed += one.elapsed;
                    share.counters.add_delta(&before, &after);
                }
            }
            for set in sockets {
                for mut ws in set {
                    let _ = ws.close(None).await;
                }
            }
            for (ti, (name, _, pid)) in targets.iter().enumerate() {
                let share = &shares[ti];
                let c = &share.counters;
                let requests = share.hist.len() as f64;
                let us = |ticks: u64| ticks as f64 * 1e6 / CLOCK_TICKS_PER_SEC / requests;
                let per_request = |(v, i): (u64, u64)| {
                    format!("{:.2}/{:.2}", v as f64 / requests, i as f64 / requests)
                };
                let cell = Cell {
                    rps: share.rps(),
                    p50: share.hist.value_at_quantile(0.5),
                    p99: share.hist.value_at_quantile(0.99),
                    cpu_us: pid.map(|_| us(c.relay_cpu.0 + c.relay_cpu.1)),
                    user_us: pid.map(|_| us(c.relay_cpu.0)),
                };
                // Context switches per request (voluntary/involuntary): how the relay and the
                // stand-in share CPU 1 (see docs/performance.md, round 3). Relay + stand-in +
                // idle is all of CPU 1 (irq time is inside the first two).
                eprintln!(
                    "round {round} {name:>13} {conns:>3} conns: {:>8.0} req/s p50 {:>4} µs p99 {:>5} µs cpu/req {:>5.1} µs (user {:.2}) switches/req relay {} stub {} | CPU 1 µs/req stub {:.2} irq {:.2} idle {:.2}",
                    cell.rps,
                    cell.p50,
                    cell.p99,
                    cell.cpu_us.unwrap_or(0.0),
                    cell.user_us.unwrap_or(0.0),
                    if pid.is_some() {
                        per_request(c.relay_switches)
                    } else {
                        "-".to_string()
                    },
                    per_request(c.stub_switches),
                    us(c.stub_cpu),
                    us(c.cpu1.0),
                    us(c.cpu1.1),
                );
                results[ti][li].push(cell);
            }
        }
    }
    if memory_only {
        println!("(throughput skipped: --memory-only)");
    } else {
        print_table(&targets, &loads, &results, rounds);
        print_paired(&targets, &loads, &slices);
    }
    println!("load average after the throughput runs: {}", load_average());
    if idle > 0 {
        let proxy_mem = idle_memory(proxy.addr, proxy.child.id(), idle).await;
        let before_mem = match &before {
            Some(b) => Some(idle_memory(b.addr, b.child.id(), idle).await),
            None => None,
        };
        let nginx_mem = match &nginx {
            Some((n, _)) => {
                let worker = children(n.child.id())
                    .first()
                    .copied()
                    .unwrap_or(n.child.id());
                Some(idle_memory(n.addr, worker, idle).await)
            }
            None => None,
        };
        println!(
            "\n| idle memory per proxied connection ({idle} conns, hello-ok padded by {hello_bytes} B, RSS delta, userland) | KiB |"
        );
        println!("|---|---|");
        println!("| gateway-proxy | {proxy_mem:.1} |");
        if let Some(m) = before_mem {
            println!("| proxy-before | {m:.1} |");
        }
        if let Some(m) = nginx_mem {
            println!("| nginx (worker) | {m:.1} |");
        }
    }
    if let Some((_, dir)) = nginx {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn print_table(
    targets: &[(&str, SocketAddr, Option<u32>)],
    loads: &[usize],
    results: &[Vec<Vec<Cell>>],
    rounds: usize,
) {
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    };
    println!(
        "\n| target | load | req/s (median of {rounds}) | % of direct | p50 µs | p99 µs | added p50/p99 µs | CPU µs per req+res |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (li, conns) in loads.iter().enumerate() {
        let stat = |ti: usize| {
            let cells = &results[ti][li];
            let mut r: Vec<f64> = cells.iter().map(|c| c.rps).collect();
            let mut p50: Vec<f64> = cells.iter().map(|c| c.p50 as f64).collect();
            let mut p99: Vec<f64> = cells.iter().map(|c| c.p99 as f64).collect();
            let mut cpu: Vec<f64> = cells.iter().filter_map(|c| c.cpu_us).collect();
            let cpu = (!cpu.is_empty()).then(|| median(&mut cpu));
            (median(&mut r), median(&mut p50), median(&mut p99), cpu)
        };
        let (dr, d50, d99, _) = stat(0);
        for (ti, (name, _, _)) in targets.iter().enumerate() {
            let (r, p50, p99, cpu) = stat(ti);
            println!(
                "| {name} | {conns} conn | {r:.0} | {:.0}% | {p50:.0} | {p99:.0} | {} | {} |",
                100.0 * r / dr,
                if ti == 0 {
                    "–".to_string()
                } else {
                    format!("{:+.0}/{:+.0}", p50 - d50, p99 - d99)
                },
                cpu.map_or("–".to_string(), |c| format!("{c:.1}"))
            );
        }
    }
}

/// gateway-proxy against nginx slice by slice: the two slices of one cycle ran within a few
/// hundred milliseconds of each other, so the host's own swings (which move every target's
/// numbers by 10–30% from one second to the next here) mostly cancel out of each pair.
fn print_paired(
    targets: &[(&str, SocketAddr, Option<u32>)],
    loads: &[usize],
    results: &[Vec<Vec<Cell>>],
) {
    let index = |name: &str| targets.iter().position(|t| t.0 == name);
    let (Some(proxy), Some(nginx)) = (index("gateway-proxy"), index("nginx")) else {
        return;
    };
    println!(
        "\n| load | slice pairs where gateway-proxy's req/s ≥ nginx's | p50 ≤ | p99 ≤ | median req/s ratio |"
    );
    println!("|---|---|---|---|---|");
    for (li, conns) in loads.iter().enumerate() {
        let pairs: Vec<(&Cell, &Cell)> =
            results[proxy][li].iter().zip(&results[nginx][li]).collect();
        let count = |won: fn(&Cell, &Cell) -> bool| pairs.iter().filter(|(p, n)| won(p, n)).count();
        let mut ratios: Vec<f64> = pairs.iter().map(|(p, n)| p.rps / n.rps).collect();
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        let n = pairs.len();
        println!(
            "| {conns} conn | {}/{n} | {}/{n} | {}/{n} | {:.2} |",
            count(|p, n| p.rps >= n.rps),
            count(|p, n| p.p50 <= n.p50),
            count(|p, n| p.p99 <= n.p99),
            ratios.get(n / 2).copied().unwrap_or(0.0)
        );
    }
}
