//! The Omni webhook contract against the real HTTP service with a deterministic fake backend:
//! golden bodies, auth, invalid input, empty/reaction/too-long messages, retries, resets,
//! user-facing texts, probes and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod service_support;

use std::time::Duration;

use omni_bridge::config::texts::TextOverrides;
use omni_bridge::config::{AgentConfig, BridgeConfig, InstanceConfig};
use omni_bridge::error::Error;
use omni_bridge::service::texts::Texts;
use serde_json::json;
use service_support::*;
use shared_protocol::Secret;

fn unavailable() -> Error {
    Error::Unavailable {
        message: "down".into(),
        retry_after: None,
    }
}

fn circuit_open() -> Error {
    Error::CircuitOpen {
        retry_after: Duration::from_secs(1),
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn snapshot_golden_body_gets_the_reply_with_sender_prefix() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let r = svc.trigger(&golden("snapshot_message.json")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!({ "reply": "FAKE-REPLY: you said <<[Ana Souza]: hello there>>. chunk-a chunk-b chunk-c" })
        );
        let runs = fake.runs.lock().clone();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].gateway, "default");
        assert_eq!(
            runs[0].session_key.as_str(),
            "agent:main:omni-inst-wa-1-5511999990000@s.whatsapp.net"
        );
        assert_eq!(runs[0].message, "[Ana Souza]: hello there");
        assert!(runs[0].idempotency_key.starts_with("omni-"));
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn late_golden_body_uses_the_session_id_and_a_sanitised_name() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let r = svc.trigger(&golden("late_message.json")).await;
        assert_eq!(r.status, 200);
        let runs = fake.runs.lock().clone();
        assert_eq!(
            runs[0].session_key.as_str(),
            "agent:main:omni-inst-tg-2-777--100123456"
        );
        assert_eq!(runs[0].message, "[Bruno admin X]: what is the weather?");
        assert_eq!(r.json()["reply"], fake_reply(&runs[0].message));
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reactions_empty_and_too_long_messages() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let r = svc.trigger(&golden("late_reaction.json")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            fake.runs.lock()[0].message,
            "[Reaction: 👍 on message msg-9002]"
        );

        let r = svc.trigger(&golden("snapshot_empty.json")).await;
        assert_eq!((r.status.as_u16(), r.json()), (200, json!({ "parts": [] })));
        assert_eq!(
            fake.run_count(),
            1,
            "empty message must not reach the gateway"
        );

        let long = "x".repeat(100 * 1024 + 1);
        let r = svc
            .trigger(&message("i", "c", "Ana", &long, "t-long"))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["reply"], Texts::english().message_too_long);
        assert_eq!(fake.run_count(), 1);
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn auth_and_invalid_requests_get_machine_readable_errors() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let body = message("i", "c", "Ana", "hi", "t1").to_string();
        let r = svc.trigger_raw("main", &body, None).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["kind"], "unauthorized");
        let r = svc.trigger_raw("main", &body, Some("wrong")).await;
        assert_eq!(r.status, 401);
        // A provider pointing at an agent this bridge does not serve: the person still hears
        // something, and the metric says what really happened.
        let r = svc.trigger_raw("ghost", &body, Some(INBOUND)).await;
        assert_eq!(
            (r.status.as_u16(), r.json()),
            (200, json!({ "reply": Texts::english().unavailable }))
        );
        assert_eq!(fake.run_count(), 0);
        let r = svc.trigger_raw("main", "{not json", Some(INBOUND)).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["retryable"], false);
        let r = svc
            .trigger_raw("main", r#"{"instance":{"id":"i"}}"#, Some(INBOUND))
            .await;
        assert_eq!(r.status, 400);
        let big = format!(r#"{{"pad":"{}"}}"#, "y".repeat(2 * 1024 * 1024));
        let r = svc.trigger_raw("main", &big, Some(INBOUND)).await;
        assert_eq!(r.status, 413);
        let r = svc
            .client
            .send_raw(
                http::Method::POST,
                &svc.url("/omni/agents/main/trigger"),
                &[
                    ("authorization", &format!("Bearer {INBOUND}")),
                    ("content-type", "text/plain"),
                ],
                bytes::Bytes::from(body.clone()),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 415);
        assert_eq!(fake.run_count(), 0);
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_retry_while_in_flight_joins_and_after_completion_is_replayed() {
    within(async {
        let fake = FakeBackend::new();
        let gate = fake.hold();
        let svc = start(base_config(), fake.clone()).await;
        let body = message("i", "c", "Ana", "hi", "trace-dup");
        let joined = r#"omni_bridge_retries_total{served="joined"} 1"#;
        let (a, b) = tokio::join!(svc.trigger(&body), async {
            fake.wait_started(1).await;
            let second = svc.trigger(&body);
            let release = async {
                // Release the held run only once the retry has joined it.
                while !svc.metrics().await.contains(joined) {
                    tokio::task::yield_now().await;
                }
                gate.add_permits(1);
            };
            let (r, ()) = tokio::join!(second, release);
            r
        });
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["reply"], fake_reply("[Ana]: hi"));
        assert_eq!(a.json(), b.json());
        assert_eq!(fake.run_count(), 1, "the retry must not start a second run");
        let c = svc.trigger(&body).await;
        assert_eq!(c.json(), a.json());
        assert_eq!(fake.run_count(), 1);
        assert!(
            svc.metrics()
                .await
                .contains(r#"omni_bridge_retries_total{served="cached"} 1"#)
        );
        // A different trace is a new run.
        gate.add_permits(10);
        svc.trigger(&message("i", "c", "Ana", "hi", "trace-other"))
            .await;
        assert_eq!(fake.run_count(), 2);
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn every_failure_is_a_200_with_its_text_and_nothing_started_is_not_cached() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let en = Texts::english();
        let cases = [
            (circuit_open(), en.unavailable.clone()),
            (unavailable(), en.unavailable.clone()),
            (
                Error::SendAckTimeout(Duration::from_secs(1)),
                en.taking_too_long.clone(),
            ),
            (
                Error::AgentFailed {
                    message: None,
                    kind: None,
                },
                en.agent_error.clone(),
            ),
            (Error::Backpressure, en.busy.clone()),
            (Error::Closed, en.restarting.clone()),
        ];
        for (i, (error, text)) in cases.into_iter().enumerate() {
            let kind = error.kind();
            fake.script.lock().push_back(Step::Fail(error));
            let r = svc
                .trigger(&message("i", "c", "A", "hi", &format!("t-fail-{i}")))
                .await;
            assert_eq!(
                (r.status.as_u16(), r.json()),
                (200, json!({ "reply": text })),
                "{kind:?}"
            );
        }
        fake.script
            .lock()
            .push_back(Step::Fail(Error::Backpressure));
        let body = message("i", "c", "A", "hi", "t-bp");
        let r = svc.trigger(&body).await;
        assert_eq!(
            (r.status.as_u16(), r.json()),
            (200, json!({ "reply": en.busy }))
        );
        // Nothing reached the agent, so a repeat of the trace starts the run afresh.
        let before = fake.run_count();
        let r = svc.trigger(&body).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), json!({ "reply": fake_reply("[A]: hi") }));
        assert_eq!(fake.run_count(), before + 1);
        // An empty reply sends nothing.
        fake.script.lock().push_back(Step::Reply("  ".into()));
        let r = svc
            .trigger(&message("i", "c", "A", "hi", "t-empty-reply"))
            .await;
        assert_eq!(r.json(), json!({ "parts": [] }));
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reset_by_command_and_by_endpoint() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let r = svc
            .trigger(&message("i1", "chat-9", "Ana", "/reset", "t-reset"))
            .await;
        assert_eq!(r.json()["reply"], Texts::english().session_cleared);
        assert_eq!(fake.run_count(), 0);
        let resets = fake.resets.lock().clone();
        assert_eq!(resets.len(), 1);
        assert_eq!(resets[0].1.as_str(), "agent:main:omni-i1-chat-9");

        fake.reset_results
            .lock()
            .push_back(Error::Rejected(shared_protocol::ErrorShape::new(
                shared_protocol::ErrorCode::InvalidRequest,
                "no",
            )));
        let r = svc
            .trigger(&message("i1", "chat-9", "Ana", "/reset", "t-reset-2"))
            .await;
        assert_eq!(r.json()["reply"], Texts::english().reset_failed);

        let auth = format!("Bearer {INBOUND}");
        let reset = |body: serde_json::Value, auth: String| {
            let client = svc.client.clone();
            let url = svc.url("/omni/sessions/reset");
            async move {
                client
                    .send(
                        http::Method::POST,
                        &url,
                        &[("authorization", auth.as_str())],
                        Some(&body),
                    )
                    .await
                    .unwrap()
            }
        };
        let r = reset(
            json!({"agentId": "main", "instanceId": "i1", "chatId": "chat-9"}),
            auth.clone(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["sessionKey"], "agent:main:omni-i1-chat-9");
        assert_eq!(fake.resets.lock().len(), 3);
        let r = reset(json!({"agentId": "main", "instanceId": "i1"}), auth.clone()).await;
        assert_eq!(r.status, 400);
        let r = reset(
            json!({"agentId": "nope", "instanceId": "i1", "chatId": "c"}),
            auth.clone(),
        )
        .await;
        assert_eq!(r.status, 404);
        let r = reset(
            json!({"agentId": "main", "instanceId": "i1", "chatId": "c"}),
            "Bearer x".into(),
        )
        .await;
        assert_eq!(r.status, 401);
        fake.reset_results.lock().push_back(unavailable());
        let r = reset(
            json!({"agentId": "main", "instanceId": "i1", "sessionId": "s"}),
            auth,
        )
        .await;
        assert_eq!(r.status, 503);
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn instance_override_hashed_keys_locale_and_agent_texts() {
    within(async {
        let mut config = base_config();
        let mut sales = AgentConfig::on_gateway("default");
        sales.openclaw_agent = Some("sofia".into());
        sales.sender_prefix = false;
        sales.locale = Some("pt-BR".into());
        sales.texts = TextOverrides {
            unavailable: Some("Fora do ar".into()),
            ..TextOverrides::default()
        };
        config.agents.insert("sales".into(), sales);
        config.instances.insert(
            "inst-sales".into(),
            InstanceConfig {
                agent: "sales".into(),
            },
        );
        config.session_key_secret = Some(Secret::new("0123456789abcdef-secret".into()));
        let fake = FakeBackend::new();
        let svc = start(config, fake.clone()).await;
        // The path says main, the instance map says sales.
        svc.trigger(&message("inst-sales", "5511", "Ana", "oi", "t-o1"))
            .await;
        let run = fake.runs.lock()[0].clone();
        assert!(run.session_key.as_str().starts_with("agent:sofia:omni-"));
        assert!(
            !run.session_key.as_str().contains("5511"),
            "hashed key leaks the chat id"
        );
        assert_eq!(run.message, "oi", "sender prefix is off for sales");
        fake.script
            .lock()
            .push_back(Step::Fail(Error::SendAckTimeout(Duration::from_secs(1))));
        let r = svc
            .trigger(&message("inst-sales", "5511", "Ana", "oi", "t-o2"))
            .await;
        assert_eq!(r.json()["reply"], Texts::portuguese().taking_too_long);
        fake.script.lock().push_back(Step::Fail(circuit_open()));
        let r = svc
            .trigger(&message("inst-sales", "5511", "Ana", "oi", "t-o3"))
            .await;
        assert_eq!(r.json()["reply"], "Fora do ar");
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn head_health_ready_and_metrics() {
    within(async {
        let fake = FakeBackend::new();
        let mut down = healthy("default");
        down.ever_connected = false;
        down.connected = false;
        *fake.health.lock() = vec![down];
        let svc = start(base_config(), fake.clone()).await;
        let c = &svc.client;
        let r = c
            .send(
                http::Method::HEAD,
                &svc.url("/omni/agents/main/trigger"),
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let r = c
            .send(http::Method::GET, &svc.url("/health"), &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["gateways"][0]["name"], "default");
        let auth = format!("Bearer {INBOUND}");
        let r = c
            .send(
                http::Method::GET,
                &svc.url("/health"),
                &[("authorization", &auth)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let r = c
            .send(
                http::Method::GET,
                &svc.url("/health"),
                &[("authorization", "Bearer nope")],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 401);
        let r = c
            .send(http::Method::GET, &svc.url("/ready"), &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 503);
        *fake.health.lock() = vec![healthy("default")];
        let r = c
            .send(http::Method::GET, &svc.url("/ready"), &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let mut open = healthy("default");
        open.breaker_open = true;
        *fake.health.lock() = vec![open];
        let r = c
            .send(http::Method::GET, &svc.url("/ready"), &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 503);
        svc.trigger(&message("i", "c", "A", "hi", "t-m")).await;
        let r = c
            .send(http::Method::GET, &svc.url("/metrics"), &[], None)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(
            text.contains(r#"omni_bridge_triggers_total{outcome="replied"} 1"#),
            "{text}"
        );
        let r = c
            .send(http::Method::GET, &svc.url("/nope"), &[], None)
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        let r = c
            .send(
                http::Method::GET,
                &svc.url("/omni/agents/main/trigger"),
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(r.status, 405);
        svc.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_runs_in_flight_and_answers_new_messages_with_the_restarting_text() {
    within(async {
        let fake = FakeBackend::new();
        let gate = fake.hold();
        let mut config = base_config();
        config.shutdown_grace = Duration::from_secs(10);
        let svc = start(config, fake.clone()).await;
        let client = svc.client.clone();
        let url = svc.url("/omni/agents/main/trigger");
        let body = message("i", "c", "A", "in flight", "t-shut");
        let retry = body.clone();
        let pending = tokio::spawn(async move {
            client
                .send(
                    http::Method::POST,
                    &url,
                    &[("authorization", &format!("Bearer {INBOUND}"))],
                    Some(&body),
                )
                .await
        });
        fake.wait_started(1).await;
        svc.shutdown.cancel();
        // The listener stays open while the run drains; readiness says "shutting down" at once
        // (the service flips its flag before it answers anything else).
        let fresh = omni_bridge::http_client::HttpClient::new(Duration::from_secs(5));
        loop {
            let r = fresh
                .send(http::Method::GET, &svc.url("/ready"), &[], None)
                .await
                .unwrap();
            if r.status == 503 && r.json()["waiting"].to_string().contains("shutting down") {
                break;
            }
            tokio::task::yield_now().await;
        }
        // A new message is told the bridge is restarting (200, never a refused connection)...
        let r = svc
            .trigger(&message("i", "c2", "B", "late", "t-late"))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.json()),
            (200, json!({ "reply": Texts::english().restarting }))
        );
        // ...and is not cached: nothing reached the agent.
        assert_eq!(fake.run_count(), 1);
        // Omni's retry of the message in flight joins its run.
        let client = svc.client.clone();
        let url = svc.url("/omni/agents/main/trigger");
        let joined = tokio::spawn(async move {
            client
                .send(
                    http::Method::POST,
                    &url,
                    &[("authorization", &format!("Bearer {INBOUND}"))],
                    Some(&retry),
                )
                .await
        });
        // Release the run only once the retry has joined it (else the drain could end first).
        loop {
            let m = fresh
                .send(http::Method::GET, &svc.url("/metrics"), &[], None)
                .await
                .unwrap();
            if String::from_utf8_lossy(&m.body)
                .contains(r#"omni_bridge_retries_total{served="joined"} 1"#)
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        for r in [
            pending.await.unwrap().unwrap(),
            joined.await.unwrap().unwrap(),
        ] {
            assert_eq!(r.status, 200);
            assert_eq!(r.json()["reply"], fake_reply("[A]: in flight"));
        }
        assert_eq!(fake.run_count(), 1);
        let health = svc.url("/health");
        svc.task.await.unwrap().unwrap();
        // Drained: now the listener is closed.
        assert!(
            fresh
                .send(http::Method::GET, &health, &[], None)
                .await
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn config_round_trip_for_the_docs_example() {
    let text = r#"
listen = "127.0.0.1:8090"
inbound_token = "omni-shared-secret"
public_url = "http://bridge.internal:8090"
[gateways.default]
url = "ws://127.0.0.1:18789"
token = "test-token-123"
[agents.main]
gateway = "default"
sender_prefix = true
locale = "en"
[instances.wa-sales]
agent = "main"
[texts.en]
unavailable = "Our assistant is offline for a minute."
"#;
    let c = BridgeConfig::from_toml(text).unwrap();
    c.validate().unwrap();
    assert_eq!(
        c.trigger_url("main"),
        "http://bridge.internal:8090/omni/agents/main/trigger"
    );
}

#[tokio::test]
async fn the_reset_command_line_calls_the_running_bridge() {
    within(async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let args = |token: &str| omni_bridge::cli::reset::ResetArgs {
            bridge_url: format!("http://{}", svc.addr),
            inbound_token: token.into(),
            agent: "main".into(),
            instance: "i9".into(),
            chat: Some("c9".into()),
            session: None,
        };
        omni_bridge::cli::reset::run(args(INBOUND)).await.unwrap();
        assert_eq!(fake.resets.lock()[0].1.as_str(), "agent:main:omni-i9-c9");
        let err = omni_bridge::cli::reset::run(args("nope"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rejected the token"), "{err}");
        svc.stop().await;
    })
    .await;
}
