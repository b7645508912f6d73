//! `omni-bridge register`: makes Omni send an agent's messages to this bridge.
//!
//! Against Omni's REST API (omni-contract §3.4), all idempotent so running it twice changes
//! nothing:
//! 1. find the `webhook` provider named `omni-bridge-<agent>` (`GET /api/v2/providers`), then
//!    `PATCH` it, or `POST` a new one, with `schemaConfig {mode: "round-trip", retries: 0}` and a
//!    `defaultTimeout` above the bridge's own deadline;
//! 2. with `--instance`: late Omni links instances to providers through an agent row, so find or
//!    create it (`GET`/`POST /api/v2/agents`) and `PATCH /api/v2/instances/{id} {agentId}`;
//!    snapshot Omni (no agents API, or a 400 on that form) gets `{agentProviderId, agentId}`;
//! 3. run Omni's provider health check (`POST /api/v2/providers/{id}/health`), which calls the
//!    bridge's `GET /health`.

pub mod http;

use std::time::Duration;

use ::http::{Method, StatusCode};
use serde_json::{Value, json};
use shared_protocol::Secret;

use self::http::{HttpClient, HttpError, HttpReply};

/// Seconds added to the bridge's own deadline for Omni's `defaultTimeout`, so the bridge always
/// answers (with a user-facing text) before Omni gives up.
pub const TIMEOUT_MARGIN_SECS: u64 = 15;

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
}

/// How the instance was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Late Omni: through an agent row.
    AgentRow,
    /// Snapshot Omni: `agentProviderId` + `agentId` on the instance.
    Snapshot,
}

/// What `register` did.
#[derive(Debug, Clone)]
pub struct RegisterReport {
    /// Provider id in Omni.
    pub provider_id: String,
    /// True when the provider was created now (false: it existed and was updated in place).
    pub provider_created: bool,
    /// Agent row id and whether it was created now (late Omni with an instance).
    pub agent_row: Option<(String, bool)>,
    /// Instance binding, when an instance was given.
    pub binding: Option<Binding>,
    /// Omni's health check verdict.
    pub healthy: bool,
    /// Omni's health check error, if any.
    pub health_error: Option<String>,
}

impl RegisterReport {
    /// The human summary printed by the CLI.
    pub fn summary(&self, opts: &RegisterOptions) -> String {
        let mut out = String::new();
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
            out.push_str(&format!(
                "Agent row {id}: {}\n",
                if *created {
                    "created"
                } else {
                    "already existed"
                }
            ));
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
        if self.healthy {
            out.push_str("Omni health check: healthy\n");
            out.push_str(
                "Next: send a message to the instance; Omni will POST it to the bridge.\n",
            );
        } else {
            out.push_str(&format!(
                "Omni health check: NOT healthy ({})\n",
                self.health_error.as_deref().unwrap_or("no detail")
            ));
            out.push_str(&format!(
                "Next: make sure `omni-bridge serve` runs and Omni can reach {} (GET /health at that origin).\n",
                opts.trigger_url
            ));
        }
        out
    }
}

/// Why `register` failed, as sentences for the operator.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// 401/403 from Omni.
    #[error(
        "Omni rejected the API key (HTTP {0}). Check --omni-api-key / OMNI_API_KEY (the key Omni printed at first boot, or its OMNI_API_KEY)."
    )]
    Unauthorized(u16),
    /// No answer.
    #[error("Could not talk to Omni: {0}. Is --omni-url right and Omni running?")]
    Http(#[from] HttpError),
    /// Any other unexpected status.
    #[error("Omni answered HTTP {status} to {what}: {body}")]
    Unexpected {
        /// Status code.
        status: u16,
        /// Which request.
        what: String,
        /// The start of the body.
        body: String,
    },
    /// The instance does not exist.
    #[error("Omni has no instance {0:?} (HTTP 404). List them with `omni instances list`.")]
    NoInstance(String),
}

struct Omni<'a> {
    client: &'a HttpClient,
    base: String,
    key: &'a Secret,
}

impl Omni<'_> {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpReply, RegisterError> {
        let url = format!("{}/api/v2{path}", self.base);
        let reply = self
            .client
            .send(
                method,
                &url,
                &[("x-api-key", self.key.expose().as_str())],
                body,
            )
            .await?;
        if matches!(
            reply.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(RegisterError::Unauthorized(reply.status.as_u16()));
        }
        Ok(reply)
    }

    fn unexpected(what: &str, reply: &HttpReply) -> RegisterError {
        let body = String::from_utf8_lossy(&reply.body);
        RegisterError::Unexpected {
            status: reply.status.as_u16(),
            what: what.to_string(),
            body: body.chars().take(300).collect(),
        }
    }
}

