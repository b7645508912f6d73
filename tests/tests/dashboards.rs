//! The Grafana dashboards and the Prometheus alert rules refer only to series the services really
//! export.
//!
//! Starts the real chain in-process on loopback: mock-gateway <- gateway-proxy <- omni-bridge,
//! drives traffic (a completed trigger and Omni's retry of it, a session reset, three failed runs that open the breaker,
//! a denied request, a rate-limited `chat.send`, runs of another client whose events the bridge
//! drops), asserts those moved the counters the dashboards show, scrapes both services' real `/metrics` over HTTP and checks every metric name and
//! label name used by `dashboards/*.json` and `dashboards/alerts.yml` against the scrape. Also
//! checks that every alert links to an existing section of `docs/runbook.md`, that the config files
//! shipped in `deploy/` load with the services' own loaders, that the committed JSON is what
//! `dashboards/generate.py` writes (when `python3` is on PATH), and runs `promtool check rules`
//! (and `promtool check config` on the compose Prometheus config) when `promtool` is on PATH;
//! each optional tool prints that it was skipped when absent.
//!
//! The PromQL and YAML readers are small hand-written scanners: enough for identifiers, matchers
//! and grouping clauses, which is all this check needs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gateway_proxy::credential::TokenHash;
use gateway_proxy::{Config as ProxyConfig, Listeners, Proxy, Shutdown};
use mock_gateway::{MockGateway, RunFault};
use omni_bridge::bridge::RunningBridge;
use omni_bridge::config::{BridgeConfig, GatewayConfig};
use omni_bridge::http_client::{HttpClient, Method};
use serde_json::{Value, json};
use shared_protocol::Secret;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const GATEWAY_TOKEN: &str = "dash-gateway-token";
const CLIENT_TOKEN: &str = "gwp_dashboards-test-credential-AAAAAAAAAAAAAAAAAAAA";
const INBOUND: &str = "dash-inbound-secret";
const TEST_DEADLINE: Duration = Duration::from_secs(60);
const STEP: Duration = Duration::from_secs(15);
/// Poll period while waiting for a series that appears only after the bridge's event hold.
const POLL: Duration = Duration::from_millis(100);
/// Consecutive agent failures that open the bridge's breaker (its default threshold).
const BREAKER_FAILURES: usize = 3;
/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
/// Series Prometheus synthesises for every target.
const SYNTHETIC_METRICS: [&str; 1] = ["up"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Scrape: sample name -> label names seen on it.

#[derive(Debug, Default)]
struct Scrape {
    series: BTreeMap<String, BTreeSet<String>>,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut s = Scrape::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, parse_sample_labels(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            s.series
                .entry(name.to_string())
                .or_default()
                .extend(labels.keys().cloned());
            s.samples
                .push((name.to_string(), labels, value.parse().unwrap_or(f64::NAN)));
        }
        s
    }

    fn merge(mut self, other: Scrape) -> Self {
        for (k, v) in other.series {
            self.series.entry(k).or_default().extend(v);
        }
        self.samples.extend(other.samples);
        self
    }

    /// Sum of the samples of `name` whose labels include all of `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, metric: &str) -> bool {
        self.series.contains_key(metric) || SYNTHETIC_METRICS.contains(&metric)
    }

    fn label_ok(&self, metric: &str, label: &str) -> bool {
        TARGET_LABELS.contains(&label)
            || label == "__name__"
            || self.series.get(metric).is_some_and(|l| l.contains(label))
    }
}

fn parse_sample_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(
            name.trim().trim_start_matches(',').trim().to_string(),
            value,
        );
        rest = &after[end..];
    }
    out
}

// ---------------------------------------------------------------------------------------------
// PromQL scanner.

/// What one expression refers to.
#[derive(Debug, Default)]
struct Refs {
    /// Metric names, each with the label names of its own `{...}` matcher.
    metrics: Vec<(String, Vec<String>)>,
    /// Label names in `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` lists and in
    /// matchers without a metric name.
    grouping: Vec<String>,
}

