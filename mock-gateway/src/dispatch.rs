//! Request dispatch after hello: record, scope check, then the method.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};
use shared_protocol::frame::{RequestFrame, encode_response_err, encode_response_ok};
use shared_protocol::methods::names;
use shared_protocol::scopes::requirement;
use shared_protocol::{ErrorCode, ErrorShape, ScopeSet};

use crate::outbound::Outbound;
use crate::record::ReceivedRequest;
use crate::state::{Gateway, now_ms};
use crate::{chat, sessions};

/// The connection a request came from.
#[derive(Debug, Clone)]
pub(crate) struct ConnCtx {
    /// Connection number.
    pub conn: u64,
    /// `hello-ok.server.connId`.
    pub conn_id: String,
    /// Where responses go.
    pub out: Arc<Outbound>,
    /// Granted scopes.
    pub scopes: ScopeSet,
}

impl ConnCtx {
    /// Sends a successful response.
    pub fn respond_ok<P: Serialize>(&self, id: &str, payload: &P) {
        match encode_response_ok(id, payload) {
            Ok(text) => {
                self.out.send_text(text);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode response"),
        }
    }

    /// Sends a failed response.
    pub fn respond_err(&self, id: &str, error: &ErrorShape) {
        match encode_response_err::<()>(id, error, None) {
            Ok(text) => {
                self.out.send_text(text);
            }
            Err(e) => tracing::error!(error = %e, "cannot encode response"),
        }
    }
}

/// Adds a request of connection `conn` (the connect included) to the log tests read, and
/// returns its params (`null` when absent or unreadable).
pub(crate) fn record_request(gw: &Gateway, conn: u64, req: &RequestFrame<'_>) -> Value {
    let params: Value = req
        .params
        .and_then(|p| serde_json::from_str(p.get()).ok())
        .unwrap_or(Value::Null);
    gw.log.push(ReceivedRequest {
        connection: conn,
        id: req.id.to_string(),
        method: req.method.to_string(),
        params: params.clone(),
    });
    params
}

/// Records and answers one request.
pub(crate) fn handle_request(gw: &Arc<Gateway>, ctx: &ConnCtx, req: &RequestFrame<'_>) {
    let params = record_request(gw, ctx.conn, req);
    let raw_params = req.params.map(serde_json::value::RawValue::get);
    if let Err(missing) = requirement(&req.method, raw_params).check(ctx.scopes) {
        let error = match missing {
            Some(scope) => ErrorShape::missing_scope(scope.as_str()),
            None => ErrorShape::new(ErrorCode::Forbidden, "unauthorized role: operator"),
        };
        return ctx.respond_err(&req.id, &error);
    }
    let result = match req.method.as_ref() {
        names::CHAT_SEND => return chat::send(gw, ctx, &req.id, &params),
        names::HEALTH => Ok(json!({"ok": true, "ts": now_ms(), "durationMs": 0})),
        names::AGENTS_LIST => {
            let agents: Vec<Value> = gw.agent_ids().iter().map(|id| json!({"id": id})).collect();
            Ok(json!({"defaultId":"main","mainKey":"main","scope":"per-sender","agents":agents}))
        }
        names::CHAT_ABORT => chat::abort(gw, &params),
        names::CHAT_HISTORY => sessions::history(gw, &params),
        names::SESSIONS_DESCRIBE => sessions::describe(gw, &params),
        names::SESSIONS_PATCH => sessions::patch(gw, &params),
        names::SESSIONS_DELETE => sessions::delete(gw, &params),
        names::SESSIONS_RESET => sessions::reset(gw, &params),
        other => Err(ErrorShape::new(
            ErrorCode::InvalidRequest,
            format!("unknown method: {other}"),
        )),
    };
    match result {
        Ok(payload) => ctx.respond_ok(&req.id, &payload),
        Err(error) => ctx.respond_err(&req.id, &error),
    }
}
