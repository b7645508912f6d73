//! Tokens, device tokens and signatures never reach the mock's logs, even at trace level.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use integration_tests::{ConnectOptions, Outcome, Target};
use mock_gateway::MockGateway;
use parking_lot::Mutex;

const TOKEN: &str = "sekrit-gateway-token-4711";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_in_trace_output() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
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
    let logs = String::from_utf8(capture.0.lock().clone()).unwrap();
    assert!(
        logs.contains("mock gateway listening"),
        "the capture works: {logs}"
    );
    assert!(!logs.contains(TOKEN), "gateway token leaked");
    assert!(!logs.contains(&device_token), "device token leaked");
}
