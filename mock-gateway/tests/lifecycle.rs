//! Handshake edges the conformance suite cannot provoke on the shared real gateway (startup,
//! pre-auth deadline), and the mock's lifecycle controls: ticks, refuse, restart, kill, stop,
//! slow consumer, the request log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use integration_tests::{ClientError, Outcome, Target, send_params, unique};
use mock_gateway::MockGateway;
use serde_json::json;
use shared_protocol::ErrorCode;

const TOKEN: &str = "life-token";
const DEADLINE: Duration = Duration::from_secs(30);

async fn target(builder: mock_gateway::MockGatewayBuilder) -> Target {
    Target::from_mock(builder.token(TOKEN).start().await.unwrap(), TOKEN)
}

fn mock(target: &Target) -> &mock_gateway::MockGatewayHandle {
    target.mock.as_ref().unwrap()
}

#[tokio::test]
async fn startup_phase_is_retryable_unavailable_then_hello() {
    tokio::time::timeout(DEADLINE, async {
        let t =
            target(MockGateway::builder().startup_unavailable_for(Duration::from_secs(2))).await;
        let Outcome::Refused { error, close } = t.connect(&t.backend()).await.unwrap() else {
            panic!("expected the startup refusal")
        };
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert!(error.is_retryable());
        assert_eq!(error.retry_after_ms, Some(500));
        assert_eq!(error.reason(), Some("startup-sidecars"));
        assert_eq!(close, Some((1013, "gateway starting".into())));
        // A client honouring retryAfterMs gets in after the startup window.
        loop {
            tokio::time::sleep(Duration::from_millis(error.retry_after_ms.unwrap())).await;
            if let Outcome::Hello(_) = t.connect(&t.backend()).await.unwrap() {
                break;
            }
        }
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn silent_client_is_closed_at_the_preauth_deadline() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder().preauth_timeout(Duration::from_millis(200))).await;
        let (mut ws, _) = tokio_tungstenite::connect_async(t.url.as_str())
            .await
            .unwrap();
        use futures_util::StreamExt;
        let mut close = None;
        while let Some(Ok(msg)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Close(frame) = msg {
                close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        assert_eq!(close, Some((1008, "handshake timeout".into())));
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ticks_carry_ts_and_seq() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder().tick_interval(Duration::from_millis(50))).await;
        let mut c = t.connect_backend().await.unwrap();
        assert_eq!(c.hello["policy"]["tickIntervalMs"], 50);
        let first = c.next_event(DEADLINE).await.unwrap();
        let second = c.next_event(DEADLINE).await.unwrap();
        assert_eq!((first.name.as_str(), first.seq), ("tick", Some(1)));
        assert_eq!((second.name.as_str(), second.seq), ("tick", Some(2)));
        assert!(first.payload["ts"].as_u64().unwrap() > 0);
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn refuse_then_accept_again() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder()).await;
        let m = mock(&t);
        m.set_refuse_connections(true);
        assert!(
            t.connect(&t.backend()).await.is_err(),
            "refused sockets never upgrade"
        );
        assert_eq!(m.connections_accepted(), 1);
        assert_eq!(m.open_connections(), 0);
        m.set_refuse_connections(false);
        assert!(t.connect_backend().await.is_ok());
        assert_eq!(m.connections_accepted(), 2);
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn restart_sends_shutdown_and_1012_then_comes_back_with_a_new_boot_id() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder()).await;
        let m = mock(&t).clone();
        let mut c = t.connect_backend().await.unwrap();
        let boot = c.hello["server"]["bootId"].clone();
        let restart = tokio::spawn(async move { m.restart(Duration::from_secs(1)).await });
        let shutdown = c.next_event(DEADLINE).await.unwrap();
        assert_eq!(shutdown.name, "shutdown");
        assert_eq!(
            shutdown.payload,
            json!({"reason": "gateway stopping", "restartExpectedMs": 1000})
        );
        assert_eq!(
            c.until_closed(DEADLINE).await.unwrap(),
            Some((1012, "service restart".into()))
        );
        restart.await.unwrap();
        assert!(
            t.connect(&t.backend()).await.is_err(),
            "down right after the restart"
        );
        let again = loop {
            if let Ok(Outcome::Hello(c)) = t.connect(&t.backend()).await {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_ne!(again.hello["server"]["bootId"], boot);
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn kill_drops_sockets_without_a_close_frame() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder()).await;
        let mut c = t.connect_backend().await.unwrap();
        assert!(mock(&t).wait_for_open_connections(1, DEADLINE).await);
        mock(&t).kill_connections();
        assert_eq!(c.until_closed(DEADLINE).await.unwrap(), None);
        assert!(mock(&t).wait_for_open_connections(0, DEADLINE).await);
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stop_says_shutdown_and_closes_1012() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder()).await;
        let mut c = t.connect_backend().await.unwrap();
        let stopping = tokio::spawn(t.clone().stop());
        let e = c.next_event(DEADLINE).await.unwrap();
        assert_eq!(e.payload, json!({"reason": "gateway stopping"}));
        assert_eq!(
            c.until_closed(DEADLINE).await.unwrap(),
            Some((1012, "service restart".into()))
        );
        stopping.await.unwrap();
        assert!(
            matches!(t.connect(&t.backend()).await, Err(ClientError::Ws(_))),
            "listener closed"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slow_consumer_is_closed_1008() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder().max_buffered_bytes(64 * 1024)).await;
        let mut c = t.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("slow"));
        // A session whose history is ~4 MiB, then history requests the client does not read.
        let big = "y".repeat(512 * 1024);
        for _ in 0..8 {
            c.send_request("chat.send", send_params(&key, &big, &unique("run")))
                .await
                .unwrap();
        }
        for _ in 0..16 {
            c.send_request("chat.history", json!({"sessionKey": key}))
                .await
                .unwrap();
        }
        assert!(mock(&t).wait_for_slow_consumer_closes(1, DEADLINE).await);
        assert_eq!(
            c.until_closed(DEADLINE).await.unwrap(),
            Some((1008, "slow consumer".into()))
        );
        t.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn requests_are_recorded_and_awaitable() {
    tokio::time::timeout(DEADLINE, async {
        let t = target(MockGateway::builder()).await;
        let m = mock(&t).clone();
        let waiter = tokio::spawn(async move { m.wait_for_request("health", 2, DEADLINE).await });
        let mut c = t.connect_backend().await.unwrap();
        c.request("health", json!({})).await.unwrap();
        c.request("health", json!({"n": 2})).await.unwrap();
        let second = waiter.await.unwrap().expect("second health");
        assert_eq!(second.params, json!({"n": 2}));
        let all = mock(&t).requests();
        assert_eq!(all[0].method, "connect");
        assert_eq!(all[0].params["client"]["id"], "gateway-client");
        assert_eq!(all[0].connection, second.connection);
        assert!(
            mock(&t)
                .wait_for_request("health", 3, Duration::from_millis(50))
                .await
                .is_none()
        );
        t.stop().await;
    })
    .await
    .unwrap();
}
