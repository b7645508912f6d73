//! Each `RunFault`, FIFO consumption, and fault scripts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use integration_tests::{Client, Target, send_params, unique};
use mock_gateway::{MockGateway, RunFault, fake_reply};
use serde_json::json;
use shared_protocol::chat::ChatState;

const TOKEN: &str = "fault-token";
const DEADLINE: Duration = Duration::from_secs(20);

async fn setup() -> (Target, Client) {
    let handle = MockGateway::builder()
        .token(TOKEN)
        .delta_interval(Duration::from_millis(5))
        .start()
        .await
        .unwrap();
    let target = Target::from_mock(handle, TOKEN);
    let client = target.connect_backend().await.unwrap();
    (target, client)
}

fn mock(target: &Target) -> &mock_gateway::MockGatewayHandle {
    target.mock.as_ref().unwrap()
}

fn key() -> String {
    format!("agent:main:{}", unique("fault"))
}

#[tokio::test]
async fn delay_ack_lets_events_overtake_the_ack() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        mock(&target).push_run_fault(RunFault::DelayAck(Duration::from_millis(300)));
        let run = unique("run");
        let res = c
            .request("chat.send", send_params(&key(), "late ack", &run))
            .await
            .unwrap();
        assert_eq!(res.payload["status"], "started");
        assert!(
            c.buffered_events() > 0,
            "events arrived before the delayed ack"
        );
        assert_eq!(
            c.collect_run(&run).await.unwrap().last().unwrap().state,
            ChatState::Final
        );
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drop_ack_streams_without_an_ack() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        mock(&target).push_run_fault(RunFault::DropAck);
        let run = unique("run");
        let id = c
            .send_request("chat.send", send_params(&key(), "no ack", &run))
            .await
            .unwrap();
        let events = c.collect_run(&run).await.unwrap();
        assert_eq!(events.last().unwrap().state, ChatState::Final);
        assert!(c.request("health", json!({})).await.unwrap().ok);
        assert!(!c.stray_responses.contains(&id), "the ack was dropped");
        target.stop().await;
    })
    .await
    .unwrap();
}

/// Waits until the run's text is `text`, then aborts it and returns the terminal state and the
/// number of deltas seen.
async fn abort_after(
    c: &mut Client,
    key: &str,
    run: &str,
    deltas_wanted: usize,
) -> (ChatState, usize, String) {
    let mut deltas = 0;
    while deltas < deltas_wanted {
        let e = c.next_event(DEADLINE).await.unwrap();
        if e.name == "chat" && e.payload["runId"] == run && e.payload["state"] == "delta" {
            deltas += 1;
        }
    }
    let res = c
        .request("chat.abort", json!({"sessionKey": key, "runId": run}))
        .await
        .unwrap();
    assert_eq!(res.payload["aborted"], true, "the run was still active");
    let rest = c.collect_run(run).await.unwrap();
    deltas += rest.iter().filter(|e| e.state == ChatState::Delta).count();
    let last = rest.last().unwrap();
    let text = last.message.as_ref().map(|m| m.text()).unwrap_or_default();
    (last.state.clone(), deltas, text)
}

