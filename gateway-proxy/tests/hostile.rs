//! The proxy against hostile clients, on the wire (issue #13): every attack below got through
//! once. Each test sends what an attacker sent and checks the answer: a clear refusal, a close
//! with the right code, never a panic, a policy bypass or a starved door.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use gateway_proxy::credential::TokenHash;
use gateway_proxy::wire::{OP_CONTINUATION, OP_PING, OP_TEXT, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

const READER_TOKEN: &str = "gwp_test-reader-token-CCCCCCCCCCCCCCCCCCCCCCCCCCCC";

/// A second credential that may only read.
fn reader_credential() -> String {
    format!(
        "\n[[credentials]]\nid = \"reader\"\ntoken_sha256 = \"{}\"\nscopes = [\"operator.read\"]\n",
        TokenHash::of(READER_TOKEN).to_hex()
    )
}

/// A proxy in front of a fresh stub, with `listen` lines added to its `[listen]` table (a
/// `handshake_timeout_ms` there replaces the default one) and `extra` appended.
async fn proxy(listen: &str, extra: &str) -> (stub::Stub, Running) {
    let gw = stub::start(None).await;
    let dir = temp_dir();
    let mut text = config_text(&gw.url(), &dir, false);
    if listen.contains("handshake_timeout_ms") {
        text = text.replace("handshake_timeout_ms = 5000\n", "");
    }
    let text = text.replace(
        "drain_grace_ms = 200\n",
        &format!("drain_grace_ms = 200\n{listen}"),
    ) + extra;
    let p = start_proxy_with(&text, dir, None).await;
    (gw, p)
}

/// A health call on `ws` works, it is all the gateway saw, and the proxy stops.
async fn still_serves(ws: &mut Ws, gw: &stub::Stub, p: Running) {
    let r = call(ws, "ok", "health", serde_json::json!({})).await;
    assert_eq!(r["ok"], true);
    assert_eq!(*gw.seen.methods.lock(), ["health"]);
    p.stop().await;
}

/// Reads until the close frame: its code and reason (`None` if the socket just ended), and
/// the text messages before it.
async fn close_of(ws: &mut Ws) -> (Option<(u16, String)>, Vec<String>, usize) {
    let (mut texts, mut pongs) = (Vec::new(), 0);
    loop {
        match tokio::time::timeout(T, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(f))) => {
                let close = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                return (close, texts, pongs);
            }
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(_)) => {}
            _ => return (None, texts, pongs),
        }
    }
}

fn req(id: &str, method: &str, params: serde_json::Value) -> String {
    serde_json::json!({"type":"req","id":id,"method":method,"params":params}).to_string()
}

/// Item 1: a text fragment, then a FIN continuation whose 64-bit length is close to 2^64.
/// The sum once wrapped and the relay panicked (no close frame, the loop stalled); now it is a
/// message over the limit: close 1009, and the proxy goes on serving.
#[tokio::test]
async fn a_length_near_two_to_the_64_is_closed_1009_and_the_loop_goes_on() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("workers = 1\n", "").await;
        for len in [u64::MAX, u64::MAX - 13, u64::MAX - 14] {
            let mut tcp = raw_client(&p, &["operator.read"]).await;
            let mut bytes = Vec::new();
            encode(&mut bytes, OP_TEXT, b"{\"type\":\"req\",", Some(KEY));
            bytes[0] &= 0x7f;
            bytes.extend_from_slice(&[0x80 | OP_CONTINUATION, 0x80 | 127]);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&KEY);
            bytes.extend_from_slice(b"\"id\":\"x\"}");
            tcp.write_all(&bytes).await.unwrap();
            let mut ws = reader(tcp).await;
            let (close, _, _) = close_of(&mut ws).await;
            assert_eq!(close.map(|c| c.0), Some(1009), "length {len}");
        }
        // The same (single) relay loop still serves other connections.
        let mut ws = connected(&p.ws_url(), &["operator.read"]).await;
        still_serves(&mut ws, &gw, p).await;
    })
    .await
    .unwrap();
}

