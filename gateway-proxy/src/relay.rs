//! The relay: one task per proxied connection moving frames both ways, in order, with bounded
//! buffers.
//!
//! Client frames go through the [inspector](crate::inspector) and are forwarded as the original
//! bytes (the received `Utf8Bytes` itself, no copy, no re-serialisation). Gateway frames are not
//! parsed at all. One task owns both sockets, so a write waits only on its own socket: a client
//! that stops reading stalls the gateway -> client direction, and after the slow-consumer timeout
//! it is closed 1008 "slow consumer" as the gateway would (a gateway that stops reading for as
//! long ends the connection too). Nothing queues in between, so memory per connection stays at
//! the two sockets' small buffers.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shared_protocol::close_code;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditEvent, AuditKind};
use crate::handshake::{Admitted, ConnCtx};
use crate::inspector::{Verdict, error_response, inspect, rate_limited_error};
use crate::metrics::UpstreamError;
use crate::server::Shared;
use crate::upstream::UpstreamWs;

/// Longest a close handshake may take on either socket at the end of a connection.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one rate-limit audit record per connection per this interval (a client hammering a
/// limit must not turn into disk writes per request).
pub const RATE_LIMIT_AUDIT_INTERVAL: Duration = Duration::from_secs(1);

/// Why a relay ended (closed set, for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed or went away.
    Client,
    /// The gateway closed or went away.
    Upstream,
    /// The client did not read in time.
    SlowConsumer,
    /// The proxy is shutting down.
    Shutdown,
}

fn close_frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from_static(reason),
    }
}

/// Moves frames until either side ends or `stop` fires (then both sides get 1012).
pub(crate) async fn relay<S>(
    shared: &Shared,
    ctx: &ConnCtx,
    mut client: WebSocketStream<S>,
    admitted: Admitted,
    stop: CancellationToken,
) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Admitted {
        mut upstream,
        session,
        slot: _slot,
    } = admitted;
    let m = &shared.metrics;
    let slow = Duration::from_millis(shared.config.limits.slow_consumer_timeout_ms);
    let mut last_limit_audit: Option<Instant> = None;
    // Registered once: a fresh `cancelled()` per frame would lock the token's waiter list twice.
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let end = loop {
        tokio::select! {
            biased;
            () = &mut stopped => {
                let frame = close_frame(close_code::SERVICE_RESTART, "service restart");
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close(Some(frame.clone()))).await;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(Some(frame))).await;
                break End::Shutdown;
            }
            msg = client.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let reply = match inspect(&text, &session, &shared.limits) {
                        Verdict::Forward => None,
                        Verdict::Deny { id, method, denial } => {
                            m.frames_client_denied.inc();
                            m.denial(denial);
                            shared.audit.record(AuditEvent {
                                credential: Some(&session.credential.id),
                                method: Some(&method),
                                reason: Some(denial.as_str()),
                                ..AuditEvent::new(AuditKind::Denied, ctx.peer, ctx.id)
                            });
                            Some(error_response(&id, &denial.to_error(&method)))
                        }
                        Verdict::Limited { id, method, limited } => {
                            m.frames_client_limited.inc();
                            m.limited(limited.kind);
                            let now = Instant::now();
                            if last_limit_audit.is_none_or(|t| now - t >= RATE_LIMIT_AUDIT_INTERVAL) {
                                last_limit_audit = Some(now);
                                shared.audit.record(AuditEvent {
                                    credential: Some(&session.credential.id),
                                    method: Some(&method),
                                    reason: Some(limited.kind.as_str()),
                                    ..AuditEvent::new(AuditKind::RateLimited, ctx.peer, ctx.id)
                                });
                            }
                            Some(error_response(&id, &rate_limited_error(limited)))
                        }
                        Verdict::Invalid => {
                            m.frames_client_invalid.inc();
                            tracing::debug!(len = text.len(), "dropped a client frame that is not a request");
                            continue;
                        }
                    };
                    match reply {
                        None => {
                            if send_within(&mut upstream, Message::Text(text), slow).await != Sent::Yes {
                                m.upstream_error(UpstreamError::Closed);
                                break close_client(&mut client, close_code::SERVICE_RESTART, "upstream lost").await;
                            }
                            m.frames_client_forwarded.inc();
                        }
                        Some(reply) => {
                            if !to_client(shared, &mut client, Message::text(reply), slow).await {
                                break finish_slow(&mut client, &mut upstream).await;
                            }
                        }
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    m.frames_client_invalid.inc();
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(frame)).await;
                    break End::Client;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "client read failed");
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(None)).await;
                    break End::Client;
                }
                None => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(None)).await;
                    break End::Client;
                }
            },
            msg = upstream.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    if !to_client(shared, &mut client, msg, slow).await {
                        break finish_slow(&mut client, &mut upstream).await;
                    }
                    m.frames_upstream_forwarded.inc();
                }
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.unwrap_or_else(|| close_frame(close_code::SERVICE_RESTART, "upstream closed"));
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close(Some(frame))).await;
                    break End::Upstream;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    m.upstream_error(UpstreamError::Closed);
                    break close_client(&mut client, close_code::SERVICE_RESTART, "upstream lost").await;
                }
            },
        }
    };
    shared.audit.record(AuditEvent {
        credential: Some(&session.credential.id),
        reason: Some(end.as_str()),
        ..AuditEvent::new(AuditKind::Disconnect, ctx.peer, ctx.id)
    });
    end
}

impl End {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Upstream => "upstream",
            End::SlowConsumer => "slow_consumer",
            End::Shutdown => "shutdown",
        }
    }
}

/// Result of a bounded send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Written.
    Yes,
    /// The socket failed.
    Failed,
    /// The peer did not accept the frame in time.
    TimedOut,
}

/// Sends one frame, giving the peer at most `limit` to take it. The common case (the socket
/// accepts at once) is decided on the first poll, without arming a timer.
async fn send_within<S>(ws: &mut WebSocketStream<S>, msg: Message, limit: Duration) -> Sent
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut send = std::pin::pin!(ws.send(msg));
    let first = std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await;
    let result = match first {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout(limit, send).await {
            Ok(r) => r,
            Err(_) => return Sent::TimedOut,
        },
    };
    match result {
        Ok(()) => Sent::Yes,
        Err(e) => {
            tracing::debug!(error = %e, "write failed");
            Sent::Failed
        }
    }
}

/// Sends to the client; false when it failed or did not take the frame within `slow`.
async fn to_client<S>(
    shared: &Shared,
    client: &mut WebSocketStream<S>,
    msg: Message,
    slow: Duration,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match send_within(client, msg, slow).await {
        Sent::Yes => true,
        Sent::Failed => false,
        Sent::TimedOut => {
            shared.metrics.slow_consumers.inc();
            tracing::info!("closing a slow consumer");
            false
        }
    }
}

async fn finish_slow<S>(client: &mut WebSocketStream<S>, upstream: &mut UpstreamWs) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, upstream.close(None)).await;
    close_client(client, close_code::POLICY_VIOLATION, "slow consumer").await;
    End::SlowConsumer
}

async fn close_client<S>(client: &mut WebSocketStream<S>, code: u16, reason: &'static str) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ =
        tokio::time::timeout(CLOSE_TIMEOUT, client.close(Some(close_frame(code, reason)))).await;
    End::Upstream
}
