//! The state one mock gateway shares between its connections, runs and handle.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use shared_protocol::{Scope, ScopeSet};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::ChatBook;
use crate::config::{MAX_PAIRED_DEVICES, MockConfig};
use crate::fault::RunFault;
use crate::outbound::Outbound;
use crate::record::RequestLog;

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every authenticated socket (`tick`, `shutdown`).
    Authenticated,
    /// Sockets whose scopes satisfy `operator.read` (`chat`).
    Readers,
}

/// One live socket, as the rest of the mock sees it.
#[derive(Debug, Clone)]
pub(crate) struct ConnEntry {
    /// Its outbound queue.
    pub outbound: Arc<Outbound>,
    /// Granted scopes once hello-ok was sent; `None` before.
    pub scopes: Option<ScopeSet>,
    /// Cancelling it drops the socket without a close frame.
    pub kill: CancellationToken,
}

/// A device paired by a verified proof; its token authenticates later connects.
#[derive(Debug, Clone)]
pub(crate) struct PairedDevice {
    /// Scopes the device was paired with.
    pub scopes: Vec<String>,
}

/// The shared state.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Settings.
    pub config: MockConfig,
    /// Changes on every (re)start, as the real gateway's `bootId`.
    pub boot_id: Mutex<String>,
    /// When the mock started (startup phase, uptime).
    pub started_at: Instant,
    /// Live sockets by connection number.
    pub conns: Mutex<HashMap<u64, ConnEntry>>,
    /// Connections accepted so far (also the last connection number).
    pub accepted: AtomicU64,
    /// Set by the handle: accept and drop at once.
    pub refuse: AtomicBool,
    /// Set by `restart`: accept and drop until then.
    pub down_until: Mutex<Option<Instant>>,
    /// Faults for the next runs.
    pub faults: Mutex<VecDeque<RunFault>>,
    /// Every request received.
    pub log: RequestLog,
    /// Sessions, runs and the idempotency cache.
    pub chat: Mutex<ChatBook>,
    /// Device tokens issued, with what they grant.
    pub devices: Mutex<HashMap<String, PairedDevice>>,
    /// Sockets closed as slow consumers.
    pub slow_consumer_closes: AtomicU64,
    /// Bumped when a connection opens or closes, so waiters need no polling.
    pub conn_changed: watch::Sender<u64>,
    /// Owns every task the mock spawns.
    pub tracker: TaskTracker,
    /// Stops everything.
    pub shutdown: CancellationToken,
}

impl Gateway {
    /// Fresh state for `config`.
    pub fn new(config: MockConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            boot_id: Mutex::new(uuid::Uuid::new_v4().to_string()),
            started_at: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            accepted: AtomicU64::new(0),
            refuse: AtomicBool::new(false),
            down_until: Mutex::new(None),
            faults: Mutex::new(VecDeque::new()),
            log: RequestLog::default(),
            chat: Mutex::new(ChatBook::default()),
            devices: Mutex::new(HashMap::new()),
            slow_consumer_closes: AtomicU64::new(0),
            conn_changed: watch::Sender::new(0),
            tracker: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }

    /// True while new sockets must be dropped at once.
    pub fn refusing(&self) -> bool {
        self.refuse.load(Ordering::SeqCst)
            || self
                .down_until
                .lock()
                .is_some_and(|until| Instant::now() < until)
    }

    /// True during the configured startup phase.
    pub fn starting(&self) -> bool {
        self.started_at.elapsed() < self.config.startup_unavailable_for
    }

    /// The configured agents, `main` first.
    pub fn agent_ids(&self) -> Vec<String> {
        let mut ids = vec![shared_protocol::session_key::DEFAULT_AGENT_ID.to_string()];
        for a in &self.config.agents {
            if !ids.contains(a) {
                ids.push(a.clone());
            }
        }
        ids
    }

    /// Registers a socket.
    pub fn register(&self, id: u64, entry: ConnEntry) {
        self.conns.lock().insert(id, entry);
        self.conn_changed.send_modify(|n| *n += 1);
    }

    /// Marks a socket authenticated with its scopes.
    pub fn authenticate(&self, id: u64, scopes: ScopeSet) {
        if let Some(entry) = self.conns.lock().get_mut(&id) {
            entry.scopes = Some(scopes);
        }
    }

    /// Forgets a socket.
    pub fn unregister(&self, id: u64) {
        self.conns.lock().remove(&id);
        self.conn_changed.send_modify(|n| *n += 1);
    }

    /// Counts a slow-consumer close (and wakes waiters).
    pub fn record_slow_consumer(&self) {
        self.slow_consumer_closes.fetch_add(1, Ordering::SeqCst);
        self.conn_changed.send_modify(|n| *n += 1);
    }

    /// Drops one socket without a close frame.
    pub fn kill(&self, id: u64) {
        if let Some(entry) = self.conns.lock().get(&id) {
            entry.kill.cancel();
        }
    }

    /// Sends an event to every socket of `audience`, each with its own `seq`.
    pub fn broadcast<P: Serialize>(
        &self,
        event: &str,
        payload: &P,
        audience: Audience,
        drop_if_slow: bool,
    ) {
        let raw = match serde_json::value::to_raw_value(payload) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, event, "cannot encode broadcast");
                return;
            }
        };
        let targets: Vec<Arc<Outbound>> = self
            .conns
            .lock()
            .values()
            .filter(|c| match (audience, c.scopes) {
                (_, None) => false,
                (Audience::Authenticated, Some(_)) => true,
                (Audience::Readers, Some(s)) => s.satisfies(Scope::Read),
            })
            .map(|c| c.outbound.clone())
            .collect();
        for out in targets {
            out.send_event(event, &raw, drop_if_slow);
        }
    }

    /// Stores a paired device's token (bounded: the oldest pairing is not tracked, any is evicted).
    pub fn pair_device(&self, token: String, device: PairedDevice) {
        let mut devices = self.devices.lock();
        if devices.len() >= MAX_PAIRED_DEVICES
            && let Some(evict) = devices.keys().next().cloned()
        {
            devices.remove(&evict);
        }
        devices.insert(token, device);
    }

    /// Closes every socket: `shutdown` event, then close 1012 "service restart".
    pub fn close_all_for_shutdown(&self, restart_expected_ms: Option<u64>) {
        let payload = shared_protocol::events::Shutdown {
            reason: "gateway stopping".into(),
            restart_expected_ms,
        };
        self.broadcast(
            shared_protocol::events::names::SHUTDOWN,
            &payload,
            Audience::Authenticated,
            false,
        );
        let outs: Vec<Arc<Outbound>> = self
            .conns
            .lock()
            .values()
            .map(|c| c.outbound.clone())
            .collect();
        for out in outs {
            out.close(
                shared_protocol::close_code::SERVICE_RESTART,
                "service restart",
            );
        }
    }

    /// Waits until `pred` holds for the connection count (or forever; callers add a timeout).
    pub async fn wait_conns(&self, pred: impl Fn(usize) -> bool) {
        let mut rx = self.conn_changed.subscribe();
        loop {
            if pred(self.conns.lock().len()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Server time in epoch milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
