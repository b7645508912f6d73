//! 🗑 resets through Omni's event stream: a durable JetStream consumer of `message.received`.
//!
//! Omni's dispatcher never sends a message that is only 🗑 to a webhook provider, and its own
//! session cleaner can reset only providers with a `resetSession` method, which webhook providers
//! lack: the person's reset silently did nothing. With `--omni-nats-url` the bridge reads the
//! same events Omni's session cleaner reads, from its own durable consumer, and for every 🗑 on an
//! instance routed to this bridge:
//!
//! 1. skips it if its done-marker exists (the message was handled before a crash or restart);
//! 2. resets the person's OpenClaw session (the session key the bridge uses for that person's
//!    triggers, with the write-scope sequence of [`crate::gateway::GatewayHandle::reset_session`]);
//! 3. sends the confirmation (or "the reset failed") text, localised and configurable, to the chat
//!    through Omni's `POST /api/v2/messages/send`;
//! 4. writes the done-marker (a JetStream key-value bucket, so it survives restarts and is shared
//!    by replicas), then acks.
//!
//! Exactly once per message across restarts: a message is acked only after 2–4, so a crash
//! before the ack means redelivery (after `ack_wait`), and the marker turns that redelivery into a
//! plain ack. The one window left is a crash between the text going out and the marker being
//! written: the redelivery then sends the text again (the person reads it twice, never zero
//! times). A reset is idempotent, so repeating step 2 is harmless. While a message is being worked
//! on, "in progress" acks keep it from being redelivered to another replica.
//!
//! Failures Omni or the gateway may recover from (Omni unreachable, a 5xx) are retried after
//! [`RETRY_DELAY`], up to [`MAX_DELIVER`] deliveries in all. Every outcome is counted in
//! `omni_bridge_trash_events_total{result}`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Config as PullConfig, Stream as PullStream};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::{AckKind, Message};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use prometheus::{IntCounterVec, Opts, Registry};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::OmniApi;
use super::binding::{Routing, TriggerUrls, routing};
use super::events::{MESSAGE_RECEIVED_SUBJECTS, MESSAGE_STREAM, MessageReceived};
use super::messages::OutgoingText;
use super::trash::is_trash_only;
use crate::config::gateway::BackoffConfig;
pub use crate::config::omni::{DEFAULT_ACK_WAIT, DEFAULT_DURABLE, ResetStreamConfig};
use crate::error::ErrorKind;
use crate::gateway::backoff::ReconnectSchedule;
use crate::service::outcome::Outcome;
use crate::service::{RESET_TIMEOUT, Service};

/// Deliveries of one message before JetStream gives up on it.
pub const MAX_DELIVER: i64 = 20;
/// Messages delivered and not yet acknowledged, at most.
pub const MAX_ACK_PENDING: i64 = 256;
/// 🗑 messages worked on at once; the next waits.
pub const MAX_CONCURRENT_RESETS: usize = 16;
/// Delay before a message whose handling failed for a passing reason comes back.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long a done-marker is kept: far longer than any redelivery
/// ([`MAX_DELIVER`] × `ack_wait`).
pub const DONE_MARKER_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The done-marker's value.
const DONE: &[u8] = b"done";

/// The JetStream consumer configuration of `config`.
pub fn consumer_config(config: &ResetStreamConfig) -> PullConfig {
    PullConfig {
        durable_name: Some(config.durable.clone()),
        description: Some("omni-bridge: 🗑 session resets".into()),
        filter_subject: MESSAGE_RECEIVED_SUBJECTS.into(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        max_deliver: MAX_DELIVER,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy: DeliverPolicy::New,
        ..PullConfig::default()
    }
}

/// Why the consumer could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct NatsSetupError {
    /// The step.
    pub what: &'static str,
    /// What NATS said.
    pub message: String,
}

