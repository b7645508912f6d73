//! omni-bridge's gateway client against the REAL OpenClaw gateway: exact reply, idempotent join,
//! `check`, write-scope session reset, and a gateway restart in the middle of a run.
//!
//! Runs only with `OPENCLAW_REAL=1` (shared gateway at `OPENCLAW_URL`, default
//! ws://127.0.0.1:18789, token `OPENCLAW_TOKEN`, default test-token-123); otherwise each test
//! returns early and says why. The restart test starts its OWN gateway (port 18799, fake LLM
//! 18798, state /tmp/oc-bridge-restart) and stops it at the end even on failure (drop guard);
//! the shared gateway is never touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use integration_tests::Target;
use omni_bridge::config::GatewayConfig;
use omni_bridge::gateway::{CancellationToken, GatewayPool, Registry, ReplyOutcome, RunRequest};
use shared_protocol::{AgentId, Secret, SessionKey};
use tokio::time::Instant;

const SCRIPT: &str = "/work/shared/real-gateway/start-gateway.sh";
const OWN_PORT: &str = "18799";
const OWN_LLM_PORT: &str = "18798";
const OWN_STATE: &str = "/tmp/oc-bridge-restart";

fn expected(message: &str) -> String {
    format!("FAKE-REPLY: you said <<{message}>>. chunk-a chunk-b chunk-c")
}

fn key(rest: &str) -> SessionKey {
    SessionKey::build(&AgentId::parse("main").unwrap(), rest).unwrap()
}

fn request(session: &SessionKey, message: &str) -> RunRequest {
    RunRequest {
        session_key: session.clone(),
        message: message.to_string(),
        idempotency_key: uuid::Uuid::new_v4().to_string(),
    }
}

fn pool(url: &str, token: &str) -> GatewayPool {
    let pool = GatewayPool::new(&Registry::new(), CancellationToken::new()).unwrap();
    let mut config = GatewayConfig::new(url, Secret::new(token.to_string()));
    config.send_ack_timeout = Duration::from_secs(15);
    config.run_timeout = Duration::from_secs(90);
    pool.upsert("real", config);
    pool
}

#[tokio::test]
async fn bridge_runs_joins_checks_and_resets_on_the_real_gateway() {
    let Some(Target { url, token, .. }) = Target::real_or_skip() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(180), async {
        let pool = pool(&url, &token);
        let handle = pool.get("real").unwrap();
        let session = key(&format!("bridge-real-{}", uuid::Uuid::new_v4()));

        let message = format!("bridge conformance {}", uuid::Uuid::new_v4());
        let reply = handle.run(request(&session, &message)).await.unwrap();
        assert_eq!(reply.text, expected(&message));
        assert_eq!(reply.outcome, ReplyOutcome::Completed);
        assert!(reply.stats.deltas >= 1);

        // Same idempotency key twice at once: one agent run, one reply for both.
        let joined = request(&session, "join me");
        let (a, b) = tokio::join!(handle.run(joined.clone()), handle.run(joined.clone()));
        assert_eq!(a.unwrap().text, expected("join me"));
        assert_eq!(b.unwrap().text, expected("join me"));
        // And later, after completion: the gateway answers `ok` and the reply comes from history.
        let again = handle.run(joined).await.unwrap();
        assert_eq!(again.text, expected("join me"));

        let check = handle.check().await.unwrap();
        assert_eq!(
            check.granted_scopes,
            vec!["operator.read", "operator.write"]
        );
        assert!(
            check.agents.contains(&"main".to_string()),
            "{:?}",
            check.agents
        );
        assert!(!check.server_version.is_empty());

        handle.reset_session(&session).await.unwrap();
        let after = handle.run(request(&session, "fresh start")).await.unwrap();
        assert_eq!(after.text, expected("fresh start"));
        let status = handle.status();
        assert_eq!(
            status.granted_scopes,
            vec!["operator.read", "operator.write"]
        );
        pool.close().await;
    })
    .await
    .unwrap();
}

/// Our own real gateway; stopped on drop (even when the test fails).
struct OwnGateway;

fn script(action: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(SCRIPT)
        .arg(action)
        .env("OC_PORT", OWN_PORT)
        .env("FAKE_LLM_PORT", OWN_LLM_PORT)
        .env("OC_STATE", OWN_STATE);
    cmd
}

async fn own(action: &str) {
    let status = tokio::process::Command::from(script(action))
        .status()
        .await
        .unwrap();
    assert!(
        status.success(),
        "start-gateway.sh {action} failed: {status}"
    );
}

impl Drop for OwnGateway {
    fn drop(&mut self) {
        let _ = script("stop").status();
    }
}

#[tokio::test]
async fn a_real_gateway_restart_mid_run_gives_the_reply_or_a_prompt_retryable_error() {
    let Some(Target { token, .. }) = Target::real_or_skip() else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(300), async {
        let _guard = OwnGateway;
        own("start").await;
        let pool = pool(&format!("ws://127.0.0.1:{OWN_PORT}"), &token);
        let handle = pool.get("real").unwrap();
        let session = key(&format!("bridge-restart-{}", uuid::Uuid::new_v4()));
        let warm = handle.run(request(&session, "warm up")).await.unwrap();
        assert_eq!(warm.text, expected("warm up"));

        let message = "SLOW restart in the middle";
        let run = tokio::spawn({
            let handle = handle.clone();
            let req = request(&session, message);
            async move { handle.run(req).await }
        });
        // Real-world timing: let the slow run (1 s per chunk) get going before the stop.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(handle.status().in_flight, 1, "the run is in flight");
        let stopped = Instant::now();
        own("stop").await;
        let restart = tokio::spawn(own("start"));
        let result = run.await.unwrap();
        let waited = stopped.elapsed();
        match &result {
            Ok(reply) => assert_eq!(reply.text, expected(message)),
            Err(e) => assert!(e.is_retryable(), "clean retryable error, got {e:?}"),
        }
        assert!(
            waited < Duration::from_secs(60),
            "answered {waited:?} after the stop, well before the 90 s run budget"
        );
        eprintln!("restart mid-run: {result:?} after {waited:?}");
        restart.await.unwrap();
        // Once back, the same pool serves again without a restart of ours.
        let back = handle
            .run(request(&session, "after restart"))
            .await
            .unwrap();
        assert_eq!(back.text, expected("after restart"));
        pool.close().await;
    })
    .await
    .unwrap();
}
