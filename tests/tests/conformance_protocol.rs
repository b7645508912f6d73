//! The mock tells the truth: every scenario runs against the in-process mock and, with
//! `OPENCLAW_REAL=1`, against the real gateway, asserting the same observable results.
//!
//! `OPENCLAW_REAL=1 cargo test -p integration-tests --test conformance_protocol`
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::time::Duration;

use integration_tests::{
    Client, ConnectOptions, Outcome, SCENARIO_DEADLINE, Target, send_params, unique,
};
use mock_gateway::fake_reply;
use serde_json::{Value, json};
use shared_protocol::chat::{ChatEvent, ChatState};
use shared_protocol::{DetailCode, ErrorCode};

/// Runs a scenario against every target, each under a deadline.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            for target in Target::all().await.expect("mock starts") {
                let label = format!("{} on {}", stringify!($name), target.name);
                tokio::time::timeout(SCENARIO_DEADLINE * 2, scenarios::$name(&target))
                    .await
                    .unwrap_or_else(|_| panic!("{label}: timed out"));
                target.stop().await;
            }
        }
    )*};
}

conformance!(
    backend_keeps_read_write,
    cli_keeps_scopes,
    test_client_gets_no_scopes,
    omitted_scopes_mean_none,
    unknown_client_id_is_refused,
    extra_connect_field_is_refused,
    protocol_three_is_refused,
    first_frame_must_be_connect,
    oversized_preauth_frame_is_closed_1009,
    wrong_token_is_refused,
    no_credentials_need_a_device_identity,
    forwarded_for_gets_http_403,
    origin_clears_backend_scopes,
    webchat_without_origin_is_refused,
    device_proof_keeps_scopes_and_issues_token,
    chat_turn_streams_the_fake_reply,
    chat_events_reach_other_readers,
    idempotent_replay_and_conflict,
    abort_of_a_slow_run,
    write_scope_reset_sequence,
    sessions_reset_needs_admin,
    slash_reset_is_refused_without_admin,
    concurrent_sends_steer_into_the_first_run,
    interrupt_replaces_the_active_run,
    early_steer_is_answered_once,
    interrupt_before_any_text_ends_with_an_empty_final,
    session_errors_match,
    mixed_case_keys_are_canonicalised,
    unknown_agent_is_refused,
    malformed_key_is_refused,
    agents_list_and_health_shapes,
);

mod scenarios {
    use super::*;

    fn t(target: &Target, what: &str) -> String {
        format!("[{}] {what}", target.name)
    }

    async fn refused(
        target: &Target,
        opts: &ConnectOptions,
    ) -> (shared_protocol::ErrorShape, Option<(u16, String)>) {
        match target.connect(opts).await.expect("transport") {
            Outcome::Refused { error, close } => (error, close),
            other => panic!(
                "{}",
                t(target, &format!("expected a refusal, got {other:?}"))
            ),
        }
    }

    async fn hello(target: &Target, opts: &ConnectOptions) -> Client {
        target
            .connect(opts)
            .await
            .expect("transport")
            .into_client()
            .unwrap_or_else(|e| panic!("{}", t(target, &e.to_string())))
    }

    fn rw() -> Vec<String> {
        vec!["operator.read".into(), "operator.write".into()]
    }

    pub async fn backend_keeps_read_write(target: &Target) {
        let c = hello(target, &target.backend()).await;
        assert_eq!(c.granted_scopes(), rw(), "{}", t(target, "scopes"));
        let h = &c.hello;
        assert_eq!(h["type"], "hello-ok");
        assert_eq!(h["protocol"], 4);
        assert_eq!(h["auth"]["method"], "token");
        assert_eq!(h["auth"]["role"], "operator");
        assert!(h["auth"].get("deviceToken").is_none());
        assert_eq!(h["policy"]["maxPayload"], 26_214_400);
        assert_eq!(h["policy"]["tickIntervalMs"], 30_000);
        assert_eq!(h["policy"]["maxBufferedBytes"], 52_428_800);
        assert_eq!(
            h["snapshot"]["sessionDefaults"]["mainSessionKey"],
            "agent:main:main",
            "{}",
            t(target, "session defaults")
        );
        for field in ["defaultAgentId", "mainKey", "scope"] {
            assert_eq!(
                h["snapshot"]["sessionDefaults"][field],
                json!({"defaultAgentId":"main","mainKey":"main","scope":"per-sender"})[field]
            );
        }
        assert!(h["server"]["connId"].is_string() && h["server"]["bootId"].is_string());
        let methods = h["features"]["methods"].as_array().expect("methods");
        for m in [
            "chat.send",
            "chat.abort",
            "chat.history",
            "sessions.describe",
            "health",
            "agents.list",
        ] {
            assert!(methods.iter().any(|x| x == m), "{}", t(target, m));
        }
    }

