//! One client socket: upgrade checks, challenge, handshake, then the request loop.

use std::sync::Arc;

use futures_util::StreamExt;
use shared_protocol::limits::MAX_PREAUTH_PAYLOAD_BYTES;
use shared_protocol::{ErrorCode, ErrorShape, Frame, close_code};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::config::{CLOSE_GRACE, MAX_MESSAGE_BYTES, READ_BUFFER_BYTES, WRITE_BUFFER_BYTES};
use crate::connect_schema::{ConnectParamsError, validate};
use crate::dispatch::{ConnCtx, handle_request, record_request};
use crate::handshake::{Refusal, UpgradeInfo, admit, hello_ok};
use crate::outbound::{Outbound, WriterEnd, write_loop};
use crate::state::{ConnEntry, Gateway, now_ms};

/// Upgrade headers that mark a proxied request; the gateway answers those from loopback with 403.
const FORWARDED_HEADERS: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "forwarded",
];

/// The WebSocket settings of every accepted socket.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// How the read side ended.
enum End {
    /// The client left, or the socket was killed: nothing more to flush.
    Gone,
    /// We queued a close frame: let the writer deliver it.
    Closing,
}

type WsStream = futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<TcpStream>>;

/// Serves one accepted TCP stream until it closes.
pub(crate) async fn serve(gw: Arc<Gateway>, stream: TcpStream, conn: u64) {
    let opened = Instant::now();
    let kill = gw.shutdown.child_token();
    let mut upgrade = UpgradeInfo::default();
    // The callback's signature is tungstenite's; its error type is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let headers = req.headers();
        if FORWARDED_HEADERS.iter().any(|h| headers.contains_key(*h)) {
            let mut refusal = ErrorResponse::new(Some("Forbidden".into()));
            *refusal.status_mut() = StatusCode::FORBIDDEN;
            return Err(refusal);
        }
        upgrade.origin = headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(resp)
    };
    let accept =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config()));
    let ws = tokio::select! {
        () = kill.cancelled() => return,
        r = tokio::time::timeout(gw.config.preauth_timeout, accept) => match r {
            Ok(Ok(ws)) => ws,
            _ => return,
        },
    };
    let (sink, mut reader) = ws.split();
    let (out, rx) = Outbound::new(gw.config.max_buffered_bytes);
    gw.register(
        conn,
        ConnEntry {
            outbound: out.clone(),
            scopes: None,
            kill: kill.clone(),
        },
    );
    let writer_done = CancellationToken::new();
    let writer = {
        let (out, kill, done, gw) = (out.clone(), kill.clone(), writer_done.clone(), gw.clone());
        gw.tracker.clone().spawn(async move {
            if write_loop(sink, rx, out, kill).await == WriterEnd::SlowConsumer {
                gw.record_slow_consumer();
            }
            done.cancel();
        })
    };

    let ctx = ConnCtx {
        conn,
        conn_id: uuid::Uuid::new_v4().to_string(),
        out: out.clone(),
        scopes: shared_protocol::ScopeSet::EMPTY,
    };
    let end = match handshake(&gw, &mut reader, ctx, &upgrade, opened, &kill, &writer_done).await {
        Ok(ctx) => request_loop(&gw, &mut reader, &ctx, &kill, &writer_done).await,
        Err(end) => end,
    };
    if matches!(end, End::Closing) {
        let _ = tokio::time::timeout(CLOSE_GRACE, writer_done.cancelled()).await;
    }
    kill.cancel();
    let _ = writer.await;
    gw.unregister(conn);
}

/// Reads the next text frame; `Err` when the socket is gone.
async fn next_text(
    reader: &mut WsStream,
    kill: &CancellationToken,
    writer_done: &CancellationToken,
) -> Result<String, End> {
    loop {
        let msg = tokio::select! {
            () = kill.cancelled() => return Err(End::Gone),
            () = writer_done.cancelled() => return Err(End::Gone),
            msg = reader.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(t) => return Ok(t),
                Err(_) => continue,
            },
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(End::Gone),
            Some(Ok(_)) => continue,
        }
    }
}

