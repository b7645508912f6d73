//! Admitting a client: the proxy's own challenge and credential check ("exchange"), or policy
//! checks on the client's own handshake relayed to the gateway ("passthrough").
//!
//! Every refusal is a [`Refusal`]: the answer the client gets (in the gateway's error shape),
//! the close code, the metric outcome and the audit record. `refuse` delivers it.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use shared_protocol::close_code;
use shared_protocol::connect::{Challenge, ClientId, ClientMode, ConnectAuth, ConnectParams, Role};
use shared_protocol::device::verify_proof;
use shared_protocol::frame::{Frame, encode_event, encode_response_ok};
use shared_protocol::limits::PROTOCOL_VERSION;
use shared_protocol::{DetailCode, ErrorCode, ErrorShape, Scope, ScopeSet, Secret};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::admission::AdmittedSlot;
use crate::audit::{AuditEvent, AuditKind};
use crate::client_hello::{client_hello, session_defaults};
use crate::config::UpstreamIdentity;
use crate::credential::{ConnectionSlot, Credential};
use crate::inspector::{Session, error_response, rate_limited_error};
use crate::metrics::{ConnOutcome, UpstreamError};
use crate::pin::Pin;
use crate::rate_limit::{LimitKind, Limited};
use crate::server::Shared;
use crate::upstream::{UpstreamFailure, UpstreamWs, read_raw};

/// How long a refusal's answer and close frame may take to reach the client.
pub const REFUSAL_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Facts about one accepted socket.
#[derive(Debug)]
pub struct ConnCtx {
    /// Client address.
    pub peer: SocketAddr,
    /// Connection id (logs, audit).
    pub id: u64,
    /// The client's TLS certificate, when it presented one.
    pub client_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    /// End of the window for TLS and the upgrade request (a socket that sends nothing).
    pub upgrade_deadline: Instant,
    /// End of the handshake window.
    pub deadline: Instant,
}

/// An admitted client: its upstream socket and what it may do.
#[derive(Debug)]
pub struct Admitted {
    /// The gateway connection, past its hello.
    pub upstream: UpstreamWs,
    /// Credential and granted scopes.
    pub session: Session,
    /// The credential's connection slot and the proxy's admitted slot, held for the
    /// connection's life.
    pub slots: (ConnectionSlot, AdmittedSlot),
}

/// A refused handshake, ready to deliver (boxed: refusals are rare, results stay small).
#[derive(Debug)]
pub struct Refusal(Box<RefusalParts>);

#[derive(Debug)]
struct RefusalParts {
    response: Option<(String, ErrorShape)>,
    close: Option<(u16, String)>,
    outcome: ConnOutcome,
    audit: Option<(AuditKind, String, Option<String>)>,
}

impl Refusal {
    fn new(outcome: ConnOutcome, code: u16, reason: impl Into<String>) -> Self {
        Self(Box::new(RefusalParts {
            response: None,
            close: Some((code, reason.into())),
            outcome,
            audit: None,
        }))
    }

    /// The peer is gone or broke the protocol: nothing to send.
    fn silent(outcome: ConnOutcome) -> Self {
        Self(Box::new(RefusalParts {
            response: None,
            close: None,
            outcome,
            audit: None,
        }))
    }

    fn answer(mut self, id: &str, error: ErrorShape) -> Self {
        self.0.response = Some((id.to_string(), error));
        self
    }

    fn audited(mut self, kind: AuditKind, reason: &str, credential: Option<&Credential>) -> Self {
        self.0.audit = Some((kind, reason.to_string(), credential.map(|c| c.id.clone())));
        self
    }
}

fn auth_error(detail: DetailCode, message: &str) -> ErrorShape {
    ErrorShape {
        details: Some(serde_json::json!({ "code": detail.as_str() })),
        ..ErrorShape::new(ErrorCode::InvalidRequest, message)
    }
}

