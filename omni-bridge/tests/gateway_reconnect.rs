//! Nothing lost across reconnects, nothing hangs: warm-up through a starting gateway, re-send
//! after a dropped socket or a restart, prompt failures when the link cannot come back or the
//! gateway is removed, and config changes that rebuild the connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::{TEST_TIMEOUT, TOKEN, config, metrics_text, pool, request};
use mock_gateway::{MockGateway, MockGatewayHandle, RunFault, fake_reply};
use omni_bridge::error::{Error, ErrorKind};
use tokio::time::Instant;

async fn mock_with(delta: Duration) -> MockGatewayHandle {
    MockGateway::builder()
        .token(TOKEN)
        .delta_interval(delta)
        .start()
        .await
        .unwrap()
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.unwrap();
}

fn chat_sends(gw: &MockGatewayHandle, key: &str) -> Vec<mock_gateway::ReceivedRequest> {
    gw.requests()
        .into_iter()
        .filter(|r| r.method == "chat.send" && r.params["idempotencyKey"] == key)
        .collect()
}

#[tokio::test]
async fn warm_up_waits_through_a_starting_gateway_within_the_ack_budget() {
    bounded(async {
        let gw = MockGateway::builder()
            .token(TOKEN)
            .delta_interval(Duration::from_millis(5))
            .startup_unavailable_for(Duration::from_millis(700))
            .start()
            .await
            .unwrap();
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let reply = pool
            .get("main")
            .unwrap()
            .run(request("w", "early bird", "w-1"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("early bird"));
        let connects = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "connect")
            .count();
        assert!(
            connects >= 2,
            "first connects were refused as starting: {connects}"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn run_survives_a_dropped_connection_and_is_resent_with_the_same_key() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        let (pool, registry) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        gw.push_run_fault(RunFault::DropConnectionAfterDeltas(2));
        let reply = handle
            .run(request("d", "keep going", "drop-1"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("keep going"));
        let sends = chat_sends(&gw, "drop-1");
        assert_eq!(sends.len(), 2, "re-sent once after the reconnect");
        assert_ne!(sends[0].connection, sends[1].connection);
        assert!(gw.connections_accepted() >= 2);
        let m = metrics_text(&registry);
        assert!(
            !m.contains("omni_bridge_gateway_reconnects_total{gateway=main} 0"),
            "{m}"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn run_survives_a_gateway_restart_mid_run() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(100)).await;
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        let run = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("r", "through a restart", "restart-1")).await }
        });
        gw.wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        gw.restart(Duration::from_millis(300)).await;
        // Either the reply (re-sent: in_flight / started / ok + history) or a prompt retryable error.
        match run.await.unwrap() {
            Ok(reply) => assert_eq!(reply.text, fake_reply("through a restart")),
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
        assert!(chat_sends(&gw, "restart-1").len() >= 2);
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_link_that_cannot_come_back_fails_promptly_and_retryably() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.send_ack_timeout = Duration::from_millis(500);
        c.run_timeout = Duration::from_secs(20);
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();
        gw.push_run_fault(RunFault::NeverFinish);
        let run = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("k", "lost", "lost-1")).await }
        });
        gw.wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        gw.set_refuse_connections(true);
        let killed = Instant::now();
        gw.kill_connections();
        let err = run.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.is_retryable());
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "well before the 20 s run budget"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn removing_a_gateway_fails_its_runs_at_once_and_drops_its_series() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        let (pool, registry) = pool();
        pool.upsert("gone", config(&gw.url()));
        let handle = pool.get("gone").unwrap();
        gw.push_run_fault(RunFault::NeverFinish);
        let run = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("g", "bye", "rm-1")).await }
        });
        gw.wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        let removed = Instant::now();
        pool.remove("gone");
        assert_eq!(run.await.unwrap().unwrap_err(), Error::Closed);
        assert!(removed.elapsed() < Duration::from_secs(1));
        assert!(pool.get("gone").is_none());
        assert_eq!(
            handle
                .run(request("g", "late", "rm-2"))
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Closed
        );
        assert!(!metrics_text(&registry).contains("gateway=gone"));
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn upsert_rebuilds_only_on_change() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        let (pool, _r) = pool();
        let c = config(&gw.url());
        pool.upsert("main", c.clone());
        pool.get("main")
            .unwrap()
            .run(request("u", "one", "up-1"))
            .await
            .unwrap();
        pool.upsert("main", c.clone());
        pool.get("main")
            .unwrap()
            .run(request("u", "two", "up-2"))
            .await
            .unwrap();
        assert_eq!(
            gw.connections_accepted(),
            1,
            "unchanged config keeps the connection"
        );
        let mut changed = c;
        changed.run_timeout = Duration::from_secs(7);
        pool.upsert("main", changed);
        pool.get("main")
            .unwrap()
            .run(request("u", "three", "up-3"))
            .await
            .unwrap();
        assert_eq!(
            gw.connections_accepted(),
            2,
            "changed config rebuilt the connection"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn health_is_requested_periodically_without_touching_the_breaker() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.health_interval = Duration::from_millis(50);
        pool.upsert("main", c);
        let third = gw
            .wait_for_request("health", 3, Duration::from_secs(5))
            .await;
        assert!(
            third.is_some(),
            "three health requests on the idle connection"
        );
        let status = pool.get("main").unwrap().status();
        assert_eq!(status.breaker, omni_bridge::gateway::BreakerState::Closed);
        assert_eq!(status.in_flight, 0);
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_pool_starts_while_the_gateway_is_down_and_connects_when_it_comes_up() {
    bounded(async {
        let gw = mock_with(Duration::from_millis(5)).await;
        gw.set_refuse_connections(true);
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.send_ack_timeout = Duration::from_millis(300);
        pool.upsert("main", c.clone());
        let handle = pool.get("main").unwrap();
        let err = handle
            .run(request("l", "too early", "lazy-1"))
            .await
            .unwrap_err();
        // Nothing was sent: the gateway is unreachable, which is not a slow agent.
        assert!(
            matches!(&err, Error::Unavailable { message, .. } if message.starts_with("no connection to the gateway within 300ms")),
            "{err:?}"
        );
        assert_eq!(err.kind(), omni_bridge::error::ErrorKind::Unavailable);
        assert!(err.is_retryable() && err.trips_breaker());
        assert!(handle.status().last_error.is_some());
        gw.set_refuse_connections(false);
        // The background reconnect loop finds it; a run within its budget gets through.
        let mut patient = c;
        patient.send_ack_timeout = Duration::from_secs(5);
        pool.upsert("patient", patient);
        let reply = pool
            .get("patient")
            .unwrap()
            .run(request("l", "now", "lazy-2"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("now"));
        let reply = handle.run(request("l", "again", "lazy-3")).await.unwrap();
        assert_eq!(reply.text, fake_reply("again"));
        pool.close().await;
        gw.stop().await;
    })
    .await;
}
