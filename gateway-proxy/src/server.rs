//! The service: listeners, admission, per-connection tasks, background tasks and shutdown.
//!
//! [`Proxy::run`] takes already-bound listeners and a [`Shutdown`], so tests start the real
//! service on `127.0.0.1:0` in-process. Every socket is accepted and at once given a pending
//! slot or closed ([`admission`](crate::admission): per source address and in all, apart from
//! the authenticated connections), then has `listen.upgrade_timeout_ms` for TLS and its upgrade
//! request and `listen.handshake_timeout_ms` for the whole handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use prometheus::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span};

use crate::admission::{Admission, AdmittedSlot, PendingSlot};
use crate::audit::AuditLog;
use crate::audit::{AuditEvent, AuditKind};
use crate::config::{Config, IdentityMode};
use crate::credential::{ConnectionSlot, CredentialStore};
use crate::denial_log::DenialLog;
use crate::error::ProxyError;
use crate::frame_gate::into_raw;
use crate::handshake::{Admitted, ConnCtx, exchange, passthrough, refuse};
use crate::inspector::Session;
use crate::metrics::{ConnOutcome, Metrics};
use crate::rate_limit::RateLimits;
use crate::relay::{End, Relay};
use crate::relay_loop::RelayLoops;
use crate::socket::IntoSocket;
use crate::tls::{ReloadableCert, load_certified_key, server_config};
use crate::upgrade::UpgradeError;
use crate::upstream::{Upstream, UpstreamIo};

/// After the drain grace period, how long connections get to send their 1012 close.
pub const FORCED_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Two-stage shutdown: `drain` stops accepting and lets connections finish within the grace
/// period (SIGTERM); `now` closes everything at once with 1012 (SIGINT, or the end of grace).
#[derive(Debug, Clone)]
pub struct Shutdown {
    now: CancellationToken,
    drain: CancellationToken,
    /// Set just before `now` is cancelled: what the relay loops check on every turn (the
    /// token's own check takes a lock).
    fired: Arc<AtomicBool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A fresh, untriggered shutdown.
    pub fn new() -> Self {
        let now = CancellationToken::new();
        let drain = now.child_token();
        Self {
            now,
            drain,
            fired: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Graceful: stop accepting, wait up to the grace period, then close the rest.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Fast: close every connection now (1012).
    pub fn now(&self) {
        self.fired.store(true, Ordering::Release);
        self.now.cancel();
    }
}

/// Already-bound sockets for [`Proxy::run`].
#[derive(Debug, Default)]
pub struct Listeners {
    /// `wss://` listener.
    pub tls: Option<TcpListener>,
    /// `ws://` listener.
    pub plain: Option<TcpListener>,
    /// Admin HTTP listener.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses named in the config.
    ///
    /// # Errors
    /// [`ProxyError::Io`] naming the address that could not be bound.
    pub async fn bind(config: &Config) -> Result<Self, ProxyError> {
        async fn bind(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, ProxyError> {
            match addr {
                None => Ok(None),
                Some(a) => TcpListener::bind(a).await.map(Some).map_err(|e| {
                    ProxyError::Io(std::io::Error::new(e.kind(), format!("bind {a}: {e}")))
                }),
            }
        }
        Ok(Self {
            tls: bind(config.listen.tls).await?,
            plain: bind(config.listen.plain).await?,
            admin: bind(config.listen.admin).await?,
        })
    }
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) creds: CredentialStore,
    pub(crate) limits: RateLimits,
    pub(crate) audit: AuditLog,
    pub(crate) metrics: Metrics,
    pub(crate) registry: Registry,
    pub(crate) upstream: Upstream,
    pub(crate) ready: std::sync::atomic::AtomicBool,
    /// Pending and admitted connections.
    pub(crate) admission: Arc<Admission>,
    /// Bytes all relays hold for unfinished client messages (`limits.partial_message_budget_bytes`).
    pub(crate) partial_bytes: std::sync::atomic::AtomicUsize,
    /// Refused requests, aggregated for the audit log.
    pub(crate) denials: DenialLog,
    tls_cert: Option<Arc<ReloadableCert>>,
    tls: Option<TlsAcceptor>,
    next_conn: AtomicU64,
}

/// A configured proxy, ready to [`run`](Proxy::run).
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.shared.upstream)
            .field("credentials", &self.shared.creds.len())
            .finish()
    }
}

