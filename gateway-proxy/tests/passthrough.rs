//! Passthrough mode: the client's own handshake (device-signed) reaches the gateway byte for byte;
//! the proxy only refuses scopes beyond the policy and enforces it per request.

mod common;

use common::*;
use futures_util::SinkExt;
use gateway_proxy::credential::TokenHash;
use shared_protocol::connect::{ClientId, ClientInfo, ClientMode, ConnectParams};
use shared_protocol::device::DeviceIdentity;
use shared_protocol::{Scope, Secret};
use tokio_tungstenite::tungstenite::Message;

#[allow(clippy::unwrap_used)] // test helper
fn signed_connect(scopes: &[Scope], nonce: &str) -> String {
    let id = DeviceIdentity::generate().unwrap();
    let mut p = ConnectParams::backend("1.0", scopes, Some(Secret::new(GATEWAY_TOKEN.into())));
    p.client = ClientInfo::new(ClientId::Cli, ClientMode::Cli, "1.0");
    let proof = id.prove(&p, nonce, gateway_proxy::clock::unix_ms());
    p.device = Some(proof);
    shared_protocol::frame::encode_request("c1", "connect", &p).unwrap()
}

#[tokio::test]
async fn the_clients_handshake_passes_untouched_and_policy_still_applies() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let dir = temp_dir();
        let text = config_text(&gw.url(), &dir, false)
            .replace(
                &TokenHash::of(TOKEN).to_hex(),
                &TokenHash::of(GATEWAY_TOKEN).to_hex(),
            )
            .replace(
                "[upstream]",
                "[identity]\nmode = \"passthrough\"\n\n[upstream]",
            );
        let p = start_proxy_with(&text, dir, None).await;

        let mut ws = open(&p.ws_url(), None).await;
        let challenge = next_json(&mut ws).await;
        assert_eq!(
            challenge["payload"]["nonce"], "stub-nonce-1",
            "the gateway's own challenge"
        );
        let connect = signed_connect(&[Scope::Read, Scope::Write], "stub-nonce-1");
        ws.send(Message::text(connect.clone())).await.unwrap();
        let res = next_json(&mut ws).await;
        assert_eq!(res["ok"], true, "{res}");
        // Untouched both ways: the device token is the client's own here.
        assert_eq!(res["payload"]["auth"]["deviceToken"], "STUB-DEVICE-TOKEN");
        let sent: serde_json::Value = serde_json::from_str(&connect).unwrap();
        assert_eq!(gw.seen.connects.lock()[0], sent["params"]);
        let r = call(
            &mut ws,
            "r",
            "sessions.reset",
            serde_json::json!({"key":"main"}),
        )
        .await;
        assert_eq!(r["error"]["details"]["code"], "MISSING_SCOPE");
        assert_eq!(
            call(&mut ws, "h", "health", serde_json::json!({})).await["ok"],
            true
        );

        // Asking for more than the policy grants is refused before the gateway sees it.
        let mut ws = open(&p.ws_url(), None).await;
        let _ = next_json(&mut ws).await;
        let greedy = signed_connect(&[Scope::Read, Scope::Admin], "stub-nonce-1");
        ws.send(Message::text(greedy)).await.unwrap();
        let res = next_json(&mut ws).await;
        assert_eq!(res["error"]["code"], "FORBIDDEN");
        assert_eq!(res["error"]["details"]["missingScope"], "operator.admin");
        assert_eq!(close_code(&mut ws).await, Some(1008));
        assert_eq!(gw.seen.connects.lock().len(), 1);

        // A tampered signature is refused by the proxy too.
        let mut ws = open(&p.ws_url(), None).await;
        let _ = next_json(&mut ws).await;
        let forged = signed_connect(&[Scope::Read], "stub-nonce-1")
            .replace("operator.read", "operator.write");
        ws.send(Message::text(forged)).await.unwrap();
        let res = next_json(&mut ws).await;
        assert_eq!(
            res["error"]["details"]["code"],
            "DEVICE_AUTH_SIGNATURE_INVALID"
        );
        p.stop().await;
    })
    .await
    .unwrap();
}
