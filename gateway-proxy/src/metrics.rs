//! Prometheus metrics of one proxy, registered on a registry passed in (never the global one).
//!
//! Every labelled series is resolved once here, so the hot path only does an atomic add. Label
//! values come from closed enums, never from client input.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};

/// The registry type [`Metrics::new`] and [`crate::Proxy::new`] take (re-exported so callers
/// need no direct prometheus dependency).
pub use prometheus::Registry;

use crate::policy::Denial;
use crate::rate_limit::LimitKind;

/// How a connection attempt ended (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnOutcome {
    /// Handshake done, proxied.
    Accepted,
    /// Admission refused after authentication (`listen.max_connections`).
    OverCapacity,
    /// Closed at accept: too many unauthenticated connections from its address or in all.
    TooManyPending,
    /// TLS or WebSocket upgrade failed or timed out.
    HandshakeFailed,
    /// Credential, device proof or connect params refused.
    AuthFailed,
    /// A rate limit refused the handshake or the credential's connection budget was used up.
    RateLimited,
    /// The gateway could not be reached or refused the proxy.
    UpstreamFailed,
}

impl ConnOutcome {
    const ALL: [ConnOutcome; 7] = [
        ConnOutcome::Accepted,
        ConnOutcome::OverCapacity,
        ConnOutcome::TooManyPending,
        ConnOutcome::HandshakeFailed,
        ConnOutcome::AuthFailed,
        ConnOutcome::RateLimited,
        ConnOutcome::UpstreamFailed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ConnOutcome::Accepted => "accepted",
            ConnOutcome::OverCapacity => "over_capacity",
            ConnOutcome::TooManyPending => "too_many_pending",
            ConnOutcome::HandshakeFailed => "handshake_failed",
            ConnOutcome::AuthFailed => "auth_failed",
            ConnOutcome::RateLimited => "rate_limited",
            ConnOutcome::UpstreamFailed => "upstream_failed",
        }
    }
}

/// Upstream failure kinds (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamError {
    /// TCP/TLS/WebSocket connect failed or timed out.
    Connect,
    /// The gateway refused or broke the handshake.
    Handshake,
    /// An established upstream connection failed.
    Closed,
}

impl UpstreamError {
    const ALL: [UpstreamError; 3] = [
        UpstreamError::Connect,
        UpstreamError::Handshake,
        UpstreamError::Closed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Handshake => "handshake",
            UpstreamError::Closed => "closed",
        }
    }
}

/// Why the proxy closed a client over one of its limits (closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientClose {
    /// Over the connection's frame budget (1008).
    TooManyFrames,
    /// Kept sending requests the policy refuses (1008).
    RepeatedDenials,
    /// A message not complete within the message timeout (1008).
    MessageTimeout,
    /// The process's budget for unfinished messages is used up (1013).
    Busy,
}

impl ClientClose {
    const ALL: [ClientClose; 4] = [
        ClientClose::TooManyFrames,
        ClientClose::RepeatedDenials,
        ClientClose::MessageTimeout,
        ClientClose::Busy,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientClose::TooManyFrames => "too_many_frames",
            ClientClose::RepeatedDenials => "repeated_denials",
            ClientClose::MessageTimeout => "message_timeout",
            ClientClose::Busy => "partial_message_budget",
        }
    }

    /// The close frame the client gets.
    pub fn close(self) -> (u16, &'static str) {
        use shared_protocol::close_code::{POLICY_VIOLATION, TRY_AGAIN_LATER};
        match self {
            ClientClose::TooManyFrames => (POLICY_VIOLATION, "too many frames"),
            ClientClose::RepeatedDenials => (POLICY_VIOLATION, "repeated refused requests"),
            ClientClose::MessageTimeout => (POLICY_VIOLATION, "message timeout"),
            ClientClose::Busy => (TRY_AGAIN_LATER, "busy: too many unfinished messages"),
        }
    }
}