impl Proxy {
    /// Builds the proxy: validates the config, loads TLS material, credentials, the audit log,
    /// and registers metrics on `registry`.
    ///
    /// # Errors
    /// [`ProxyError`] naming what is wrong.
    pub fn new(config: Config, registry: Registry) -> Result<Self, ProxyError> {
        config.validate()?;
        let (tls_cert, tls) = match &config.tls {
            Some(t) if config.listen.tls.is_some() => {
                let cert = Arc::new(ReloadableCert::new(load_certified_key(&t.cert, &t.key)?));
                let sc = server_config(Arc::clone(&cert), t.client_ca.as_deref())?;
                (Some(cert), Some(TlsAcceptor::from(sc)))
            }
            _ => (None, None),
        };
        let metrics = Metrics::new(&registry)
            .map_err(|e| ProxyError::Config(format!("metrics registration: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                creds: CredentialStore::from_config(&config.credentials)?,
                limits: RateLimits::new(&config.limits),
                audit: AuditLog::open(config.audit.path.as_deref())?,
                upstream: Upstream::from_config(&config.upstream)?,
                metrics,
                registry,
                ready: std::sync::atomic::AtomicBool::new(false),
                admission: Admission::new(
                    config.listen.max_pending_connections,
                    config.listen.max_pending_per_ip,
                    config.listen.max_connections,
                ),
                partial_bytes: std::sync::atomic::AtomicUsize::new(0),
                denials: DenialLog::default(),
                tls_cert,
                tls,
                next_conn: AtomicU64::new(1),
                config,
            }),
        })
    }

    /// Reloads the TLS certificate and key from their files (SIGHUP). Open connections keep
    /// their session; new handshakes use the new certificate. On error the old one stays.
    ///
    /// # Errors
    /// [`ProxyError::Tls`] when the new files are unusable.
    pub fn reload_tls(&self) -> Result<(), ProxyError> {
        let (Some(cert), Some(t)) = (&self.shared.tls_cert, &self.shared.config.tls) else {
            return Ok(());
        };
        let result = load_certified_key(&t.cert, &t.key).map(|k| cert.store(k));
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared
            .metrics
            .tls_reloads
            .with_label_values(&[label])
            .inc();
        result
    }

    /// What every connection shares (for the relay loop's tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The proxy's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Rate-limiter keys tracked now (bounded by eviction).
    pub fn tracked_limiter_keys(&self) -> usize {
        self.shared.limits.tracked_keys()
    }

    /// Connections accepted and not yet authenticated, now.
    pub fn pending_connections(&self) -> usize {
        self.shared.admission.pending()
    }

    /// Bytes held now for unfinished client messages, all connections together.
    pub fn partial_message_bytes(&self) -> usize {
        self.shared
            .partial_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Serves until `shutdown`: accepts on the listeners, runs the admin endpoint, the upstream
    /// probe and the limiter eviction; on drain waits up to `listen.drain_grace_ms` for
    /// connections, then closes the rest with 1012.
    ///
    /// # Errors
    /// Only for setup failures; per-connection errors are logged and counted.
    pub async fn run(self, listeners: Listeners, shutdown: Shutdown) -> Result<(), ProxyError> {
        let conns = TaskTracker::new();
        let background = TaskTracker::new();
        let bg_stop = CancellationToken::new();
        let loops = Arc::new(RelayLoops::start(
            self.shared.config.listen.workers,
            Arc::clone(&shutdown.fired),
            &self.shared.metrics,
        )?);
        tracing::info!(loops = loops.len(), "relay loops started");
        // The loops check the shutdown flag on every turn; this makes the turn happen.
        background.spawn({
            let loops = Arc::clone(&loops);
            let (now, bg_stop) = (shutdown.now.clone(), bg_stop.clone());
            async move {
                tokio::select! {
                    () = now.cancelled() => loops.wake_all(),
                    () = bg_stop.cancelled() => {}
                }
            }
        });

        if let Some(l) = listeners.admin {
            tracing::info!(addr = ?l.local_addr().ok(), "admin listening");
            background.spawn(crate::admin::serve(
                l,
                Arc::clone(&self.shared),
                bg_stop.clone(),
            ));
        }
        background.spawn(probe_loop(Arc::clone(&self.shared), bg_stop.clone()));
        background.spawn(evict_loop(Arc::clone(&self.shared), bg_stop.clone()));
        background.spawn(denial_flush_loop(Arc::clone(&self.shared), bg_stop.clone()));
        let accept = TaskTracker::new();
        for (listener, tls) in [(listeners.tls, true), (listeners.plain, false)] {
            let Some(listener) = listener else { continue };
            tracing::info!(addr = ?listener.local_addr().ok(), tls, "listening");
            accept.spawn(accept_loop(
                self.clone(),
                listener,
                tls,
                (conns.clone(), Arc::clone(&loops)),
                shutdown.clone(),
            ));
        }
        accept.close();
        shutdown.drain.cancelled().await;
        accept.wait().await;
        conns.close();
        let grace = Duration::from_millis(self.shared.config.listen.drain_grace_ms);
        tracing::info!(open = conns.len(), ?grace, "draining");
        if tokio::time::timeout(grace, conns.wait()).await.is_err() {
            tracing::warn!(
                open = conns.len(),
                "drain grace over; closing the rest with 1012"
            );
        }
        shutdown.now();
        if tokio::time::timeout(FORCED_CLOSE_TIMEOUT, conns.wait())
            .await
            .is_err()
        {
            tracing::warn!(open = conns.len(), "connections did not close in time");
        }
        bg_stop.cancel();
        background.close();
        background.wait().await;
        self.shared.denials.flush(&self.shared.audit);
        if let Some(loops) = Arc::into_inner(loops) {
            loops.stop().await;
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// One connection: the WebSocket upgrade and the handshake inside the connection's span
    /// (holding its pending slot), then the hand-over to a relay loop, and waiting (idle,
    /// holding its admitted slot and the credential's slot) until the relay ends. The relay
    /// enters `span` only for the lines it logs.
    async fn handle<S>(
        self,
        stream: S,
        (ctx, pending): (ConnCtx, PendingSlot),
        (stop, loops): (CancellationToken, Arc<RelayLoops>),
        span: Span,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + IntoSocket,
    {
        let shared = &self.shared;
        let started = Instant::now();
        let admitted = Box::pin(self.admit(stream, &ctx, &stop).instrument(span.clone())).await;
        drop(pending);
        let Some((client, upstream, session, (slot, admitted))) = admitted else {
            return;
        };
        let sockets = client
            .into_socket()
            .and_then(|c| Ok((c, upstream.into_socket()?)));
        let (client, upstream) = match sockets {
            Ok(s) => s,
            Err(e) => {
                span.in_scope(
                    || tracing::warn!(error = %e, "could not hand a connection to a relay loop"),
                );
                return;
            }
        };
        shared
            .metrics
            .handshake_seconds
            .observe(started.elapsed().as_secs_f64());
        span.in_scope(|| {
            tracing::info!(credential = %session.credential.id, scopes = ?session.scopes, "connected");
        });
        shared.metrics.connections_open.inc();
        let credential = Arc::clone(&session.credential);
        let relay = Relay::new(
            Arc::clone(shared),
            (ctx.peer, ctx.id, span.clone()),
            session,
            client,
            upstream,
        );
        let end = loops.submit(relay).await.unwrap_or_else(|_| {
            span.in_scope(|| tracing::warn!("the relay loop ended before the connection"));
            End::Shutdown
        });
        shared.audit.record(AuditEvent {
            credential: Some(&credential.id),
            reason: Some(end.as_str()),
            ..AuditEvent::new(AuditKind::Disconnect, ctx.peer, ctx.id)
        });
        drop((slot, admitted));
        shared.metrics.connections_open.dec();
        span.in_scope(|| tracing::info!(end = end.as_str(), "disconnected"));
    }

    async fn admit<S>(
        &self,
        stream: S,
        ctx: &ConnCtx,
        stop: &CancellationToken,
    ) -> Option<(S, UpstreamIo, Session, (ConnectionSlot, AdmittedSlot))>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let shared = &*self.shared;
        let ws = tokio::time::timeout_at(
            ctx.upgrade_deadline,
            Box::pin(crate::upgrade::accept(stream)),
        )
        .await;
        let mut client = match ws {
            Ok(Ok(mut ws)) => {
                // The client speaks only after our challenge: this is a frame boundary.
                ws.get_mut().arm();
                ws
            }
            Ok(Err(e)) => {
                match e {
                    UpgradeError::Refused(r) => {
                        tracing::debug!(status = r.status, reason = r.message, "upgrade refused");
                    }
                    UpgradeError::Gone(e) => {
                        tracing::debug!(error = %e, "websocket upgrade failed")
                    }
                }
                shared.metrics.connection(ConnOutcome::HandshakeFailed);
                return None;
            }
            Err(_) => {
                shared.metrics.connection(ConnOutcome::HandshakeFailed);
                return None;
            }
        };
        // Boxed: the handshake's state lives on the heap only while it runs, so the task that
        // then waits for the relay's end stays small.
        let handshake = Box::pin(async {
            match shared.config.identity.mode {
                IdentityMode::Exchange => exchange(shared, ctx, &mut client).await,
                IdentityMode::Passthrough => passthrough(shared, ctx, &mut client).await,
            }
        });
        let admitted = tokio::select! {
            () = stop.cancelled() => return None,
            a = handshake => a,
        };
        let Admitted {
            upstream,
            session,
            slots,
        } = match admitted {
            Ok(a) => a,
            Err(refusal) => {
                Box::pin(refuse(shared, ctx, &mut client, refusal)).await;
                return None;
            }
        };
        // The relay takes the raw sockets: tungstenite's buffers (grown for the handshake's
        // large frames, such as the ~16 KB hello-ok) are freed here.
        // Within the handshake deadline: the flush waits on the peers.
        let raw = Box::pin(async {
            Ok::<_, WsError>((into_raw(client).await?, into_raw(upstream).await?))
        });
        match tokio::time::timeout_at(ctx.deadline, raw).await {
            Ok(Ok((client, upstream))) => Some((client, upstream, session, slots)),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "connection lost right after its handshake");
                None
            }
            Err(_) => {
                tracing::debug!("handshake deadline passed while handing over the sockets");
                None
            }
        }
    }
}

