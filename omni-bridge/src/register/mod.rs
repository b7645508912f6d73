//! `omni-bridge register`: makes Omni send an agent's messages to this bridge.
//!
//! It needs only what it uses: Omni's URL and key, the bridge's public URL and inbound secret
//! (and the agent name and timeouts, from flags or the config file). Three phases:
//!
//! 1. **Check** (read only, nothing changes if anything fails): Omni answers with this key
//!    (`GET /health`, `GET /providers`); no provider of another schema holds the name; the
//!    instance exists (`GET /instances/{id}`); which Omni era this is (`GET /agents` answers a
//!    list only in the late era); the bridge at the public URL accepts the inbound secret
//!    (`GET /health`, a warning when it is not running yet); Omni's NATS and `MESSAGE` stream
//!    (with `--omni-nats-url`).
//! 2. **Plan** the changes: create or update the `webhook` provider `omni-bridge-<agent>`
//!    (`schemaConfig {mode: "round-trip", retries: 0}`, `defaultTimeout` above the bridge's own
//!    deadline), bind the instance (late: through an agent row; snapshot: `agentProviderId`),
//!    create the NATS consumer. `--dry-run` prints the plan and stops.
//! 3. **Apply**, then run Omni's provider health check. A provider created in this run is
//!    deleted again when a later step fails.
//!
//! It also tells when a running Omni will not see a change: this Omni caches each provider's
//! settings per instance from the first message until its API restarts, so an update of URL, key,
//! mode, retries or timeout has no effect on instances that got messages since then. `register`
//! names those instances and prints the remedy (restart Omni's API).

use std::time::Duration;

use ::http::{Method, StatusCode};
use serde_json::{Value, json};
use shared_protocol::Secret;

use crate::http_client::HttpClient;
use crate::omni::api::{OmniApi, OmniError, id_of, items, path_segment, str_field};
use crate::omni::reset_consumer::{self, NatsSetupError, ResetStreamConfig};

/// Seconds added to the bridge's own deadline for Omni's `defaultTimeout`, so the bridge always
/// answers (with a user-facing text) before Omni gives up.
pub const TIMEOUT_MARGIN_SECS: u64 = 15;
/// Instances listed when looking for the ones bound to the provider.
const INSTANCE_PAGE: u32 = 100;
/// The remedy for Omni's provider cache.
pub const CACHE_REMEDY: &str = "restart Omni's API process (in Omni's checkout: `make restart-api`, i.e. `pm2 restart omni-api`; or restart its service or container), then run this command again";

/// What to register.
#[derive(Debug, Clone)]
pub struct RegisterOptions {
    /// Omni base URL, e.g. `http://localhost:8882`.
    pub omni_url: String,
    /// Omni API key (`x-api-key`).
    pub api_key: Secret,
    /// Agent name in the bridge's trigger path.
    pub agent: String,
    /// OpenClaw agent id (snapshot binding and the agent row's metadata).
    pub openclaw_agent: String,
    /// The bridge's public trigger URL.
    pub trigger_url: String,
    /// The bridge's inbound bearer secret (Omni sends it as the provider's apiKey).
    pub inbound_token: Secret,
    /// The bridge's longest run (send-ack + run timeout).
    pub bridge_deadline: Duration,
    /// Omni instance to bind, if any.
    pub instance: Option<String>,
    /// Omni's NATS, to create the 🗑 reset consumer.
    pub nats: Option<ResetStreamConfig>,
    /// Print the plan, change nothing.
    pub dry_run: bool,
}

impl RegisterOptions {
    /// The provider's name in Omni.
    pub fn provider_name(&self) -> String {
        format!("omni-bridge-{}", self.agent)
    }

    /// Omni's `defaultTimeout`: the bridge's deadline plus [`TIMEOUT_MARGIN_SECS`], in seconds.
    pub fn default_timeout_secs(&self) -> u64 {
        self.bridge_deadline.as_secs() + TIMEOUT_MARGIN_SECS
    }