/// Item 2: params the gateway reads (`JSON.parse`: lone surrogates, any depth) but serde did
/// not: the param-dependent rule applies, not the cheaper one. JavaScript's whitespace around
/// `/reset` (U+FEFF, a leading space) makes it the admin command it is to the gateway.
#[tokio::test]
async fn param_rules_hold_on_params_only_javascript_reads() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("", &reader_credential()).await;
        let mut reader = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut reader, READER_TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true, "{res}");
        let deep = format!("{}0{}", "[".repeat(300), "]".repeat(300));
        let frame = |id: &str, method: &str, params: &str| {
            format!(r#"{{"type":"req","id":"{id}","method":"{method}","params":{params}}}"#)
        };
        let secrets = frame(
            "t1",
            "talk.config",
            r#"{"x":"\ud800","includeSecrets":true}"#,
        );
        let secrets_deep = frame(
            "t2",
            "talk.config",
            &format!(r#"{{"x":{deep},"includeSecrets":true}}"#),
        );
        for (text, missing) in [
            (secrets, "operator.talk.secrets"),
            (secrets_deep, "operator.talk.secrets"),
        ] {
            reader.send(Message::text(text)).await.unwrap();
            let r = next_json(&mut reader).await;
            assert_eq!(r["error"]["details"]["missingScope"], missing, "{r}");
        }
        let mut writer = connected(&p.ws_url(), &["operator.read", "operator.write"]).await;
        for (id, method, params) in [
            (
                "p1",
                "sessions.patch",
                r#"{"key":"\udfff","permissionMode":"full"}"#.to_string(),
            ),
            (
                "p2",
                "sessions.patch",
                format!(r#"{{"key":"k","d":{deep},"permissionMode":"full"}}"#),
            ),
            (
                "c1",
                "sessions.create",
                r#"{"key":"\ud800","execNode":"n"}"#.to_string(),
            ),
            (
                "f1",
                "fs.listDir",
                format!(r#"{{"path":{deep},"nodeId":"n"}}"#),
            ),
            ("a1", "agent", r#"{"message":"/reset\ufeff"}"#.to_string()),
            ("a2", "agent", r#"{"message":" /reset"}"#.to_string()),
            (
                "a3",
                "agent",
                r#"{"message":"\ufeff/new please"}"#.to_string(),
            ),
        ] {
            writer
                .send(Message::text(frame(id, method, &params)))
                .await
                .unwrap();
            let r = next_json(&mut writer).await;
            assert_eq!(
                (r["id"].as_str(), r["ok"].as_bool()),
                (Some(id), Some(false)),
                "{r}"
            );
            assert_eq!(
                r["error"]["details"]["missingScope"], "operator.admin",
                "{r}"
            );
        }
        // The same requests without the trick pass (the write scope suffices).
        let r = call(
            &mut writer,
            "ok",
            "agent",
            serde_json::json!({"message": "hello /reset"}),
        )
        .await;
        assert_eq!(r["ok"], true);
        assert_eq!(*gw.seen.methods.lock(), ["agent"]);
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 3: 64 idle TCP sockets from one address (no bytes sent) while `max_connections` is 64
/// and the handshake deadline 30 s: a login from another address still completes at once, and
/// the idle sockets beyond the per-address bound are closed before a byte is read.
#[tokio::test]
async fn idle_sockets_from_one_address_do_not_keep_others_out() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("max_connections = 64\nhandshake_timeout_ms = 30000\n", "").await;
        let mut idle = Vec::new();
        for _ in 0..64 {
            idle.push(TcpStream::connect(p.plain).await.unwrap());
        }
        // Another address: 127.0.0.2 is loopback too.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = socket.connect(p.plain).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(p.ws_url(), MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true, "{res}");
        let m = p.metrics();
        assert!(
            m.contains(r#"gateway_proxy_connections_total{outcome="too_many_pending"} 48"#),
            "{m}"
        );
        // The refused ones see their socket end without a byte.
        let mut ended = 0;
        for s in &mut idle[16..] {
            let mut b = [0; 1];
            if s.read(&mut b).await.map_or(true, |n| n == 0) {
                ended += 1;
            }
        }
        assert_eq!(ended, 48);
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 3: a socket that sends nothing is closed after the upgrade deadline (3 s by default),
/// not held for the 30 s handshake deadline.
#[tokio::test]
async fn a_socket_that_sends_nothing_is_closed_early() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("handshake_timeout_ms = 30000\n", "").await;
        let mut idle = TcpStream::connect(p.plain).await.unwrap();
        let mut b = [0; 1];
        assert_eq!(idle.read(&mut b).await.unwrap_or(0), 0);
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 4: 2,000 denied requests in one burst. The connection is closed 1008 after the
/// eleventh refusal in a row (as the gateway closes after ten unauthorised calls), and the
/// audit log holds one line for them, not 2,000.
#[tokio::test]
async fn a_client_that_keeps_sending_refused_requests_is_closed() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("", "").await;
        let mut tcp = raw_client(&p, &["operator.read", "operator.write"]).await;
        let mut bytes = Vec::new();
        for i in 0..2000 {
            let r = req(
                &format!("d{i}"),
                "sessions.reset",
                serde_json::json!({"key": "main"}),
            );
            encode(&mut bytes, OP_TEXT, r.as_bytes(), Some(KEY));
        }
        // The kernel takes what it can; the proxy closes before reading it all.
        let _ = tcp.write_all(&bytes).await;
        let mut ws = reader(tcp).await;
        let (close, answers, _) = close_of(&mut ws).await;
        assert_eq!(close, Some((1008, "repeated refused requests".to_string())));
        assert_eq!(answers.len(), 11);
        assert!(gw.seen.methods.lock().is_empty());
        let denied = p
            .audit()
            .lines()
            .filter(|l| l.contains(r#""event":"denied""#))
            .count();
        assert_eq!(denied, 1, "{}", p.audit());
        let audit = p.dir.join("audit.jsonl");
        // Stopping removes the directory; keep the log.
        let kept = std::env::temp_dir().join(format!("gwp-audit-kept-{}", uuid::Uuid::new_v4()));
        p.shutdown.now();
        tokio::time::timeout(T, p.task).await.unwrap().unwrap();
        std::fs::rename(&audit, &kept).unwrap();
        let _ = std::fs::remove_dir_all(&p.dir);
        // The repeats are written as one line with their count when the interval ends (here, at
        // shutdown).
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&kept)
            .map(|t| {
                t.lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let counted: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["count"].is_u64()).collect();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0]["count"], 10);
        std::fs::remove_file(kept).unwrap();
    })
    .await
    .unwrap();
}

/// Item 5: the exchange-mode hello-ok is built from an allow-list: the gateway's
/// `auth.recoveryScope` (a hash of its token) does not reach the client.
#[tokio::test]
async fn hello_ok_carries_nothing_derived_from_the_gateway_token() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("", "").await;
        let mut ws = open(&p.ws_url(), None).await;
        let (_, res) = handshake(&mut ws, TOKEN, &["operator.read"]).await;
        assert_eq!(res["ok"], true, "{res}");
        let text = res.to_string();
        assert!(
            !text.contains("STUB-RECOVERY-SCOPE") && !text.contains("recoveryScope"),
            "{text}"
        );
        assert!(!text.contains("STUB-DEVICE-TOKEN"), "{text}");
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 6: the per-session `chat.send` limit is keyed on the session the gateway resolves:
/// U+FEFF, case and the `agent:main:` prefix do not give a fresh bucket.
#[tokio::test]
async fn chat_send_spellings_of_one_session_share_its_limit() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("", "\n[limits]\nchat_send_per_minute_per_session = 1\n").await;
        let mut ws = connected(&p.ws_url(), &["operator.read", "operator.write"]).await;
        let send = |key: &str| serde_json::json!({"sessionKey": key, "message": "m", "idempotencyKey": "i"});
        let r = call(&mut ws, "s0", "chat.send", send("main")).await;
        assert_eq!(r["ok"], true);
        for (i, key) in ["\u{feff}main", "MAIN", "agent:main:main", "\u{3000}Main\u{2028}"].iter().enumerate() {
            let r = call(&mut ws, &format!("s{}", i + 1), "chat.send", send(key)).await;
            assert_eq!(r["error"]["details"]["code"], "RATE_LIMITED", "{key:?}: {r}");
        }
        assert_eq!(*gw.seen.methods.lock(), ["chat.send"]);
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 7: 2,000 pings in a burst. Control frames count against the connection's frame budget
/// (1,000 a second by default): the connection is closed 1008 "too many frames" well before
/// 2,000 pongs.
#[tokio::test]
async fn a_ping_flood_is_closed() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("", "").await;
        let mut tcp = raw_client(&p, &["operator.read"]).await;
        let mut bytes = Vec::new();
        for _ in 0..2000 {
            encode(&mut bytes, OP_PING, b"p", Some(KEY));
        }
        let _ = tcp.write_all(&bytes).await;
        let mut ws = reader(tcp).await;
        let (close, _, pongs) = close_of(&mut ws).await;
        assert_eq!(close, Some((1008, "too many frames".to_string())));
        assert!(pongs < 2000, "{pongs} pongs");
        let m = p.metrics();
        assert!(
            m.contains(r#"gateway_proxy_client_limit_closes_total{reason="too_many_frames"} 1"#),
            "{m}"
        );
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 8: a JSON array is not a request to the gateway (its schema wants an object): it is
/// answered `INVALID_REQUEST`, as the gateway would, and never forwarded.
#[tokio::test]
async fn a_json_array_frame_is_not_a_request() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("", "").await;
        let mut ws = connected(&p.ws_url(), &["operator.read", "operator.write"]).await;
        for text in [
            r#"["req","x","health"]"#,
            r#"{"type":"req","id":"x","method":"health","extra":1}"#,
        ] {
            ws.send(Message::text(text)).await.unwrap();
            let r = next_json(&mut ws).await;
            assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
        }
        still_serves(&mut ws, &gw, p).await;
    })
    .await
    .unwrap();
}

/// Item 8: an upgrade request without `Sec-WebSocket-Key`, or with two, is answered HTTP 400
/// (it used to be dropped without an answer, or upgraded).
#[tokio::test]
async fn a_missing_or_repeated_websocket_key_gets_http_400() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("", "").await;
        let base = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        for request in [format!("{base}\r\n"), format!("{base}{key}{key}\r\n")] {
            let mut tcp = TcpStream::connect(p.plain).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            tcp.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
            assert!(answer.contains("Sec-WebSocket-Key"), "{answer:?}");
        }
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 8: a message started and never finished is closed 1008 after the message timeout,
/// and its bytes are given back.
#[tokio::test]
async fn an_unfinished_message_times_out() {
    tokio::time::timeout(T, async {
        let (_gw, p) = proxy("", "\n[limits]\nmessage_timeout_ms = 300\n").await;
        let mut tcp = raw_client(&p, &["operator.read"]).await;
        let mut bytes = Vec::new();
        encode(&mut bytes, OP_TEXT, &[b' '; 10_000], Some(KEY));
        bytes[0] &= 0x7f;
        tcp.write_all(&bytes).await.unwrap();
        let mut ws = reader(tcp).await;
        let (close, _, _) = close_of(&mut ws).await;
        assert_eq!(close, Some((1008, "message timeout".to_string())));
        p.stop().await;
    })
    .await
    .unwrap();
}

/// Item 8: unfinished messages of all connections share one budget: the connection that needs
/// more than is left is closed 1013 (try again later); the one that holds its share finishes.
#[tokio::test]
async fn unfinished_messages_share_one_budget() {
    tokio::time::timeout(T, async {
        let (gw, p) = proxy("", "\n[limits]\npartial_message_budget_bytes = 65536\n").await;
        let fragment = |text: &str| {
            let mut b = Vec::new();
            encode(&mut b, OP_TEXT, text.as_bytes(), Some(KEY));
            b[0] &= 0x7f;
            b
        };
        let request = req(
            "big",
            "health",
            serde_json::json!({"pad": "p".repeat(40_000)}),
        );
        let (head, tail) = request.split_at(request.len() - 10);
        // A holds 40 KB; its ping's pong says the proxy has read them.
        let mut a = raw_client(&p, &["operator.read"]).await;
        let mut bytes = fragment(head);
        encode(&mut bytes, OP_PING, b"a", Some(KEY));
        a.write_all(&bytes).await.unwrap();
        let mut a = reader(a).await;
        loop {
            if let Message::Pong(_) = a.next().await.unwrap().unwrap() {
                break;
            }
        }
        let mut b = raw_client(&p, &["operator.read"]).await;
        b.write_all(&fragment(head)).await.unwrap();
        let mut b = reader(b).await;
        let (close, _, _) = close_of(&mut b).await;
        assert_eq!(close.map(|c| c.0), Some(1013));
        // A finishes its message; it is forwarded whole.
        let mut rest = Vec::new();
        encode(&mut rest, OP_CONTINUATION, tail.as_bytes(), Some(KEY));
        let raw = a.get_mut();
        let MaybeTlsStream::Plain(tcp) = raw else {
            unreachable!()
        };
        tcp.write_all(&rest).await.unwrap();
        let r = next_json(&mut a).await;
        assert_eq!(
            (r["id"].as_str(), r["ok"].as_bool()),
            (Some("big"), Some(true))
        );
        assert_eq!(*gw.seen.methods.lock(), ["health"]);
        p.stop().await;
    })
    .await
    .unwrap();
}
