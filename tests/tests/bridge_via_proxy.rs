//! omni-bridge -> gateway-proxy (wss://, certificate pinned) -> gateway, end to end.
//!
//! The production path: the bridge holds only a proxy credential and the proxy's SPKI pin; the
//! proxy terminates TLS, checks the credential and every request, and opens the upstream
//! connection with the gateway token. Runs against the in-process mock always and against the
//! real gateway too with `OPENCLAW_REAL=1` (see `integration_tests::Target`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bridge_tools::loopback::LoopbackProxy;
use gateway_proxy::config::LimitsConfig;
use integration_tests::{Target, unique};
use omni_bridge::bridge::RunningBridge;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::error::{ConnectError, Error};
use omni_bridge::gateway::BreakerState;
use omni_bridge::http_client::{HttpClient, Method};
use shared_protocol::Secret;

const INBOUND: &str = "via-proxy-inbound-secret";
const CREDENTIAL: &str = "via-proxy-bridge-credential";
/// Generous: the real gateway's first turn after start takes up to ~10 s.
const DEADLINE: Duration = Duration::from_secs(90);
/// The per-session `chat.send` rate of the rate-limit test.
const SESSION_CHATS_PER_MINUTE: u32 = 2;

/// The real proxy in front of `target`, admitting the bridge's credential, under `limits`.
async fn proxy_for(target: &Target, limits: LimitsConfig) -> LoopbackProxy {
    let (upstream, credential) = (
        Secret::new(target.token.clone()),
        Secret::new(CREDENTIAL.into()),
    );
    LoopbackProxy::start(&target.url, &upstream, &credential, limits)
        .await
        .unwrap()
}

async fn bridge_for(proxy: &LoopbackProxy, pin: String) -> RunningBridge {
    let mut gateway =
        GatewayConfig::new(proxy.wss_url.clone(), Secret::new(CREDENTIAL.to_string()));
    gateway.pins = vec![pin.parse().expect("a valid pin")];
    let mut config = BridgeConfig::single(gateway, "main", Secret::new(INBOUND.to_string()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    config.listen = listener.local_addr().unwrap();
    RunningBridge::start_standalone(&config, listener).unwrap()
}

async fn post(
    client: &HttpClient,
    bridge: &RunningBridge,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {INBOUND}");
    let url = format!("http://{}{path}", bridge.addr());
    let r = client
        .send(
            Method::POST,
            &url,
            &[("authorization", auth.as_str())],
            Some(&body),
        )
        .await
        .unwrap();
    (r.status.as_u16(), r.json())
}

fn omni_body(chat: &str, text: &str, trace: &str) -> serde_json::Value {
    serde_json::json!({
        "instance": { "id": "via-proxy", "channelType": "telegram" },
        "chat": { "id": chat },
        "sender": { "id": "u-1", "name": "Eva" },
        "content": { "text": text },
        "traceId": trace,
    })
}

#[tokio::test]
async fn a_message_and_a_reset_go_through_the_pinned_proxy() {
    for target in Target::all().await.unwrap() {
        tokio::time::timeout(DEADLINE, async {
            let proxy = proxy_for(&target, LimitsConfig::default()).await;
            let bridge = bridge_for(&proxy, proxy.pin.to_string()).await;
            let client = HttpClient::new(DEADLINE);
            let chat = unique("chat");

            let (status, reply) = post(
                &client,
                &bridge,
                "/omni/agents/main/trigger",
                omni_body(&chat, "hello through the proxy", &unique("t")),
            )
            .await;
            assert_eq!(status, 200, "{}: {reply}", target.name);
            assert_eq!(
                reply["reply"],
                "FAKE-REPLY: you said <<[Eva]: hello through the proxy>>. chunk-a chunk-b chunk-c",
                "{}",
                target.name
            );

            // The write-scope reset (describe, patch archived, delete archivedOnly) passes the
            // proxy's policy; sessions.reset would not.
            let reset =
                serde_json::json!({ "agentId": "main", "instanceId": "via-proxy", "chatId": chat });
            let (status, body) = post(&client, &bridge, "/omni/sessions/reset", reset).await;
            assert_eq!(status, 200, "{}: {body}", target.name);

            if let Some(mock) = &target.mock {
                // Upstream saw the gateway token from the proxy, never the bridge's credential.
                let connects: Vec<_> = mock
                    .requests()
                    .into_iter()
                    .filter(|r| r.method == "connect")
                    .collect();
                assert!(!connects.is_empty());
                for c in &connects {
                    assert_eq!(c.params["auth"]["token"], target.token.as_str());
                    assert!(!c.params.to_string().contains(CREDENTIAL));
                }
                let methods: Vec<_> = mock.requests().into_iter().map(|r| r.method).collect();
                for m in ["chat.send", "sessions.describe", "sessions.delete"] {
                    assert!(
                        methods.iter().any(|x| x == m),
                        "{m} did not reach the gateway: {methods:?}"
                    );
                }
            }
            let _ = bridge.stop().await;
            proxy.stop().await;
        })
        .await
        .unwrap_or_else(|_| panic!("{}: timed out", target.name));
        target.stop().await;
    }
}

#[tokio::test]
async fn a_wrong_pin_is_refused_before_any_credential_is_sent() {
    let target = Target::mock().await.unwrap();
    let proxy = proxy_for(&target, LimitsConfig::default()).await;
    let wrong = format!("sha256/spki:{}", "ab".repeat(32));
    let bridge = bridge_for(&proxy, wrong).await;
    let (name, _) = bridge.pool().statuses().into_iter().next().unwrap();
    let handle = bridge.pool().get(&name).unwrap();
    let err = tokio::time::timeout(DEADLINE, handle.check())
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Connect(ConnectError::PinMismatch)),
        "{err:?}"
    );
    let _ = bridge.stop().await;
    proxy.stop().await;
    // The proxy refused nothing because no WebSocket upgrade happened: TLS failed first.
    assert!(target.mock.as_ref().unwrap().requests().is_empty());
    target.stop().await;
}

