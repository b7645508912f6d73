//! Keyed rate limits (governor GCRA) on the tokio clock, so tests run on a paused clock.
//!
//! Four limits: handshakes per source IP, requests per credential, `chat.send` per credential
//! and per canonical session key. Idle keys are evicted by [`RateLimits::evict_idle`], which the
//! server calls on a timer so memory stays bounded however many addresses or keys are seen.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::LimitsConfig;

/// A `tokio::time::Instant` that governor can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, rhs: Nanos) -> Self {
        Self(self.0 + Duration::from(rhs))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

/// The tokio clock (pausable in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, TokioClock, NoOpMiddleware<TokioInstant>>;

/// Which limit was hit (closed label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Handshakes per source IP.
    Handshake,
    /// Requests per credential.
    Requests,
    /// `chat.send` per credential.
    ChatSendCredential,
    /// `chat.send` per session key.
    ChatSendSession,
    /// Concurrent connections per credential.
    Connections,
}

impl LimitKind {
    /// Every kind (metric pre-registration).
    pub const ALL: [LimitKind; 5] = [
        LimitKind::Handshake,
        LimitKind::Requests,
        LimitKind::ChatSendCredential,
        LimitKind::ChatSendSession,
        LimitKind::Connections,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Handshake => "handshake",
            LimitKind::Requests => "requests",
            LimitKind::ChatSendCredential => "chat_send_credential",
            LimitKind::ChatSendSession => "chat_send_session",
            LimitKind::Connections => "connections",
        }
    }
}

/// A refusal: which limit, and when a retry may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit hit.
    pub kind: LimitKind,
    /// Wait at least this long.
    pub retry_after: Duration,
}

struct Limit<K: Hash + Eq + Clone> {
    limiter: Option<Keyed<K>>,
    kind: LimitKind,
}

impl<K: Hash + Eq + Clone> Limit<K> {
    fn new(count: u32, per: Duration, kind: LimitKind) -> Self {
        let limiter = NonZeroU32::new(count).and_then(|n| {
            Quota::with_period(per / n.get())
                .map(|q| q.allow_burst(n))
                .map(|q| RateLimiter::dashmap_with_clock(q, TokioClock))
        });
        Self { limiter, kind }
    }

    fn check(&self, key: &K) -> Result<(), Limited> {
        let Some(l) = &self.limiter else {
            return Ok(());
        };
        l.check_key(key).map_err(|not_until| Limited {
            kind: self.kind,
            retry_after: not_until.wait_time_from(TokioClock.now()),
        })
    }

    fn evict(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }
}

/// All keyed limits of one proxy.
pub struct RateLimits {
    handshakes: Limit<IpAddr>,
    requests: Limit<u32>,
    chat_credential: Limit<u32>,
    chat_session: Limit<String>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

impl RateLimits {
    /// Builds the limits from config; a zero rate disables that limit.
    pub fn new(c: &LimitsConfig) -> Self {
        Self {
            handshakes: Limit::new(c.handshakes_per_minute_per_ip, MINUTE, LimitKind::Handshake),
            requests: Limit::new(
                c.requests_per_second_per_credential,
                Duration::from_secs(1),
                LimitKind::Requests,
            ),
            chat_credential: Limit::new(
                c.chat_send_per_minute_per_credential,
                MINUTE,
                LimitKind::ChatSendCredential,
            ),
            chat_session: Limit::new(
                c.chat_send_per_minute_per_session,
                MINUTE,
                LimitKind::ChatSendSession,
            ),
        }
    }

    /// One WebSocket handshake from `ip`.
    ///
    /// # Errors
    /// [`Limited`] when over the limit.
    pub fn check_handshake(&self, ip: IpAddr) -> Result<(), Limited> {
        self.handshakes.check(&ip)
    }

    /// One request by credential `cred` (its store index).
    ///
    /// # Errors
    /// [`Limited`] when over the limit.
    pub fn check_request(&self, cred: u32) -> Result<(), Limited> {
        self.requests.check(&cred)
    }

    /// One `chat.send` by `cred` to the canonical `session_key` (`None`: its params name no
    /// session, and the gateway will refuse them; only the credential's limit applies).
    ///
    /// # Errors
    /// [`Limited`] when over either limit.
    pub fn check_chat_send(&self, cred: u32, session_key: Option<&str>) -> Result<(), Limited> {
        self.chat_credential.check(&cred)?;
        match session_key {
            // Keyed per credential too, so one client cannot exhaust another's session budget.
            Some(key) => self.chat_session.check(&format!("{cred}/{key}")),
            None => Ok(()),
        }
    }

    /// Forgets keys whose state is back to "never seen" (bounded memory).
    pub fn evict_idle(&self) {
        self.handshakes.evict();
        self.requests.evict();
        self.chat_credential.evict();
        self.chat_session.evict();
    }

    /// Keys currently tracked across all limits.
    pub fn tracked_keys(&self) -> usize {
        self.handshakes.len()
            + self.requests.len()
            + self.chat_credential.len()
            + self.chat_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RateLimits {
        RateLimits::new(&LimitsConfig {
            handshakes_per_minute_per_ip: 2,
            requests_per_second_per_credential: 3,
            chat_send_per_minute_per_credential: 0,
            chat_send_per_minute_per_session: 1,
            ..LimitsConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn handshakes_refill_over_time_per_ip() {
        let l = limits();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        l.check_handshake(a).unwrap();
        l.check_handshake(a).unwrap();
        let err = l.check_handshake(a).unwrap_err();
        assert_eq!(err.kind, LimitKind::Handshake);
        assert_eq!(err.retry_after, Duration::from_secs(30));
        l.check_handshake(b).unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        l.check_handshake(a).unwrap();
        assert!(l.check_handshake(a).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_and_chat_limits() {
        let l = limits();
        for _ in 0..3 {
            l.check_request(7).unwrap();
        }
        assert!(l.check_request(7).is_err());
        l.check_request(8).unwrap();
        // chat per credential disabled (0); per session: 1 per minute.
        l.check_chat_send(7, Some("agent:main:a")).unwrap();
        let e = l.check_chat_send(7, Some("agent:main:a")).unwrap_err();
        assert_eq!(e.kind, LimitKind::ChatSendSession);
        l.check_chat_send(7, Some("agent:main:b")).unwrap();
        l.check_chat_send(8, Some("agent:main:a")).unwrap();
        l.check_chat_send(7, None).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_evicted() {
        let l = limits();
        for i in 0..100u8 {
            l.check_handshake(IpAddr::from([10, 0, 0, i])).unwrap();
        }
        assert_eq!(l.tracked_keys(), 100);
        l.evict_idle();
        assert_eq!(l.tracked_keys(), 100, "recent keys are kept");
        tokio::time::advance(MINUTE).await;
        l.evict_idle();
        assert_eq!(l.tracked_keys(), 0);
    }
}
