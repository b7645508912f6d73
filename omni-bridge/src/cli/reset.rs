//! `omni-bridge reset`: clears one conversation through a running bridge's
//! `POST /omni/sessions/reset` (so the bridge's session-key rules, including hashed keys, apply).

use clap::Args;

use super::error::CliError;
use crate::http_client::HttpClient;

/// Long help for `reset`.
pub const LONG_ABOUT: &str = "Clear one conversation's agent session. Calls the running bridge's \
POST /omni/sessions/reset, so the same session-key rules apply as for messages; the bridge then \
archives and deletes the session on the gateway (write scope only). The next message starts a \
fresh conversation.\n\n\
Example:\n  \
OMNI_BRIDGE_INBOUND_TOKEN=s3cret omni-bridge reset --bridge-url http://127.0.0.1:8090 --agent main --instance inst-1 --chat 5511999990000@s.whatsapp.net";

/// Flags of `reset`.
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Base URL of the running bridge.
    #[arg(
        long,
        env = "OMNI_BRIDGE_URL",
        default_value = "http://127.0.0.1:8090",
        value_name = "URL"
    )]
    pub bridge_url: String,
    /// The bridge's inbound secret.
    #[arg(
        long,
        env = "OMNI_BRIDGE_INBOUND_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub inbound_token: String,
    /// Agent name (as in the trigger path).
    #[arg(long)]
    pub agent: String,
    /// Omni instance id.
    #[arg(long)]
    pub instance: String,
    /// External chat id.
    #[arg(long, required_unless_present = "session")]
    pub chat: Option<String>,
    /// Omni session id (when the instance's session strategy is not per chat).
    #[arg(long, conflicts_with = "chat")]
    pub session: Option<String>,
}

/// Calls the bridge and prints the result.
///
/// # Errors
/// [`CliError`] when the bridge is unreachable or refuses.
pub async fn run(args: ResetArgs) -> Result<(), CliError> {
    let url = format!(
        "{}/omni/sessions/reset",
        args.bridge_url.trim_end_matches('/')
    );
    let body = serde_json::json!({
        "agentId": args.agent,
        "instanceId": args.instance,
        "chatId": args.chat,
        "sessionId": args.session,
    });
    let reply = HttpClient::default()
        .post_bearer(&url, &args.inbound_token, &body)
        .await
        .map_err(|e| CliError::Message(format!("{e}. Is `omni-bridge serve` running there?")))?;
    let json = reply.json();
    if reply.status.is_success() {
        println!(
            "Session {} cleared.",
            json.get("sessionKey")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
        );
        return Ok(());
    }
    let message = json
        .pointer("/error/message")
        .and_then(|v| v.as_str())
        .unwrap_or("no detail");
    Err(CliError::Message(match reply.status.as_u16() {
        401 => {
            "The bridge rejected the token: pass its inbound secret (OMNI_BRIDGE_INBOUND_TOKEN)."
                .into()
        }
        404 => format!("The bridge does not know that agent: {message}"),
        s => format!("The reset failed (HTTP {s}): {message}"),
    }))
}
