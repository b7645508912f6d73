//! `chat.send` and `chat.abort`: admission, idempotency, steer/interrupt, slash commands.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};
use shared_protocol::chat::{
    ChatAbortParams, ChatMessage, ChatSendAck, ChatSendParams, ChatSendStatus, QueueMode,
};
use shared_protocol::limits::MAX_SESSION_KEY_LEN;
use shared_protocol::{ErrorCode, ErrorShape, Scope};

use crate::dedupe::{Dedupe, Replay};
use crate::dispatch::ConnCtx;
use crate::fault::RunFault;
use crate::run::{RunCtl, Stop, drive, emit, synthetic_final};
use crate::sessions::{SessionStore, canonical_key};
use crate::state::{Gateway, now_ms};

/// What `/reset` or `/new` answers without `operator.admin`.
pub(crate) const RESET_REFUSED: &str = "⚠️ You are not authorized to reset this session. Gateway resets require operator.admin and command access. Ask your administrator to reset it, or send your message without the command.";
/// What an admin `/reset` or `/new` answers.
const RESET_DONE: &str = "✅ New session started.";

/// Sessions, active runs and the idempotency cache, under one lock so they stay consistent.
#[derive(Debug, Default)]
pub(crate) struct ChatBook {
    /// Sessions by canonical key.
    pub sessions: SessionStore,
    /// The active run of each busy session.
    pub active: HashMap<String, Arc<RunCtl>>,
    /// Idempotency keys.
    pub dedupe: Dedupe,
}

fn invalid(message: impl Into<String>) -> ErrorShape {
    ErrorShape::new(ErrorCode::InvalidRequest, message)
}

fn is_reset_command(message: &str) -> bool {
    let m = message.trim().to_lowercase();
    ["/reset", "/new"]
        .iter()
        .any(|c| m == *c || m.starts_with(&format!("{c} ")))
}

fn ack(run_id: &str, status: ChatSendStatus) -> ChatSendAck {
    ChatSendAck {
        run_id: run_id.to_string(),
        status,
        interrupted_active_run: None,
        summary: None,
    }
}