#[tokio::test]
async fn never_finish_streams_everything_but_no_terminal() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        mock(&target).push_run_fault(RunFault::NeverFinish);
        let (k, run) = (key(), unique("run"));
        c.request("chat.send", send_params(&k, "forever", &run))
            .await
            .unwrap();
        let (state, deltas, text) = abort_after(&mut c, &k, &run, 7).await;
        assert_eq!((state, deltas), (ChatState::Aborted, 7));
        assert_eq!(text, fake_reply("forever"));
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stall_after_deltas_goes_silent() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        mock(&target).push_run_fault(RunFault::StallAfterDeltas(2));
        let (k, run) = (key(), unique("run"));
        c.request("chat.send", send_params(&k, "stall", &run))
            .await
            .unwrap();
        let (state, deltas, text) = abort_after(&mut c, &k, &run, 2).await;
        assert_eq!((state, deltas), (ChatState::Aborted, 2));
        assert_eq!(text, "FAKE-REPLY: you said");
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drop_connection_after_deltas_kills_the_sender_but_not_the_run() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        let mut watcher = target.connect_backend().await.unwrap();
        mock(&target).push_run_fault(RunFault::DropConnectionAfterDeltas(2));
        let run = unique("run");
        c.request("chat.send", send_params(&key(), "drop me", &run))
            .await
            .unwrap();
        assert_eq!(
            c.until_closed(DEADLINE).await.unwrap(),
            None,
            "no close frame"
        );
        let seen = watcher.collect_run(&run).await.unwrap();
        assert_eq!(
            seen.last().unwrap().message.as_ref().unwrap().text(),
            fake_reply("drop me")
        );
        assert!(mock(&target).wait_for_open_connections(1, DEADLINE).await);
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn error_abort_and_double_terminal() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        let m = mock(&target);
        m.push_run_fault(RunFault::Error {
            message: "model exploded".into(),
        });
        m.push_run_fault(RunFault::Abort);
        m.push_run_fault(RunFault::DoubleTerminal);

        let run = unique("run");
        c.request("chat.send", send_params(&key(), "one", &run))
            .await
            .unwrap();
        let last = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(last.state, ChatState::Error);
        assert_eq!(last.error_message.as_deref(), Some("model exploded"));

        let run = unique("run");
        c.request("chat.send", send_params(&key(), "two", &run))
            .await
            .unwrap();
        let events = c.collect_run(&run).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.state, ChatState::Aborted);
        assert_eq!(last.stop_reason.as_deref(), Some("rpc"));
        assert_eq!(
            events
                .iter()
                .filter(|e| e.state == ChatState::Delta)
                .count(),
            1
        );
        assert_eq!(last.message.as_ref().unwrap().text(), "FAKE-REPLY:");

        let run = unique("run");
        c.request("chat.send", send_params(&key(), "three", &run))
            .await
            .unwrap();
        let first = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(first.state, ChatState::Final);
        let second = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(second.state, ChatState::Error, "a second terminal follows");

        let run = unique("run");
        c.request("chat.send", send_params(&key(), "four", &run))
            .await
            .unwrap();
        let last = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(
            last.state,
            ChatState::Final,
            "the fault queue is empty again"
        );
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn steered_sends_do_not_consume_faults() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        let k = key();
        let (a, b) = (unique("a"), unique("b"));
        c.request("chat.send", send_params(&k, "SLOW first", &a))
            .await
            .unwrap();
        mock(&target).push_run_fault(RunFault::Error {
            message: "for the next run".into(),
        });
        c.request("chat.send", send_params(&k, "steered", &b))
            .await
            .unwrap();
        assert_eq!(c.collect_run(&b).await.unwrap().len(), 1);
        c.request("chat.abort", json!({"sessionKey": k}))
            .await
            .unwrap();
        let run = unique("run");
        c.request("chat.send", send_params(&key(), "next", &run))
            .await
            .unwrap();
        let last = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(last.error_message.as_deref(), Some("for the next run"));
        target.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn provider_failure_gives_two_error_terminals() {
    tokio::time::timeout(DEADLINE, async {
        let (target, mut c) = setup().await;
        let run = unique("run");
        c.request("chat.send", send_params(&key(), "FAIL500 please", &run))
            .await
            .unwrap();
        let first = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!(first.state, ChatState::Error);
        assert_eq!(first.agent_id.as_deref(), Some("main"));
        assert!(first.error_message.unwrap().contains("HTTP 500"));
        let second = c.collect_run(&run).await.unwrap().pop().unwrap();
        assert_eq!((second.state, second.agent_id), (ChatState::Error, None));
        target.stop().await;
    })
    .await
    .unwrap();
}
