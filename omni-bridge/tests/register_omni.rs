//! `register` against a stateful fake of Omni's REST API (wiremock): create path, update path,
//! idempotent second run, late vs snapshot instance binding, 401, checks before changes, the dry
//! run, and the warning about Omni's provider cache. (The same against the real Omni:
//! `tests/tests/omni_real.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use omni_bridge::http_client::HttpClient;
use omni_bridge::register::{Binding, RegisterError, RegisterOptions, register};
use parking_lot::Mutex;
use serde_json::{Value, json};
use shared_protocol::Secret;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "omni-api-key-1";

#[derive(Default)]
struct State {
    providers: Vec<Value>,
    agents: Vec<Value>,
    instances: Vec<Value>,
    chats: Vec<Value>,
    log: Vec<String>,
    next: u32,
}

/// A small Omni: late (agents API, instances bound through agent rows) or snapshot.
#[derive(Clone)]
struct FakeOmni {
    late: bool,
    state: Arc<Mutex<State>>,
}

impl FakeOmni {
    fn new(late: bool) -> Self {
        let f = Self {
            late,
            state: Arc::default(),
        };
        f.state.lock().instances.push(json!({"id": "inst-1"}));
        f
    }

    fn writes(&self) -> Vec<String> {
        self.state
            .lock()
            .log
            .iter()
            .filter(|l| !l.starts_with("GET"))
            .cloned()
            .collect()
    }
}

impl Respond for FakeOmni {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock();
        let method = req.method.as_str().to_string();
        let path = req.url.path().to_string();
        s.log.push(format!("{method} {path}"));
        if req.headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
            return ResponseTemplate::new(401).set_body_json(json!({"error": "unauthorized"}));
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let segs: Vec<&str> = path.trim_start_matches("/api/v2/").split('/').collect();
        match (method.as_str(), segs.as_slice()) {
            ("GET", ["health"]) => {
                ResponseTemplate::new(200).set_body_json(json!({"status": "healthy", "uptime": 100}))
            }
            ("GET", ["instances", id]) => match s.instances.iter().find(|i| i["id"] == *id) {
                Some(i) => ResponseTemplate::new(200).set_body_json(json!({ "data": i })),
                None => ResponseTemplate::new(404),
            },
            ("GET", ["instances"]) => {
                ResponseTemplate::new(200).set_body_json(json!({ "items": s.instances }))
            }
            ("GET", ["chats"]) => ResponseTemplate::new(200).set_body_json(json!({
                "items": s.chats.iter().filter(|c| Some(c["instanceId"].as_str().unwrap_or("")) == req.url.query_pairs().find(|(k, _)| k == "instanceId").map(|(_, v)| v.to_string()).as_deref()).cloned().collect::<Vec<_>>()
            })),
            ("GET", ["agents"]) if !self.late => {
                // What this snapshot Omni really answers (bug 9 in ../shared/real-omni/README.md).
                ResponseTemplate::new(500).set_body_json(json!({"error": "invalid input syntax for type uuid: \"agents\""}))
            }
            ("DELETE", ["providers", id]) => {
                s.providers.retain(|p| p["id"] != *id);
                ResponseTemplate::new(200).set_body_json(json!({"success": true}))
            }
            ("GET", ["providers"]) => ResponseTemplate::new(200).set_body_json(json!({
                "items": s.providers.iter().map(|p| { let mut p = p.clone(); p["apiKey"] = json!("********"); p }).collect::<Vec<_>>()
            })),
            ("POST", ["providers"]) => {
                s.next += 1;
                let mut p = body;
                p["id"] = json!(format!("prov-{}", s.next));
                s.providers.push(p.clone());
                ResponseTemplate::new(201).set_body_json(json!({ "data": p }))
            }
            ("PATCH", ["providers", id]) => {
                let Some(p) = s.providers.iter_mut().find(|p| p["id"] == *id) else {
                    return ResponseTemplate::new(404);
                };
                for (k, v) in body.as_object().unwrap() {
                    p[k] = v.clone();
                }
                ResponseTemplate::new(200).set_body_json(json!({ "data": p }))
            }
            ("POST", ["providers", _id, "health"]) => {
                ResponseTemplate::new(200).set_body_json(json!({"healthy": true, "latency": 3}))
            }
            ("GET", ["agents"]) if self.late => {
                ResponseTemplate::new(200).set_body_json(json!({ "items": s.agents }))
            }
            ("POST", ["agents"]) if self.late => {
                s.next += 1;
                let mut a = body;
                a["id"] = json!(format!("agent-{}", s.next));
                s.agents.push(a.clone());
                ResponseTemplate::new(201).set_body_json(json!({ "data": a }))
            }
            ("PATCH", ["instances", id]) => {
                if !s.instances.iter().any(|i| i["id"] == *id) {
                    return ResponseTemplate::new(404);
                }
                if self.late && body.get("agentProviderId").is_some() {
                    return ResponseTemplate::new(400)
                        .set_body_json(json!({"error": "use omni agents update"}));
                }
                if !self.late && body.get("agentProviderId").is_none() {
                    return ResponseTemplate::new(400);
                }
                let inst = s.instances.iter_mut().find(|i| i["id"] == *id).unwrap();
                for (k, v) in body.as_object().unwrap() {
                    inst[k] = v.clone();
                }
                ResponseTemplate::new(200).set_body_json(json!({ "data": inst }))
            }
            _ => ResponseTemplate::new(404),
        }
    }
}

