//! The relay's own frame codec on the wire: frames written byte by byte as a client could write
//! them (pipelined, fragmented, malformed, large), and what comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gateway_proxy::wire::{OP_CONTINUATION, OP_PING, OP_TEXT, encode};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

fn req(id: &str, method: &str) -> String {
    serde_json::json!({"type":"req","id":id,"method":method,"params":{"sessionKey":"main"}})
        .to_string()
}

/// One text message as two masked frames (text without FIN, then a final continuation).
fn fragmented(out: &mut Vec<u8>, text: &str) {
    let (a, b) = text.split_at(text.len() / 2);
    let start = out.len();
    encode(out, OP_TEXT, a.as_bytes(), Some(KEY));
    out[start] &= 0x7f;
    encode(out, OP_CONTINUATION, b.as_bytes(), Some(KEY));
}

/// Frames written in one go are each decided, in order: allowed ones reach the gateway
/// untouched, denied ones are answered by the proxy, a fragmented request is judged as a
/// whole (fragmenting `sessions.reset` does not slip it past the policy), and a ping crosses
/// to the gateway and its pong comes back.
#[tokio::test]
async fn pipelined_and_fragmented_frames_are_each_decided_in_order() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let mut tcp = raw_client(&p, &["operator.read", "operator.write"]).await;
        let mut bytes = Vec::new();
        encode(
            &mut bytes,
            OP_TEXT,
            req("a1", "health").as_bytes(),
            Some(KEY),
        );
        encode(
            &mut bytes,
            OP_TEXT,
            req("d1", "sessions.reset").as_bytes(),
            Some(KEY),
        );
        fragmented(&mut bytes, &req("d2", "sessions.reset"));
        fragmented(&mut bytes, &req("a2", "chat.history"));
        encode(&mut bytes, OP_PING, b"liveness", Some(KEY));
        tcp.write_all(&bytes).await.unwrap();
        let mut ws = reader(tcp).await;
        let mut answers = Vec::new();
        let mut pong = None;
        while answers.len() < 4 || pong.is_none() {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    answers.push((
                        v["id"].as_str().unwrap().to_string(),
                        v["ok"].as_bool().unwrap(),
                    ));
                }
                Message::Pong(data) => pong = Some(data),
                other => panic!("{other:?}"),
            }
        }
        answers.sort();
        assert_eq!(
            answers,
            [
                ("a1".to_string(), true),
                ("a2".to_string(), true),
                ("d1".to_string(), false),
                ("d2".to_string(), false),
            ]
        );
        assert_eq!(pong.unwrap().as_ref(), b"liveness");
        assert_eq!(*gw.seen.methods.lock(), ["health", "chat.history"]);
        let m = p.metrics();
        assert!(
            m.contains(r#"gateway_proxy_denials_total{reason="missing_scope"} 2"#),
            "{m}"
        );
        p.stop().await;
    })
    .await
    .unwrap();
}

/// A client that breaks RFC 6455 is closed with the RFC's code, and the gateway connection
/// ends with it.
#[tokio::test]
async fn malformed_frames_close_with_the_rfc_codes() {
    tokio::time::timeout(T, async {
        let gw = stub::start(None).await;
        let p = start_proxy(&gw.url(), false, "").await;
        let header_only_too_big = {
            // A masked text frame announcing 32 MiB: refused on its header.
            let mut h = vec![0x81, 0x80 | 127];
            h.extend_from_slice(&(32u64 << 20).to_be_bytes());
            h.extend_from_slice(&KEY);
            h
        };
        let mut not_utf8 = Vec::new();
        encode(&mut not_utf8, OP_TEXT, &[0xff, 0xfe, 0x80], Some(KEY));
        let mut unmasked = Vec::new();
        encode(&mut unmasked, OP_TEXT, req("u", "health").as_bytes(), None);
        for (i, (bytes, code)) in [
            (unmasked, 1002),
            (not_utf8, 1007),
            (header_only_too_big, 1009),
        ]
        .into_iter()
        .enumerate()
        {
            let mut tcp = raw_client(&p, &["operator.read", "operator.write"]).await;
            tcp.write_all(&bytes).await.unwrap();
            let mut ws = reader(tcp).await;
            assert_eq!(close_code(&mut ws).await, Some(code));
            gw.wait_closed(i + 1).await;
        }
        assert!(gw.seen.methods.lock().is_empty());
        p.stop().await;
    })
    .await
    .unwrap();
}

/// A message far larger than one read arrives whole, and the close handshake runs end to end:
/// the client's close reaches the gateway, whose answer reaches the client. Over plain sockets,
/// and over TLS on both sides (the relay then drives rustls itself, records cut across reads
/// and writes).
#[tokio::test]
async fn a_large_message_arrives_whole_and_the_close_handshake_completes() {
    tokio::time::timeout(T, async {
        for tls in [false, true] {
            let (gw, p, mut ws) = if tls {
                // The proxy's listener and the gateway share one certificate; the proxy pins
                // it upstream.
                let dir = temp_dir();
                let pin = write_cert(&dir);
                let key = gateway_proxy::tls::load_certified_key(
                    &dir.join("cert.pem"),
                    &dir.join("key.pem"),
                )
                .unwrap();
                let cert = std::sync::Arc::new(gateway_proxy::tls::ReloadableCert::new(key));
                let sc = gateway_proxy::tls::server_config(cert, None).unwrap();
                let gw = stub::start(Some(sc)).await;
                let text = config_text(&gw.wss_url(), &dir, true).replace(
                    "connect_timeout_ms = 2000\n",
                    &format!("connect_timeout_ms = 2000\npins = [\"{pin}\"]\n"),
                );
                let p = start_proxy_with(&text, dir, Some(pin)).await;
                let url = format!("wss://localhost:{}", p.tls.unwrap().port());
                let mut ws = open(&url, Some(pinned_client(p.cert_pin.unwrap()))).await;
                let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
                assert_eq!(res["ok"], true, "{res}");
                (gw, p, ws)
            } else {
                let gw = stub::start(None).await;
                let p = start_proxy(&gw.url(), false, "").await;
                let ws = connected(&p.ws_url(), &["operator.read"]).await;
                (gw, p, ws)
            };
            let pad = "p".repeat(300_000);
            let big =
                serde_json::json!({"type":"req","id":"big","method":"health","params":{"pad":pad}});
            ws.send(Message::text(big.to_string())).await.unwrap();
            let r = next_json(&mut ws).await;
            assert_eq!(
                (r["id"].as_str(), r["ok"].as_bool()),
                (Some("big"), Some(true)),
                "tls: {tls}"
            );
            ws.close(None).await.unwrap();
            assert!(
                matches!(ws.next().await, Some(Ok(Message::Close(_)))),
                "tls: {tls}"
            );
            gw.wait_closed(1).await;
            p.stop().await;
        }
    })
    .await
    .unwrap();
}
