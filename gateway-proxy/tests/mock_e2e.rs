//! End to end against mock-gateway (the faithful fake of the real gateway): a full chat turn in
//! exchange and passthrough modes, a gateway restart, and the gateway's startup refusal relayed.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use gateway_proxy::credential::TokenHash;
use mock_gateway::MockGateway;
use tokio_tungstenite::tungstenite::Message;

async fn chat_turn(ws: &mut Ws, message: &str) -> String {
    let run_id = uuid::Uuid::new_v4().to_string();
    let key = format!("proxy-e2e-{}", uuid::Uuid::new_v4());
    let params =
        serde_json::json!({"sessionKey": key, "message": message, "idempotencyKey": run_id});
    let ack = call(ws, "send", "chat.send", params).await;
    assert_eq!(ack["ok"], true, "{ack}");
    loop {
        let v = next_json(ws).await;
        let p = &v["payload"];
        if v["event"] == "chat" && p["runId"] == run_id.as_str() && p["state"] == "final" {
            return p["message"]["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string();
        }
    }
}

#[tokio::test]
async fn exchange_mode_chat_turn() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let gw = MockGateway::builder()
            .token(GATEWAY_TOKEN)
            .start()
            .await
            .unwrap();
        let p = start_proxy(&gw.url(), true, "").await;
        let url = format!("wss://localhost:{}", p.tls.unwrap().port());
        let mut ws = open(&url, Some(pinned_client(p.cert_pin.unwrap()))).await;
        let (_, hello) = handshake(&mut ws, TOKEN, &["operator.read", "operator.write"]).await;
        assert_eq!(hello["ok"], true, "{hello}");
        assert_eq!(
            hello["payload"]["auth"]["scopes"],
            serde_json::json!(["operator.read", "operator.write"])
        );
        let text = chat_turn(&mut ws, "hello through the proxy").await;
        assert_eq!(
            text,
            "FAKE-REPLY: you said <<hello through the proxy>>. chunk-a chunk-b chunk-c"
        );
        let connect = gw.wait_for_request("connect", 1, T).await.unwrap();
        assert_eq!(connect.params["auth"]["token"], GATEWAY_TOKEN);
        let r = call(
            &mut ws,
            "r",
            "sessions.reset",
            serde_json::json!({"key": "main"}),
        )
        .await;
        assert_eq!(r["error"]["details"]["code"], "MISSING_SCOPE");
        assert!(gw.requests().iter().all(|r| r.method != "sessions.reset"));
        p.stop().await;
        gw.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn passthrough_mode_chat_turn() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let gw = MockGateway::builder()
            .token(GATEWAY_TOKEN)
            .start()
            .await
            .unwrap();
        let dir = temp_dir();
        let text = config_text(&gw.url(), &dir, false)
            .replace(
                &TokenHash::of(TOKEN).to_hex(),
                &TokenHash::of(GATEWAY_TOKEN).to_hex(),
            )
            .replace(
                "[upstream]",
                "[identity]\nmode = \"passthrough\"\n\n[upstream]",
            );
        let p = start_proxy_with(&text, dir, None).await;
        let mut ws = open(&p.ws_url(), None).await;
        let _challenge = next_json(&mut ws).await;
        let connect = serde_json::json!({"type":"req","id":"c1","method":"connect","params":{
            "minProtocol":4,"maxProtocol":4,
            "client":{"id":"gateway-client","version":"1","platform":"linux","mode":"backend"},
            "role":"operator","scopes":["operator.read","operator.write"],
            "auth":{"token":GATEWAY_TOKEN}}});
        ws.send(Message::text(connect.to_string())).await.unwrap();
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["ok"], true, "{hello}");
        let text = chat_turn(&mut ws, "passthrough works").await;
        assert_eq!(
            text,
            "FAKE-REPLY: you said <<passthrough works>>. chunk-a chunk-b chunk-c"
        );
        p.stop().await;
        gw.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gateway_restart_closes_clients_1012_and_they_can_reconnect() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let gw = MockGateway::builder()
            .token(GATEWAY_TOKEN)
            .start()
            .await
            .unwrap();
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        gw.restart(Duration::from_millis(300)).await;
        assert_eq!(close_code(&mut ws).await, Some(1012));
        let mut attempts = tokio::time::interval(Duration::from_millis(100));
        loop {
            attempts.tick().await;
            let mut ws = open(&p.ws_url(), None).await;
            let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
            if res["ok"] == true {
                assert_eq!(
                    call(&mut ws, "h", "health", serde_json::json!({})).await["ok"],
                    true
                );
                break;
            }
            assert_eq!(res["error"]["retryable"], true, "{res}");
        }
        p.stop().await;
        gw.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gateway_startup_refusal_is_relayed_retryable() {
    tokio::time::timeout(Duration::from_secs(20), async {
        let gw = MockGateway::builder()
            .token(GATEWAY_TOKEN)
            .startup_unavailable_for(Duration::from_secs(30))
            .start()
            .await
            .unwrap();
        let p = start_proxy(&gw.url(), false, "").await;
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(res["error"]["code"], "UNAVAILABLE");
        assert_eq!(res["error"]["retryable"], true);
        assert_eq!(close_code(&mut ws).await, Some(1013));
        p.stop().await;
        gw.stop().await;
    })
    .await
    .unwrap();
}
