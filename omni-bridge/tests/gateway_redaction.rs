//! Secrets never reach logs: tracing output is captured at TRACE level (with the
//! `shared_protocol::log_filter` caps that keep tungstenite's frame dumps out) across a connect with a
//! device identity, a run, a dropped connection, a reconnect and a second run; the shared
//! token, the issued device token, the device signature and the seed never appear in it.
//! (Its own test binary: it installs the global subscriber.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::{TEST_TIMEOUT, TOKEN, config, pool, request};
use mock_gateway::{MockGateway, fake_reply};
use shared_protocol::log_filter::LogCapture;

#[tokio::test]
async fn no_secret_in_logs_across_connect_run_and_reconnect() {
    let capture = LogCapture::new();
    tracing_subscriber::fmt()
        .with_env_filter(shared_protocol::log_filter::capped(
            tracing_subscriber::EnvFilter::new("trace"),
        ))
        .with_ansi(false)
        .with_writer(capture.clone())
        .init();

    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = std::env::temp_dir().join(format!("omni-bridge-redact-{}", uuid::Uuid::new_v4()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let key_path = dir.join("device.key");
        let gw = MockGateway::builder()
            .token(TOKEN)
            .delta_interval(Duration::from_millis(5))
            .start()
            .await
            .unwrap();
        let (pool, _r) = pool();
        let mut c = config(&gw.url());
        c.device_key_path = Some(key_path.clone());
        pool.upsert("main", c);
        let handle = pool.get("main").unwrap();
        let reply = handle
            .run(request("sec", "first secret-free message", "red-1"))
            .await
            .unwrap();
        assert_eq!(reply.text, fake_reply("first secret-free message"));
        gw.kill_connections();
        let reply = handle.run(request("sec", "second", "red-2")).await.unwrap();
        assert_eq!(reply.text, fake_reply("second"));
        assert!(gw.connections_accepted() >= 2);

        let mut secrets = vec![TOKEN.to_string()];
        let seed = tokio::fs::read_to_string(&key_path).await.unwrap();
        secrets.push(seed.trim().to_string());
        let mut token_path = key_path.as_os_str().to_owned();
        token_path.push(".token");
        if let Ok(device_token) = tokio::fs::read_to_string(&token_path).await {
            secrets.push(device_token.trim().to_string());
        }
        let connects: Vec<_> = gw
            .requests()
            .into_iter()
            .filter(|r| r.method == "connect")
            .collect();
        assert!(connects.len() >= 2);
        for c in &connects {
            let sig = c.params["device"]["signature"]
                .as_str()
                .expect("device proof sent");
            secrets.push(sig.to_string());
        }
        pool.close().await;
        gw.stop().await;
        tokio::fs::remove_dir_all(&dir).await.unwrap();

        let logs = capture.contents();
        assert!(
            logs.contains("sending connect"),
            "the connect frame was logged (redacted)"
        );
        assert!(logs.contains("***"));
        for (i, secret) in secrets.iter().enumerate().filter(|(_, s)| s.len() >= 8) {
            let leak = logs.lines().find(|l| l.contains(secret.as_str()));
            assert!(
                leak.is_none(),
                "secret #{i} leaked into the logs in: {}",
                leak.unwrap_or_default()
                    .replace(secret.as_str(), "<SECRET>")
            );
        }
    })
    .await
    .unwrap();
}