fn auth_refusal(id: &str, detail: DetailCode, message: &str, cred: Option<&Credential>) -> Refusal {
    Refusal::new(
        ConnOutcome::AuthFailed,
        close_code::POLICY_VIOLATION,
        message,
    )
    .answer(id, auth_error(detail.clone(), message))
    .audited(AuditKind::AuthFailure, detail.as_str(), cred)
}

fn limited_refusal(id: &str, l: Limited, cred: Option<&Credential>) -> Refusal {
    Refusal::new(
        ConnOutcome::RateLimited,
        close_code::TRY_AGAIN_LATER,
        "rate limited",
    )
    .answer(id, rate_limited_error(l))
    .audited(AuditKind::RateLimited, l.kind.as_str(), cred)
}

/// Sends a refusal's answer and close frame (bounded in time), counts and audits it.
pub(crate) async fn refuse<S>(
    shared: &Shared,
    ctx: &ConnCtx,
    client: &mut WebSocketStream<S>,
    refusal: Refusal,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let refusal = *refusal.0;
    shared.metrics.connection(refusal.outcome);
    if let Some((kind, reason, cred)) = &refusal.audit {
        shared.audit.record(AuditEvent {
            credential: cred.as_deref(),
            method: Some("connect"),
            reason: Some(reason),
            ..AuditEvent::new(*kind, ctx.peer, ctx.id)
        });
    }
    tracing::info!(outcome = ?refusal.outcome, close = ?refusal.close.as_ref().map(|c| c.0), "handshake refused");
    let deliver = async {
        if let Some((id, error)) = &refusal.response {
            let _ = client.send(Message::text(error_response(id, error))).await;
        }
        if let Some((code, reason)) = refusal.close {
            let _ = client
                .close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from(reason),
                }))
                .await;
        }
    };
    let _ = tokio::time::timeout(REFUSAL_SEND_TIMEOUT, deliver).await;
}

/// Reads the client's first data frame within the deadline, capped at 64 KiB (close 1009) by
/// the socket's [pre-auth config](crate::ws::preauth_config).
async fn read_preauth<S>(
    client: &mut WebSocketStream<S>,
    deadline: Instant,
) -> Result<Utf8Bytes, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let too_large = || {
        Refusal::new(
            ConnOutcome::HandshakeFailed,
            close_code::TOO_LARGE,
            "preauth payload too large",
        )
    };
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => {
                return Err(Refusal::new(
                    ConnOutcome::HandshakeFailed,
                    close_code::POLICY_VIOLATION,
                    "handshake timeout",
                ));
            }
            // The socket's pre-auth config caps messages at MAX_PREAUTH_PAYLOAD_BYTES: a
            // larger one fails on its header, before it is buffered.
            Ok(Some(Err(WsError::Capacity(_)))) => return Err(too_large()),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                return Err(Refusal::silent(ConnOutcome::HandshakeFailed));
            }
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t),
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(Refusal::new(
                    ConnOutcome::HandshakeFailed,
                    close_code::POLICY_VIOLATION,
                    "invalid handshake: binary frame",
                ));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Parses the first frame as a `connect` request (closed schema, as the gateway does).
fn parse_connect(text: &str) -> Result<(String, ConnectParams), Refusal> {
    let invalid = |id: &str, msg: String| {
        Refusal::new(
            ConnOutcome::AuthFailed,
            close_code::POLICY_VIOLATION,
            "invalid handshake",
        )
        .answer(id, ErrorShape::new(ErrorCode::InvalidRequest, msg))
    };
    match Frame::parse(text) {
        Ok(Frame::Request(req)) if req.method == "connect" => {
            let id = req.id.to_string();
            match req.params_as::<ConnectParams>() {
                Ok(p) => Ok((id, p)),
                Err(e) => Err(invalid(&id, format!("invalid connect params: {e}"))),
            }
        }
        Ok(Frame::Request(req)) => Err(invalid(
            &req.id,
            "invalid handshake: first request must be connect".into(),
        )),
        _ => Err(Refusal::new(
            ConnOutcome::AuthFailed,
            close_code::POLICY_VIOLATION,
            "invalid handshake: first request must be connect",
        )),
    }
}

