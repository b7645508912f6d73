//! Tokens, device tokens and signatures never reach the mock's logs, even at trace level.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use integration_tests::{ConnectOptions, Outcome, Target};
use mock_gateway::MockGateway;
use shared_protocol::log_filter::LogCapture;

const TOKEN: &str = "sekrit-gateway-token-4711";

#[tokio::test]
async fn no_secret_in_trace_output() {
    let capture = LogCapture::new();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let device_token = tokio::time::timeout(Duration::from_secs(20), async {
        let handle = MockGateway::builder().token(TOKEN).start().await.unwrap();
        let t = Target::from_mock(handle, TOKEN);
        let mut wrong = t.backend();
        wrong.token = Some(format!("{TOKEN}-wrong"));
        assert!(matches!(
            t.connect(&wrong).await.unwrap(),
            Outcome::Refused { .. }
        ));
        let mut device = ConnectOptions::new("cli", "cli", TOKEN).scopes(&["operator.read"]);
        device.device_seed = Some([7; 32]);
        let c = t.connect(&device).await.unwrap().into_client().unwrap();
        let device_token = c.hello["auth"]["deviceToken"].as_str().unwrap().to_string();
        let mut c = t.connect_backend().await.unwrap();
        c.request("chat.send", integration_tests::send_params("k", "hi", "r1"))
            .await
            .unwrap();
        c.collect_run("r1").await.unwrap();
        t.stop().await;
        device_token
    })
    .await
    .unwrap();
    let logs = capture.contents();
    assert!(
        logs.contains("mock gateway listening"),
        "the capture works: {logs}"
    );
    assert!(!logs.contains(TOKEN), "gateway token leaked");
    assert!(!logs.contains(&device_token), "device token leaked");
}
