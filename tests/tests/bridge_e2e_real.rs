//! Omni-shaped POST -> omni-bridge -> the REAL OpenClaw gateway, end to end.
//!
//! Runs only with `OPENCLAW_REAL=1` (gateway at `OPENCLAW_URL`, default ws://127.0.0.1:18789,
//! token `OPENCLAW_TOKEN`, default test-token-123, fake LLM behind it); otherwise each test
//! returns early and says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use integration_tests::Target;
use omni_bridge::bridge::RunningBridge;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::http_client::HttpClient;
use shared_protocol::Secret;

const INBOUND: &str = "e2e-inbound-secret";

async fn start(url: &str, token: &str) -> RunningBridge {
    let mut config = BridgeConfig::single(
        GatewayConfig::new(url, Secret::new(token.to_string())),
        "main",
        Secret::new(INBOUND.to_string()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.listen = listener.local_addr().unwrap();
    RunningBridge::start_standalone(&config, listener).unwrap()
}

fn body(chat: &str, sender: &str, text: &str, trace: &str) -> serde_json::Value {
    serde_json::json!({
        "event": {},
        "instance": { "id": "e2e-instance", "channelType": "whatsapp-baileys" },
        "chat": { "id": chat },
        "sender": { "id": "u-1", "name": sender },
        "content": { "text": text },
        "traceId": trace,
        "executionContext": {
            "source": { "channel": "whatsapp-baileys", "instanceId": "e2e-instance", "chatId": chat, "messageId": format!("m-{trace}") },
            "session": { "id": chat, "strategy": "per_chat" },
            "trace": { "id": trace }
        },
        "replyEndpoint": "POST /api/v2/messages/send"
    })
}

async fn post(
    client: &HttpClient,
    bridge: &RunningBridge,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let url = format!("http://{}{path}", bridge.addr());
    let r = client.post_bearer(&url, INBOUND, body).await.unwrap();
    (r.status.as_u16(), r.json())
}

#[tokio::test]
async fn omni_post_reaches_the_real_gateway_and_retries_do_not_rerun() {
    let Some(Target { url, token, .. }) = Target::real_or_skip() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(120), async {
        let bridge = start(&url, &token).await;
        let client = HttpClient::new(Duration::from_secs(100));
        let chat = format!("e2e-{}", uuid::Uuid::new_v4());
        let trace = format!("trace-{}", uuid::Uuid::new_v4());
        let msg = body(&chat, "Ana", "hello bridge", &trace);
        let (status, json) = post(&client, &bridge, "/omni/agents/main/trigger", &msg).await;
        assert_eq!(status, 200);
        assert_eq!(
            json["reply"],
            "FAKE-REPLY: you said <<[Ana]: hello bridge>>. chunk-a chunk-b chunk-c"
        );
        // Omni retrying the same trace gets the same answer.
        let (status, again) = post(&client, &bridge, "/omni/agents/main/trigger", &msg).await;
        assert_eq!((status, &again), (200, &json));
        // Reset with write scope only, then the conversation continues.
        let reset =
            serde_json::json!({ "agentId": "main", "instanceId": "e2e-instance", "chatId": chat });
        let (status, r) = post(&client, &bridge, "/omni/sessions/reset", &reset).await;
        assert_eq!(status, 200, "{r}");
        let (status, json) = post(
            &client,
            &bridge,
            "/omni/agents/main/trigger",
            &body(&chat, "Ana", "after reset", &format!("{trace}-2")),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            json["reply"],
            "FAKE-REPLY: you said <<[Ana]: after reset>>. chunk-a chunk-b chunk-c"
        );
        bridge.stop().await.unwrap();
    })
    .await
    .expect("timed out");
}
