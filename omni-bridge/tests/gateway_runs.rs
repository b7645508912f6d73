//! Runs against the mock gateway: handshake shape, exact replies, idempotent join, per-session
//! serialisation, abort, backpressure, the typed errors of each phase, and the breaker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::{TEST_TIMEOUT, TOKEN, config, key, metrics_text, pool, request};
use mock_gateway::{MockGateway, MockGatewayHandle, RunFault, fake_reply};
use omni_bridge::error::{ConnectError, Error, ErrorKind};
use omni_bridge::gateway::{BreakerState, ReplyOutcome};
use tokio::time::Instant;

async fn mock() -> MockGatewayHandle {
    MockGateway::builder()
        .token(TOKEN)
        .delta_interval(Duration::from_millis(5))
        .start()
        .await
        .unwrap()
}

async fn bounded<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f).await.unwrap();
}

#[tokio::test]
async fn run_returns_the_exact_reply_with_stats_and_connects_with_minimal_scopes() {
    bounded(async {
        let gw = mock().await;
        let (pool, registry) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        let reply = handle
            .run(request("alice", "hello there", "run-1"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("hello there"));
        assert_eq!(reply.outcome, ReplyOutcome::Completed);
        assert_eq!(reply.run_id, "run-1");
        assert!(reply.stats.deltas >= 1);
        assert_eq!(reply.stats.bytes, reply.text.len());
        assert!(reply.stats.time_to_first_delta.is_some());
        assert!(reply.stats.duration >= reply.stats.time_to_ack);

        let connect = gw
            .wait_for_request("connect", 1, Duration::from_secs(5))
            .await
            .unwrap();
        let p = &connect.params;
        assert_eq!(p["client"]["id"], "gateway-client");
        assert_eq!(p["client"]["mode"], "backend");
        assert_eq!(p["role"], "operator");
        assert_eq!(
            p["scopes"],
            serde_json::json!(["operator.read", "operator.write"])
        );
        assert_eq!(p["auth"]["token"], TOKEN);
        let send = gw
            .wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(send.params["idempotencyKey"], "run-1");
        assert_eq!(send.params["sessionKey"], "agent:main:alice");

        let status = handle.status();
        assert_eq!(
            status.granted_scopes,
            vec!["operator.read", "operator.write"]
        );
        assert!(status.server_version.is_some());
        assert_eq!((status.in_flight, status.queued), (0, 0));
        let m = metrics_text(&registry);
        assert!(
            m.contains("omni_bridge_gateway_connection_state{gateway=main} 2"),
            "{m}"
        );
        assert!(
            m.contains(
                "omni_bridge_gateway_run_duration_seconds{gateway=main,outcome=completed} 1"
            ),
            "{m}"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn same_idempotency_key_joins_the_run_in_flight() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        let (a, b) = tokio::join!(
            handle.run(request("s", "once", "trace-1")),
            handle.run(request("s", "once", "trace-1"))
        );
        assert_eq!(a.unwrap(), b.unwrap());
        let sends = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "chat.send")
            .count();
        assert_eq!(sends, 1, "a joined run is not sent twice");
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn one_run_per_session_later_messages_queue_and_abort_ends_the_active_run() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.max_queued_per_session = 1;
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();
        gw.push_run_fault(RunFault::NeverFinish);
        let first = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("bob", "first", "q-1")).await }
        });
        gw.wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        let second = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("bob", "second", "q-2")).await }
        });
        // Another session is not blocked by bob's run.
        let other = handle.run(request("carol", "hi", "q-3")).await.unwrap();
        assert_eq!(other.text, fake_reply("hi"));
        // bob's second message waits: it has not been sent.
        let sends: Vec<_> = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "chat.send")
            .collect();
        assert!(sends.iter().all(|r| r.params["idempotencyKey"] != "q-2"));
        // Queue bound: a third message for bob is refused at once.
        let err = handle
            .run(request("bob", "third", "q-4"))
            .await
            .unwrap_err();
        assert_eq!(err, Error::SessionQueueFull);
        assert_eq!(err.kind(), ErrorKind::Backpressure);
        assert_eq!(handle.status().queued, 1);

        assert!(handle.abort(&key("bob"), Some("q-1")).await.unwrap());
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.outcome, ReplyOutcome::Aborted);
        let second = second.await.unwrap().unwrap();
        assert_eq!(second.text, fake_reply("second"));
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn beyond_max_in_flight_is_immediate_backpressure() {
    bounded(async {
        let gw = mock().await;
        let (pool, registry) = pool();
        let mut c = config(&gw.url());
        c.max_in_flight = 1;
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();
        gw.push_run_fault(RunFault::NeverFinish);
        let busy = tokio::spawn({
            let h = handle.clone();
            async move { h.run(request("a", "x", "bp-1")).await }
        });
        gw.wait_for_request("chat.send", 1, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(handle.status().in_flight, 1);
        let started = Instant::now();
        let err = handle.run(request("b", "y", "bp-2")).await.unwrap_err();
        assert_eq!(err, Error::Backpressure);
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(
            metrics_text(&registry)
                .contains("omni_bridge_gateway_errors_total{gateway=main,kind=backpressure} 1")
        );
        // Closing fails the stuck run promptly with Closed.
        let closing = Instant::now();
        pool.close().await;
        assert_eq!(busy.await.unwrap().unwrap_err(), Error::Closed);
        assert!(closing.elapsed() < Duration::from_secs(3));
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn agent_errors_and_double_terminals() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        gw.push_run_fault(RunFault::Error {
            message: "provider exploded".into(),
        });
        let err = handle.run(request("e", "boom", "err-1")).await.unwrap_err();
        assert!(
            matches!(&err, Error::AgentFailed { message: Some(m), .. } if m.contains("provider exploded")),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::AgentError);
        // The second terminal event of a run is ignored: first terminal wins.
        gw.push_run_fault(RunFault::DoubleTerminal);
        let reply = handle.run(request("e", "twice", "err-2")).await.unwrap();
        assert_eq!(reply.text, fake_reply("twice"));
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn timeouts_say_which_phase_and_whether_the_agent_stalled() {
    bounded(async {
        let gw = mock().await;
        let (pool, registry) = pool();
        let mut c = config(&gw.url());
        c.send_ack_timeout = Duration::from_millis(300);
        c.run_timeout = Duration::from_millis(400);
        c.breaker.failure_threshold = 100;
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();

        gw.push_run_fault(RunFault::DropAck);
        let err = handle.run(request("t", "a", "to-1")).await.unwrap_err();
        assert_eq!(err, Error::SendAckTimeout(Duration::from_millis(300)));

        gw.push_run_fault(RunFault::StallAfterDeltas(2));
        let err = handle.run(request("t", "c", "to-3")).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::RunTimeout {
                    stalled_mid_stream: true,
                    deltas: 2
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        // Runs we gave up on are aborted on the gateway, so they cannot absorb the session's
        // next message.
        gw.wait_for_request("chat.abort", 2, Duration::from_secs(5))
            .await
            .unwrap();
        let aborted: Vec<_> = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "chat.abort")
            .map(|r| r.params["runId"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(aborted, ["to-1", "to-3"]);
        let m = metrics_text(&registry);
        assert!(
            m.contains("omni_bridge_gateway_errors_total{gateway=main,kind=timeout} 2"),
            "{m}"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reply_cap_is_enforced() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.reply_cap_bytes = 16;
        pool.upsert("main", c);
        let err = pool
            .get("main")
            .unwrap()
            .run(request("cap", "a long message", "cap-1"))
            .await
            .unwrap_err();
        assert_eq!(err, Error::AccumulationCap);
        assert_eq!(err.kind().as_str(), "accumulation_cap");
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn breaker_opens_after_three_failures_fails_fast_then_a_probe_closes_it() {
    bounded(async {
        let gw = mock().await;
        let (pool, registry) = pool();
        let mut c = config(&gw.url());
        c.send_ack_timeout = Duration::from_millis(200);
        // Long enough that a stalled CI machine cannot turn the call below into the probe.
        c.breaker.open_for = Duration::from_secs(2);
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();
        for i in 0..3 {
            gw.push_run_fault(RunFault::DropAck);
            let err = handle
                .run(request("br", "x", &format!("br-{i}")))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Timeout);
        }
        assert_eq!(handle.status().breaker, BreakerState::Open);
        let started = Instant::now();
        let err = handle.run(request("br", "x", "br-open")).await.unwrap_err();
        assert!(matches!(err, Error::CircuitOpen { .. }), "{err:?}");
        // Failed fast: nothing was sent for it.
        let sends = || {
            gw.requests()
                .into_iter()
                .filter(|r| r.method == "chat.send")
                .count()
        };
        assert_eq!(sends(), 3);
        assert!(
            metrics_text(&registry).contains("omni_bridge_gateway_breaker_state{gateway=main} 1")
        );
        // After open_for, one probe goes through; its success closes the breaker.
        let probe_at = started + Duration::from_millis(2050);
        tokio::time::sleep_until(probe_at).await;
        let reply = handle
            .run(request("br", "probe", "br-probe"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("probe"));
        assert_eq!(handle.status().breaker, BreakerState::Closed);
        let m = metrics_text(&registry);
        assert!(
            m.contains("omni_bridge_gateway_breaker_transitions_total{gateway=main,to=open} 1"),
            "{m}"
        );
        assert!(
            m.contains("omni_bridge_gateway_breaker_transitions_total{gateway=main,to=closed} 1"),
            "{m}"
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wrong_token_fails_fast_with_the_auth_detail_code() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.token = shared_protocol::Secret::new("wrong-token".into());
        c.send_ack_timeout = Duration::from_secs(10);
        pool.upsert("main", c);
        let started = Instant::now();
        let err = pool.get("main").unwrap().run(request("x", "y", "auth-1")).await.unwrap_err();
        assert!(
            matches!(&err, Error::Connect(ConnectError::AuthRejected { code, .. }) if code == "AUTH_TOKEN_MISMATCH"),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert!(started.elapsed() < Duration::from_secs(5), "no waiting out the 10 s budget");
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reset_session_uses_write_scope_methods_in_order() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let handle = pool.get("main").unwrap();
        handle
            .run(request("dave", "remember me", "rs-1"))
            .await
            .unwrap();
        handle.reset_session(&key("dave")).await.unwrap();
        let methods: Vec<_> = gw
            .requests()
            .into_iter()
            .filter(|r| r.method.starts_with("sessions."))
            .collect();
        let names: Vec<_> = methods.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(
            names,
            ["sessions.describe", "sessions.patch", "sessions.delete"]
        );
        assert_eq!(methods[1].params["archived"], true);
        assert_eq!(methods[2].params["archivedOnly"], true);
        assert_eq!(
            methods[1].params["expectedSessionId"],
            methods[2].params["expectedSessionId"]
        );
        assert!(methods[2].params["expectedSessionId"].is_string());
        // The session works again afterwards.
        let reply = handle.run(request("dave", "again", "rs-2")).await.unwrap();
        assert_eq!(reply.text, fake_reply("again"));
        pool.close().await;
        gw.stop().await;
    })
    .await;
}

#[tokio::test]
async fn check_reports_version_scopes_and_agents() {
    bounded(async {
        let gw = mock().await;
        let (pool, _r) = pool();
        pool.upsert("main", config(&gw.url()));
        let check = pool.get("main").unwrap().check().await.unwrap();
        assert_eq!(
            check.granted_scopes,
            vec!["operator.read", "operator.write"]
        );
        assert!(!check.server_version.is_empty());
        assert!(
            check.agents.contains(&"main".to_string()),
            "{:?}",
            check.agents
        );
        pool.close().await;
        gw.stop().await;
    })
    .await;
}