    /// The bridge's `GET /health` at the origin of the trigger URL (what Omni's check calls).
    pub fn bridge_health_url(&self) -> Option<String> {
        let rest = self.trigger_url.strip_prefix("http://")?;
        let host = rest.split('/').next()?;
        Some(format!("http://{host}/health"))
    }

    fn provider_body(&self) -> Value {
        json!({
            "name": self.provider_name(),
            "schema": "webhook",
            "baseUrl": self.trigger_url,
            "apiKey": self.inbound_token.expose(),
            "schemaConfig": { "mode": "round-trip", "retries": 0 },
            "defaultTimeout": self.default_timeout_secs(),
            "defaultStream": false,
            "supportsStreaming": false,
            "description": format!("Rust omni-bridge -> OpenClaw agent {}", self.openclaw_agent),
        })
    }
}

/// How the instance was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Late Omni: through an agent row.
    AgentRow,
    /// Snapshot Omni: `agentProviderId` + `agentId` on the instance.
    Snapshot,
}

/// One REST call of the plan, printable (the API key shown as `***`).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCall {
    /// Method.
    pub method: Method,
    /// Path under `/api/v2`.
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
    /// Why.
    pub why: String,
}

impl std::fmt::Display for PlannedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} /api/v2{}", self.method, self.path)?;
        if let Some(b) = &self.body {
            let mut shown = b.clone();
            if shown.get("apiKey").is_some() {
                shown["apiKey"] = json!("***");
            }
            write!(f, " {shown}")?;
        }
        write!(f, "   # {}", self.why)
    }
}

/// A provider setting that a running Omni keeps cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingChange {
    /// Field name.
    pub field: &'static str,
    /// Old value as Omni shows it.
    pub from: String,
    /// New value.
    pub to: String,
}

/// An instance whose running dispatcher keeps the old provider settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleInstance {
    /// Instance id.
    pub id: String,
    /// Its last message, when Omni said.
    pub last_message_at: Option<String>,
}

/// What `register` found and did.
#[derive(Debug, Clone, Default)]
pub struct RegisterReport {
    /// Provider id in Omni (empty in a dry run that would create it).
    pub provider_id: String,
    /// True when the provider was (or would be) created now.
    pub provider_created: bool,
    /// Agent row id and whether it was created now (late Omni with an instance).
    pub agent_row: Option<(String, bool)>,
    /// Instance binding, when an instance was given.
    pub binding: Option<Binding>,
    /// Omni's health check verdict (false in a dry run).
    pub healthy: bool,
    /// Omni's health check error, if any.
    pub health_error: Option<String>,
    /// The REST calls made (or, in a dry run, that would be made).
    pub calls: Vec<PlannedCall>,
    /// Cached settings that change.
    pub changes: Vec<SettingChange>,
    /// The API key may have changed (Omni masks it; its health check with the stored key was
    /// refused or could not reach the bridge).
    pub key_may_change: bool,
    /// Instances that keep the old settings until Omni's API restarts.
    pub stale: Vec<StaleInstance>,
    /// Warnings that did not stop the registration.
    pub warnings: Vec<String>,
    /// The NATS consumer was (or would be) created.
    pub nats_consumer: Option<String>,
    /// A dry run: nothing was changed.
    pub dry_run: bool,
}