/// `chat.send`: answers (now, later, or never, per fault) and starts the run.
pub(crate) fn send(gw: &Arc<Gateway>, ctx: &ConnCtx, id: &str, params: &Value) {
    let p: ChatSendParams = match serde_json::from_value(params.clone()) {
        Ok(p) => p,
        Err(e) => {
            let detail = schema_message(&e.to_string());
            return ctx.respond_err(id, &invalid(format!("invalid chat.send params: {detail}")));
        }
    };
    if p.session_key.is_empty() || p.session_key.encode_utf16().count() > MAX_SESSION_KEY_LEN {
        return ctx.respond_err(
            id,
            &invalid("invalid chat.send params: at /sessionKey: must be 1-512 characters"),
        );
    }
    if p.idempotency_key.is_empty() {
        return ctx.respond_err(
            id,
            &invalid("invalid chat.send params: at /idempotencyKey: must not have fewer than 1 characters"),
        );
    }
    let key = match canonical_key(gw, &p.session_key) {
        Ok(k) => k.as_str().to_string(),
        Err(e) => return ctx.respond_err(id, &e),
    };
    let run_id = p.idempotency_key.clone();
    let command = is_reset_command(&p.message) && p.suppress_command_interpretation != Some(true);

    let mut book = gw.chat.lock();
    match book.dedupe.check(&run_id, &key, &p.message) {
        Replay::New => {}
        Replay::InFlight => return ctx.respond_ok(id, &ack(&run_id, ChatSendStatus::InFlight)),
        Replay::Done => return ctx.respond_ok(id, &ack(&run_id, ChatSendStatus::Ok)),
        Replay::Conflict => {
            let error = ErrorShape {
                details: Some(json!({"reason": "chat-request-conflict"})),
                ..invalid(
                    "This message ID was already used for different input. Check the conversation history and use a new message ID to send again.",
                )
            };
            return ctx.respond_err(id, &error);
        }
    }
    book.dedupe.insert(&run_id, &key, &p.message);
    book.sessions
        .get_or_create(&key)
        .push(json!({"role":"user","content":p.message,"timestamp":now_ms()}));

    if command {
        let text = if ctx.scopes.satisfies(Scope::Admin) {
            book.sessions.reset(&key);
            RESET_DONE
        } else {
            RESET_REFUSED
        };
        book.dedupe.finish(&run_id);
        drop(book);
        ctx.respond_ok(id, &ack(&run_id, ChatSendStatus::Started));
        let mut ev = synthetic_final(&run_id, &key);
        ev.message = Some(ChatMessage::assistant_text(text, now_ms()));
        return emit(gw, &ev);
    }

    let mut interrupted = false;
    if let Some(active) = book.active.get(&key).cloned() {
        if p.queue_mode == Some(QueueMode::Interrupt) {
            active.stop(Stop::Interrupt);
            book.active.remove(&key);
            interrupted = true;
        } else if active.steer(p.message.clone(), p.queue_mode) {
            book.dedupe.finish(&run_id);
            drop(book);
            ctx.respond_ok(id, &ack(&run_id, ChatSendStatus::Started));
            return emit(gw, &synthetic_final(&run_id, &key));
        } else {
            book.dedupe.finish(&run_id);
            let error =
                ErrorShape::unavailable("session queue is full; retry shortly", "queue-full", 250);
            return ctx.respond_err(id, &error);
        }
    }
    let fault = gw.faults.lock().pop_front();
    let run = RunCtl::new(
        run_id.clone(),
        key.clone(),
        p.message,
        fault.clone(),
        ctx.conn,
    );
    book.active.insert(key, run.clone());
    drop(book);

    let mut answer = ack(&run_id, ChatSendStatus::Started);
    if interrupted {
        answer.interrupted_active_run = Some(true);
    }
    match fault {
        Some(RunFault::DropAck) => {}
        Some(RunFault::DelayAck(delay)) => {
            let (ctx, id, shutdown) = (ctx.clone(), id.to_string(), gw.shutdown.clone());
            gw.tracker.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => ctx.respond_ok(&id, &answer),
                    () = shutdown.cancelled() => {}
                }
            });
        }
        _ => ctx.respond_ok(id, &answer),
    }
    gw.tracker.spawn(drive(gw.clone(), run));
}

/// Translates serde's wording into the gateway's schema (AJV) wording.
fn schema_message(serde: &str) -> String {
    let quoted = |s: &str| s.split('`').nth(1).unwrap_or_default().to_string();
    if serde.starts_with("unknown field") {
        format!("at root: unexpected property '{}'", quoted(serde))
    } else if serde.starts_with("missing field") {
        format!("must have required property '{}'", quoted(serde))
    } else {
        serde.to_string()
    }
}

/// `chat.abort {sessionKey, runId?}` → `{ok, aborted, runIds}`.
pub(crate) fn abort(gw: &Gateway, params: &Value) -> Result<Value, ErrorShape> {
    let p: ChatAbortParams = serde_json::from_value(params.clone())
        .map_err(|e| invalid(format!("invalid chat.abort params: {e}")))?;
    let key = canonical_key(gw, &p.session_key)?;
    let mut book = gw.chat.lock();
    let matches = book
        .active
        .get(key.as_str())
        .is_some_and(|r| p.run_id.as_ref().is_none_or(|id| *id == r.run_id));
    let mut run_ids = Vec::new();
    if matches && let Some(run) = book.active.remove(key.as_str()) {
        run.stop(Stop::Abort);
        run_ids.push(run.run_id.clone());
    }
    Ok(json!({"ok": true, "aborted": !run_ids.is_empty(), "runIds": run_ids}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_read_like_the_gateway() {
        assert_eq!(
            schema_message("unknown field `bogus`, expected one of `a`"),
            "at root: unexpected property 'bogus'"
        );
        assert_eq!(
            schema_message("missing field `idempotencyKey`"),
            "must have required property 'idempotencyKey'"
        );
    }

    #[test]
    fn reset_commands_are_recognised() {
        for m in ["/reset", " /NEW ", "/reset now"] {
            assert!(is_reset_command(m), "{m}");
        }
        for m in ["/resets", "reset", "hello /reset"] {
            assert!(!is_reset_command(m), "{m}");
        }
    }
}
