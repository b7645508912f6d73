//! omni-bridge on the REAL Omni: what a person on Telegram actually sees.
//!
//! Runs only with `OMNI_REAL=1` and the kit running (`bash ../shared/real-omni/real-omni.sh
//! start`, then `eval "$(... env)"`); the gateway is the in-process mock, or the real OpenClaw
//! gateway with `OPENCLAW_REAL=1`. Every assertion is about what reached the chat (the fake
//! Telegram's `/_sent`), plus the bridge's metrics where the person's view cannot tell (a
//! duplicate that was *not* sent). Tests run one at a time (one Telegram instance).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod real_omni_support;

use std::sync::Arc;
use std::time::Duration;

use omni_bridge::bridge::StartOptions;
use omni_bridge::cli::Cli;
use omni_bridge::http_client::Method;
use omni_bridge::omni::api::{items, str_field};
use omni_bridge::omni::reset_consumer::{CrashPoint, Pause};
use omni_bridge::register::register;
use omni_bridge::service::texts::Texts;
use real_omni_support::*;
use tokio::sync::Notify;

#[tokio::test]
async fn a_message_gets_the_agents_reply_with_the_sender_prefix() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("reply").await;
        let mut bridge = s.bridge(&config, listener).await;
        let chat = chat_id();
        s.say(chat, chat, "Alice", "hi bridge").await;
        let texts = s.wait_chat(chat, 1).await;
        assert_eq!(texts, [fake_reply("[Alice]: hi bridge")]);
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn two_people_and_a_group_chat_each_get_their_own_answer() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("people").await;
        let mut bridge = s.bridge(&config, listener).await;
        let (alice, bob) = (chat_id(), chat_id());
        s.say(alice, alice, "Alice", "one").await;
        s.say(bob, bob, "Bob", "two").await;
        assert_eq!(s.wait_chat(alice, 1).await, [fake_reply("[Alice]: one")]);
        assert_eq!(s.wait_chat(bob, 1).await, [fake_reply("[Bob]: two")]);
        // A group: one chat id, two senders (the fake Telegram marks every chat private; Omni
        // treats it as one chat with two people).
        let group = -chat_id();
        s.say(group, alice, "Alice", "in the group").await;
        s.wait_chat(group, 1).await;
        s.say(group, bob, "Bob", "me too").await;
        let texts = s.wait_chat(group, 2).await;
        assert_eq!(
            texts,
            [
                fake_reply("[Alice]: in the group"),
                fake_reply("[Bob]: me too")
            ]
        );
        // One conversation per chat: both turns are in the group's session.
        let key = format!("agent:main:omni-{}-{group}", s.instance);
        let history = s.history(&key).await;
        let users: Vec<String> = history
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| m.to_string())
            .collect();
        assert_eq!(users.len(), 2, "{history:?}");
        assert!(users[0].contains("[Alice]: in the group") && users[1].contains("[Bob]: me too"));
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