async fn accept_loop(
    proxy: Proxy,
    listener: TcpListener,
    tls: bool,
    (conns, loops): (TaskTracker, Arc<RelayLoops>),
    shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.drain.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(pending) = proxy.shared.admission.try_pending(peer.ip()) else {
            // Closed before a byte is read: too many unauthenticated sockets from this address
            // or in all.
            proxy.shared.metrics.connection(ConnOutcome::TooManyPending);
            tracing::debug!(%peer, "too many pending connections; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let id = proxy.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let stop = (shutdown.now.clone(), Arc::clone(&loops));
        let span = tracing::info_span!("conn", conn = id, peer = %peer, tls);
        let p = proxy.clone();
        let conn = async move {
            let accepted = accept_stream(&p, stream, peer, id, tls).instrument(span.clone());
            match Box::pin(accepted).await {
                Some((Accepted::Plain(s), ctx)) => p.handle(s, (ctx, pending), stop, span).await,
                // Kept boxed: inline, the TLS state would enlarge every connection's task.
                Some((Accepted::Tls(s), ctx)) => p.handle(s, (ctx, pending), stop, span).await,
                None => {}
            }
        };
        conns.spawn(conn);
    }
}

/// A connection's socket once accepted (and, on the TLS listener, through the TLS handshake).
enum Accepted {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// On the TLS listener, runs the TLS handshake (within the handshake deadline).
async fn accept_stream(
    p: &Proxy,
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    tls: bool,
) -> Option<(Accepted, ConnCtx)> {
    let now = Instant::now();
    let deadline = now + p.shared.config.handshake_timeout();
    let mut ctx = ConnCtx {
        peer,
        id,
        client_cert: None,
        upgrade_deadline: deadline.min(now + p.shared.config.upgrade_timeout()),
        deadline,
    };
    if !tls {
        return Some((Accepted::Plain(stream), ctx));
    }
    let acceptor = p.shared.tls.clone()?;
    let tls_stream =
        tokio::time::timeout_at(ctx.upgrade_deadline, Box::pin(acceptor.accept(stream)));
    match tls_stream.await {
        Ok(Ok(tls_stream)) => {
            ctx.client_cert = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            Some((Accepted::Tls(Box::new(tls_stream)), ctx))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            p.shared.metrics.connection(ConnOutcome::HandshakeFailed);
            None
        }
        Err(_) => {
            p.shared.metrics.connection(ConnOutcome::HandshakeFailed);
            None
        }
    }
}

async fn probe_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_millis(
        shared.config.upstream.probe_interval_ms,
    ));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let up = tokio::select! {
            () = stop.cancelled() => return,
            up = shared.upstream.probe() => up,
        };
        let was = shared.ready.swap(up, Ordering::AcqRel);
        shared.metrics.upstream_up.set(i64::from(up));
        if was != up {
            tracing::info!(up, "upstream reachability changed");
        }
    }
}

async fn evict_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let period = Duration::from_millis(shared.config.limits.limiter_gc_interval_ms);
    let mut every = tokio::time::interval_at(Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => shared.limits.evict_idle(),
        }
    }
}

/// Ends each interval of the aggregated denial log.
async fn denial_flush_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let period = Duration::from_millis(shared.config.audit.denial_interval_ms);
    let mut every = tokio::time::interval_at(Instant::now() + period, period);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => shared.denials.flush(&shared.audit),
        }
    }
}
