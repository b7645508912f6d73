//! The handle tests hold: address, fault injection, what was received, restart and stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::STOP_GRACE;
use crate::fault::RunFault;
use crate::record::ReceivedRequest;
use crate::run::Stop;
use crate::state::Gateway;

/// A running mock gateway. Cloning is cheap; dropping the last clone does not stop it: call
/// [`MockGatewayHandle::stop`].
#[derive(Debug, Clone)]
pub struct MockGatewayHandle {
    gw: Arc<Gateway>,
    addr: SocketAddr,
}

impl MockGatewayHandle {
    pub(crate) fn new(gw: Arc<Gateway>, addr: SocketAddr) -> Self {
        Self { gw, addr }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a fault for the next `chat.send` that starts a run (FIFO).
    pub fn push_run_fault(&self, fault: RunFault) {
        self.gw.faults.lock().push_back(fault);
    }

    /// While set, sockets are accepted and dropped at once (connection-refused-like).
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.gw.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Simulates a gateway restart: active runs vanish without a terminal event, every socket
    /// gets `shutdown {reason:"gateway stopping", restartExpectedMs}` and close 1012, new sockets
    /// are dropped for `down_for`, then accepted again on the same port with a new `bootId`.
    /// Returns once the old sockets are gone (bounded); the down window runs from the call.
    pub async fn restart(&self, down_for: Duration) {
        *self.gw.down_until.lock() = Some(Instant::now() + down_for);
        let runs: Vec<_> = self.gw.chat.lock().active.drain().map(|(_, r)| r).collect();
        for run in runs {
            run.stop(Stop::Vanish);
        }
        let expected = u64::try_from(down_for.as_millis()).unwrap_or(u64::MAX);
        self.gw.close_all_for_shutdown(Some(expected));
        let _ = tokio::time::timeout(STOP_GRACE, self.gw.wait_conns(|n| n == 0)).await;
        *self.gw.boot_id.lock() = uuid::Uuid::new_v4().to_string();
    }

    /// Drops every socket abruptly (no close frame). Runs keep going.
    pub fn kill_connections(&self) {
        for entry in self.gw.conns.lock().values() {
            entry.kill.cancel();
        }
    }

    /// Every request received so far (connect attempts included, method `connect`).
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.gw.log.all()
    }

    /// Waits for the `nth` (1-based) request of `method`; `None` after `timeout`.
    pub async fn wait_for_request(
        &self,
        method: &str,
        nth: usize,
        timeout: Duration,
    ) -> Option<ReceivedRequest> {
        tokio::time::timeout(timeout, self.gw.log.wait_for(method, nth))
            .await
            .ok()
            .flatten()
    }

    /// Sockets currently open (upgraded, not yet closed).
    pub fn open_connections(&self) -> usize {
        self.gw.conns.lock().len()
    }

    /// TCP connections accepted since start (refused ones included).
    pub fn connections_accepted(&self) -> u64 {
        self.gw.accepted.load(Ordering::SeqCst)
    }

    /// Waits until exactly `n` sockets are open; false after `timeout`.
    pub async fn wait_for_open_connections(&self, n: usize, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.gw.wait_conns(|open| open == n))
            .await
            .is_ok()
    }

    /// Sockets closed 1008 "slow consumer" so far.
    pub fn slow_consumer_closes(&self) -> u64 {
        self.gw.slow_consumer_closes.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` slow-consumer closes happened; false after `timeout`.
    pub async fn wait_for_slow_consumer_closes(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.gw.conn_changed.subscribe();
        tokio::time::timeout(timeout, async {
            while self.slow_consumer_closes() < n {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self.slow_consumer_closes() >= n
    }

    /// Stops the mock: `shutdown` event + close 1012 to everyone, then every task ends (bounded).
    pub async fn stop(self) {
        let runs: Vec<_> = self.gw.chat.lock().active.drain().map(|(_, r)| r).collect();
        for run in runs {
            run.stop(Stop::Vanish);
        }
        self.gw.close_all_for_shutdown(None);
        let _ = tokio::time::timeout(STOP_GRACE, self.gw.wait_conns(|n| n == 0)).await;
        self.gw.shutdown.cancel();
        self.gw.tracker.close();
        if tokio::time::timeout(STOP_GRACE, self.gw.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("mock gateway tasks still running after the stop grace period");
        }
    }
}