const GROUPING_KEYWORDS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const OTHER_KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "atan2", "inf"];
/// Aggregation operators: may be followed by `by (...)`/`without (...)` instead of `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn scan_promql(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '$' {
            // Grafana variable: $name, ${name}, $__rate_interval.
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
        } else if c == '{' {
            let (labels, next) = scan_matchers(&chars, i);
            refs.grouping.extend(labels);
            i = next;
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_ws(i);
            let lower = word.to_ascii_lowercase();
            if GROUPING_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    let close = chars[next..]
                        .iter()
                        .position(|&c| c == ')')
                        .map_or(chars.len(), |p| next + p);
                    let list: String = chars[next + 1..close].iter().collect();
                    refs.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string),
                    );
                    i = close + 1;
                }
            } else if OTHER_KEYWORDS.contains(&lower.as_str())
                || AGGREGATIONS.contains(&lower.as_str())
                || chars.get(next) == Some(&'(')
            {
                // keyword or function / aggregation
            } else if chars.get(next) == Some(&'{') {
                let (labels, after) = scan_matchers(&chars, next);
                refs.metrics.push((word, labels));
                i = after;
            } else {
                refs.metrics.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    refs
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Label names of a `{a="x", b=~"y"}` matcher starting at `open`; returns them and the index
/// after the closing brace.
fn scan_matchers(chars: &[char], open: usize) -> (Vec<String>, usize) {
    let mut labels = Vec::new();
    let mut i = open + 1;
    let mut expect_name = true;
    while i < chars.len() && chars[i] != '}' {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
        } else if c == '$' {
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                if chars[i] == '}' {
                    break;
                }
                i += 1;
            }
        } else if is_ident_start(c) && expect_name {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            labels.push(chars[start..i].iter().collect());
            expect_name = false;
        } else {
            if c == ',' {
                expect_name = true;
            }
            i += 1;
        }
    }
    (labels, i + 1)
}

/// Problems of one expression against a scrape; `legend_labels` come from `{{label}}` legends.
fn check_expr(where_: &str, expr: &str, legend_labels: &[String], scrape: &Scrape) -> Vec<String> {
    let refs = scan_promql(expr);
    let mut problems = Vec::new();
    if refs.metrics.is_empty() {
        problems.push(format!("{where_}: no metric found in `{expr}`"));
    }
    for (metric, labels) in &refs.metrics {
        if !scrape.has(metric) {
            problems.push(format!("{where_}: metric `{metric}` is not in the scrape"));
            continue;
        }
        for l in labels {
            if !scrape.label_ok(metric, l) {
                problems.push(format!("{where_}: `{metric}` has no label `{l}`"));
            }
        }
    }
    for l in refs.grouping.iter().chain(legend_labels) {
        if !refs.metrics.iter().any(|(m, _)| scrape.label_ok(m, l)) {
            problems.push(format!(
                "{where_}: label `{l}` is on none of the metrics in `{expr}`"
            ));
        }
    }
    problems
}

fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|s| s.split_once("}}"))
        .map(|(l, _)| l.trim().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dashboards and alert rules.

fn check_dashboard(file: &str, scrape: &Scrape) -> (usize, Vec<String>) {
    let board: Value = serde_json::from_str(&read(file)).unwrap();
    let mut problems = Vec::new();
    let mut exprs = 0;
    let vars = board["templating"]["list"].as_array().unwrap();
    let ds = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .unwrap_or_else(|| panic!("{file}: no datasource variable"));
    assert_eq!(ds["query"], "prometheus", "{file}: datasource variable");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"].as_str().unwrap_or_default();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{file}: variable query {q}"));
        let (metric, label) = inner.rsplit_once(',').unwrap();
        problems.extend(check_expr(
            &format!("{file} variable {}", v["name"]),
            metric.trim(),
            &[label.trim().to_string()],
            scrape,
        ));
    }
    for panel in board["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("?");
        for t in panel["targets"].as_array().unwrap() {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "{file} / {title}: every target uses the datasource variable"
            );
            let expr = t["expr"].as_str().unwrap();
            let legend = legend_labels(t["legendFormat"].as_str().unwrap_or_default());
            problems.extend(check_expr(
                &format!("{file} / {title}"),
                expr,
                &legend,
                scrape,
            ));
            exprs += 1;
        }
    }
    (exprs, problems)
}

/// One rule of alerts.yml as the scanner sees it.
#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    runbook_url: String,
}