/// Long messages: one far over Telegram's 4096 characters still gets its reply (the fake LLM
/// echoes only its first 120 characters, so the reply itself stays short), and one over the
/// bridge's 100 KiB limit gets the "too long" text instead of silence.
#[tokio::test]
async fn long_messages_get_the_reply_or_the_too_long_text() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("long").await;
        let mut bridge = s.bridge(&config, listener).await;
        let chat = chat_id();
        let long: String = (0..1500).map(|i| format!("w{i} ")).collect();
        let long = long.trim_end().to_string();
        assert!(long.len() > 4096);
        s.say(chat, chat, "Alice", &long).await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [fake_reply(&format!("[Alice]: {long}"))]
        );
        let chat = chat_id();
        s.say(chat, chat, "Alice", &"x".repeat(101 * 1024)).await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [Texts::english().message_too_long]
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn registration_with_omnis_own_cli_works_too() {
    let Some(s) = Suite::start().await else {
        return;
    };
    let name = format!("cli-{}", s.run_id);
    bounded(async {
        let (config, listener) = s.config("cli").await;
        let running =
            omni_bridge::bridge::RunningBridge::start_standalone(&config, listener).unwrap();
        let agent = config.agents.keys().next().unwrap();
        let omni = std::path::Path::new(&std::env::var("REAL_OMNI_STATE").unwrap_or_else(|_| {
            format!(
                "{}/.cache/real-omni",
                std::env::var("HOME").unwrap_or_default()
            )
        }))
        .join("bin/omni");
        let run = |args: Vec<String>| {
            let out = std::process::Command::new(&omni)
                .args(&args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "omni {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // No --timeout (this CLI parses it as NaN) and no schemaConfig (create has no flag for
        // it): Omni's defaults, retries 1 and 60 s.
        run(vec![
            "providers".into(),
            "create".into(),
            "--name".into(),
            name.clone(),
            "--schema".into(),
            "webhook".into(),
            "--base-url".into(),
            config.trigger_url(agent),
            "--api-key".into(),
            INBOUND.into(),
        ]);
        let list = s
            .omni
            .call_ok(Method::GET, "/providers", None, "providers")
            .await
            .unwrap();
        let pid = items(&list)
            .iter()
            .find(|p| str_field(p, "name") == Some(name.as_str()))
            .and_then(|p| str_field(p, "id").map(str::to_string))
            .unwrap();
        run(vec![
            "instances".into(),
            "update".into(),
            s.instance.clone(),
            "--agent-provider".into(),
            pid,
            "--agent".into(),
            "main".into(),
        ]);
        let chat = chat_id();
        s.say(chat, chat, "Carol", "via omni's cli").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [fake_reply("[Carol]: via omni's cli")]
        );
        running.stop().await.unwrap();
    })
    .await;
    s.finish(&[name.as_str()]).await;
}

/// Omni's own retry: a load balancer in front of the bridge fails the first delivery (502) after
/// the bridge got it; Omni (provider with `retries: 1`, Omni's default) POSTs again 1 s later with
/// the same traceId, the bridge joins the run in flight, and the person reads one reply.
#[tokio::test]
async fn omnis_retry_joins_the_run_and_the_person_reads_one_reply() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("retry").await;
        let running =
            omni_bridge::bridge::RunningBridge::start_standalone(&config, listener).unwrap();
        let bridge = Bridge {
            addr: running.addr(),
            running: Some(running),
        };
        let front = FlakyFront::start(bridge.addr).await;
        let mut via_front = config.clone();
        via_front.public_url = Some(format!("http://{}", front.addr));
        let report = register(&s.http, &s.register_options(&via_front))
            .await
            .unwrap();
        s.omni
            .call_ok(
                Method::PATCH,
                &format!("/providers/{}", report.provider_id),
                Some(&serde_json::json!({"schemaConfig": {"mode": "round-trip", "retries": 1}})),
                "PATCH provider",
            )
            .await
            .unwrap();
        let chat = chat_id();
        s.say(chat, chat, "Ned", "SLOW once please").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [fake_reply("[Ned]: SLOW once please")]
        );
        assert_eq!(front.posts.load(std::sync::atomic::Ordering::SeqCst), 2);
        assert_eq!(
            bridge
                .metric(r#"omni_bridge_retries_total{served="joined"}"#)
                .await,
            1
        );
        if let Some(mock) = &s.gateway.mock {
            let sends = mock
                .requests()
                .iter()
                .filter(|r| r.method == "chat.send")
                .count();
            assert_eq!(sends, 1, "one agent run for two deliveries");
        }
        let mut bridge = bridge;
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn an_unreachable_gateway_gets_the_unavailable_text_never_taking_longer() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (mut config, listener) = s.config("down").await;
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", closed.local_addr().unwrap());
        drop(closed);
        for g in config.gateways.values_mut() {
            g.url.clone_from(&url);
            g.send_ack_timeout = Duration::from_secs(1);
        }
        let mut bridge = s.bridge(&config, listener).await;
        let unavailable = Texts::english().unavailable;
        // The first messages (breaker still closed) and the later ones (breaker open) alike.
        for i in 0..4 {
            let chat = chat_id();
            s.say(chat, chat, "Dan", &format!("anyone there {i}")).await;
            assert_eq!(
                s.wait_chat(chat, 1).await,
                std::slice::from_ref(&unavailable),
                "message {i}"
            );
        }
        assert!(
            bridge
                .metric(r#"omni_bridge_triggers_total{outcome="circuit_open"}"#)
                .await
                >= 1
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn a_failing_agent_gets_the_agent_error_text() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (mut config, listener) = s.config("fail").await;
        for g in config.gateways.values_mut() {
            // FAIL500 ends in an error: the mock at once, the real gateway after its own
            // retries (~70 s).
            g.run_timeout = Duration::from_secs(100);
        }
        let mut bridge = s.bridge(&config, listener).await;
        let texts = Texts::english();
        let chat = chat_id();
        s.say(chat, chat, "Eve", "FAIL500 please").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            std::slice::from_ref(&texts.agent_error)
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn a_run_timeout_gets_the_taking_longer_text() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (mut config, listener) = s.config("slow").await;
        for g in config.gateways.values_mut() {
            g.run_timeout = Duration::from_secs(2);
        }
        let mut bridge = s.bridge(&config, listener).await;
        let chat = chat_id();
        s.say(chat, chat, "Fay", "SLOW answer please").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [Texts::english().taking_too_long]
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn more_runs_than_the_in_flight_limit_each_get_an_answer() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (mut config, listener) = s.config("busy").await;
        for g in config.gateways.values_mut() {
            g.max_in_flight = 1;
        }
        let mut bridge = s.bridge(&config, listener).await;
        let first = chat_id();
        s.say(first, first, "Gus", "SLOW first").await;
        bridge.wait_in_flight(1).await;
        let others = [chat_id(), chat_id()];
        for c in others {
            s.say(c, c, "Hal", "me next").await;
        }
        let busy = Texts::english().busy;
        for c in others {
            assert_eq!(s.wait_chat(c, 1).await, std::slice::from_ref(&busy));
        }
        assert_eq!(
            s.wait_chat(first, 1).await,
            [fake_reply("[Gus]: SLOW first")]
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn a_graceful_shutdown_while_messages_arrive_leaves_nobody_in_silence() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("shutdown").await;
        let mut bridge = s.bridge(&config, listener).await;
        let first = chat_id();
        s.say(first, first, "Ida", "SLOW before the restart").await;
        bridge.wait_in_flight(1).await;
        let running = bridge.running.take().unwrap();
        let stopping = tokio::spawn(running.stop());
        // Readiness flips first; the listener stays open while the run drains.
        tokio::time::timeout(CHAT_DEADLINE, async {
            while bridge.get("/ready").await.1.find("shutting down").is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        let late = [chat_id(), chat_id()];
        for c in late {
            s.say(c, c, "Jo", "during the restart").await;
        }
        let restarting = Texts::english().restarting;
        for c in late {
            assert_eq!(s.wait_chat(c, 1).await, std::slice::from_ref(&restarting));
        }
        assert_eq!(
            s.wait_chat(first, 1).await,
            [fake_reply("[Ida]: SLOW before the restart")]
        );
        stopping.await.unwrap().unwrap();
    })
    .await;
    s.finish(&[]).await;
}

/// 🗑 on the event stream: the next turn starts a fresh conversation; the chat is told.
#[tokio::test]
async fn trash_resets_the_session_and_is_confirmed_in_the_chat() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (mut config, listener) = s.config("trash").await;
        config.omni.url = Some(s.omni_url.clone());
        config.omni.api_key = shared_protocol::Secret::new(s.api_key.clone());
        config.omni.nats_url = Some(s.nats_url.clone());
        config.omni.nats_consumer = format!("omni-bridge-t{}", s.run_id);
        // Registered with --omni-nats-url: the consumer exists before the first 🗑.
        let mut bridge = s.bridge(&config, listener).await;
        let chat = chat_id();
        let key = format!("agent:main:omni-{}-{chat}", s.instance);
        s.say(chat, chat, "Kim", "remember the word apricot").await;
        s.wait_chat(chat, 1).await;
        assert!(!s.history(&key).await.is_empty());
        s.say(chat, chat, "Kim", "🗑️").await;
        let texts = s.wait_chat(chat, 2).await;
        assert_eq!(texts[1], Texts::english().session_cleared);
        s.say(chat, chat, "Kim", "what was the word").await;
        let texts = s.wait_chat(chat, 3).await;
        assert_eq!(texts[2], fake_reply("[Kim]: what was the word"));
        // The next turn carries no earlier history: the session holds only the new exchange.
        let history = s.history(&key).await;
        let all = serde_json::to_string(&history).unwrap();
        assert!(!all.contains("apricot"), "{all}");
        assert!(all.contains("what was the word"), "{all}");
        assert_eq!(
            bridge
                .metric(r#"omni_bridge_trash_events_total{result="reset"}"#)
                .await,
            1
        );
        bridge.stop().await;
    })
    .await;
    s.finish(&[]).await;
}

/// Exactly once across restarts: the bridge dies after the reset (before the text) or after the
/// text (before the ack); the next bridge gets the 🗑 again and the chat still reads the
/// confirmation exactly once.
#[tokio::test]
async fn trash_is_handled_exactly_once_across_bridge_restarts() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        for (i, at) in [CrashPoint::BeforeAck, CrashPoint::AfterReset]
            .into_iter()
            .enumerate()
        {
            let (mut config, listener) = s.config(&format!("crash{i}")).await;
            config.omni.url = Some(s.omni_url.clone());
            config.omni.api_key = shared_protocol::Secret::new(s.api_key.clone());
            config.omni.nats_url = Some(s.nats_url.clone());
            config.omni.nats_consumer = format!("omni-bridge-t{}-c{i}", s.run_id);
            config.omni.nats_ack_wait = Duration::from_secs(1);
            let reached = Arc::new(Notify::new());
            let mut first = s.bridge_with(
                &config,
                listener,
                StartOptions {
                    reset_pause: Some(Pause {
                        at,
                        reached: reached.clone(),
                    }),
                },
            );
            s.register(&config).await;
            let chat = chat_id();
            s.say(chat, chat, "Lee", "hello").await;
            s.wait_chat(chat, 1).await;
            s.say(chat, chat, "Lee", "🗑").await;
            tokio::time::timeout(CHAT_DEADLINE, reached.notified())
                .await
                .expect("crash point reached");
            let before = s.chat(chat).await.len();
            assert_eq!(before, if at == CrashPoint::BeforeAck { 2 } else { 1 });
            // The "crash": the bridge goes away without acking.
            first.stop().await;
            let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
            let mut second = s.bridge_with(&config, listener, StartOptions::default());
            let (series, want) = match at {
                CrashPoint::BeforeAck => {
                    (r#"omni_bridge_trash_events_total{result="duplicate"}"#, 1)
                }
                CrashPoint::AfterReset => (r#"omni_bridge_trash_events_total{result="reset"}"#, 1),
            };
            second.wait_metric(series, want).await;
            let texts = s.wait_chat(chat, 2).await;
            assert_eq!(
                texts
                    .iter()
                    .filter(|t| **t == Texts::english().session_cleared)
                    .count(),
                1,
                "{at:?}: {texts:?}"
            );
            assert_eq!(texts.len(), 2, "{at:?}: {texts:?}");
            second.stop().await;
        }
    })
    .await;
    s.finish(&[]).await;
}