async fn omni(late: bool) -> (MockServer, FakeOmni) {
    let server = MockServer::start().await;
    let fake = FakeOmni::new(late);
    Mock::given(any())
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

fn opts(server: &MockServer, instance: Option<&str>) -> RegisterOptions {
    RegisterOptions {
        omni_url: server.uri(),
        api_key: Secret::new(KEY.to_string()),
        agent: "main".into(),
        openclaw_agent: "main".into(),
        // A closed loopback port: the bridge is "not running yet" (a warning, not an error).
        trigger_url: "http://127.0.0.1:9/omni/agents/main/trigger".into(),
        inbound_token: Secret::new("in-secret".into()),
        bridge_deadline: Duration::from_secs(130),
        instance: instance.map(str::to_string),
        nats: None,
        dry_run: false,
    }
}

fn client() -> HttpClient {
    HttpClient::new(Duration::from_secs(10))
}

#[tokio::test]
async fn creates_then_updates_in_place_and_a_second_run_changes_nothing() {
    let (server, fake) = omni(true).await;
    let o = opts(&server, None);
    let first = register(&client(), &o).await.unwrap();
    assert!(first.provider_created);
    assert!(first.healthy);
    let provider = fake.state.lock().providers[0].clone();
    assert_eq!(provider["name"], "omni-bridge-main");
    assert_eq!(provider["schema"], "webhook");
    assert_eq!(provider["baseUrl"], o.trigger_url);
    assert_eq!(provider["apiKey"], "in-secret");
    assert_eq!(
        provider["schemaConfig"],
        json!({"mode": "round-trip", "retries": 0})
    );
    assert_eq!(provider["defaultTimeout"], 145);

    let second = register(&client(), &o).await.unwrap();
    assert!(!second.provider_created);
    assert_eq!(second.provider_id, first.provider_id);
    let state = fake.state.lock();
    assert_eq!(state.providers.len(), 1);
    assert_eq!(
        state.providers[0], provider,
        "a second run must change nothing"
    );
    drop(state);
    assert_eq!(
        fake.writes(),
        [
            "POST /api/v2/providers",
            "POST /api/v2/providers/prov-1/health",
            // Second run: Omni checks the stored (masked) key against the bridge first.
            "POST /api/v2/providers/prov-1/health",
            "PATCH /api/v2/providers/prov-1",
            "POST /api/v2/providers/prov-1/health"
        ]
    );
    assert!(second.changes.is_empty(), "{:?}", second.changes);
    assert!(second.stale.is_empty());
    let summary = second.summary(&o);
    assert!(summary.contains("already existed"), "{summary}");
    assert!(!summary.contains("ATTENTION"), "{summary}");
    assert!(
        first.warnings[0].contains("the bridge is not reachable"),
        "{:?}",
        first.warnings
    );
}

#[tokio::test]
async fn update_path_fixes_a_stale_base_url() {
    let (server, fake) = omni(true).await;
    fake.state.lock().providers.push(json!({
        "id": "prov-old", "name": "omni-bridge-main", "schema": "webhook",
        "baseUrl": "http://old:1/x", "schemaConfig": {"mode": "fire-and-forget"}
    }));
    let o = opts(&server, None);
    let r = register(&client(), &o).await.unwrap();
    assert_eq!(r.provider_id, "prov-old");
    let p = fake.state.lock().providers[0].clone();
    assert_eq!(p["baseUrl"], o.trigger_url);
    assert_eq!(p["schemaConfig"]["retries"], 0);
}

#[tokio::test]
async fn late_omni_binds_through_an_agent_row_once() {
    let (server, fake) = omni(true).await;
    let o = opts(&server, Some("inst-1"));
    let r = register(&client(), &o).await.unwrap();
    assert_eq!(r.binding, Some(Binding::AgentRow));
    let (agent_id, created) = r.agent_row.clone().unwrap();
    assert!(created);
    let again = register(&client(), &o).await.unwrap();
    assert_eq!(again.agent_row, Some((agent_id.clone(), false)));
    let s = fake.state.lock();
    assert_eq!(s.agents.len(), 1);
    assert_eq!(s.agents[0]["agentProviderId"], r.provider_id);
    assert_eq!(s.agents[0]["metadata"]["providerAgentId"], "main");
    assert_eq!(s.instances[0]["agentId"], agent_id);
}

#[tokio::test]
async fn snapshot_omni_falls_back_to_agent_provider_id() {
    let (server, fake) = omni(false).await;
    let r = register(&client(), &opts(&server, Some("inst-1")))
        .await
        .unwrap();
    assert_eq!(r.binding, Some(Binding::Snapshot));
    let s = fake.state.lock();
    assert_eq!(s.instances[0]["agentProviderId"], r.provider_id);
    assert_eq!(s.instances[0]["agentId"], "main");
}

#[tokio::test]
async fn a_failed_register_changes_nothing() {
    for late in [true, false] {
        let (server, fake) = omni(late).await;
        let err = register(&client(), &opts(&server, Some("nope")))
            .await
            .unwrap_err();
        assert!(matches!(err, RegisterError::NoInstance(_)), "{err}");
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert!(fake.writes().is_empty(), "{:?}", fake.writes());
        // A provider of another schema holds the name.
        fake.state.lock().providers.push(json!({
            "id": "prov-x", "name": "omni-bridge-main", "schema": "openclaw", "baseUrl": "ws://x"
        }));
        let err = register(&client(), &opts(&server, Some("inst-1")))
            .await
            .unwrap_err();
        assert!(matches!(err, RegisterError::NameTaken { .. }), "{err}");
        assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    }
}

#[tokio::test]
async fn a_provider_created_now_is_deleted_when_binding_fails() {
    let (server, fake) = omni(false).await;
    // The instance exists when checked, but Omni fails the binding itself.
    Mock::given(wiremock::matchers::method("PATCH"))
        .and(wiremock::matchers::path("/api/v2/instances/inst-1"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .with_priority(1)
        .mount(&server)
        .await;
    let err = register(&client(), &opts(&server, Some("inst-1")))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("rolled back: provider prov-1 deleted"),
        "{err}"
    );
    assert!(fake.state.lock().providers.is_empty());
}

#[tokio::test]
async fn dry_run_prints_the_calls_and_changes_nothing() {
    let (server, fake) = omni(false).await;
    let mut o = opts(&server, Some("inst-1"));
    o.dry_run = true;
    let r = register(&client(), &o).await.unwrap();
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    let text = r.summary(&o);
    for want in [
        "Dry run: nothing was changed",
        "POST /api/v2/providers {",
        r#""baseUrl":"http://127.0.0.1:9/omni/agents/main/trigger""#,
        r#""retries":0"#,
        "PATCH /api/v2/instances/inst-1",
        r#""agentProviderId":"<new provider id>""#,
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    assert!(!text.contains("in-secret"), "{text}");
}

#[tokio::test]
async fn an_update_that_a_running_omni_would_not_see_is_named_with_its_remedy() {
    let (server, fake) = omni(false).await;
    {
        let mut s = fake.state.lock();
        s.providers.push(json!({
            "id": "prov-old", "name": "omni-bridge-main", "schema": "webhook",
            "baseUrl": "http://127.0.0.1:9/old", "schemaConfig": {"mode": "round-trip", "retries": 0},
            "defaultTimeout": 145
        }));
        s.instances[0]["agentProviderId"] = json!("prov-old");
        // A message after Omni's start (uptime 100 s): the dispatcher has cached the provider.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        s.chats
            .push(json!({"instanceId": "inst-1", "lastMessageAt": rfc3339(now - 5)}));
        s.instances
            .push(json!({"id": "inst-2", "agentProviderId": "prov-old"}));
        s.chats
            .push(json!({"instanceId": "inst-2", "lastMessageAt": rfc3339(now - 3600)}));
    }
    let o = opts(&server, None);
    let r = register(&client(), &o).await.unwrap();
    assert_eq!(r.changes.len(), 1, "{:?}", r.changes);
    assert_eq!(r.changes[0].field, "baseUrl");
    // inst-2's last message came before Omni started: it will load the new settings.
    assert_eq!(
        r.stale.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["inst-1"]
    );
    let text = r.summary(&o);
    assert!(text.contains("ATTENTION"), "{text}");
    assert!(
        text.contains("baseUrl (\"http://127.0.0.1:9/old\""),
        "{text}"
    );
    assert!(text.contains("Remedy: restart Omni's API"), "{text}");
}

fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[test]
fn register_needs_no_gateway_token() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: omni_bridge::cli::register::RegisterArgs,
    }
    let parse = |args: &[&str]| {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .a
            .options()
    };
    let o = parse(&[
        "--omni-api-key",
        "k",
        "--inbound-token",
        "in",
        "--public-url",
        "http://127.0.0.1:8090",
    ])
    .unwrap();
    assert_eq!(
        o.trigger_url,
        "http://127.0.0.1:8090/omni/agents/main/trigger"
    );
    assert_eq!(o.default_timeout_secs(), 145);
    let err = parse(&["--omni-api-key", "k", "--inbound-token", "in"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--public-url"), "{err}");
    let err = parse(&["--omni-api-key", "k", "--public-url", "http://b:1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--inbound-token"), "{err}");
}

#[tokio::test]
async fn unknown_instance_and_bad_key_are_sentences() {
    let (server, _fake) = omni(true).await;
    let err = register(&client(), &opts(&server, Some("nope")))
        .await
        .unwrap_err();
    assert!(matches!(err, RegisterError::NoInstance(_)), "{err}");
    let mut o = opts(&server, None);
    o.api_key = Secret::new("wrong".into());
    let err = register(&client(), &o).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Omni rejected the API key (HTTP 401)"),
        "{err}"
    );
    let o = RegisterOptions {
        omni_url: "http://127.0.0.1:9".into(),
        ..opts(&server, None)
    };
    let err = register(&client(), &o).await.unwrap_err();
    assert!(err.to_string().contains("Could not talk to Omni"), "{err}");
}