/// Reads `- alert:`, `expr:` (inline or `|`/`>` block) and `runbook_url:` from the rule file.
fn scan_rules(text: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut lines = text.lines().peekable();
    let unquote = |v: &str| v.trim().trim_matches('"').trim_matches('\'').to_string();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let body = trimmed.trim_start_matches("- ");
        if let Some(v) = body.strip_prefix("alert:") {
            rules.push(Rule {
                alert: unquote(v),
                ..Rule::default()
            });
        } else if let Some(v) = body.strip_prefix("expr:") {
            let v = v.trim();
            let expr = if v.starts_with('|') || v.starts_with('>') {
                let mut block = Vec::new();
                while let Some(next) = lines.peek() {
                    let t = next.trim_start();
                    if !t.is_empty() && next.len() - t.len() <= indent {
                        break;
                    }
                    block.push(t.to_string());
                    lines.next();
                }
                block.join("\n")
            } else {
                unquote(v)
            };
            if let Some(r) = rules.last_mut() {
                r.expr = expr;
            }
        } else if let Some(v) = body.strip_prefix("runbook_url:")
            && let Some(r) = rules.last_mut()
        {
            r.runbook_url = unquote(v);
        }
    }
    rules
}

/// GitHub-style anchors of the markdown headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    markdown
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

