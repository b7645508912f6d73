//! Rerunnable measurement (not a pass/fail timing test): how much memory each run in flight
//! costs on one connection. N runs on N sessions are acked by a minimal gateway that never
//! answers; resident memory is sampled before and while they are all in flight.
//!
//! `cargo test -p omni-bridge --test gateway_load -- --ignored --nocapture` (add `--release`
//! for production-sized futures; debug numbers are an upper bound). `GATEWAY_LOAD_RUNS`
//! (default 10000). Loopback only, bounded in count and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::{MiniGateway, config, pool, request};
use tokio::time::Instant;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly with --ignored --nocapture"]
async fn memory_per_run_in_flight() {
    let n: usize = std::env::var("GATEWAY_LOAD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    tokio::time::timeout(Duration::from_secs(120), async {
        let gw = MiniGateway::start(None, 30_000, false).await;
        let (pool, _r) = pool();
        let mut c = config(&format!("ws://{}", gw.addr));
        c.max_in_flight = n + 1;
        c.send_ack_timeout = Duration::from_secs(60);
        c.run_timeout = Duration::from_secs(60);
        pool.upsert("load", c);
        let handle = pool.get("load").unwrap();
        let before = resident_bytes();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let h = handle.clone();
            tasks.push(tokio::spawn(async move {
                h.run(request(
                    &format!("load-{i}"),
                    "hello",
                    &format!("load-run-{i}"),
                ))
                .await
            }));
        }
        let mut reached = 0;
        while reached < n && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            reached = handle.status().in_flight;
        }
        assert_eq!(reached, n, "every run admitted");
        let admitted = started.elapsed();
        let during = resident_bytes();
        let per_run = during.saturating_sub(before) as f64 / n as f64;
        println!();
        println!(
            "| runs in flight | admit all | RSS before | RSS during | per run (incl. caller task) |"
        );
        println!("|---|---|---|---|---|");
        println!(
            "| {n} | {:.0} ms | {:.1} MiB | {:.1} MiB | {:.0} B |",
            admitted.as_secs_f64() * 1000.0,
            before as f64 / 1048576.0,
            during as f64 / 1048576.0,
            per_run
        );
        pool.close().await;
        for t in tasks {
            let _ = t.await;
        }
    })
    .await
    .unwrap();
}