fn check_protocol(id: &str, params: &ConnectParams) -> Result<(), Refusal> {
    if params.accepts_protocol(PROTOCOL_VERSION) {
        return Ok(());
    }
    let msg = format!("protocol mismatch: server speaks {PROTOCOL_VERSION}");
    Err(Refusal::new(
        ConnOutcome::AuthFailed,
        close_code::PROTOCOL_MISMATCH,
        "protocol mismatch",
    )
    .answer(id, auth_error(DetailCode::ProtocolMismatch, &msg)))
}

fn check_operator(id: &str, params: &ConnectParams) -> Result<(), Refusal> {
    match params.role {
        None | Some(Role::Operator) => Ok(()),
        Some(_) => Err(Refusal::new(
            ConnOutcome::AuthFailed,
            close_code::POLICY_VIOLATION,
            "role not allowed",
        )
        .answer(
            id,
            ErrorShape::new(
                ErrorCode::Forbidden,
                "the proxy admits operator clients only",
            ),
        )),
    }
}

fn check_client_cert(id: &str, cred: &Credential, ctx: &ConnCtx) -> Result<(), Refusal> {
    if cred.client_cert_pins.is_empty() {
        return Ok(());
    }
    let ok = ctx
        .client_cert
        .as_ref()
        .is_some_and(|c| cred.client_cert_pins.iter().any(|p: &Pin| p.matches(c)));
    if ok {
        Ok(())
    } else {
        Err(auth_refusal(
            id,
            DetailCode::AuthUnauthorized,
            "unauthorized: client certificate required",
            Some(cred),
        ))
    }
}

/// Verifies the device proof against `nonce`; returns the device id when one was presented.
fn check_device(
    id: &str,
    cred: &Credential,
    params: &ConnectParams,
    nonce: &str,
) -> Result<Option<String>, Refusal> {
    match &params.device {
        None if cred.require_device => Err(auth_refusal(
            id,
            DetailCode::DeviceIdentityRequired,
            "device identity required",
            Some(cred),
        )),
        None => Ok(None),
        Some(proof) => match verify_proof(params, proof, nonce, crate::clock::unix_ms()) {
            Ok(()) => Ok(Some(proof.id.clone())),
            Err(e) => Err(auth_refusal(
                id,
                e.detail_code(),
                &e.to_string(),
                Some(cred),
            )),
        },
    }
}

fn check_handshake_rate(shared: &Shared, ctx: &ConnCtx, id: &str) -> Result<(), Refusal> {
    shared.limits.check_handshake(ctx.peer.ip()).map_err(|l| {
        shared.metrics.limited(l.kind);
        limited_refusal(id, l, None)
    })
}

/// The refusal messages of one handshake mode, for a missing and for an unknown token.
struct TokenRefusals {
    missing: &'static str,
    mismatch: &'static str,
}

/// Exchange mode: the token is the proxy's own credential.
const EXCHANGE_REFUSALS: TokenRefusals = TokenRefusals {
    missing: "unauthorized: proxy token missing",
    mismatch: "unauthorized: proxy token mismatch",
};

/// Passthrough mode: the client sends its own gateway token (of any kind), which the proxy must
/// also hold as a credential.
const PASSTHROUGH_REFUSALS: TokenRefusals = TokenRefusals {
    missing: "unauthorized: token missing",
    mismatch: "unauthorized: token not allowed by proxy",
};

