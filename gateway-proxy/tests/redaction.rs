//! Logs and the audit log never contain tokens, device signatures or message text, even at
//! trace level and on failure paths. Own test binary: it installs the global subscriber.

mod common;

use common::*;
use futures_util::SinkExt;
use shared_protocol::connect::{ClientId, ClientInfo, ClientMode, ConnectParams};
use shared_protocol::device::DeviceIdentity;
use shared_protocol::log_filter::LogCapture;
use shared_protocol::{Scope, Secret};
use tokio_tungstenite::tungstenite::Message;

const MESSAGE: &str = "TOP-SECRET-MESSAGE-TEXT-42";
const WRONG: &str = "gwp_WRONG-SECRET-ATTEMPT-99";

#[tokio::test]
async fn no_secret_reaches_logs_or_the_audit_file() {
    let capture = LogCapture::new();
    tracing_subscriber::fmt()
        .with_env_filter(shared_protocol::log_filter::capped(
            tracing_subscriber::EnvFilter::new("trace"),
        ))
        .with_writer(capture.clone())
        .json()
        .init();
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;

        // A device-signed connect through the proxy's own challenge.
        let mut ws = open(&p.ws_url(), None).await;
        let challenge = next_json(&mut ws).await;
        let nonce = challenge["payload"]["nonce"].as_str().unwrap().to_string();
        let device = DeviceIdentity::generate().unwrap();
        let mut params = ConnectParams::backend(
            "1",
            &[Scope::Read, Scope::Write],
            Some(Secret::new(TOKEN.into())),
        );
        params.client = ClientInfo::new(ClientId::Cli, ClientMode::Cli, "1");
        let proof = device.prove(&params, &nonce, gateway_proxy::clock::unix_ms());
        let signature = proof.signature.expose().clone();
        params.device = Some(proof);
        let frame = shared_protocol::frame::encode_request("c1", "connect", &params).unwrap();
        ws.send(Message::text(frame)).await.unwrap();
        assert_eq!(next_json(&mut ws).await["ok"], true);
        let send = serde_json::json!({"sessionKey":"main","message":MESSAGE,"idempotencyKey":"k1"});
        assert_eq!(
            call(&mut ws, "s", "chat.send", send.clone()).await["ok"],
            true
        );
        let denied = serde_json::json!({"sessionKey":"main","message":MESSAGE});
        assert_eq!(call(&mut ws, "i", "chat.inject", denied).await["ok"], false);
        drop(ws);

        // A failed attempt with a wrong token.
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, WRONG, &["operator.read"]).await;
        assert_eq!(res["ok"], false);
        let audit = p.audit();
        p.stop().await;

        let logs = capture.contents();
        assert!(
            logs.contains("audit") && logs.contains("AUTH_TOKEN_MISMATCH"),
            "logs were captured"
        );
        assert!(
            audit.contains(r#""event":"connect""#) && audit.contains(r#""event":"auth_failure""#)
        );
        for secret in [
            TOKEN,
            GATEWAY_TOKEN,
            WRONG,
            MESSAGE,
            signature.as_str(),
            "STUB-DEVICE-TOKEN",
        ] {
            assert!(!logs.contains(secret), "log leaks {secret}");
            assert!(!audit.contains(secret), "audit leaks {secret}");
        }
    })
    .await
    .unwrap();
}