fn setup_error(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> NatsSetupError {
    move |e| NatsSetupError {
        what,
        message: e.to_string(),
    }
}

/// The consumer and marker bucket, connected.
pub struct Attached {
    /// The durable pull consumer.
    pub consumer: PullConsumer,
    /// The done-markers.
    pub done: kv::Store,
}

/// Connects and finds Omni's `MESSAGE` stream; changes nothing (`register` checks this first).
///
/// # Errors
/// [`NatsSetupError`] naming the step.
pub async fn check_stream(
    config: &ResetStreamConfig,
) -> Result<(jetstream::Context, jetstream::stream::Stream), NatsSetupError> {
    let client = async_nats::ConnectOptions::new()
        .name("omni-bridge")
        .connection_timeout(Duration::from_secs(10))
        .connect(config.nats_url.as_str())
        .await
        .map_err(|e| setup_error("connect to Omni's NATS")(&e))?;
    let js = jetstream::new(client);
    let stream = js.get_stream(MESSAGE_STREAM).await.map_err(|e| {
        setup_error("find Omni's MESSAGE stream (does Omni run with this NATS?)")(&e)
    })?;
    Ok((js, stream))
}

/// Connects, then creates (or finds) the durable consumer and the marker bucket. Idempotent:
/// `register --omni-nats-url` calls it so that no 🗑 sent before `serve` starts is missed.
///
/// # Errors
/// [`NatsSetupError`] naming the step (connect, Omni's `MESSAGE` stream, consumer, bucket).
pub async fn attach(config: &ResetStreamConfig) -> Result<Attached, NatsSetupError> {
    let (js, stream) = check_stream(config).await?;
    let consumer: PullConsumer = stream
        .get_or_create_consumer(&config.durable, consumer_config(config))
        .await
        .map_err(|e| setup_error("create the durable consumer")(&e))?;
    let bucket = config.done_bucket();
    let done = match js.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(_) => {
            create_bucket(&js, &bucket).await?;
            js.get_key_value(&bucket)
                .await
                .map_err(|e| setup_error("open the done-marker bucket")(&e))?
        }
    };
    Ok(Attached { consumer, done })
}