impl RegisterReport {
    /// The human summary printed by the CLI.
    pub fn summary(&self, opts: &RegisterOptions) -> String {
        let mut out = String::new();
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        if self.dry_run {
            out.push_str("Dry run: nothing was changed. The REST calls register would make:\n");
            for c in &self.calls {
                out.push_str(&format!("  {c}\n"));
            }
            if let Some(name) = &self.nats_consumer {
                out.push_str(&format!(
                    "  NATS: durable consumer {name:?} on stream MESSAGE, filter message.received.>\n"
                ));
            }
        } else {
            let action = if self.provider_created {
                "created"
            } else {
                "already existed, settings re-applied"
            };
            out.push_str(&format!(
                "Provider {:?} ({}): {action}\n  baseUrl {}\n  mode round-trip, retries 0, defaultTimeout {} s\n",
                opts.provider_name(),
                self.provider_id,
                opts.trigger_url,
                opts.default_timeout_secs()
            ));
            if let Some((id, created)) = &self.agent_row {
                let what = if *created {
                    "created"
                } else {
                    "already existed"
                };
                out.push_str(&format!("Agent row {id}: {what}\n"));
            }
            match (&opts.instance, self.binding) {
                (Some(i), Some(Binding::AgentRow)) => {
                    out.push_str(&format!("Instance {i}: bound through the agent row\n"));
                }
                (Some(i), Some(Binding::Snapshot)) => out.push_str(&format!(
                    "Instance {i}: bound with agentProviderId + agentId (older Omni API)\n"
                )),
                _ => out.push_str("No instance bound (pass --instance <id> to bind one)\n"),
            }
            if let Some(name) = &self.nats_consumer {
                out.push_str(&format!(
                    "NATS consumer {name:?}: ready; run `omni-bridge serve` with --omni-nats-url, --omni-url and --omni-api-key to handle 🗑 resets\n"
                ));
            }
            if self.healthy {
                out.push_str("Omni health check: healthy\n");
            } else {
                out.push_str(&format!(
                    "Omni health check: NOT healthy ({})\nNext: make sure `omni-bridge serve` runs and Omni can reach {} (GET /health at that origin).\n",
                    self.health_error.as_deref().unwrap_or("no detail"),
                    opts.trigger_url
                ));
            }
        }
        if !self.stale.is_empty() {
            let mut what: Vec<String> = self
                .changes
                .iter()
                .map(|c| format!("{} ({} -> {})", c.field, c.from, c.to))
                .collect();
            if self.key_may_change {
                what.push("apiKey (Omni masks it; its check with the stored key failed)".into());
            }
            out.push_str(&format!(
                "ATTENTION: the running Omni keeps this provider's old settings for instances it already served (it caches them until its API restarts). Changed: {}.\n",
                what.join(", ")
            ));
            for s in &self.stale {
                out.push_str(&format!(
                    "  instance {} (last message {})\n",
                    s.id,
                    s.last_message_at.as_deref().unwrap_or("unknown")
                ));
            }
            out.push_str(&format!("Remedy: {CACHE_REMEDY}.\n"));
        } else if self.healthy && !self.dry_run {
            out.push_str(
                "Next: send a message to the instance; Omni will POST it to the bridge.\n",
            );
        }
        out
    }
}

/// Why `register` failed, as sentences for the operator. Nothing was changed unless the
/// sentence says so.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Omni refused or did not answer.
    #[error(transparent)]
    Omni(#[from] OmniError),
    /// The instance does not exist.
    #[error(
        "Omni has no instance {0:?} (HTTP 404); nothing was changed. List them with `omni instances list`."
    )]
    NoInstance(String),
    /// A provider of another schema holds the name.
    #[error(
        "Omni already has a provider named {name:?} with schema {schema:?}; nothing was changed. Rename or delete it (`omni providers list`), or register under another --agent."
    )]
    NameTaken {
        /// Provider name.
        name: String,
        /// Its schema.
        schema: String,
    },
    /// The bridge at the public URL refuses the inbound secret.
    #[error(
        "the bridge at {0} refuses this inbound secret (HTTP 401); nothing was changed. Pass the secret `omni-bridge serve` uses (--inbound-token / OMNI_BRIDGE_INBOUND_TOKEN)."
    )]
    BridgeRejectsSecret(String),
    /// Omni's NATS could not be used.
    #[error("Omni's NATS at {url}: {source}; nothing was changed")]
    Nats {
        /// The URL.
        url: String,
        /// What failed.
        source: NatsSetupError,
    },
    /// A later step failed after changes were made; says what was rolled back.
    #[error("{source} (rolled back: {rolled_back})")]
    Partial {
        /// The failure.
        source: Box<RegisterError>,
        /// What was undone.
        rolled_back: String,
    },
}