fn check_rules(scrape: &Scrape) -> (usize, Vec<String>) {
    let rules = scan_rules(&read("dashboards/alerts.yml"));
    let runbook = anchors(&read("docs/runbook.md"));
    let mut problems = Vec::new();
    for r in &rules {
        let at = format!("alerts.yml {}", r.alert);
        if r.expr.is_empty() {
            problems.push(format!("{at}: no expr"));
        }
        problems.extend(check_expr(&at, &r.expr, &[], scrape));
        match r.runbook_url.split_once("docs/runbook.md#") {
            Some((_, anchor)) if runbook.contains(anchor) => {}
            _ => problems.push(format!(
                "{at}: runbook_url {:?} is not an anchor of docs/runbook.md",
                r.runbook_url
            )),
        }
    }
    (rules.len(), problems)
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

fn run_promtool(promtool: &Path, args: &[&str], cwd: &Path) {
    let out = Command::new(promtool)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// The running chain.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => panic!("proxy closed the client: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

async fn call(ws: &mut Ws, id: &str, method: &str, params: Value) -> Value {
    let req = json!({"type": "req", "id": id, "method": method, "params": params});
    ws.send(Message::text(req.to_string())).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "res" && v["id"] == id {
            return v;
        }
    }
}

/// An operator client on the proxy, after the handshake.
async fn proxy_client(addr: SocketAddr) -> Ws {
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(64 * 1024);
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{addr}"), Some(config), false)
            .await
            .unwrap();
    let challenge = next_json(&mut ws).await;
    assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
    let hello = call(
        &mut ws,
        "c1",
        "connect",
        json!({"minProtocol": 4, "maxProtocol": 4,
               "client": {"id": "openclaw-tui", "version": "1.0", "platform": "linux", "mode": "ui"},
               "role": "operator", "scopes": ["operator.read", "operator.write"],
               "auth": {"token": CLIENT_TOKEN}}),
    )
    .await;
    assert_eq!(hello["ok"], true, "{hello}");
    ws
}

fn proxy_config(upstream: &str) -> String {
    format!(
        r#"
[listen]
plain = "127.0.0.1:0"
admin = "127.0.0.1:0"
drain_grace_ms = 200
[upstream]
url = "{upstream}"
token = "{GATEWAY_TOKEN}"
probe_interval_ms = 100
[limits]
chat_send_per_minute_per_session = 1
[[credentials]]
id = "omni-bridge"
token_sha256 = "{hash}"
scopes = ["operator.read", "operator.write"]
deny_methods = ["models.list"]
"#,
        hash = TokenHash::of(CLIENT_TOKEN).to_hex()
    )
}

fn trigger_body(chat: &str, text: &str, trace: &str) -> Value {
    json!({
        "event": {},
        "instance": {"id": "inst-dash", "channelType": "whatsapp-baileys"},
        "chat": {"id": chat},
        "sender": {"id": "ana-id", "name": "Ana"},
        "content": {"text": text},
        "traceId": trace,
        "replyEndpoint": "POST /api/v2/messages/send"
    })
}

/// Runs the chain, drives traffic, returns (bridge scrape, proxy scrape).
async fn scrape_live_services() -> (Scrape, Scrape) {
    let mock = MockGateway::builder()
        .token(GATEWAY_TOKEN)
        .delta_interval(Duration::ZERO)
        .start()
        .await
        .unwrap();

    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (plain_addr, admin_addr) = (plain.local_addr().unwrap(), admin.local_addr().unwrap());
    let proxy = Proxy::new(
        ProxyConfig::from_toml(&proxy_config(&mock.url())).unwrap(),
        gateway_proxy::metrics::Registry::new(),
    )
    .unwrap();
    let shutdown = Shutdown::new();
    let listeners = Listeners {
        tls: None,
        plain: Some(plain),
        admin: Some(admin),
    };
    let proxy_task = tokio::spawn(proxy.run(listeners, shutdown.clone()));

    let bridge_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = BridgeConfig::single(
        GatewayConfig::new(
            format!("ws://{plain_addr}"),
            Secret::new(CLIENT_TOKEN.to_string()),
        ),
        "main",
        Secret::new(INBOUND.to_string()),
    );
    config.listen = bridge_listener.local_addr().unwrap();
    let bridge = RunningBridge::start_standalone(&config, bridge_listener).unwrap();
    let http = HttpClient::new(STEP);
    let auth = format!("Bearer {INBOUND}");
    let trigger_url = format!("http://{}/omni/agents/main/trigger", bridge.addr());

    // A completed trigger: bridge -> proxy -> mock and back.
    let ok = http
        .send(
            Method::POST,
            &trigger_url,
            &[("authorization", auth.as_str())],
            Some(&trigger_body("chat-ok", "hello", "t-dash-ok")),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.json()["reply"],
        mock_gateway::fake_reply("[Ana]: hello"),
        "{:?}",
        ok.json()
    );

    // Omni retrying the same delivery: answered from the bridge's reply cache.
    let retry = http
        .send(
            Method::POST,
            &trigger_url,
            &[("authorization", auth.as_str())],
            Some(&trigger_body("chat-ok", "hello", "t-dash-ok")),
        )
        .await
        .unwrap();
    assert_eq!(retry.json(), ok.json());

    // A session reset (the write-scope describe -> patch -> delete sequence through the proxy).
    let reset = http
        .send(
            Method::POST,
            &trigger_url,
            &[("authorization", auth.as_str())],
            Some(&trigger_body("chat-ok", "/reset", "t-dash-reset")),
        )
        .await
        .unwrap();
    assert_eq!(reset.status, 200);

    // A denied request and a rate-limited chat.send, from a direct proxy client.
    let mut ws = proxy_client(plain_addr).await;
    let denied = call(&mut ws, "d1", "models.list", json!({})).await;
    assert_eq!(denied["ok"], false, "{denied}");
    let send = |n: u32| {
        json!({"sessionKey": "agent:main:dash-limit", "message": format!("m{n}"),
               "idempotencyKey": format!("dash-limit-{n}")})
    };
    let first = call(&mut ws, "s1", "chat.send", send(1)).await;
    assert_eq!(first["ok"], true, "{first}");
    let second = call(&mut ws, "s2", "chat.send", send(2)).await;
    assert_eq!(second["ok"], false, "{second}");
    // Those runs' events are broadcast to every read-scoped socket, the bridge's too. The bridge
    // holds events of unknown runs for a while and counts them as dropped when later events
    // arrive: keep starting foreign runs until the bridge reports the drop.
    let bridge_metrics = format!("http://{}/metrics", bridge.addr());
    tokio::time::timeout(STEP, async {
        for n in 10.. {
            let r = call(
                &mut ws,
                &format!("e{n}"),
                "chat.send",
                json!({
                "sessionKey": format!("agent:main:dash-foreign-{n}"), "message": "x",
                "idempotencyKey": format!("dash-foreign-{n}")}),
            )
            .await;
            assert_eq!(r["ok"], true, "{r}");
            let m = http
                .send(Method::GET, &bridge_metrics, &[], None)
                .await
                .unwrap();
            if String::from_utf8_lossy(&m.body)
                .contains("omni_bridge_gateway_unmatched_events_dropped_total{")
            {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await
    .expect("the bridge never counted the foreign runs' events as dropped");
    let _ = ws.close(None).await;

    // Failed runs: the agent run ends with an error; three in a row open the breaker. Run
    // concurrently (different chats): a kind-less agent error is held for the bridge's 5 s
    // drain check before it is reported.
    for _ in 0..BREAKER_FAILURES {
        mock.push_run_fault(RunFault::Error {
            message: "provider exploded".into(),
        });
    }
    let failing = (0..BREAKER_FAILURES).map(|n| {
        let body = trigger_body(
            &format!("chat-fail-{n}"),
            "this fails",
            &format!("t-dash-fail-{n}"),
        );
        let (http, url, auth) = (&http, &trigger_url, &auth);
        async move {
            http.send(
                Method::POST,
                url,
                &[("authorization", auth.as_str())],
                Some(&body),
            )
            .await
            .unwrap()
        }
    });
    for failed in futures_util::future::join_all(failing).await {
        assert!(failed.status.is_success() || failed.status.is_server_error());
    }
    let bridge_text = http
        .send(
            Method::GET,
            &format!("http://{}/metrics", bridge.addr()),
            &[],
            None,
        )
        .await
        .unwrap();
    let proxy_text = http
        .send(
            Method::GET,
            &format!("http://{admin_addr}/metrics"),
            &[],
            None,
        )
        .await
        .unwrap();
    assert_eq!(bridge_text.status, 200);
    assert_eq!(proxy_text.status, 200);

    bridge.stop().await.unwrap();
    shutdown.now();
    tokio::time::timeout(STEP, proxy_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    mock.stop().await;
    (
        Scrape::parse(&String::from_utf8_lossy(&bridge_text.body)),
        Scrape::parse(&String::from_utf8_lossy(&proxy_text.body)),
    )
}

#[tokio::test]
async fn dashboards_and_alerts_use_only_exported_series() {
    let (bridge, proxy) = tokio::time::timeout(TEST_DEADLINE, scrape_live_services())
        .await
        .expect("the chain did not finish in time");

    // The traffic really moved the series the dashboards show.
    assert!(bridge.value("omni_bridge_triggers_total", &[("outcome", "replied")]) >= 1.0);
    assert!(bridge.value("omni_bridge_gateway_time_to_first_delta_seconds_count", &[]) >= 1.0);
    assert!(bridge.value("omni_bridge_gateway_connection_state", &[]) == 2.0);
    assert!(bridge.value("omni_bridge_session_resets_total", &[("result", "ok")]) >= 1.0);
    assert!(bridge.value("omni_bridge_retries_total", &[("served", "cached")]) >= 1.0);
    assert!(
        bridge.value(
            "omni_bridge_gateway_breaker_transitions_total",
            &[("to", "open")]
        ) >= 1.0
    );
    assert!(
        proxy.value(
            "gateway_proxy_connections_total",
            &[("outcome", "accepted")]
        ) >= 2.0
    );
    assert!(proxy.value("gateway_proxy_denials_total", &[("reason", "deny_list")]) >= 1.0);
    assert!(
        proxy.value(
            "gateway_proxy_rate_limited_total",
            &[("limit", "chat_send_session")]
        ) >= 1.0
    );
    assert!(
        proxy.value(
            "gateway_proxy_frames_total",
            &[
                ("direction", "client_to_upstream"),
                ("verdict", "forwarded")
            ]
        ) >= 2.0
    );

    let mut problems = Vec::new();
    let (bridge_exprs, p) = check_dashboard("dashboards/omni-bridge.json", &bridge);
    problems.extend(p);
    let (proxy_exprs, p) = check_dashboard("dashboards/gateway-proxy.json", &proxy);
    problems.extend(p);
    let both = bridge.merge(proxy);
    let (rules, p) = check_rules(&both);
    problems.extend(p);
    assert!(
        problems.is_empty(),
        "dashboards/alerts refer to series the services do not export:\n{}",
        problems.join("\n")
    );
    assert!(bridge_exprs >= 10 && proxy_exprs >= 8 && rules >= 10);
    println!("checked {bridge_exprs} + {proxy_exprs} panel expressions and {rules} alert rules");

    match on_path("promtool") {
        Some(p) => {
            run_promtool(&p, &["check", "rules", "dashboards/alerts.yml"], &repo());
            // Prometheus resolves rule_files relative to its config: check the compose config
            // with the rules beside it, as the container sees them.
            let dir = std::env::temp_dir().join(format!("dash-prom-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(
                repo().join("deploy/compose/prometheus.yml"),
                dir.join("prometheus.yml"),
            )
            .unwrap();
            std::fs::copy(repo().join("dashboards/alerts.yml"), dir.join("alerts.yml")).unwrap();
            run_promtool(&p, &["check", "config", "prometheus.yml"], &dir);
            std::fs::remove_dir_all(&dir).unwrap();
            println!("promtool check rules + check config: ok ({})", p.display());
        }
        None => println!("promtool not on PATH: skipped `promtool check rules/config`"),
    }
}

#[test]
fn the_scanner_finds_metrics_labels_and_groupings() {
    let r = scan_promql(
        r#"histogram_quantile(0.99, sum by (le, gateway) (rate(a_bucket{instance=~"$instance", kind="x,y"}[$__rate_interval]))) / on (job) group_left b > 1e-9 and up{job="z"} == bool 0"#,
    );
    let names: Vec<_> = r.metrics.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b", "up"]);
    assert_eq!(r.metrics[0].1, ["instance", "kind"]);
    assert_eq!(r.grouping, ["le", "gateway", "job"]);
    let rules = scan_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          x\n            / y\n        annotations:\n          runbook_url: \"docs/runbook.md#a-b\"\n      - alert: B\n        expr: up == 0\n",
    );
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].expr, "x\n/ y");
    assert_eq!(rules[0].runbook_url, "docs/runbook.md#a-b");
    assert_eq!(rules[1].expr, "up == 0");
    assert!(
        anchors("## Breaker open (`OmniBridgeBreakerOpen`)")
            .contains("breaker-open-omnibridgebreakeropen")
    );
}

#[test]
fn the_checker_reports_unknown_metrics_and_labels() {
    let scrape = Scrape::parse(
        "# TYPE x_total counter\nx_total{kind=\"a\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
    );
    assert!(
        check_expr(
            "ok",
            r#"sum by (kind, instance) (rate(x_total{kind="a"}[5m]))"#,
            &[],
            &scrape
        )
        .is_empty()
    );
    assert!(
        check_expr(
            "ok",
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
            &[],
            &scrape
        )
        .is_empty()
    );
    assert!(check_expr("ok", "up == 0", &[], &scrape).is_empty());
    let bad = [
        ("sum(rate(y_total[5m]))", &[][..]),
        (r#"x_total{knd="a"}"#, &[][..]),
        ("sum by (reason) (x_total)", &[][..]),
        ("h", &[][..]),
        ("x_total", &["outcome".to_string()][..]),
    ];
    for (expr, legend) in bad {
        assert_eq!(
            check_expr("bad", expr, legend, &scrape).len(),
            1,
            "{expr} must be reported"
        );
    }
}

#[test]
fn the_committed_dashboards_are_what_generate_py_writes() {
    let Some(python) = on_path("python3") else {
        println!("python3 not on PATH: skipped the freshness check of dashboards/*.json");
        return;
    };
    let dir = std::env::temp_dir().join(format!("dash-gen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(python)
        .arg(repo().join("dashboards/generate.py"))
        .env("DASHBOARDS_OUT", &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["omni-bridge.json", "gateway-proxy.json"] {
        let fresh = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(
            fresh == read(&format!("dashboards/{name}")),
            "dashboards/{name} is stale: run `python3 dashboards/generate.py`"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_deploy_config_files_load_with_the_services_own_loaders() {
    for file in [
        "deploy/compose/proxy.toml",
        "deploy/kubernetes/config/proxy.toml",
    ] {
        let mut c = ProxyConfig::load(&repo().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The token comes from GATEWAY_PROXY_UPSTREAM_TOKEN in both deployments.
        assert!(c.upstream.token.is_none(), "{file}: no secret in the file");
        c.upstream.token = Some(Secret::new("from-env".into()));
        c.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let pin = format!("sha256/spki:{}", "ab".repeat(32));
    for file in [
        "deploy/compose/bridge.toml.in",
        "deploy/kubernetes/config/bridge.toml",
    ] {
        let text = read(file).replace("@PROXY_PIN@", &pin);
        let mut c = BridgeConfig::from_toml(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        // Secrets come from OMNI_BRIDGE_INBOUND_TOKEN / OMNI_BRIDGE_GATEWAY_TOKEN.
        assert!(c.inbound_token.is_empty(), "{file}: no secret in the file");
        c.inbound_token = Secret::new("from-env".into());
        for g in c.gateways.values_mut() {
            assert!(g.token.is_empty(), "{file}: no secret in the file");
            g.token = Secret::new("from-env".into());
        }
        c.validate().unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}