#[tokio::test]
async fn register_needs_no_gateway_token_and_a_failed_one_changes_nothing() {
    let Some(s) = Suite::start().await else {
        return;
    };
    bounded(async {
        let (config, listener) = s.config("reg").await;
        let agent = config.agents.keys().next().unwrap().clone();
        let public = format!("http://{}", config.listen);
        // The real command line, with no gateway token anywhere.
        let parse = |instance: &str| {
            <Cli as clap::Parser>::try_parse_from([
                "omni-bridge",
                "register",
                "--omni-url",
                &s.omni_url,
                "--omni-api-key",
                &s.api_key,
                "--public-url",
                &public,
                "--inbound-token",
                INBOUND,
                "--agent",
                &agent,
                "--instance",
                instance,
            ])
            .unwrap()
        };
        assert!(std::env::var("OMNI_BRIDGE_GATEWAY_TOKEN").is_err());
        let snapshot = |v: serde_json::Value| serde_json::to_string(&v).unwrap();
        let providers = s
            .omni
            .call_ok(Method::GET, "/providers", None, "providers")
            .await
            .unwrap();
        let instance = s.omni.instance(&s.instance).await.unwrap().unwrap();
        let err = parse("00000000-0000-4000-8000-000000000000")
            .command
            .run()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        let after = s
            .omni
            .call_ok(Method::GET, "/providers", None, "providers")
            .await
            .unwrap();
        assert_eq!(snapshot(after), snapshot(providers));
        let instance_after = s.omni.instance(&s.instance).await.unwrap().unwrap();
        assert_eq!(
            instance_after["agentProviderId"],
            instance["agentProviderId"]
        );
        // The same command with the right instance works, and the bridge answers.
        let running =
            omni_bridge::bridge::RunningBridge::start_standalone(&config, listener).unwrap();
        parse(&s.instance).command.run().await.unwrap();
        let chat = chat_id();
        s.say(chat, chat, "Max", "registered").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [fake_reply("[Max]: registered")]
        );
        // A re-run that changes the provider's URL: the running Omni keeps the old one for
        // this instance (it served it), and register says so with the remedy.
        let mut moved = config.clone();
        moved.public_url = Some("http://127.0.0.1:9".into());
        let report = register(&s.http, &s.register_options(&moved))
            .await
            .unwrap();
        assert!(
            report.stale.iter().any(|i| i.id == s.instance),
            "{:?}",
            report.stale
        );
        let text = report.summary(&s.register_options(&moved));
        assert!(text.contains("Remedy: restart Omni's API"), "{text}");
        // ...and it is right: the message still reaches the old URL.
        let chat = chat_id();
        s.say(chat, chat, "Max", "still here").await;
        assert_eq!(
            s.wait_chat(chat, 1).await,
            [fake_reply("[Max]: still here")]
        );
        running.stop().await.unwrap();
    })
    .await;
    s.finish(&[]).await;
}