/// What the read-only phase found.
struct Found {
    existing: Option<Value>,
    late: bool,
    uptime: Option<u64>,
}

/// Runs the whole registration (or, with `dry_run`, the checks and the plan).
///
/// # Errors
/// [`RegisterError`] with a sentence saying what to fix.
pub async fn register(
    client: &HttpClient,
    opts: &RegisterOptions,
) -> Result<RegisterReport, RegisterError> {
    let omni = OmniApi::new(client.clone(), &opts.omni_url, opts.api_key.clone());
    let mut report = RegisterReport {
        dry_run: opts.dry_run,
        ..RegisterReport::default()
    };
    let found = check(&omni, client, opts, &mut report).await?;
    report.changes = setting_changes(found.existing.as_ref(), opts);
    if opts.dry_run {
        plan_only(opts, &found, &mut report);
        report.stale = stale_instances(&omni, &found, &report).await;
        return Ok(report);
    }
    if let Some(existing) = &found.existing {
        report.key_may_change = key_may_differ(&omni, existing).await;
    }
    report.stale = stale_instances(&omni, &found, &report).await;
    apply(&omni, opts, &found, &mut report).await?;
    if let Some(nats) = &opts.nats {
        reset_consumer::attach(nats)
            .await
            .map_err(|source| RegisterError::Nats {
                url: nats.nats_url.clone(),
                source,
            })?;
        report.nats_consumer = Some(nats.durable.clone());
    }
    let path = format!("/providers/{}/health", path_segment(&report.provider_id));
    let health = omni.call(Method::POST, &path, Some(&json!({}))).await?;
    let verdict = health.json();
    report.healthy = health.status.is_success()
        && verdict
            .get("healthy")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    report.health_error = (!report.healthy).then(|| {
        str_field(&verdict, "error").map_or_else(
            || format!("HTTP {}", health.status.as_u16()),
            str::to_string,
        )
    });
    Ok(report)
}

/// Phase 1: everything that can be checked without changing anything.
async fn check(
    omni: &OmniApi,
    client: &HttpClient,
    opts: &RegisterOptions,
    report: &mut RegisterReport,
) -> Result<Found, RegisterError> {
    let uptime = omni.uptime_secs().await?;
    let list = omni
        .call_ok(Method::GET, "/providers", None, "GET /api/v2/providers")
        .await?;
    let name = opts.provider_name();
    let existing = items(&list)
        .into_iter()
        .find(|p| str_field(p, "name") == Some(name.as_str()));
    if let Some(p) = &existing
        && str_field(p, "schema") != Some("webhook")
    {
        return Err(RegisterError::NameTaken {
            name,
            schema: str_field(p, "schema").unwrap_or("?").to_string(),
        });
    }
    let mut late = false;
    if let Some(instance) = &opts.instance {
        if omni.instance(instance).await?.is_none() {
            return Err(RegisterError::NoInstance(instance.clone()));
        }
        // Only the late Omni lists agents (this snapshot answers 500 or 404).
        let agents = omni.call(Method::GET, "/agents", None).await?;
        late = agents.status.is_success() && agents.json().get("items").is_some();
    }
    if let Some(url) = opts.bridge_health_url() {
        let auth = format!("Bearer {}", opts.inbound_token.expose());
        match client
            .send(Method::GET, &url, &[("authorization", auth.as_str())], None)
            .await
        {
            Ok(r) if r.status == StatusCode::UNAUTHORIZED => {
                return Err(RegisterError::BridgeRejectsSecret(url));
            }
            Ok(r) if r.status.is_success() => {}
            Ok(r) => report.warnings.push(format!(
                "the bridge at {url} answered HTTP {}; Omni's health check will fail until it is healthy",
                r.status.as_u16()
            )),
            Err(e) => report.warnings.push(format!(
                "the bridge is not reachable from here ({e}); registering anyway: start `omni-bridge serve` before messages arrive"
            )),
        }
    }
    if let Some(nats) = &opts.nats {
        let bad = |source| RegisterError::Nats {
            url: nats.nats_url.clone(),
            source,
        };
        nats.validate().map_err(|message| {
            bad(NatsSetupError {
                what: "settings",
                message,
            })
        })?;
        reset_consumer::check_stream(nats).await.map_err(bad)?;
    }
    Ok(Found {
        existing,
        late,
        uptime,
    })
}

