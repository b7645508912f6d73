//! End to end through the real pieces: Omni-shaped HTTP -> service -> GatewayPool (one pooled
//! WebSocket) -> mock gateway, and back. These prove the wiring, not just the service logic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod service_support;

use std::time::Duration;

use mock_gateway::{MockGateway, MockGatewayHandle, RunFault, fake_reply};
use omni_bridge::bridge::RunningBridge;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::http_client::{HttpClient, HttpReply, Method};
use omni_bridge::service::texts::Texts;
use service_support::{INBOUND, message};
use shared_protocol::Secret;

const TOKEN: &str = "mock-token";
const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    mock: MockGatewayHandle,
    bridge: RunningBridge,
    client: HttpClient,
}

async fn setup(delta: Duration) -> Setup {
    let mock = MockGateway::builder()
        .token(TOKEN)
        .delta_interval(delta)
        .start()
        .await
        .unwrap();
    let mut config = BridgeConfig::single(
        GatewayConfig::new(mock.url(), Secret::new(TOKEN.to_string())),
        "main",
        Secret::new(INBOUND.to_string()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.listen = listener.local_addr().unwrap();
    let bridge = RunningBridge::start_standalone(&config, listener).unwrap();
    Setup {
        mock,
        bridge,
        client: HttpClient::new(Duration::from_secs(20)),
    }
}

impl Setup {
    async fn post(&self, path: &str, body: &serde_json::Value) -> HttpReply {
        let auth = format!("Bearer {INBOUND}");
        self.client
            .send(
                Method::POST,
                &format!("http://{}{path}", self.bridge.addr()),
                &[("authorization", auth.as_str())],
                Some(body),
            )
            .await
            .unwrap()
    }

    async fn trigger(&self, body: &serde_json::Value) -> HttpReply {
        self.post("/omni/agents/main/trigger", body).await
    }

    fn sends(&self) -> usize {
        self.mock
            .requests()
            .iter()
            .filter(|r| r.method == "chat.send")
            .count()
    }

    async fn finish(self) {
        self.bridge.stop().await.unwrap();
        self.mock.stop().await;
    }
}

#[tokio::test]
async fn a_message_round_trips_through_the_pool_and_the_mock() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let s = setup(Duration::ZERO).await;
        let r = s
            .trigger(&message("inst-1", "chat-1", "Ana", "hello", "t-e2e-1"))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["reply"], fake_reply("[Ana]: hello"));
        let send = s.mock.wait_for_request("chat.send", 1, WAIT).await.unwrap();
        assert_eq!(send.params["sessionKey"], "agent:main:omni-inst-1-chat-1");
        assert_eq!(send.params["message"], "[Ana]: hello");
        assert!(
            send.params["idempotencyKey"]
                .as_str()
                .unwrap()
                .starts_with("omni-")
        );
        let ready = s
            .client
            .send(
                Method::GET,
                &format!("http://{}/ready", s.bridge.addr()),
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            ready.status,
            200,
            "{}",
            String::from_utf8_lossy(&ready.body)
        );
        s.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_same_trace_twice_sends_exactly_one_chat_send() {
    tokio::time::timeout(Duration::from_secs(30), async {
        // Slow deltas keep the first run in flight while the retry arrives.
        let s = setup(Duration::from_millis(150)).await;
        let body = message("inst-1", "chat-dup", "Ana", "only once", "t-dup");
        let (a, b) = tokio::join!(s.trigger(&body), async {
            s.mock.wait_for_request("chat.send", 1, WAIT).await.unwrap();
            s.trigger(&body).await
        });
        assert_eq!(a.json()["reply"], fake_reply("[Ana]: only once"));
        assert_eq!(a.json(), b.json());
        let c = s.trigger(&body).await;
        assert_eq!(c.json(), a.json());
        assert_eq!(s.sends(), 1, "retries must never reach the gateway twice");
        s.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn reset_command_and_endpoint_archive_and_delete_at_the_gateway() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let s = setup(Duration::ZERO).await;
        s.trigger(&message("inst-1", "chat-r", "Ana", "hi", "t-r0"))
            .await;
        let r = s
            .trigger(&message("inst-1", "chat-r", "Ana", "/reset", "t-r1"))
            .await;
        assert_eq!(r.json()["reply"], Texts::english().session_cleared);
        for method in ["sessions.describe", "sessions.patch", "sessions.delete"] {
            let req = s.mock.wait_for_request(method, 1, WAIT).await;
            assert!(req.is_some(), "{method} not sent");
        }
        let delete = s
            .mock
            .wait_for_request("sessions.delete", 1, WAIT)
            .await
            .unwrap();
        assert_eq!(delete.params["archivedOnly"], true);
        // The conversation goes on in a fresh session, which the endpoint then clears.
        let r = s
            .trigger(&message("inst-1", "chat-r", "Ana", "again", "t-r2"))
            .await;
        assert_eq!(r.json()["reply"], fake_reply("[Ana]: again"));
        let r = s
            .post(
                "/omni/sessions/reset",
                &serde_json::json!({"agentId": "main", "instanceId": "inst-1", "chatId": "chat-r"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            s.mock
                .wait_for_request("sessions.delete", 2, WAIT)
                .await
                .is_some()
        );
        s.finish().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_agent_error_becomes_the_user_text() {
    tokio::time::timeout(Duration::from_secs(30), async {
        let s = setup(Duration::ZERO).await;
        s.mock.push_run_fault(RunFault::Error {
            message: "provider exploded".into(),
        });
        let r = s
            .trigger(&message("inst-1", "chat-e", "Ana", "hi", "t-err"))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["reply"], Texts::english().agent_error);
        s.finish().await;
    })
    .await
    .unwrap();
}