/// What both modes check once the client's connect (request `id`, `params`, the challenge's
/// `nonce`) is read, in this order: a non-empty token that names a credential, the operator
/// role, then the client certificate and device proof that credential asks for. Returns the
/// credential and the device id, if a device signed.
fn authenticate(
    shared: &Shared,
    ctx: &ConnCtx,
    id: &str,
    params: &ConnectParams,
    nonce: &str,
    token: Option<&Secret>,
    refusals: &TokenRefusals,
) -> Result<(Arc<Credential>, Option<String>), Refusal> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| auth_refusal(id, DetailCode::AuthTokenMissing, refusals.missing, None))?;
    let cred = shared
        .creds
        .authenticate(token.expose())
        .ok_or_else(|| auth_refusal(id, DetailCode::AuthTokenMismatch, refusals.mismatch, None))?;
    check_operator(id, params)?;
    check_client_cert(id, &cred, ctx)?;
    let device = check_device(id, &cred, params, nonce)?;
    Ok((cred, device))
}

/// The credential's connection slot and one of the proxy's admitted slots.
fn take_slots(
    shared: &Shared,
    id: &str,
    cred: &Arc<Credential>,
) -> Result<(ConnectionSlot, AdmittedSlot), Refusal> {
    let slot = cred.try_acquire().ok_or_else(|| {
        shared.metrics.limited(LimitKind::Connections);
        let l = Limited {
            kind: LimitKind::Connections,
            retry_after: std::time::Duration::from_secs(1),
        };
        limited_refusal(id, l, Some(cred))
    })?;
    let admitted = shared.admission.try_admit().ok_or_else(|| {
        Refusal::new(
            ConnOutcome::OverCapacity,
            close_code::TRY_AGAIN_LATER,
            "proxy at capacity",
        )
        .answer(
            id,
            ErrorShape::unavailable(
                "proxy at capacity; retry shortly",
                "proxy-at-capacity",
                1000,
            ),
        )
    })?;
    Ok((slot, admitted))
}

fn upstream_refusal(shared: &Shared, id: Option<&str>, f: UpstreamFailure) -> Refusal {
    let (kind, err, code) = match f {
        UpstreamFailure::Unreachable(e) => {
            tracing::warn!(error = %e, "gateway unreachable");
            (
                UpstreamError::Connect,
                ErrorShape::unavailable(
                    "gateway unavailable; retry shortly",
                    "upstream-unavailable",
                    1000,
                ),
                close_code::TRY_AGAIN_LATER,
            )
        }
        UpstreamFailure::Refused(err) => {
            let code = if err.code == ErrorCode::Unavailable {
                close_code::TRY_AGAIN_LATER
            } else {
                close_code::POLICY_VIOLATION
            };
            (UpstreamError::Handshake, err, code)
        }
        UpstreamFailure::Broken(e, frame) => {
            tracing::warn!(error = %e, "gateway handshake failed");
            let code = frame.map_or(close_code::TRY_AGAIN_LATER, |f| u16::from(f.code));
            (
                UpstreamError::Handshake,
                ErrorShape::unavailable(
                    "gateway handshake failed; retry shortly",
                    "upstream-unavailable",
                    1000,
                ),
                code,
            )
        }
    };
    shared.metrics.upstream_error(kind);
    let r = Refusal::new(ConnOutcome::UpstreamFailed, code, "gateway unavailable");
    match id {
        Some(id) => r.answer(id, err),
        None => r,
    }
}

/// Parses requested scope names strictly (passthrough: an unknown name cannot be checked).
fn strict_scopes(id: &str, params: &ConnectParams) -> Result<ScopeSet, Refusal> {
    let mut set = ScopeSet::EMPTY;
    for name in params.scopes.iter().flatten() {
        let Some(s) = Scope::parse(name) else {
            return Err(Refusal::new(
                ConnOutcome::AuthFailed,
                close_code::POLICY_VIOLATION,
                "unknown scope",
            )
            .answer(
                id,
                ErrorShape::new(ErrorCode::InvalidRequest, format!("unknown scope {name:?}")),
            ));
        };
        set.insert(s);
    }
    Ok(set)
}