/// The proxy's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Proxied connections open now.
    pub connections_open: IntGauge,
    conn_outcomes: Vec<IntCounter>,
    /// Client frames forwarded upstream.
    pub frames_client_forwarded: IntCounter,
    /// Client frames answered by the proxy (denied).
    pub frames_client_denied: IntCounter,
    /// Client frames answered by the proxy (rate limited).
    pub frames_client_limited: IntCounter,
    /// Client frames dropped as invalid.
    pub frames_client_invalid: IntCounter,
    /// Gateway frames forwarded to clients.
    pub frames_upstream_forwarded: IntCounter,
    denials: Vec<IntCounter>,
    limits: Vec<IntCounter>,
    upstream_errors: Vec<IntCounter>,
    /// Time from TCP accept to hello-ok relayed.
    pub handshake_seconds: Histogram,
    /// Connections closed for not reading (1008 slow consumer).
    pub slow_consumers: IntCounter,
    client_closes: Vec<IntCounter>,
    /// 1 when the last upstream probe succeeded.
    pub upstream_up: IntGauge,
    /// TLS certificate reloads (SIGHUP), by success.
    pub tls_reloads: IntCounterVec,
}

/// Frames one relay loop has forwarded and not yet added to [`Metrics`]. The loop adds them
/// once per turn rather than once per frame: each add is an atomic on a cache line that every
/// loop shares.
#[derive(Debug, Default)]
pub(crate) struct ForwardedFrames {
    /// Client frames forwarded upstream.
    pub(crate) client: u64,
    /// Gateway frames forwarded to clients.
    pub(crate) upstream: u64,
}

impl ForwardedFrames {
    /// Adds the counts to `metrics` and starts again from zero.
    pub(crate) fn flush_into(&mut self, metrics: &Metrics) {
        if self.client != 0 {
            metrics.frames_client_forwarded.inc_by(self.client);
        }
        if self.upstream != 0 {
            metrics.frames_upstream_forwarded.inc_by(self.upstream);
        }
        *self = Self::default();
    }
}