/// `{items: [...]}` or `{data: [...]}` or a bare array.
fn items(v: &Value) -> Vec<Value> {
    v.get("items")
        .or_else(|| v.get("data"))
        .unwrap_or(v)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `{data: {id}}` or `{id}`.
fn id_of(v: &Value) -> Option<String> {
    v.get("data")
        .unwrap_or(v)
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Runs the whole registration.
///
/// # Errors
/// [`RegisterError`] with a sentence saying what to fix.
pub async fn register(
    client: &HttpClient,
    opts: &RegisterOptions,
) -> Result<RegisterReport, RegisterError> {
    let omni = Omni {
        client,
        base: opts.omni_url.trim_end_matches('/').to_string(),
        key: &opts.api_key,
    };
    let (provider_id, provider_created) = upsert_provider(&omni, opts).await?;
    let (agent_row, binding) = match &opts.instance {
        Some(instance) => bind_instance(&omni, opts, &provider_id, instance).await?,
        None => (None, None),
    };
    let health = omni
        .call(
            Method::POST,
            &format!("/providers/{provider_id}/health"),
            Some(&json!({})),
        )
        .await?;
    let verdict = health.json();
    let healthy = health.status.is_success()
        && verdict
            .get("healthy")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let health_error = (!healthy).then(|| {
        verdict.get("error").and_then(Value::as_str).map_or_else(
            || format!("HTTP {}", health.status.as_u16()),
            str::to_string,
        )
    });
    Ok(RegisterReport {
        provider_id,
        provider_created,
        agent_row,
        binding,
        healthy,
        health_error,
    })
}

async fn upsert_provider(
    omni: &Omni<'_>,
    opts: &RegisterOptions,
) -> Result<(String, bool), RegisterError> {
    let name = opts.provider_name();
    let list = omni.call(Method::GET, "/providers", None).await?;
    if !list.status.is_success() {
        return Err(Omni::unexpected("GET /api/v2/providers", &list));
    }
    let existing = items(&list.json()).into_iter().find(|p| {
        p.get("name").and_then(Value::as_str) == Some(name.as_str())
            && p.get("schema").and_then(Value::as_str) == Some("webhook")
    });
    let body = json!({
        "name": name,
        "schema": "webhook",
        "baseUrl": opts.trigger_url,
        "apiKey": opts.inbound_token.expose(),
        "schemaConfig": { "mode": "round-trip", "retries": 0 },
        "defaultTimeout": opts.default_timeout_secs(),
        "defaultStream": false,
        "supportsStreaming": false,
        "description": format!("Rust omni-bridge -> OpenClaw agent {}", opts.openclaw_agent),
    });
    if let Some(id) = existing.as_ref().and_then(id_of) {
        let reply = omni
            .call(Method::PATCH, &format!("/providers/{id}"), Some(&body))
            .await?;
        if !reply.status.is_success() {
            return Err(Omni::unexpected("PATCH /api/v2/providers/{id}", &reply));
        }
        return Ok((id, false));
    }
    let reply = omni.call(Method::POST, "/providers", Some(&body)).await?;
    if !reply.status.is_success() {
        return Err(Omni::unexpected("POST /api/v2/providers", &reply));
    }
    let id = id_of(&reply.json())
        .ok_or_else(|| Omni::unexpected("POST /api/v2/providers (no id)", &reply))?;
    Ok((id, true))
}

async fn bind_instance(
    omni: &Omni<'_>,
    opts: &RegisterOptions,
    provider_id: &str,
    instance: &str,
) -> Result<(Option<(String, bool)>, Option<Binding>), RegisterError> {
    let path = format!("/instances/{instance}");
    if let Some((agent_id, created)) = find_or_create_agent_row(omni, opts, provider_id).await? {
        let reply = omni
            .call(Method::PATCH, &path, Some(&json!({ "agentId": agent_id })))
            .await?;
        if reply.status.is_success() {
            return Ok((Some((agent_id, created)), Some(Binding::AgentRow)));
        }
        if reply.status == StatusCode::NOT_FOUND {
            return Err(RegisterError::NoInstance(instance.to_string()));
        }
        if reply.status != StatusCode::BAD_REQUEST {
            return Err(Omni::unexpected("PATCH /api/v2/instances/{id}", &reply));
        }
    }
    let reply = omni
        .call(
            Method::PATCH,
            &path,
            Some(&json!({ "agentProviderId": provider_id, "agentId": opts.openclaw_agent })),
        )
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Err(RegisterError::NoInstance(instance.to_string()));
    }
    if !reply.status.is_success() {
        return Err(Omni::unexpected(
            "PATCH /api/v2/instances/{id} (agentProviderId)",
            &reply,
        ));
    }
    Ok((None, Some(Binding::Snapshot)))
}

/// Late Omni's agent row for this provider; `None` when Omni has no agents API (snapshot).
async fn find_or_create_agent_row(
    omni: &Omni<'_>,
    opts: &RegisterOptions,
    provider_id: &str,
) -> Result<Option<(String, bool)>, RegisterError> {
    let name = opts.provider_name();
    let list = omni.call(Method::GET, "/agents", None).await?;
    if list.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if list.status.is_success()
        && let Some(id) = items(&list.json())
            .into_iter()
            .find(|a| {
                a.get("name").and_then(Value::as_str) == Some(name.as_str())
                    && a.get("agentProviderId").and_then(Value::as_str) == Some(provider_id)
            })
            .as_ref()
            .and_then(id_of)
    {
        return Ok(Some((id, false)));
    }
    let reply = omni
        .call(
            Method::POST,
            "/agents",
            Some(&json!({
                "name": name,
                "provider": "custom",
                "agentType": "assistant",
                "agentProviderId": provider_id,
                "metadata": { "providerAgentId": opts.openclaw_agent },
            })),
        )
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !reply.status.is_success() {
        return Err(Omni::unexpected("POST /api/v2/agents", &reply));
    }
    let id = id_of(&reply.json())
        .ok_or_else(|| Omni::unexpected("POST /api/v2/agents (no id)", &reply))?;
    Ok(Some((id, true)))
}
