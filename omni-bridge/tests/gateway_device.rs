//! Device identity: the seed file is created on first use (0600), the connect carries a v3
//! proof, the issued device token is stored beside the seed and used on later connects when no
//! shared token is configured; a refused device token is forgotten.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use gateway_support::{TEST_TIMEOUT, TOKEN, config, pool, request};
use mock_gateway::{MockGateway, fake_reply};
use omni_bridge::error::{ConnectError, Error};
use shared_protocol::Secret;

#[tokio::test]
async fn device_token_is_stored_and_reused_and_forgotten_when_refused() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = std::env::temp_dir().join(format!("omni-bridge-device-{}", uuid::Uuid::new_v4()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let seed = dir.join("device.key");
        let token_file = dir.join("device.key.token");
        let gw = MockGateway::builder()
            .token(TOKEN)
            .delta_interval(Duration::from_millis(5))
            .start()
            .await
            .unwrap();

        // First connect: shared token + device proof; the gateway pairs the device.
        let (first, _r) = pool();
        let mut c = config(&gw.url());
        c.device_key_path = Some(seed.clone());
        first.upsert("main", c.clone());
        let reply = first.get("main").unwrap().run(request("dev", "paired", "dev-1")).await.unwrap();
        assert_eq!(reply.text, fake_reply("paired"));
        first.close().await;
        let mode = tokio::fs::metadata(&seed).await.unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let stored = tokio::fs::read_to_string(&token_file).await.unwrap();
        assert!(!stored.trim().is_empty());
        let connect = gw.wait_for_request("connect", 1, Duration::from_secs(5)).await.unwrap();
        let device_id = connect.params["device"]["id"].as_str().unwrap().to_string();
        assert_eq!(device_id.len(), 64);
        assert_eq!(connect.params["auth"]["token"], TOKEN);

        // Later connect without a shared token: the stored device token authenticates.
        let (second, _r) = pool();
        let mut no_token = c.clone();
        no_token.token = Secret::new(String::new());
        second.upsert("main", no_token.clone());
        let reply = second.get("main").unwrap().run(request("dev", "again", "dev-2")).await.unwrap();
        assert_eq!(reply.text, fake_reply("again"));
        second.close().await;
        let connect = gw.wait_for_request("connect", 2, Duration::from_secs(5)).await.unwrap();
        assert_eq!(connect.params["auth"]["deviceToken"], stored.trim());
        assert!(connect.params["auth"].get("token").is_none());
        assert_eq!(connect.params["device"]["id"], device_id.as_str(), "same identity");

        // A refused device token is forgotten, and the failure says precisely why.
        tokio::fs::write(&token_file, "not-a-valid-device-token").await.unwrap();
        let (third, _r) = pool();
        third.upsert("main", no_token);
        let err = third.get("main").unwrap().run(request("dev", "x", "dev-3")).await.unwrap_err();
        assert!(
            matches!(&err, Error::Connect(ConnectError::AuthRejected { code, .. }) if code.contains("DEVICE_TOKEN")),
            "{err:?}"
        );
        third.close().await;
        assert!(tokio::fs::metadata(&token_file).await.is_err(), "refused token removed");
        gw.stop().await;
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    })
    .await
    .unwrap();
}
