//! `POST /api/v2/messages/send`: a text to a chat through Omni (what `omni send` does).
//!
//! The 🗑 reset consumer confirms resets this way; an asynchronous delivery mode sends its
//! replies the same way. Body `{instanceId, to, text, replyTo?}`, header `x-api-key`; Omni
//! answers `201 {data: {messageId, externalMessageId, status, ...}}` and sends the text through
//! the instance's channel (HTML-converted on Telegram, chunked to the channel's limit).
//! Omni offers no idempotency key here: a send that is repeated reaches the chat twice, so callers
//! keep their own record of what was sent.

use ::http::Method;
use serde_json::{Value, json};

use super::api::{OmniApi, OmniError, str_field};

/// One text message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingText<'a> {
    /// Omni instance (UUID) to send from.
    pub instance_id: &'a str,
    /// Recipient: the chat id as Omni's events carry it (`chatId`).
    pub to: &'a str,
    /// The text (Omni refuses an empty one).
    pub text: &'a str,
    /// External id of the message to reply to, if any.
    pub reply_to: Option<&'a str>,
}

/// What Omni says it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentText {
    /// Omni's (external) message id, when it gave one.
    pub message_id: Option<String>,
}

impl OmniApi {
    /// Sends one text.
    ///
    /// # Errors
    /// [`OmniError`]; [`OmniError::is_transient`] says whether trying again may help.
    pub async fn send_text(&self, msg: &OutgoingText<'_>) -> Result<SentText, OmniError> {
        let mut body = json!({
            "instanceId": msg.instance_id,
            "to": msg.to,
            "text": msg.text,
        });
        if let Some(r) = msg.reply_to {
            body["replyTo"] = Value::String(r.to_string());
        }
        let reply = self
            .call_ok(
                Method::POST,
                "/messages/send",
                Some(&body),
                "POST /api/v2/messages/send",
            )
            .await?;
        let data = reply.get("data").unwrap_or(&reply);
        Ok(SentText {
            message_id: str_field(data, "messageId")
                .or_else(|| str_field(data, "externalMessageId"))
                .map(str::to_string),
        })
    }
}
