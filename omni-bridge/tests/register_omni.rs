//! `register` against a stateful fake of Omni's REST API (wiremock): create path, update path,
//! idempotent second run, late vs snapshot instance binding, 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use omni_bridge::register::http::HttpClient;
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
        trigger_url: "http://10.0.0.5:8090/omni/agents/main/trigger".into(),
        inbound_token: Secret::new("in-secret".into()),
        bridge_deadline: Duration::from_secs(130),
        instance: instance.map(str::to_string),
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
            "PATCH /api/v2/providers/prov-1",
            "POST /api/v2/providers/prov-1/health"
        ]
    );
    let summary = second.summary(&o);
    assert!(summary.contains("already existed"), "{summary}");
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
