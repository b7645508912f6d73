//! Liveness: a gateway that goes silent after hello-ok (no ticks, no pongs, nothing) is
//! detected by the watchdog after 2 x tickIntervalMs and the connection is rebuilt; an agent
//! that acknowledges and then never answers is reported as a dead response, not a stall (after
//! a `chat.send` answered `UNAVAILABLE` was retried within the send-ack budget).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use gateway_support::{MiniGateway, TEST_TIMEOUT, config, pool};
use std::time::Duration;

use omni_bridge::error::Error;
use omni_bridge::gateway::ConnectionState;

#[tokio::test]
async fn silent_gateway_is_reconnected_by_the_watchdog() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // tickIntervalMs 100 -> the watchdog fires after 200 ms of silence.
        let gw = MiniGateway::start(None, 100, true).await;
        let (pool, registry) = pool();
        pool.upsert("silent", config(&format!("ws://{}", gw.addr)));
        gw.wait_accepted(3).await;
        let text = gateway_support::metrics_text(&registry);
        let reconnects = text
            .lines()
            .find(|l| l.starts_with("omni_bridge_gateway_reconnects_total{gateway=silent}"))
            .unwrap();
        assert!(!reconnects.ends_with(" 0"), "{reconnects}");
        let status = pool.get("silent").unwrap().status();
        assert!(
            status.last_error.unwrap_or_default().contains("no frame"),
            "watchdog named as the reason"
        );
        assert_eq!(status.server_version.as_deref(), Some("mini-1"));
        assert_ne!(status.state, ConnectionState::Closed);
        pool.close().await;
        assert_eq!(pool.statuses().len(), 0, "closed pool forgets its gateways");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_that_never_answers_is_a_dead_response_timeout() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let gw = MiniGateway::start(None, 30_000, false).await;
        let (pool, _r) = pool();
        let mut c = config(&format!("ws://{}", gw.addr));
        c.run_timeout = Duration::from_millis(300);
        pool.upsert("dead", c);
        let err = pool
            .get("dead")
            .unwrap()
            .run(gateway_support::request("d", "anyone there?", "dead-1"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            Error::RunTimeout {
                stalled_mid_stream: false,
                deltas: 0
            }
        );
        assert!(err.to_string().contains("no answer at all"));
        pool.close().await;
    })
    .await
    .unwrap();
}