/// Cached settings the update changes (the API key is masked by Omni and compared elsewhere).
fn setting_changes(existing: Option<&Value>, opts: &RegisterOptions) -> Vec<SettingChange> {
    let Some(p) = existing else {
        return Vec::new();
    };
    let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_string(), Value::to_string);
    let want = opts.provider_body();
    let mut changes = Vec::new();
    let pairs: [(&'static str, Option<&Value>, &Value); 4] = [
        ("baseUrl", p.get("baseUrl"), &want["baseUrl"]),
        (
            "schemaConfig.mode",
            p.pointer("/schemaConfig/mode"),
            &want["schemaConfig"]["mode"],
        ),
        (
            "schemaConfig.retries",
            p.pointer("/schemaConfig/retries"),
            &want["schemaConfig"]["retries"],
        ),
        (
            "defaultTimeout",
            p.get("defaultTimeout"),
            &want["defaultTimeout"],
        ),
    ];
    for (field, old, new) in pairs {
        if old != Some(new) {
            changes.push(SettingChange {
                field,
                from: show(old),
                to: new.to_string(),
            });
        }
    }
    changes
}

/// Asks Omni to check the existing provider with its stored key: the bridge refusing it (401)
/// means the key changes; no answer means it cannot be told.
async fn key_may_differ(omni: &OmniApi, existing: &Value) -> bool {
    let Some(id) = id_of(existing) else {
        return true;
    };
    let path = format!("/providers/{}/health", path_segment(&id));
    match omni.call(Method::POST, &path, Some(&json!({}))).await {
        Ok(r) if r.status.is_success() => {
            let v = r.json();
            !v.get("healthy").and_then(Value::as_bool).unwrap_or(false)
        }
        _ => true,
    }
}

/// Instances already bound to the existing provider that got a message since Omni started:
/// the running dispatcher keeps the old settings for them.
async fn stale_instances(
    omni: &OmniApi,
    found: &Found,
    report: &RegisterReport,
) -> Vec<StaleInstance> {
    let Some(id) = found.existing.as_ref().and_then(id_of) else {
        return Vec::new();
    };
    if report.changes.is_empty() && !report.key_may_change {
        return Vec::new();
    }
    let Ok(list) = omni
        .call_ok(
            Method::GET,
            &format!("/instances?limit={INSTANCE_PAGE}"),
            None,
            "GET /api/v2/instances",
        )
        .await
    else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for inst in items(&list) {
        if str_field(&inst, "agentProviderId") != Some(id.as_str()) {
            continue;
        }
        let Some(iid) = id_of(&inst) else { continue };
        let last = last_message_at(omni, &iid).await;
        let served_since_start = match (&last, found.uptime) {
            (Some(at), Some(up)) => started_before(at, up),
            // Unknown: assume served (the remedy is harmless).
            _ => true,
        };
        if served_since_start {
            stale.push(StaleInstance {
                id: iid,
                last_message_at: last,
            });
        }
    }
    stale
}