    pub async fn cli_keeps_scopes(target: &Target) {
        let opts = ConnectOptions::new("cli", "cli", &target.token)
            .scopes(&["operator.read", "operator.write"]);
        assert_eq!(
            hello(target, &opts).await.granted_scopes(),
            rw(),
            "{}",
            t(target, "cli")
        );
    }

    pub async fn test_client_gets_no_scopes(target: &Target) {
        let opts = ConnectOptions::new("test", "test", &target.token)
            .scopes(&["operator.read", "operator.write"]);
        let mut c = hello(target, &opts).await;
        assert!(
            c.granted_scopes().is_empty(),
            "{}",
            t(target, "test/test scopes")
        );
        let res = c
            .request("agents.list", json!({}))
            .await
            .expect("agents.list");
        let err = res.error.expect("refused");
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(err.detail_code(), Some(DetailCode::MissingScope));
        assert_eq!(
            err.details.as_ref().unwrap()["missingScope"],
            "operator.read",
            "{}",
            t(target, "missing")
        );
        let opts =
            ConnectOptions::new("gateway-client", "cli", &target.token).scopes(&["operator.read"]);
        assert!(
            hello(target, &opts).await.granted_scopes().is_empty(),
            "{}",
            t(target, "gateway-client/cli")
        );
    }

    pub async fn omitted_scopes_mean_none(target: &Target) {
        let opts = ConnectOptions::new("gateway-client", "backend", &target.token);
        assert!(
            hello(target, &opts).await.granted_scopes().is_empty(),
            "{}",
            t(target, "omitted")
        );
    }