impl Metrics {
    /// Creates and registers every series under the `gateway_proxy_` prefix.
    ///
    /// # Errors
    /// When a series is already registered on `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let p = "gateway_proxy_";
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        let connections_open =
            IntGauge::new(format!("{p}connections_open"), "Proxied connections open")?;
        reg(Box::new(connections_open.clone()))?;
        let conns = IntCounterVec::new(
            Opts::new(
                format!("{p}connections_total"),
                "Connection attempts by outcome",
            ),
            &["outcome"],
        )?;
        reg(Box::new(conns.clone()))?;
        let frames = IntCounterVec::new(
            Opts::new(
                format!("{p}frames_total"),
                "Frames by direction and verdict",
            ),
            &["direction", "verdict"],
        )?;
        reg(Box::new(frames.clone()))?;
        let denials = IntCounterVec::new(
            Opts::new(
                format!("{p}denials_total"),
                "Requests denied by policy, by reason",
            ),
            &["reason"],
        )?;
        reg(Box::new(denials.clone()))?;
        let limits = IntCounterVec::new(
            Opts::new(format!("{p}rate_limited_total"), "Rate-limit hits by limit"),
            &["limit"],
        )?;
        reg(Box::new(limits.clone()))?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                format!("{p}upstream_errors_total"),
                "Upstream failures by kind",
            ),
            &["kind"],
        )?;
        reg(Box::new(upstream_errors.clone()))?;
        let handshake_seconds = Histogram::with_opts(
            HistogramOpts::new(
                format!("{p}handshake_seconds"),
                "Accept to hello-ok relayed",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        reg(Box::new(handshake_seconds.clone()))?;
        let slow_consumers = IntCounter::new(
            format!("{p}slow_consumer_closes_total"),
            "Clients closed 1008 for not reading",
        )?;
        reg(Box::new(slow_consumers.clone()))?;
        let upstream_up = IntGauge::new(
            format!("{p}upstream_up"),
            "1 when the last upstream probe succeeded",
        )?;
        reg(Box::new(upstream_up.clone()))?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                format!("{p}tls_reloads_total"),
                "Certificate reloads by result",
            ),
            &["result"],
        )?;
        reg(Box::new(tls_reloads.clone()))?;
        for r in ["ok", "error"] {
            tls_reloads.with_label_values(&[r]);
        }
        let client_closes = IntCounterVec::new(
            Opts::new(
                format!("{p}client_limit_closes_total"),
                "Clients closed over a limit of the proxy's, by reason",
            ),
            &["reason"],
        )?;
        reg(Box::new(client_closes.clone()))?;
        Ok(Self {
            connections_open,
            conn_outcomes: ConnOutcome::ALL
                .iter()
                .map(|o| conns.with_label_values(&[o.as_str()]))
                .collect(),
            frames_client_forwarded: frames.with_label_values(&["client_to_upstream", "forwarded"]),
            frames_client_denied: frames.with_label_values(&["client_to_upstream", "denied"]),
            frames_client_limited: frames
                .with_label_values(&["client_to_upstream", "rate_limited"]),
            frames_client_invalid: frames.with_label_values(&["client_to_upstream", "invalid"]),
            frames_upstream_forwarded: frames
                .with_label_values(&["upstream_to_client", "forwarded"]),
            denials: Denial::ALL
                .iter()
                .map(|d| denials.with_label_values(&[d.as_str()]))
                .collect(),
            limits: LimitKind::ALL
                .iter()
                .map(|l| limits.with_label_values(&[l.as_str()]))
                .collect(),
            upstream_errors: UpstreamError::ALL
                .iter()
                .map(|u| upstream_errors.with_label_values(&[u.as_str()]))
                .collect(),
            handshake_seconds,
            slow_consumers,
            client_closes: ClientClose::ALL
                .iter()
                .map(|c| client_closes.with_label_values(&[c.as_str()]))
                .collect(),
            upstream_up,
            tls_reloads,
        })
    }

    /// Counts a connection attempt's outcome.
    pub fn connection(&self, outcome: ConnOutcome) {
        let i = ConnOutcome::ALL.iter().position(|o| *o == outcome);
        if let Some(c) = i.and_then(|i| self.conn_outcomes.get(i)) {
            c.inc();
        }
    }

    /// Counts a denial.
    pub fn denial(&self, d: Denial) {
        let i = Denial::ALL.iter().position(|x| x.as_str() == d.as_str());
        if let Some(c) = i.and_then(|i| self.denials.get(i)) {
            c.inc();
        }
    }

    /// Counts a rate-limit hit.
    pub fn limited(&self, kind: LimitKind) {
        let i = LimitKind::ALL.iter().position(|k| *k == kind);
        if let Some(c) = i.and_then(|i| self.limits.get(i)) {
            c.inc();
        }
    }

    /// Counts a client closed over a limit.
    pub fn client_close(&self, why: ClientClose) {
        let i = ClientClose::ALL.iter().position(|c| *c == why);
        if let Some(c) = i.and_then(|i| self.client_closes.get(i)) {
            c.inc();
        }
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, e: UpstreamError) {
        let i = UpstreamError::ALL.iter().position(|k| *k == e);
        if let Some(c) = i.and_then(|i| self.upstream_errors.get(i)) {
            c.inc();
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "metrics encoding failed");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_labelled_from_closed_sets() {
        let r = Registry::new();
        let m = Metrics::new(&r).unwrap();
        m.denial(Denial::MissingScope(shared_protocol::Scope::Write));
        m.limited(LimitKind::ChatSendSession);
        m.connection(ConnOutcome::AuthFailed);
        m.upstream_error(UpstreamError::Connect);
        let text = render(&r);
        assert!(text.contains(r#"gateway_proxy_denials_total{reason="missing_scope"} 1"#));
        assert!(text.contains(r#"gateway_proxy_rate_limited_total{limit="chat_send_session"} 1"#));
        assert!(text.contains(r#"gateway_proxy_connections_total{outcome="auth_failed"} 1"#));
        assert!(text.contains(r#"gateway_proxy_upstream_errors_total{kind="connect"} 1"#));
        assert!(Metrics::new(&r).is_err(), "double registration is refused");
    }
}
