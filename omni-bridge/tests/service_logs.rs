//! One completion log line per trigger, with the correlation fields, and never the message text
//! or a token (at INFO).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod service_support;

use service_support::*;
use shared_protocol::log_filter::LogCapture;

#[tokio::test(flavor = "current_thread")]
async fn one_line_per_trigger_without_text_or_secrets() {
    let capture = LogCapture::new();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::time::timeout(TEST_TIMEOUT, async {
        let fake = FakeBackend::new();
        let svc = start(base_config(), fake.clone()).await;
        let secret_text = "my card number is 4111-1111";
        let body = message("inst-7", "chat-7", "Ana", secret_text, "trace-log-1");
        svc.trigger(&body).await;
        svc.trigger(&body).await; // retry: served from the cache, its own line
        svc.trigger_raw("main", &body.to_string(), Some("wrong-token-xyz"))
            .await;
        svc.stop().await;
    })
    .await
    .unwrap();
    let text = capture.contents();
    assert!(!text.contains("4111-1111"), "message text leaked: {text}");
    assert!(!text.contains(INBOUND), "inbound token leaked");
    assert!(!text.contains("wrong-token-xyz"), "presented token leaked");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v["message"] == "trigger done")
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    let first = &lines[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["trace_id"], "trace-log-1");
    assert_eq!(first["instance_id"], "inst-7");
    assert_eq!(first["agent_id"], "main");
    assert_eq!(first["session_key"], "agent:main:omni-inst-7-chat-7");
    assert_eq!(first["outcome"], "replied");
    assert_eq!(first["served"], "run");
    assert!(first["run_id"].as_str().unwrap().starts_with("omni-"));
    assert!(first["duration_ms"].is_u64());
    assert_eq!(first["ttfd_ms"], 3);
    assert_eq!(lines[1]["served"], "cached");
    assert_eq!(lines[2]["outcome"], "unauthorized");
}