#[tokio::test]
async fn a_proxy_rate_limit_fails_one_conversation_and_never_opens_the_breaker() {
    // Two chat.send per minute per session: the third is refused, and the next cell comes back
    // only after 30 s, far longer than the refusals below take. (With the default of 30 per
    // minute a cell came back every 2 s, and a slow CI run saw a refused session answered again.)
    let limits = LimitsConfig {
        chat_send_per_minute_per_session: SESSION_CHATS_PER_MINUTE,
        ..LimitsConfig::default()
    };
    let target = Target::mock().await.unwrap();
    let proxy = proxy_for(&target, limits).await;
    let bridge = bridge_for(&proxy, proxy.pin.to_string()).await;
    let client = HttpClient::new(DEADLINE);
    tokio::time::timeout(DEADLINE, async {
        let chatty = unique("chatty");
        let mut refused = None;
        for i in 0..=SESSION_CHATS_PER_MINUTE {
            let (status, reply) = post(
                &client,
                &bridge,
                "/omni/agents/main/trigger",
                omni_body(&chatty, &format!("message {i}"), &unique("t")),
            )
            .await;
            assert_eq!(status, 200, "{reply}");
            if !reply["reply"]
                .as_str()
                .unwrap_or_default()
                .starts_with("FAKE-REPLY")
            {
                refused = Some((i, reply));
                break;
            }
        }
        let (i, reply) = refused.expect("the per-session limit never applied");
        assert_eq!(
            i, SESSION_CHATS_PER_MINUTE,
            "refused at message {i}: {reply}"
        );
        // More refusals than the breaker's threshold (3 in a row): each fails at once.
        for i in 0..3 {
            let (_, reply) = post(
                &client,
                &bridge,
                "/omni/agents/main/trigger",
                omni_body(&chatty, &format!("again {i}"), &unique("t")),
            )
            .await;
            assert!(
                !reply["reply"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("FAKE-REPLY"),
                "{reply}"
            );
        }
        // Every refusal was the proxy's per-session limit: the first and the three after it.
        let metrics = client
            .send(
                Method::GET,
                &format!("http://{}/metrics", proxy.admin),
                &[],
                None,
            )
            .await
            .unwrap();
        let metrics = String::from_utf8_lossy(&metrics.body);
        assert!(
            metrics.contains("gateway_proxy_rate_limited_total{limit=\"chat_send_session\"} 4\n"),
            "{metrics}"
        );
        // The breaker stays closed, so another conversation is answered at once.
        let (name, status) = bridge.pool().statuses().into_iter().next().unwrap();
        assert_eq!(status.breaker, BreakerState::Closed, "{name}: {status:?}");
        let (status, reply) = post(
            &client,
            &bridge,
            "/omni/agents/main/trigger",
            omni_body(&unique("quiet"), "still there?", &unique("t")),
        )
        .await;
        assert_eq!(
            (status, reply["reply"].as_str()),
            (
                200,
                Some("FAKE-REPLY: you said <<[Eva]: still there?>>. chunk-a chunk-b chunk-c")
            )
        );
    })
    .await
    .unwrap();
    let _ = bridge.stop().await;
    proxy.stop().await;
    target.stop().await;
}
