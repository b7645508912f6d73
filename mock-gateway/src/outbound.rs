//! One client's outbound queue: bounded, byte-accounted, with the gateway's slow-consumer rule.
//!
//! The real gateway checks the socket's buffered bytes before each broadcast: over
//! `maxBufferedBytes`, a `dropIfSlow` event (chat deltas, ticks) is skipped, anything else closes
//! the socket 1008 "slow consumer". The frame `seq` is taken before that check, so a dropped event
//! leaves a gap (`src/gateway/server-broadcast.ts`). Here "buffered" is what the writer task has not
//! yet handed to the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures_util::{Sink, SinkExt};
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

use crate::config::{CLOSE_GRACE, OUTBOUND_QUEUE_FRAMES};

/// A frame waiting for the writer.
#[derive(Debug)]
pub(crate) enum OutFrame {
    /// A JSON text frame.
    Text(String),
    /// A close frame; the writer stops after it.
    Close(u16, String),
}

/// What happened to a frame handed to [`Outbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued for the writer.
    Queued,
    /// Skipped: droppable and the client is slow (its seq was still used).
    Dropped,
    /// Not droppable and the client is slow: the socket is being closed 1008.
    SlowConsumer,
    /// The socket is closing; nothing more is sent.
    Closed,
}

/// The sending side of one connection.
#[derive(Debug)]
pub(crate) struct Outbound {
    tx: mpsc::Sender<OutFrame>,
    /// Frame `seq` of the last event; also serialises seq assignment with queue order.
    seq: Mutex<u64>,
    /// Bytes queued and not yet written to the socket.
    queued_bytes: AtomicUsize,
    /// Slow-consumer threshold.
    max_buffered_bytes: usize,
    /// Fired when the client is declared slow; the writer then closes 1008.
    slow: CancellationToken,
    /// Set once a close was queued or the client was declared slow.
    closing: AtomicBool,
}

impl Outbound {
    /// A queue and the receiver its writer task drains.
    pub fn new(max_buffered_bytes: usize) -> (Arc<Self>, mpsc::Receiver<OutFrame>) {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let out = Arc::new(Self {
            tx,
            seq: Mutex::new(0),
            queued_bytes: AtomicUsize::new(0),
            max_buffered_bytes,
            slow: CancellationToken::new(),
            closing: AtomicBool::new(false),
        });
        (out, rx)
    }

    /// Queues a frame that is never dropped (responses, the challenge).
    pub fn send_text(&self, text: String) -> Sent {
        self.enqueue(text, false)
    }

    /// Queues an event with the next frame `seq`.
    pub fn send_event(&self, event: &str, payload: &RawValue, drop_if_slow: bool) -> Sent {
        let mut seq = self.seq.lock();
        *seq += 1;
        match shared_protocol::frame::encode_event(event, &payload, Some(*seq)) {
            Ok(text) => self.enqueue(text, drop_if_slow),
            Err(e) => {
                tracing::error!(error = %e, event, "cannot encode event");
                Sent::Dropped
            }
        }
    }

    /// Queues an event without a `seq` (only `connect.challenge`).
    pub fn send_unsequenced_event(&self, event: &str, payload: &RawValue) -> Sent {
        match shared_protocol::frame::encode_event(event, &payload, None) {
            Ok(text) => self.enqueue(text, false),
            Err(e) => {
                tracing::error!(error = %e, event, "cannot encode event");
                Sent::Dropped
            }
        }
    }

    /// Queues a close frame; later frames are refused.
    pub fn close(&self, code: u16, reason: &str) {
        if !self.closing.swap(true, Ordering::SeqCst) {
            // A full queue means the client is not reading: the slow path closes it anyway.
            if self
                .tx
                .try_send(OutFrame::Close(code, reason.to_string()))
                .is_err()
            {
                self.slow.cancel();
            }
        }
    }

    /// True once the client was declared a slow consumer.
    pub fn is_slow(&self) -> bool {
        self.slow.is_cancelled()
    }

    fn enqueue(&self, text: String, drop_if_slow: bool) -> Sent {
        if self.closing.load(Ordering::SeqCst) {
            return Sent::Closed;
        }
        let len = text.len();
        let over = self.queued_bytes.load(Ordering::SeqCst) > self.max_buffered_bytes;
        if !over {
            self.queued_bytes.fetch_add(len, Ordering::SeqCst);
            match self.tx.try_send(OutFrame::Text(text)) {
                Ok(()) => return Sent::Queued,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
                    return Sent::Closed;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.queued_bytes.fetch_sub(len, Ordering::SeqCst);
                }
            }
        }
        if drop_if_slow {
            return Sent::Dropped;
        }
        self.closing.store(true, Ordering::SeqCst);
        self.slow.cancel();
        Sent::SlowConsumer
    }
}

enum Next {
    Frame(Option<OutFrame>),
    Slow,
    Killed,
}

/// How the writer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriterEnd {
    /// Close frame sent, socket killed, or the peer went away.
    Normal,
    /// Closed 1008 "slow consumer".
    SlowConsumer,
}

/// Drains the queue into the socket until a close frame, a kill, or a slow-consumer verdict.
pub(crate) async fn write_loop<S>(
    mut sink: S,
    mut rx: mpsc::Receiver<OutFrame>,
    out: Arc<Outbound>,
    kill: CancellationToken,
) -> WriterEnd
where
    S: Sink<Message> + Unpin,
{
    loop {
        let next = tokio::select! {
            biased;
            () = kill.cancelled() => Next::Killed,
            () = out.slow.cancelled() => Next::Slow,
            frame = rx.recv() => Next::Frame(frame),
        };
        match next {
            Next::Killed | Next::Frame(None) => return WriterEnd::Normal,
            Next::Slow => break,
            Next::Frame(Some(OutFrame::Close(code, reason))) => {
                send_close(&mut sink, code, &reason).await;
                return WriterEnd::Normal;
            }
            Next::Frame(Some(OutFrame::Text(text))) => {
                let len = text.len();
                let sent = tokio::select! {
                    biased;
                    () = kill.cancelled() => return WriterEnd::Normal,
                    () = out.slow.cancelled() => None,
                    r = sink.send(Message::text(text)) => Some(r.is_ok()),
                };
                out.queued_bytes.fetch_sub(len, Ordering::SeqCst);
                match sent {
                    Some(true) => {}
                    Some(false) => return WriterEnd::Normal,
                    None => break,
                }
            }
        }
    }
    // Slow consumer: skip what is queued, say why, give the close frame a bounded chance.
    tracing::warn!("closing slow consumer");
    send_close(
        &mut sink,
        shared_protocol::close_code::POLICY_VIOLATION,
        "slow consumer",
    )
    .await;
    WriterEnd::SlowConsumer
}

async fn send_close<S: Sink<Message> + Unpin>(sink: &mut S, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: code.into(),
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
}
