//! The accept loop and the tick broadcaster.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use crate::config::MAX_CONNECTIONS;
use crate::connection::serve;
use crate::state::{Audience, Gateway, now_ms};

/// Accepts sockets until shutdown; refused ones (refuse flag, restart window, connection cap) are
/// dropped at once, which a client sees as a reset or an immediate EOF.
pub(crate) async fn accept_loop(gw: Arc<Gateway>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            () = gw.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let conn = gw.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        if gw.refusing() || gw.conns.lock().len() >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        gw.tracker.spawn(serve(gw.clone(), stream, conn));
    }
}

/// Sends `tick {ts}` to every authenticated socket every tick interval.
pub(crate) async fn tick_loop(gw: Arc<Gateway>) {
    let period = gw.config.tick_interval;
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            () = gw.shutdown.cancelled() => return,
            _ = interval.tick() => {
                let tick = shared_protocol::events::Tick { ts: now_ms() };
                gw.broadcast(shared_protocol::events::names::TICK, &tick, Audience::Authenticated, true);
            }
        }
    }
}
