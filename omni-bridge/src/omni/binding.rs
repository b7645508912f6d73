//! Which agent of this bridge (if any) an Omni instance is routed to.
//!
//! Omni routes an instance to a provider (`instance.agentProviderId` in this Omni), and a webhook
//! provider to a URL (`provider.baseUrl`). The instance is routed to this bridge when that URL is
//! one of the bridge's trigger URLs (`<public_url>/omni/agents/<agent>/trigger`), whoever created
//! the provider (`omni-bridge register` or Omni's own CLI). Asked only for 🗑 messages, so the two
//! look-ups cost nothing on the message path.

use serde_json::Value;

use super::api::{OmniApi, OmniError, str_field};

/// Where an instance's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// To this bridge's agent of that name.
    Bridge {
        /// The agent name in the trigger URL.
        agent: String,
    },
    /// To another provider, or a provider that is not active.
    Elsewhere,
    /// No provider, or no such instance.
    Unbound,
    /// Bound through an agent row (Omni after the snapshot era); not resolved here.
    AgentRow,
}

/// The bridge's trigger URLs, each with its agent name.
#[derive(Debug, Clone, Default)]
pub struct TriggerUrls(Vec<(String, String)>);

impl TriggerUrls {
    /// From `(trigger url, agent)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(url, agent)| (normalise(&url), agent))
                .collect(),
        )
    }

    /// The agent whose trigger URL is `url`.
    pub fn agent_for(&self, url: &str) -> Option<&str> {
        let url = normalise(url);
        self.0
            .iter()
            .find(|(u, _)| *u == url)
            .map(|(_, a)| a.as_str())
    }
}

fn normalise(url: &str) -> String {
    url.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Looks up where `instance_id` is routed.
///
/// # Errors
/// [`OmniError`] when Omni cannot be asked (the caller retries later).
pub async fn routing(
    api: &OmniApi,
    instance_id: &str,
    urls: &TriggerUrls,
) -> Result<Routing, OmniError> {
    let Some(instance) = api.instance(instance_id).await? else {
        return Ok(Routing::Unbound);
    };
    let Some(provider_id) = str_field(&instance, "agentProviderId") else {
        let has_agent_row = str_field(&instance, "agentId").is_some_and(looks_like_uuid);
        return Ok(if has_agent_row {
            Routing::AgentRow
        } else {
            Routing::Unbound
        });
    };
    let Some(provider) = api.provider(provider_id).await? else {
        return Ok(Routing::Unbound);
    };
    Ok(routing_of_provider(&provider, urls))
}

/// Where a provider row sends messages.
pub fn routing_of_provider(provider: &Value, urls: &TriggerUrls) -> Routing {
    let active = provider
        .get("isActive")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let webhook = str_field(provider, "schema") == Some("webhook");
    match str_field(provider, "baseUrl").and_then(|u| urls.agent_for(u)) {
        Some(agent) if active && webhook => Routing::Bridge {
            agent: agent.to_string(),
        },
        _ => Routing::Elsewhere,
    }
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_provider_is_ours_when_its_url_is_one_of_our_trigger_urls() {
        let urls = TriggerUrls::new([(
            "http://10.0.0.5:8090/omni/agents/main/trigger".to_string(),
            "main".to_string(),
        )]);
        let ours = json!({"schema": "webhook", "baseUrl": "http://10.0.0.5:8090/omni/agents/main/trigger/", "isActive": true});
        assert_eq!(
            routing_of_provider(&ours, &urls),
            Routing::Bridge {
                agent: "main".into()
            }
        );
        let off = json!({"schema": "webhook", "baseUrl": "http://10.0.0.5:8090/omni/agents/main/trigger", "isActive": false});
        assert_eq!(routing_of_provider(&off, &urls), Routing::Elsewhere);
        let other = json!({"schema": "webhook", "baseUrl": "http://echo:1/x"});
        assert_eq!(routing_of_provider(&other, &urls), Routing::Elsewhere);
        let oc = json!({"schema": "openclaw", "baseUrl": "http://10.0.0.5:8090/omni/agents/main/trigger"});
        assert_eq!(routing_of_provider(&oc, &urls), Routing::Elsewhere);
    }
}