/// The connect the proxy sends upstream in exchange mode.
fn upstream_params(client: &ConnectParams, scopes: ScopeSet, shared: &Shared) -> ConnectParams {
    let mut info = client.client.clone();
    let keeps_scopes = matches!(
        (info.id, info.mode),
        (ClientId::GatewayClient, ClientMode::Backend) | (ClientId::Cli, ClientMode::Cli)
    );
    if shared.upstream.identity() == UpstreamIdentity::Loopback && !keeps_scopes {
        info.id = ClientId::GatewayClient;
        info.mode = ClientMode::Backend;
    }
    ConnectParams {
        caps: client.caps.clone(),
        // Always an `auth` object, carrying the upstream token when one is configured.
        auth: Some(ConnectAuth {
            token: shared.upstream.token().cloned(),
            ..ConnectAuth::default()
        }),
        locale: client.locale.clone(),
        user_agent: client.user_agent.clone(),
        ..ConnectParams::operator(info, scopes.iter(), None)
    }
}

async fn send_text<S>(client: &mut WebSocketStream<S>, text: String) -> Result<(), Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    client
        .send(Message::text(text))
        .await
        .map_err(|_| Refusal::silent(ConnOutcome::HandshakeFailed))
}

fn audit_connect(
    shared: &Shared,
    ctx: &ConnCtx,
    cred: &Credential,
    scopes: ScopeSet,
    device: Option<&str>,
) {
    shared.metrics.connection(ConnOutcome::Accepted);
    shared.audit.record(AuditEvent {
        credential: Some(&cred.id),
        scopes: Some(scopes.names()),
        device,
        ..AuditEvent::new(AuditKind::Connect, ctx.peer, ctx.id)
    });
}

/// Exchange mode: the proxy's challenge, its credential, its own upstream session.
///
/// # Errors
/// A [`Refusal`] to deliver with [`refuse`].
pub(crate) async fn exchange<S>(
    shared: &Shared,
    ctx: &ConnCtx,
    client: &mut WebSocketStream<S>,
) -> Result<Admitted, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let nonce = uuid::Uuid::new_v4().to_string();
    let challenge = Challenge {
        nonce: nonce.clone(),
        ts: crate::clock::unix_ms(),
        capabilities: Vec::new(),
    };
    let text = encode_event("connect.challenge", &challenge, None)
        .map_err(|_| Refusal::silent(ConnOutcome::HandshakeFailed))?;
    send_text(client, text).await?;
    let first = read_preauth(client, ctx.deadline).await?;
    let (id, params) = parse_connect(&first)?;
    check_protocol(&id, &params)?;
    check_handshake_rate(shared, ctx, &id)?;
    let token = params.auth.as_ref().and_then(|a| a.token.as_ref());
    let (cred, device) =
        authenticate(shared, ctx, &id, &params, &nonce, token, &EXCHANGE_REFUSALS)?;
    let slots = take_slots(shared, &id, &cred)?;
    let requested = ScopeSet::from_names(params.scopes.iter().flatten().map(String::as_str));
    let granted = requested.clamp_to(cred.policy.grant);

    let mut upstream = shared
        .upstream
        .open()
        .await
        .map_err(|f| upstream_refusal(shared, Some(&id), f))?;
    let hello = shared
        .upstream
        .hello(
            &mut upstream,
            upstream_params(&params, granted, shared),
            ctx.deadline,
        )
        .await
        .map_err(|f| upstream_refusal(shared, Some(&id), f))?;
    let (payload, scopes) = client_hello(hello.get(), granted)
        .map_err(|e| upstream_refusal(shared, Some(&id), UpstreamFailure::Broken(e, None)))?;
    let defaults = session_defaults(&payload);
    let text = encode_response_ok(&id, &payload)
        .map_err(|_| Refusal::silent(ConnOutcome::HandshakeFailed))?;
    send_text(client, text).await?;
    audit_connect(shared, ctx, &cred, scopes, device.as_deref());
    Ok(Admitted {
        upstream,
        session: Session {
            credential: cred,
            scopes,
            defaults,
        },
        slots,
    })
}

