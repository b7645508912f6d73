//! The README's main command (`cargo run --release -p bridge-tools --bin demo`) works with no
//! config and shows every case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bridge_tools::demo::{DemoArgs, run};

async fn demo(direct: bool) -> String {
    let args = DemoArgs {
        delta_interval_ms: 0,
        direct,
    };
    tokio::time::timeout(Duration::from_secs(60), run(&args))
        .await
        .expect("demo timed out")
        .expect("demo failed")
}

#[tokio::test]
async fn the_demo_goes_through_the_pinned_proxy_by_default() {
    let table = demo(false).await;
    assert!(
        table.contains("-> gateway-proxy wss://127.0.0.1:"),
        "{table}"
    );
    assert!(table.contains("(TLS, pinned sha256/spki:"), "{table}");
    assert_replies(&table);
}

#[tokio::test]
async fn the_demo_can_talk_to_the_gateway_directly() {
    let table = demo(true).await;
    assert!(!table.contains("gateway-proxy"), "{table}");
    assert_replies(&table);
}

fn assert_replies(table: &str) {
    assert!(table.contains("FAKE-REPLY: you said <<[Ana]: Hi, I'm Ana. What can you do?>>"));
    assert!(table.contains("FAKE-REPLY: you said <<[Bruno]: Hello from Bruno!>>"));
    assert!(table.contains("Conversation cleared"));
    assert!(table.contains("<<[Carla]: first question>>"));
    assert!(table.contains("<<[Dan]: second question>>"));
    assert!(
        table.contains("saw 4 chat.send for 6 deliveries"),
        "{table}"
    );
}