async fn last_message_at(omni: &OmniApi, instance: &str) -> Option<String> {
    let path = format!(
        "/chats?instanceId={}&sort=activity&limit=1",
        path_segment(instance)
    );
    let chats = omni
        .call_ok(Method::GET, &path, None, "GET /api/v2/chats")
        .await
        .ok()?;
    items(&chats)
        .first()
        .and_then(|c| str_field(c, "lastMessageAt"))
        .map(str::to_string)
}

/// True when the RFC 3339 time `at` is after Omni's start (`uptime` seconds ago). Unparsable
/// times count as after (the conservative answer).
fn started_before(at: &str, uptime_secs: u64) -> bool {
    let Some(at) = unix_seconds(at) else {
        return true;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    at + 1 >= now.saturating_sub(uptime_secs)
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS...` (UTC, as Omni's JSON dates are).
fn unix_seconds(t: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<u64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d == 0 || d > 31 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for years after 1970.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

/// The calls of a dry run.
fn plan_only(opts: &RegisterOptions, found: &Found, report: &mut RegisterReport) {
    let body = opts.provider_body();
    let provider = match found.existing.as_ref().and_then(id_of) {
        Some(id) => {
            report.provider_id.clone_from(&id);
            report.calls.push(PlannedCall {
                method: Method::PATCH,
                path: format!("/providers/{id}"),
                body: Some(body),
                why: "re-apply the provider's settings".into(),
            });
            id
        }
        None => {
            report.provider_created = true;
            report.calls.push(PlannedCall {
                method: Method::POST,
                path: "/providers".into(),
                body: Some(body),
                why: "create the provider".into(),
            });
            "<new provider id>".into()
        }
    };
    if let Some(instance) = &opts.instance {
        if found.late {
            report.calls.push(PlannedCall {
                method: Method::POST,
                path: "/agents".into(),
                body: Some(agent_row_body(opts, &provider)),
                why: "create the agent row, unless one exists".into(),
            });
            report.calls.push(PlannedCall {
                method: Method::PATCH,
                path: format!("/instances/{instance}"),
                body: Some(json!({ "agentId": "<agent row id>" })),
                why: "bind the instance".into(),
            });
        } else {
            report.calls.push(PlannedCall {
                method: Method::PATCH,
                path: format!("/instances/{instance}"),
                body: Some(snapshot_binding(opts, &provider)),
                why: "bind the instance".into(),
            });
        }
    }
    report.calls.push(PlannedCall {
        method: Method::POST,
        path: format!("/providers/{provider}/health"),
        body: Some(json!({})),
        why: "Omni's health check of the bridge".into(),
    });
    report.nats_consumer = opts.nats.as_ref().map(|n| n.durable.clone());
}

/// The id of a row Omni just created.
fn require_id(created: &Value, what: &str) -> Result<String, OmniError> {
    id_of(created).ok_or_else(|| OmniError::Unexpected {
        status: 201,
        what: what.to_string(),
        body: "no id in the answer".into(),
    })
}

fn agent_row_body(opts: &RegisterOptions, provider_id: &str) -> Value {
    json!({
        "name": opts.provider_name(),
        "provider": "custom",
        "agentType": "assistant",
        "agentProviderId": provider_id,
        "metadata": { "providerAgentId": opts.openclaw_agent },
    })
}

fn snapshot_binding(opts: &RegisterOptions, provider_id: &str) -> Value {
    json!({ "agentProviderId": provider_id, "agentId": opts.openclaw_agent })
}

/// Phase 3: the changes, undoing a provider created here when a later step fails.
async fn apply(
    omni: &OmniApi,
    opts: &RegisterOptions,
    found: &Found,
    report: &mut RegisterReport,
) -> Result<(), RegisterError> {
    let body = opts.provider_body();
    let (provider_id, created) = match found.existing.as_ref().and_then(id_of) {
        Some(id) => {
            let path = format!("/providers/{}", path_segment(&id));
            omni.call_ok(
                Method::PATCH,
                &path,
                Some(&body),
                "PATCH /api/v2/providers/{id}",
            )
            .await?;
            (id, false)
        }
        None => {
            let reply = omni
                .call_ok(
                    Method::POST,
                    "/providers",
                    Some(&body),
                    "POST /api/v2/providers",
                )
                .await?;
            (require_id(&reply, "POST /api/v2/providers")?, true)
        }
    };
    report.provider_id.clone_from(&provider_id);
    report.provider_created = created;
    let Some(instance) = &opts.instance else {
        return Ok(());
    };
    match bind_instance(omni, opts, &provider_id, instance, found.late).await {
        Ok((agent_row, binding)) => {
            report.agent_row = agent_row;
            report.binding = Some(binding);
            Ok(())
        }
        Err(e) if created => {
            let path = format!("/providers/{}", path_segment(&provider_id));
            let rolled_back = match omni.call(Method::DELETE, &path, None).await {
                Ok(r) if r.status.is_success() => format!("provider {provider_id} deleted"),
                _ => format!("could NOT delete provider {provider_id}; delete it by hand"),
            };
            Err(RegisterError::Partial {
                source: Box::new(e),
                rolled_back,
            })
        }
        Err(e) => Err(e),
    }
}

async fn bind_instance(
    omni: &OmniApi,
    opts: &RegisterOptions,
    provider_id: &str,
    instance: &str,
    late: bool,
) -> Result<(Option<(String, bool)>, Binding), RegisterError> {
    let path = format!("/instances/{}", path_segment(instance));
    if late {
        let (agent_id, created) = find_or_create_agent_row(omni, opts, provider_id).await?;
        omni.call_ok(
            Method::PATCH,
            &path,
            Some(&json!({ "agentId": agent_id })),
            "PATCH /api/v2/instances/{id}",
        )
        .await?;
        return Ok((Some((agent_id, created)), Binding::AgentRow));
    }
    omni.call_ok(
        Method::PATCH,
        &path,
        Some(&snapshot_binding(opts, provider_id)),
        "PATCH /api/v2/instances/{id} (agentProviderId)",
    )
    .await?;
    Ok((None, Binding::Snapshot))
}

/// Late Omni's agent row for this provider.
async fn find_or_create_agent_row(
    omni: &OmniApi,
    opts: &RegisterOptions,
    provider_id: &str,
) -> Result<(String, bool), RegisterError> {
    let name = opts.provider_name();
    let list = omni
        .call_ok(Method::GET, "/agents", None, "GET /api/v2/agents")
        .await?;
    if let Some(id) = items(&list)
        .into_iter()
        .find(|a| {
            str_field(a, "name") == Some(name.as_str())
                && str_field(a, "agentProviderId") == Some(provider_id)
        })
        .as_ref()
        .and_then(id_of)
    {
        return Ok((id, false));
    }
    let reply = omni
        .call_ok(
            Method::POST,
            "/agents",
            Some(&agent_row_body(opts, provider_id)),
            "POST /api/v2/agents",
        )
        .await?;
    Ok((require_id(&reply, "POST /api/v2/agents")?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_the_start_of_omni() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(
            unix_seconds("2026-12-03T18:50:01.123Z"),
            Some(1_796_323_801)
        );
        assert_eq!(unix_seconds("nope"), None);
        assert!(started_before("garbage", 10));
        assert!(!started_before("2000-01-01T00:00:00Z", 60));
    }

    #[test]
    fn the_plan_never_shows_the_secret() {
        let call = PlannedCall {
            method: Method::POST,
            path: "/providers".into(),
            body: Some(json!({"apiKey": "s3cret", "name": "n"})),
            why: "x".into(),
        };
        let shown = call.to_string();
        assert!(
            !shown.contains("s3cret") && shown.contains("\"***\""),
            "{shown}"
        );
    }
}