/// Passthrough mode: the gateway's challenge and the client's connect pass untouched; the proxy
/// checks the credential (hash of the token the client sends) and refuses scopes beyond policy.
///
/// # Errors
/// A [`Refusal`] to deliver with [`refuse`].
pub(crate) async fn passthrough<S>(
    shared: &Shared,
    ctx: &ConnCtx,
    client: &mut WebSocketStream<S>,
) -> Result<Admitted, Refusal>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = shared
        .upstream
        .open()
        .await
        .map_err(|f| upstream_refusal(shared, None, f))?;
    let challenge_text = read_raw(&mut upstream, ctx.deadline)
        .await
        .map_err(|f| upstream_refusal(shared, None, f))?;
    // The gateway says nothing more until the connect: a frame boundary.
    upstream.get_mut().arm();
    let nonce = match Frame::parse(&challenge_text) {
        Ok(Frame::Event(ev)) if ev.event == "connect.challenge" => ev
            .payload_as::<Challenge>()
            .map(|c| c.nonce)
            .unwrap_or_default(),
        _ => String::new(),
    };
    send_text(client, challenge_text).await?;
    let first = read_preauth(client, ctx.deadline).await?;
    let (id, params) = parse_connect(&first)?;
    check_handshake_rate(shared, ctx, &id)?;
    let auth = params.auth.clone().unwrap_or_default();
    let token = [
        &auth.token,
        &auth.password,
        &auth.device_token,
        &auth.bootstrap_token,
    ]
    .into_iter()
    .flatten()
    .find(|t| !t.is_empty());
    let (cred, device) = authenticate(
        shared,
        ctx,
        &id,
        &params,
        &nonce,
        token,
        &PASSTHROUGH_REFUSALS,
    )?;
    let requested = strict_scopes(&id, &params)?;
    if let Some(missing) = requested.iter().find(|s| !cred.policy.grant.satisfies(*s)) {
        shared
            .metrics
            .denial(crate::policy::Denial::MissingScope(missing));
        return Err(Refusal::new(
            ConnOutcome::AuthFailed,
            close_code::POLICY_VIOLATION,
            "scope not allowed",
        )
        .answer(&id, ErrorShape::missing_scope(missing.as_str()))
        .audited(AuditKind::Denied, "missing_scope", Some(&cred)));
    }
    let slots = take_slots(shared, &id, &cred)?;
    upstream
        .send(Message::Text(first.clone()))
        .await
        .map_err(|e| {
            upstream_refusal(
                shared,
                Some(&id),
                UpstreamFailure::Broken(e.to_string(), None),
            )
        })?;
    loop {
        let text = read_raw(&mut upstream, ctx.deadline)
            .await
            .map_err(|f| upstream_refusal(shared, Some(&id), f))?;
        let Ok(Frame::Response(res)) = Frame::parse(&text) else {
            continue;
        };
        if res.id != id {
            continue;
        }
        if !res.ok {
            let err = res
                .error()
                .unwrap_or_else(|| ErrorShape::new(ErrorCode::InvalidRequest, "refused"));
            return Err(upstream_refusal(
                shared,
                Some(&id),
                UpstreamFailure::Refused(err),
            ));
        }
        let granted = res
            .payload_as::<shared_protocol::connect::HelloOk>()
            .map(|h| h.granted_scopes())
            .unwrap_or(ScopeSet::EMPTY)
            .clamp_to(cred.policy.grant);
        let defaults = res
            .payload_as::<Value>()
            .map(|h| session_defaults(&h))
            .unwrap_or_default();
        send_text(client, text).await?;
        audit_connect(shared, ctx, &cred, granted, device.as_deref());
        return Ok(Admitted {
            upstream,
            session: Session {
                credential: cred,
                scopes: granted,
                defaults,
            },
            slots,
        });
    }
}