/// Creates the done-marker bucket: the stream a key-value bucket is (`KV_<bucket>`, subjects
/// `$KV.<bucket>.>`, one value per key, [`DONE_MARKER_TTL`]). Sent as the plain JetStream API
/// request, because the client's own bucket creation sends fields that NATS 2.9 (the server Omni's
/// kit runs) answers in a shape the client cannot read; reading and writing work on both.
async fn create_bucket(js: &jetstream::Context, bucket: &str) -> Result<(), NatsSetupError> {
    let body = serde_json::json!({
        "name": format!("KV_{bucket}"),
        "description": "omni-bridge: 🗑 messages already handled",
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_msgs_per_subject": 1,
        "max_age": u64::try_from(DONE_MARKER_TTL.as_nanos()).unwrap_or(u64::MAX),
        "discard": "new",
        "storage": "file",
        "num_replicas": 1,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
    });
    let answer: serde_json::Value = js
        .request(format!("STREAM.CREATE.KV_{bucket}"), &body)
        .await
        .map_err(|e| setup_error("create the done-marker bucket")(&e))?;
    match answer.get("error") {
        // 10058: a stream of that name exists (another replica made it meanwhile).
        Some(e) if e.get("err_code").and_then(serde_json::Value::as_u64) != Some(10058) => {
            Err(NatsSetupError {
                what: "create the done-marker bucket",
                message: e.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Where a test stops the consumer to play a crash (the consumer then never acks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the reset, before the text is sent.
    AfterReset,
    /// After the text and the marker, before the ack.
    BeforeAck,
}

/// A crash point and the signal that it was reached.
#[derive(Debug, Clone)]
pub struct Pause {
    /// Where to stop.
    pub at: CrashPoint,
    /// Notified when a message reaches `at`.
    pub reached: Arc<Notify>,
}

/// What became of one 🗑 event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrashResult {
    /// Session reset and confirmed in the chat.
    Reset,
    /// The reset failed; the chat was told.
    ResetFailed,
    /// Handled before (marker found): acked, nothing done.
    Duplicate,
    /// The instance is not routed to this bridge.
    NotRouted,
    /// A passing failure (Omni or NATS unreachable): redelivered later.
    RetryLater,
    /// Not a usable event.
    Invalid,
}

impl TrashResult {
    const ALL: [Self; 6] = [
        Self::Reset,
        Self::ResetFailed,
        Self::Duplicate,
        Self::NotRouted,
        Self::RetryLater,
        Self::Invalid,
    ];

    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::ResetFailed => "reset_failed",
            Self::Duplicate => "duplicate",
            Self::NotRouted => "not_routed",
            Self::RetryLater => "retry_later",
            Self::Invalid => "invalid",
        }
    }
}

/// The consumer's metrics.
#[derive(Clone)]
struct ConsumerMetrics {
    events: IntCounterVec,
}

impl ConsumerMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events = IntCounterVec::new(
            Opts::new(
                "omni_bridge_trash_events_total",
                "🗑 messages seen on Omni's event stream, by what became of them.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(events.clone()))?;
        for r in TrashResult::ALL {
            events.with_label_values(&[r.as_str()]);
        }
        Ok(Self { events })
    }

    fn count(&self, r: TrashResult) {
        self.events.with_label_values(&[r.as_str()]).inc();
    }
}

/// The running consumer's parts.
pub struct ResetConsumer {
    config: ResetStreamConfig,
    service: Service,
    omni: OmniApi,
    urls: TriggerUrls,
    metrics: ConsumerMetrics,
    pause: Option<Pause>,
}

impl ResetConsumer {
    /// A consumer for `service`, confirming through `omni`, serving the instances whose provider
    /// points at one of `urls`.
    ///
    /// # Errors
    /// A metric name clash on `registry`.
    pub fn new(
        config: ResetStreamConfig,
        service: Service,
        omni: OmniApi,
        urls: TriggerUrls,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            config,
            service,
            omni,
            urls,
            metrics: ConsumerMetrics::new(registry)?,
            pause: None,
        })
    }

    /// Stops at `pause` to play a crash (tests).
    pub fn with_pause(mut self, pause: Pause) -> Self {
        self.pause = Some(pause);
        self
    }

    /// Attaches (retrying with backoff while NATS or Omni's stream is not there), then consumes
    /// until `shutdown`. Messages being worked on when `shutdown` comes are left unacknowledged:
    /// JetStream redelivers them after `ack_wait`.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut schedule = ReconnectSchedule::new(BackoffConfig {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            ..BackoffConfig::default()
        });
        loop {
            let attached = tokio::select! {
                a = attach(&this.config) => a,
                () = shutdown.cancelled() => return,
            };
            match attached {
                Ok(a) => {
                    schedule.reset();
                    tracing::info!(
                        consumer = %this.config.durable,
                        stream = MESSAGE_STREAM,
                        "🗑 reset consumer attached to Omni's event stream"
                    );
                    Arc::clone(&this).consume(a, &shutdown).await;
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt = schedule.attempt() + 1, "🗑 reset consumer cannot attach; retrying");
                }
            }
            let delay = schedule.next_delay(None);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn consume(self: Arc<Self>, attached: Attached, shutdown: &CancellationToken) {
        let mut messages: PullStream = match attached.consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "🗑 reset consumer: cannot pull messages");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RESETS));
        let tasks = TaskTracker::new();
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                () = shutdown.cancelled() => break,
            };
            let msg = match next {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "🗑 reset consumer: pull error");
                    continue;
                }
                Some(Ok(m)) => m,
            };
            let event = match MessageReceived::parse(&msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "🗑 reset consumer: event skipped");
                    self.metrics.count(TrashResult::Invalid);
                    ack(&msg, AckKind::Term).await;
                    continue;
                }
            };
            if !event.text.as_deref().is_some_and(is_trash_only) {
                ack(&msg, AckKind::Ack).await;
                continue;
            }
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = shutdown.cancelled() => break,
            };
            let this = Arc::clone(&self);
            let done = attached.done.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move {
                this.handle(msg, event, done, stop).await;
                drop(permit);
            });
        }
        tasks.close();
        tasks.wait().await;
    }

    /// Works on one 🗑 message while keeping it alive with "in progress" acks; acks or naks it
    /// at the end; on shutdown leaves it for redelivery.
    async fn handle(
        &self,
        msg: Message,
        event: MessageReceived,
        done: kv::Store,
        shutdown: CancellationToken,
    ) {
        let keep_alive = async {
            let every = self.config.ack_wait / 3;
            loop {
                tokio::time::sleep(every).await;
                ack(&msg, AckKind::Progress).await;
            }
        };
        let result = tokio::select! {
            r = self.process(&event, &done) => r,
            () = keep_alive => return,
            () = shutdown.cancelled() => return,
        };
        self.metrics.count(result);
        tracing::info!(
            instance_id = %event.instance_id,
            result = result.as_str(),
            "🗑 message handled"
        );
        match result {
            TrashResult::RetryLater => ack(&msg, AckKind::Nak(Some(RETRY_DELAY))).await,
            _ => {
                if let Err(e) = msg.double_ack().await {
                    tracing::warn!(error = %e, "🗑 ack not confirmed; a redelivery will find the marker");
                }
            }
        }
    }

    async fn process(&self, event: &MessageReceived, done: &kv::Store) -> TrashResult {
        let marker = marker_key(&self.config.durable, event);
        match done.get(marker.as_str()).await {
            Ok(Some(v)) if v.as_ref() == DONE => return TrashResult::Duplicate,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "🗑 cannot read the done-marker");
                return TrashResult::RetryLater;
            }
        }
        let agent = match routing(&self.omni, &event.instance_id, &self.urls).await {
            Ok(Routing::Bridge { agent }) => agent,
            Ok(Routing::AgentRow) => {
                tracing::warn!(
                    instance_id = %event.instance_id,
                    "🗑 instance bound through an agent row (newer Omni): not handled by this consumer"
                );
                return TrashResult::NotRouted;
            }
            Ok(Routing::Elsewhere | Routing::Unbound) => return TrashResult::NotRouted,
            Err(e) => {
                tracing::warn!(error = %e, "🗑 cannot ask Omni where the instance is routed");
                return TrashResult::RetryLater;
            }
        };
        let Some(route) = self.service.route(&agent, Some(&event.instance_id)) else {
            tracing::error!(agent_id = %agent, "🗑 Omni routes the instance to an agent this bridge does not serve");
            return TrashResult::NotRouted;
        };
        // The conversation of a snapshot-era trigger is its chat id (Omni sends no session id).
        let key = match self
            .service
            .session_key_for(&route, &event.instance_id, &event.chat_id)
        {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "🗑 no session key for this chat");
                return TrashResult::Invalid;
            }
        };
        let reset = tokio::time::timeout(
            RESET_TIMEOUT,
            self.service.backend().reset(&route.gateway, &key),
        )
        .await;
        let outcome = match reset {
            Ok(Ok(())) => Outcome::Reset,
            Ok(Err(e)) => {
                tracing::warn!(session_key = %key, kind = e.kind().as_str(), error = %e, "🗑 reset failed");
                Outcome::ResetFailed(e.kind())
            }
            Err(_) => {
                tracing::warn!(session_key = %key, "🗑 reset timed out");
                Outcome::ResetFailed(ErrorKind::Timeout)
            }
        };
        self.pause_at(CrashPoint::AfterReset).await;
        let text = outcome.text(&route.texts).unwrap_or_default();
        let sent = self
            .omni
            .send_text(&OutgoingText {
                instance_id: &event.instance_id,
                to: &event.chat_id,
                text,
                reply_to: None,
            })
            .await;
        match sent {
            Ok(_) => {}
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "🗑 confirmation not sent; retrying later");
                return TrashResult::RetryLater;
            }
            Err(e) => {
                tracing::error!(error = %e, "🗑 Omni refused the confirmation");
            }
        }
        if let Err(e) = done.put(marker.as_str(), Bytes::from_static(DONE)).await {
            tracing::warn!(error = %e, "🗑 done-marker not written; a redelivery would repeat the text");
        }
        self.pause_at(CrashPoint::BeforeAck).await;
        if outcome == Outcome::Reset {
            TrashResult::Reset
        } else {
            TrashResult::ResetFailed
        }
    }

    async fn pause_at(&self, at: CrashPoint) {
        if let Some(p) = self.pause.as_ref().filter(|p| p.at == at) {
            p.reached.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

/// The done-marker key of one message: a hash, so any id is a valid key.
pub fn marker_key(durable: &str, event: &MessageReceived) -> String {
    let digest = Sha256::digest(format!("{durable}\n{}", event.dedupe_source()).as_bytes());
    hex::encode(&digest[..20])
}

async fn ack(msg: &Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        tracing::debug!(error = %e, "ack not sent");
    }
}