fn refuse(ctx: &ConnCtx, id: &str, refusal: &Refusal) -> End {
    ctx.respond_err(id, &refusal.error);
    ctx.out.close(refusal.code, &refusal.reason);
    End::Closing
}

fn invalid(message: String) -> Box<Refusal> {
    Box::new(Refusal {
        error: ErrorShape::new(ErrorCode::InvalidRequest, message.clone()),
        code: close_code::POLICY_VIOLATION,
        reason: truncate_reason(message),
    })
}

fn truncate_reason(mut reason: String) -> String {
    while reason.len() > 123 {
        reason.pop();
    }
    reason
}

async fn handshake(
    gw: &Arc<Gateway>,
    reader: &mut WsStream,
    mut ctx: ConnCtx,
    upgrade: &UpgradeInfo,
    opened: Instant,
    kill: &CancellationToken,
    writer_done: &CancellationToken,
) -> Result<ConnCtx, End> {
    let nonce = uuid::Uuid::new_v4().to_string();
    let challenge = shared_protocol::connect::Challenge {
        nonce: nonce.clone(),
        ts: now_ms(),
        capabilities: vec!["model-catalog-snapshot".into()],
    };
    if let Ok(raw) = serde_json::value::to_raw_value(&challenge) {
        ctx.out
            .send_unsequenced_event(shared_protocol::events::names::CONNECT_CHALLENGE, &raw);
    }
    let deadline = opened + gw.config.preauth_timeout;
    let text = match tokio::time::timeout_at(deadline, next_text(reader, kill, writer_done)).await {
        Ok(r) => r?,
        Err(_) => {
            ctx.out
                .close(close_code::POLICY_VIOLATION, "handshake timeout");
            return Err(End::Closing);
        }
    };
    if text.len() > MAX_PREAUTH_PAYLOAD_BYTES {
        // Observed: the real gateway's socket layer closes 1009 with an empty reason.
        ctx.out.close(close_code::TOO_LARGE, "");
        return Err(End::Closing);
    }
    let Ok(Frame::Request(req)) = Frame::parse(&text) else {
        return Err(refuse(&ctx, "", &invalid("invalid request frame".into())));
    };
    let params = record_request(gw, ctx.conn, &req);
    if req.method != shared_protocol::methods::names::CONNECT {
        let message = "invalid handshake: first request must be connect".to_string();
        return Err(refuse(&ctx, &req.id, &invalid(message)));
    }
    let connect = match validate(&params) {
        Ok(p) => p,
        Err(ConnectParamsError::Schema(detail)) => {
            let message = format!("invalid connect params: {detail}");
            return Err(refuse(&ctx, &req.id, &invalid(message)));
        }
        Err(ConnectParamsError::InvalidRole) => {
            return Err(refuse(&ctx, &req.id, &invalid("invalid role".into())));
        }
    };
    let admitted = match admit(gw, &connect, upgrade, &nonce) {
        Ok(a) => a,
        Err(refusal) => return Err(refuse(&ctx, &req.id, &refusal)),
    };
    tracing::debug!(conn = ctx.conn, scopes = ?admitted.scopes, "hello-ok");
    ctx.respond_ok(&req.id, &hello_ok(gw, &admitted, &ctx.conn_id));
    ctx.scopes = admitted.scopes;
    gw.authenticate(ctx.conn, admitted.scopes);
    Ok(ctx)
}

async fn request_loop(
    gw: &Arc<Gateway>,
    reader: &mut WsStream,
    ctx: &ConnCtx,
    kill: &CancellationToken,
    writer_done: &CancellationToken,
) -> End {
    loop {
        let text = match next_text(reader, kill, writer_done).await {
            Ok(t) => t,
            Err(end) => return end,
        };
        // Tolerant reading: anything that is not a request is ignored.
        if let Ok(Frame::Request(req)) = Frame::parse(&text) {
            handle_request(gw, ctx, &req);
        }
        if ctx.out.is_slow() {
            return End::Closing;
        }
    }
}