    pub async fn unknown_client_id_is_refused(target: &Target) {
        let mut opts = target.backend();
        opts.client_id = "my-rust-proxy".into();
        let (err, close) = refused(target, &opts).await;
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.message,
            "invalid connect params: at /client/id: must be equal to one of the allowed values",
            "{}",
            t(target, "message")
        );
        assert_eq!(close.map(|c| c.0), Some(1008), "{}", t(target, "close"));
    }

    pub async fn extra_connect_field_is_refused(target: &Target) {
        let mut opts = target.backend();
        opts.extra.push(("foo".into(), json!(1)));
        let (err, close) = refused(target, &opts).await;
        assert_eq!(
            err.message,
            "invalid connect params: at root: unexpected property 'foo'",
            "{}",
            t(target, "message")
        );
        assert_eq!(
            close,
            Some((1008, err.message.clone())),
            "{}",
            t(target, "close")
        );
    }

    pub async fn protocol_three_is_refused(target: &Target) {
        let mut opts = target.backend();
        opts.protocol = (3, 3);
        let (err, close) = refused(target, &opts).await;
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.detail_code(),
            Some(DetailCode::ProtocolMismatch),
            "{}",
            t(target, "detail")
        );
        assert_eq!(err.details.as_ref().unwrap()["expectedProtocol"], 4);
        assert_eq!(
            close,
            Some((1002, "protocol mismatch".into())),
            "{}",
            t(target, "close")
        );
        let mut wide = target.backend();
        wide.protocol = (4, 5);
        assert_eq!(hello(target, &wide).await.hello["protocol"], 4);
    }

    pub async fn oversized_preauth_frame_is_closed_1009(target: &Target) {
        let mut opts = target.backend();
        opts.extra
            .push(("userAgent".into(), json!("x".repeat(70 * 1024))));
        match target.connect(&opts).await {
            Err(integration_tests::ClientError::Closed(close)) => {
                assert_eq!(close, Some((1009, String::new())), "{}", t(target, "close"))
            }
            other => panic!(
                "{}",
                t(target, &format!("expected close 1009, got {other:?}"))
            ),
        }
    }

    pub async fn first_frame_must_be_connect(target: &Target) {
        let mut opts = target.backend();
        opts.first_method = Some("health".into());
        let (err, close) = refused(target, &opts).await;
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.message,
            "invalid handshake: first request must be connect",
            "{}",
            t(target, "message")
        );
        assert_eq!(close.map(|c| c.0), Some(1008), "{}", t(target, "close"));
    }

    pub async fn wrong_token_is_refused(target: &Target) {
        let mut opts = target.backend();
        opts.token = Some("definitely-wrong".into());
        let (err, close) = refused(target, &opts).await;
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.detail_code(),
            Some(DetailCode::AuthTokenMismatch),
            "{}",
            t(target, "detail")
        );
        let message = "unauthorized: gateway token mismatch (provide gateway auth token)";
        assert_eq!(err.message, message);
        assert_eq!(
            close,
            Some((1008, message.into())),
            "{}",
            t(target, "close")
        );
        let details = err.details.unwrap();
        assert_eq!(details["canRetryWithDeviceToken"], false);
        assert_eq!(
            details["recommendedNextStep"],
            "update_auth_credentials",
            "{}",
            t(target, "next step")
        );
        let mut cli =
            ConnectOptions::new("cli", "cli", "definitely-wrong").scopes(&["operator.read"]);
        cli.token = Some("definitely-wrong".into());
        let (err, _) = refused(target, &cli).await;
        assert_eq!(
            err.message,
            "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
            "{}",
            t(target, "cli hint")
        );
    }

    pub async fn no_credentials_need_a_device_identity(target: &Target) {
        let mut opts = target.backend();
        opts.token = None;
        let (err, close) = refused(target, &opts).await;
        assert_eq!(err.code, ErrorCode::NotPaired, "{}", t(target, "code"));
        assert_eq!(
            err.detail_code(),
            Some(DetailCode::DeviceIdentityRequired),
            "{}",
            t(target, "detail")
        );
        assert_eq!(err.message, "device identity required");
        assert_eq!(
            close,
            Some((1008, "device identity required".into())),
            "{}",
            t(target, "close")
        );
    }

    pub async fn forwarded_for_gets_http_403(target: &Target) {
        let opts = target.backend().header("X-Forwarded-For", "10.1.2.3");
        match target.connect(&opts).await.expect("transport") {
            Outcome::Http(status) => assert_eq!(status, 403, "{}", t(target, "status")),
            other => panic!(
                "{}",
                t(target, &format!("expected HTTP 403, got {other:?}"))
            ),
        }
    }

    fn same_origin(target: &Target) -> String {
        target.url.replacen("ws://", "http://", 1)
    }

    pub async fn origin_clears_backend_scopes(target: &Target) {
        let opts = target.backend().header("Origin", &same_origin(target));
        assert!(
            hello(target, &opts).await.granted_scopes().is_empty(),
            "{}",
            t(target, "origin")
        );
    }

    pub async fn webchat_without_origin_is_refused(target: &Target) {
        let opts =
            ConnectOptions::new("webchat", "webchat", &target.token).scopes(&["operator.read"]);
        let (err, close) = refused(target, &opts).await;
        assert_eq!(
            err.detail_code(),
            Some(DetailCode::ControlUiOriginNotAllowed),
            "{}",
            t(target, "detail")
        );
        assert_eq!(close.map(|c| c.0), Some(1008));
    }

    pub async fn device_proof_keeps_scopes_and_issues_token(target: &Target) {
        let mut opts = ConnectOptions::new("cli", "cli", &target.token)
            .scopes(&["operator.read", "operator.write"]);
        let seed: [u8; 32] = *uuid::Uuid::new_v4()
            .as_bytes()
            .repeat(2)
            .first_chunk()
            .unwrap();
        opts.device_seed = Some(seed);
        let c = hello(target, &opts).await;
        assert_eq!(c.granted_scopes(), rw(), "{}", t(target, "device scopes"));
        let token = c.hello["auth"]["deviceToken"]
            .as_str()
            .expect("deviceToken issued")
            .to_string();
        assert!(!token.is_empty());
        let mut again = ConnectOptions::new("cli", "cli", &target.token)
            .scopes(&["operator.read", "operator.write"]);
        again.token = None;
        again.device_token = Some(token);
        again.device_seed = Some(seed);
        let c2 = hello(target, &again).await;
        assert_eq!(
            c2.hello["auth"]["method"],
            "device-token",
            "{}",
            t(target, "device-token auth")
        );
        assert_eq!(
            c2.granted_scopes(),
            rw(),
            "{}",
            t(target, "device-token scopes")
        );
    }

    /// Checks one finished turn and returns the final text.
    fn check_turn(target: &Target, events: &[ChatEvent], key: &str, expected: &str) {
        let states: Vec<&ChatState> = events.iter().map(|e| &e.state).collect();
        let first_delta = states
            .iter()
            .position(|s| **s == ChatState::Delta)
            .expect("deltas");
        assert!(
            states[..first_delta]
                .iter()
                .all(|s| **s == ChatState::Status),
            "{}",
            t(target, &format!("{states:?}"))
        );
        assert!(first_delta >= 1, "{}", t(target, "status first"));
        let last = events.last().unwrap();
        assert_eq!(last.state, ChatState::Final, "{}", t(target, "final"));
        assert!(
            states[first_delta..states.len() - 1]
                .iter()
                .all(|s| **s == ChatState::Delta)
        );
        let phases: Vec<&str> = events.iter().filter_map(|e| e.phase.as_deref()).collect();
        assert_eq!(
            phases,
            ["preparing_workspace", "preparing_context", "starting_model"],
            "{}",
            t(target, "phases")
        );
        let deltas: String = events
            .iter()
            .filter_map(|e| e.delta_text.as_deref())
            .collect();
        let final_text = last.message.as_ref().expect("final message").text();
        assert_eq!(final_text, expected, "{}", t(target, "final text"));
        assert_eq!(deltas, expected, "{}", t(target, "deltas"));
        let snapshot = events[events.len() - 2].message.as_ref().unwrap().text();
        assert_eq!(snapshot, expected, "{}", t(target, "last snapshot"));
        assert_eq!(last.stop_reason.as_deref(), Some("stop"));
        assert!(
            events
                .iter()
                .all(|e| e.session_key == key && e.agent_id.as_deref() == Some("main")),
            "{}",
            t(target, "keys")
        );
        assert!(events.iter().all(|e| e.replace.is_none()));
    }

    pub async fn chat_turn_streams_the_fake_reply(target: &Target) {
        let mut c = target.connect_backend().await.expect("connect");
        let key = format!("agent:main:{}", unique("conf-turn"));
        let run = unique("run");
        let message = "Hello gateway, this is the conformance suite.";
        let res = c
            .request("chat.send", send_params(&key, message, &run))
            .await
            .unwrap();
        assert!(res.ok, "{}", t(target, &format!("{res:?}")));
        assert_eq!(res.payload["runId"], run.as_str());
        assert_eq!(res.payload["status"], "started");
        // Frame seqs: first event after hello is 1, then +1 each (nothing dropped here).
        let mut seqs = Vec::new();
        let mut events = Vec::new();
        loop {
            let e = c.next_event(SCENARIO_DEADLINE).await.unwrap();
            seqs.push(e.seq.expect("events after hello carry seq"));
            if e.name == "chat" && e.payload["runId"] == run.as_str() {
                let ev: ChatEvent = serde_json::from_value(e.payload).unwrap();
                let done = ev.state.is_terminal();
                events.push(ev);
                if done {
                    break;
                }
            }
        }
        assert_eq!(seqs[0], 1, "{}", t(target, "first seq"));
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{}",
            t(target, &format!("seqs {seqs:?}"))
        );
        check_turn(target, &events, &key, &fake_reply(message));
        let history = c
            .request("chat.history", json!({"sessionKey": key}))
            .await
            .unwrap();
        assert!(history.ok);
        assert_eq!(history.payload["sessionKey"], key.as_str());
        let msgs = history.payload["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{}", t(target, "history"));
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[1]["role"], "assistant");
    }

    pub async fn chat_events_reach_other_readers(target: &Target) {
        let mut sender = target.connect_backend().await.unwrap();
        let mut watcher = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-bcast"));
        let run = unique("run");
        assert!(
            sender
                .request("chat.send", send_params(&key, "broadcast me", &run))
                .await
                .unwrap()
                .ok
        );
        let seen = watcher.collect_run(&run).await.unwrap();
        assert_eq!(
            seen.last().unwrap().state,
            ChatState::Final,
            "{}",
            t(target, "watcher")
        );
        let own = sender.collect_run(&run).await.unwrap();
        assert_eq!(own.last().unwrap().message, seen.last().unwrap().message);
    }

    pub async fn idempotent_replay_and_conflict(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-idem"));
        let run = unique("run");
        let message = "SLOW idempotency";
        let first = c
            .request("chat.send", send_params(&key, message, &run))
            .await
            .unwrap();
        assert_eq!(first.payload["status"], "started");
        let replay = c
            .request("chat.send", send_params(&key, message, &run))
            .await
            .unwrap();
        assert!(replay.ok);
        assert_eq!(
            replay.payload,
            json!({"runId": run, "status": "in_flight"}),
            "{}",
            t(target, "in flight")
        );
        let conflict = c
            .request("chat.send", send_params(&key, "other words", &run))
            .await
            .unwrap();
        let err = conflict.error.expect("conflict");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.reason(),
            Some("chat-request-conflict"),
            "{}",
            t(target, "conflict")
        );
        let events = c.collect_run(&run).await.unwrap();
        assert_eq!(events.last().unwrap().state, ChatState::Final);
        let done = c
            .request("chat.send", send_params(&key, message, &run))
            .await
            .unwrap();
        assert_eq!(
            done.payload,
            json!({"runId": run, "status": "ok"}),
            "{}",
            t(target, "ok")
        );
    }

    async fn wait_first_delta(c: &mut Client, run: &str) -> ChatEvent {
        loop {
            let e = c.next_event(SCENARIO_DEADLINE).await.unwrap();
            if e.name == "chat" && e.payload["runId"] == run && e.payload["state"] == "delta" {
                return serde_json::from_value(e.payload).unwrap();
            }
        }
    }

    pub async fn abort_of_a_slow_run(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-abort"));
        let run = unique("run");
        assert!(
            c.request("chat.send", send_params(&key, "SLOW please", &run))
                .await
                .unwrap()
                .ok
        );
        let first = wait_first_delta(&mut c, &run).await;
        let res = c
            .request("chat.abort", json!({"sessionKey": key, "runId": run}))
            .await
            .unwrap();
        assert_eq!(
            res.payload,
            json!({"ok": true, "aborted": true, "runIds": [run]}),
            "{}",
            t(target, "abort result")
        );
        let events = c.collect_run(&run).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.state, ChatState::Aborted, "{}", t(target, "aborted"));
        assert_eq!(last.stop_reason.as_deref(), Some("rpc"));
        assert_eq!(
            last.agent_id.as_deref(),
            Some("main"),
            "{}",
            t(target, "aborted agentId")
        );
        let partial = last.message.as_ref().map(|m| m.text()).unwrap_or_default();
        let full = fake_reply("SLOW please");
        assert!(
            full.starts_with(&partial),
            "{}",
            t(target, &format!("partial {partial:?}"))
        );
        assert!(
            partial.starts_with(&first.message.unwrap().text()),
            "{}",
            t(target, "partial covers the first delta")
        );
        let again = c
            .request("chat.abort", json!({"sessionKey": key, "runId": run}))
            .await
            .unwrap();
        assert_eq!(
            again.payload["aborted"],
            false,
            "{}",
            t(target, "second abort")
        );
    }

    async fn turn(c: &mut Client, key: &str, message: &str) -> Vec<ChatEvent> {
        let run = unique("run");
        let res = c
            .request("chat.send", send_params(key, message, &run))
            .await
            .unwrap();
        assert!(res.ok, "{res:?}");
        c.collect_run(&run).await.unwrap()
    }

    async fn session_id(c: &mut Client, key: &str) -> String {
        let res = c
            .request("sessions.describe", json!({"key": key}))
            .await
            .unwrap();
        assert!(res.ok, "{res:?}");
        res.payload["session"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string()
    }

    pub async fn write_scope_reset_sequence(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-reset"));
        turn(&mut c, &key, "before the reset").await;
        let before = session_id(&mut c, &key).await;
        let patch = c
            .request(
                "sessions.patch",
                json!({"key": key, "archived": true, "expectedSessionId": before}),
            )
            .await
            .unwrap();
        assert!(patch.ok, "{}", t(target, &format!("patch {patch:?}")));
        let del = c
            .request(
                "sessions.delete",
                json!({"key": key, "archivedOnly": true, "expectedSessionId": before}),
            )
            .await
            .unwrap();
        assert!(del.ok, "{}", t(target, &format!("delete {del:?}")));
        assert_eq!(del.payload["ok"], true);
        assert_eq!(del.payload["deleted"], true);
        assert_eq!(del.payload["key"], key.as_str());
        assert!(
            del.payload["archived"].is_array(),
            "{}",
            t(target, "archived list")
        );
        let events = turn(&mut c, &key, "after the reset").await;
        assert_eq!(events.last().unwrap().state, ChatState::Final);
        let after = session_id(&mut c, &key).await;
        assert_ne!(before, after, "{}", t(target, "new session"));
        let history = c
            .request("chat.history", json!({"sessionKey": key}))
            .await
            .unwrap();
        assert_eq!(
            history.payload["messages"].as_array().unwrap().len(),
            2,
            "{}",
            t(target, "fresh history")
        );
    }

    pub async fn sessions_reset_needs_admin(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-admin"));
        let res = c
            .request("sessions.reset", json!({"key": key, "reason": "reset"}))
            .await
            .unwrap();
        let err = res.error.expect("refused");
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            json!({"code":"FORBIDDEN","message":"missing scope: operator.admin",
                   "details":{"code":"MISSING_SCOPE","missingScope":"operator.admin","requiredScopes":["operator.admin"]}}),
            "{}",
            t(target, "missing scope")
        );
    }

    pub async fn slash_reset_is_refused_without_admin(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-slash"));
        let run = unique("run");
        let res = c
            .request("chat.send", send_params(&key, "/reset", &run))
            .await
            .unwrap();
        assert_eq!(res.payload["status"], "started", "{}", t(target, "ack"));
        let events = c.collect_run(&run).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.state, ChatState::Final);
        let text = last.message.as_ref().unwrap().text();
        assert_eq!(
            (last.agent_id.as_deref(), last.seq),
            (None, Some(1)),
            "{}",
            t(target, "synthetic final")
        );
        assert!(
            text.starts_with("⚠️ You are not authorized to reset this session. Gateway resets require operator.admin and command access."),
            "{}", t(target, &text)
        );
    }

    pub async fn concurrent_sends_steer_into_the_first_run(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-steer"));
        let (a, b) = (unique("run-a"), unique("run-b"));
        let (ma, mb) = ("SLOW first message", "second message");
        assert!(
            c.request("chat.send", send_params(&key, ma, &a))
                .await
                .unwrap()
                .ok
        );
        wait_first_delta(&mut c, &a).await;
        let ack = c
            .request("chat.send", send_params(&key, mb, &b))
            .await
            .unwrap();
        assert_eq!(
            ack.payload,
            json!({"runId": b, "status": "started"}),
            "{}",
            t(target, "second ack")
        );
        let second = c.collect_run(&b).await.unwrap();
        assert_eq!(
            second.len(),
            1,
            "{}",
            t(target, &format!("second run events {second:?}"))
        );
        assert_eq!(second[0].state, ChatState::Final);
        assert!(
            second[0]
                .message
                .as_ref()
                .is_none_or(|m| m.text().is_empty()),
            "{}",
            t(target, "empty final")
        );
        assert_eq!(
            (second[0].agent_id.as_deref(), second[0].seq),
            (None, Some(1)),
            "{}",
            t(target, "synthetic final")
        );
        let first = c.collect_run(&a).await.unwrap();
        let text = first.last().unwrap().message.as_ref().unwrap().text();
        assert_eq!(
            text,
            format!("{}\n\n{}", fake_reply(ma), fake_reply(mb)),
            "{}",
            t(target, "steered text")
        );
    }

    /// A send while the first run is still preparing (no text yet) gets an empty final, and its
    /// reply comes exactly once, in one of two ways (a race on the real gateway): merged into the
    /// first run's prompt (the first run answers it), or after the first run under a new,
    /// unannounced run id. The mock always does the latter.
    pub async fn early_steer_is_answered_once(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-early-steer"));
        let (a, b) = (unique("run-a"), unique("run-b"));
        assert!(
            c.request("chat.send", send_params(&key, "SLOW early", &a))
                .await
                .unwrap()
                .ok
        );
        let ack = c
            .request("chat.send", send_params(&key, "steered early", &b))
            .await
            .unwrap();
        assert_eq!(ack.payload["status"], "started");
        let second = c.collect_run(&b).await.unwrap();
        assert_eq!(second.len(), 1);
        let synthetic = (second[0].agent_id.as_deref(), second[0].seq);
        assert_eq!(
            synthetic,
            (None, Some(1)),
            "{}",
            t(target, "synthetic final")
        );
        let first = c.collect_run(&a).await.unwrap();
        let text = first.last().unwrap().message.as_ref().unwrap().text();
        if text == fake_reply("steered early") {
            assert!(
                target.mock.is_none(),
                "the mock answers early steers as follow-ups"
            );
            return;
        }
        assert_eq!(
            text,
            fake_reply("SLOW early"),
            "{}",
            t(target, "first run text")
        );
        let followup = loop {
            let e = c.next_event(SCENARIO_DEADLINE).await.unwrap();
            let p = &e.payload;
            let other = p["runId"] != a.as_str() && p["runId"] != b.as_str();
            if e.name == "chat" && p["sessionKey"] == key.as_str() && other {
                assert_ne!(p["state"], "status", "{}", t(target, "no status events"));
                break p["runId"].as_str().unwrap().to_string();
            }
        };
        let events = c.collect_run(&followup).await.unwrap();
        let no_status = events.iter().all(|e| e.state != ChatState::Status);
        assert!(no_status, "{}", t(target, "no status events"));
        let last = events.last().unwrap();
        assert_eq!(last.state, ChatState::Final);
        let text = last.message.as_ref().unwrap().text();
        assert_eq!(
            text,
            fake_reply("steered early"),
            "{}",
            t(target, "follow-up text")
        );
    }

    pub async fn interrupt_before_any_text_ends_with_an_empty_final(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-early-int"));
        let (a, b) = (unique("run-a"), unique("run-b"));
        assert!(
            c.request("chat.send", send_params(&key, "SLOW early", &a))
                .await
                .unwrap()
                .ok
        );
        let mut p = send_params(&key, "early interrupt", &b);
        p["queueMode"] = json!("interrupt");
        let ack = c.request("chat.send", p).await.unwrap();
        assert_eq!(ack.payload["interruptedActiveRun"], true);
        let first = c.collect_run(&a).await.unwrap();
        let last = first.last().unwrap();
        assert_eq!(last.state, ChatState::Final, "{}", t(target, "empty final"));
        assert!(last.message.is_none());
        assert_eq!(
            (last.agent_id.as_deref(), last.seq),
            (None, Some(1)),
            "{}",
            t(target, "synthetic final")
        );
        let events = c.collect_run(&b).await.unwrap();
        assert_eq!(
            events.last().unwrap().message.as_ref().unwrap().text(),
            fake_reply("early interrupt")
        );
    }

    pub async fn session_errors_match(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-session-errors"));
        let unknown = c
            .request("sessions.describe", json!({"key": key}))
            .await
            .unwrap();
        assert_eq!(
            unknown.payload,
            json!({"session": null}),
            "{}",
            t(target, "unknown session")
        );
        turn(&mut c, &key, "errors").await;
        let sid = session_id(&mut c, &key).await;
        let cases = [
            ("sessions.patch", json!({"key": key, "archived": true, "expectedSessionId": "wrong"}),
             format!("Session {key} changed before patch. Retry."), Some("session-changed")),
            ("sessions.patch", json!({"key": key, "archived": true}),
             format!("expectedSessionId required for session lifecycle patch: {key}"), None),
            ("sessions.delete", json!({"key": key, "archivedOnly": true, "expectedSessionId": sid}),
             format!("Session {key} is not archived. Archive it first, then delete it."), None),
            ("chat.send", json!({"sessionKey": key, "message": "x", "idempotencyKey": ""}),
             "invalid chat.send params: at /idempotencyKey: must not have fewer than 1 characters".into(), None),
            ("chat.send", json!({"sessionKey": key, "message": "x"}),
             "invalid chat.send params: must have required property 'idempotencyKey'".into(), None),
            ("chat.send", json!({"sessionKey": key, "message": "x", "idempotencyKey": "y", "bogus": 1}),
             "invalid chat.send params: at root: unexpected property 'bogus'".into(), None),
        ];
        for (method, params, message, reason) in cases {
            let err = c
                .request(method, params)
                .await
                .unwrap()
                .error
                .expect("refused");
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert_eq!(err.message, message, "{}", t(target, method));
            assert_eq!(err.reason(), reason, "{}", t(target, method));
        }
        let archive = json!({"key": key, "archived": true, "expectedSessionId": sid});
        assert!(c.request("sessions.patch", archive).await.unwrap().ok);
        let delete = |expected: &str| json!({"key": key, "archivedOnly": true, "expectedSessionId": expected});
        let wrong = c
            .request("sessions.delete", delete("wrong"))
            .await
            .unwrap()
            .error
            .unwrap();
        assert_eq!(
            wrong.message,
            format!("Session {key} changed before deletion. Retry."),
            "{}",
            t(target, "delete mismatch")
        );
        assert_eq!(wrong.reason(), Some("session-changed"));
        assert!(c.request("sessions.delete", delete(&sid)).await.unwrap().ok);
        let gone = c
            .request("sessions.delete", delete(&sid))
            .await
            .unwrap()
            .error
            .unwrap();
        assert_eq!(
            gone.message,
            format!("Session {key} is not archived. Archive it first, then delete it."),
            "{}",
            t(target, "delete twice")
        );
        let unknown_method = c
            .request("no.such.method", json!({}))
            .await
            .unwrap()
            .error
            .unwrap();
        assert_eq!(
            unknown_method.detail_code(),
            Some(DetailCode::MissingScope),
            "{}",
            t(target, "unknown method")
        );
    }

    pub async fn interrupt_replaces_the_active_run(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let key = format!("agent:main:{}", unique("conf-interrupt"));
        let (a, b) = (unique("run-a"), unique("run-b"));
        assert!(
            c.request("chat.send", send_params(&key, "SLOW to be interrupted", &a))
                .await
                .unwrap()
                .ok
        );
        wait_first_delta(&mut c, &a).await;
        let mut p = send_params(&key, "the interruption", &b);
        p["queueMode"] = json!("interrupt");
        let ack = c.request("chat.send", p).await.unwrap();
        assert_eq!(ack.payload["status"], "started");
        assert_eq!(
            ack.payload["interruptedActiveRun"],
            true,
            "{}",
            t(target, "interrupted flag")
        );
        let first = c.collect_run(&a).await.unwrap();
        let last = first.last().unwrap();
        // Observed: with partial text the interrupted run ends `aborted`, stopReason `aborted`.
        assert_eq!(
            last.state,
            ChatState::Aborted,
            "{}",
            t(target, "interrupted run state")
        );
        assert_eq!(
            last.stop_reason.as_deref(),
            Some("aborted"),
            "{}",
            t(target, "interrupted stop reason")
        );
        let partial = last.message.as_ref().expect("partial text").text();
        assert!(
            !partial.is_empty() && fake_reply("SLOW to be interrupted").starts_with(&partial),
            "{}",
            t(target, "partial")
        );
        let events = c.collect_run(&b).await.unwrap();
        let text = events.last().unwrap().message.as_ref().unwrap().text();
        assert_eq!(
            text,
            fake_reply("the interruption"),
            "{}",
            t(target, "new run text")
        );
    }

    pub async fn mixed_case_keys_are_canonicalised(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let cases = [
            (
                format!("Conf-MixedCase-{suffix}"),
                format!("agent:main:conf-mixedcase-{suffix}"),
            ),
            (
                format!("agent:Main:Mixed-Case-{suffix}:Sub/Path x"),
                format!("agent:main:mixed-case-{suffix}:sub/path x"),
            ),
        ];
        for (sent, canonical) in cases {
            let events = turn(&mut c, &sent, "case").await;
            assert!(
                events.iter().all(|e| e.session_key == canonical),
                "{}",
                t(target, &format!("{sent} -> {:?}", events[0].session_key))
            );
        }
    }

    pub async fn unknown_agent_is_refused(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let res = c
            .request(
                "chat.send",
                send_params("agent:ghost:x", "hi", &unique("run")),
            )
            .await
            .unwrap();
        let err = res.error.expect("refused");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(
            err.message,
            "Agent \"ghost\" no longer exists in configuration",
            "{}",
            t(target, "message")
        );
    }

    pub async fn malformed_key_is_refused(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let res = c
            .request(
                "chat.send",
                send_params("agent:main:", "hi", &unique("run")),
            )
            .await
            .unwrap();
        let err = res.error.expect("refused");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(
            err.message.contains("malformed session key"),
            "{}",
            t(target, &err.message)
        );
    }

    pub async fn agents_list_and_health_shapes(target: &Target) {
        let mut c = target.connect_backend().await.unwrap();
        let agents = c.request("agents.list", json!({})).await.unwrap();
        assert!(agents.ok);
        let p = &agents.payload;
        assert_eq!(
            (
                p["defaultId"].clone(),
                p["mainKey"].clone(),
                p["scope"].clone()
            ),
            (json!("main"), json!("main"), json!("per-sender")),
            "{}",
            t(target, "agents")
        );
        assert!(
            p["agents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["id"] == "main")
        );
        let health = c.request("health", json!({})).await.unwrap();
        assert!(health.ok);
        assert_eq!(health.payload["ok"], true);
        assert!(
            health.payload["ts"].is_u64() && health.payload["durationMs"].is_u64(),
            "{}",
            t(target, "health")
        );
        let _: Value = health.payload;
        let _ = Duration::ZERO;
    }
}
