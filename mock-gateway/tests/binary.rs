//! The `mock-gateway` binary: flags, fault script, graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{Target, send_params};
use serde_json::json;
use shared_protocol::chat::ChatState;

#[tokio::test]
async fn binary_serves_runs_scripted_faults_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("mock-gw-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("faults.json");
    std::fs::write(
        &script,
        r#"[{"fault":"error","message":"scripted failure"}]"#,
    )
    .unwrap();
    // Port 0 is not allowed to leak out, so pick a free one first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-gateway"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--token",
            "bin-token",
        ])
        .args(["--delta-interval-ms", "5", "--fault-script"])
        .arg(&script)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the "listening" line (blocking read on a helper thread, bounded by the timeout).
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("mock gateway listening")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .unwrap()
        .unwrap();

    let t = Target {
        name: "binary",
        url: format!("ws://127.0.0.1:{port}"),
        token: "bin-token".into(),
        mock: None,
    };
    let mut c = t.connect_backend().await.unwrap();
    c.request("chat.send", send_params("agent:main:bin", "hi", "r1"))
        .await
        .unwrap();
    let last = c.collect_run("r1").await.unwrap().pop().unwrap();
    assert_eq!(
        (last.state, last.error_message.as_deref()),
        (ChatState::Error, Some("scripted failure"))
    );
    c.request("chat.send", send_params("agent:main:bin", "again", "r2"))
        .await
        .unwrap();
    assert_eq!(
        c.collect_run("r2").await.unwrap().pop().unwrap().state,
        ChatState::Final
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let e = c.next_event(Duration::from_secs(10)).await.unwrap();
    assert_eq!(e.payload, json!({"reason": "gateway stopping"}));
    assert_eq!(
        c.until_closed(Duration::from_secs(10)).await.unwrap(),
        Some((1012, "service restart".into()))
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
