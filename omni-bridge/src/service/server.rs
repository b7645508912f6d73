//! The accept loop: HTTP/1.1 connections, bounded, drained gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Service;

/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves until `shutdown` is cancelled, then drains within the config's grace period:
///
/// 1. The listener stays open and every request is still answered: a retry joins its run in
///    flight, a new message gets the localised "restarting" text (HTTP 200) instead of a refused
///    connection, which this Omni would turn into silence. `/ready` answers 503 from now on, so a
///    load balancer stops sending.
/// 2. Once every run has finished (or the grace period is over), the listener closes and open
///    connections finish their response and close.
///
/// # Errors
/// Only a failing `accept` that is not per-connection (the listener itself broke).
pub async fn run(
    listener: TcpListener,
    service: Service,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(service.inner.max_connections));
    let stop = shutdown.clone();
    accept_until(&listener, &service, &graceful, &permits, stop.cancelled()).await?;
    service.begin_shutdown();
    let grace = service.inner.grace;
    let deadline = Instant::now() + grace;
    tracing::info!(
        grace_secs = grace.as_secs(),
        in_flight = service.inner.backend.runs_in_flight(),
        "shutting down: finishing runs in flight; new messages get the restarting text"
    );
    service.inner.runs.close();
    let runs = service.inner.runs.clone();
    let drained = async move {
        tokio::select! {
            () = runs.wait() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!("grace period over with runs still in flight");
            }
        }
    };
    accept_until(&listener, &service, &graceful, &permits, drained).await?;
    drop(listener);
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over with connections still open");
    }
    service.inner.conns.close();
    let _ = tokio::time::timeout_at(deadline, service.inner.conns.wait()).await;
    Ok(())
}

/// Accepts and serves connections until `until` completes.
async fn accept_until(
    listener: &TcpListener,
    service: &Service,
    graceful: &GracefulShutdown,
    permits: &Arc<Semaphore>,
    until: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(until);
    loop {
        let permit = tokio::select! {
            () = &mut until => return Ok(()),
            p = Arc::clone(permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut until => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let _ = stream.set_nodelay(true);
        let svc = service.clone();
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req: http::Request<Incoming>| {
                    let svc = svc.clone();
                    async move { Ok::<_, Infallible>(svc.handle(req).await) }
                }),
            );
        let watched = graceful.watch(conn);
        service.inner.conns.spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE / ENFILE
}
