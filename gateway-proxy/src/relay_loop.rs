//! Relay loops: the threads that move frames for admitted connections. Each is an event loop on
//! its own epoll instance (nginx's model): it waits for socket readiness, drives the connections
//! that became ready (`Relay::drive`) and fires their deadlines; nothing on it is async.
//! epoll is called as a raw system call (rustix): libc's wrapper, in a multi-threaded process,
//! adds cancellation-point bookkeeping around every wait.
//!
//! Why not tokio tasks: a relay is woken for every frame, and under tokio each wakeup also pays
//! for the reactor's per-socket bookkeeping (readiness atomics, waker registration under a lock),
//! task scheduling, the runtime's clock reads and its park/unpark, which measured at 1.6 µs of
//! user time per request+response against nginx's 0.6 µs, and 4 µs against 1.5 µs at one
//! connection, where every frame is a wakeup (docs/performance.md, round 4). Here a readiness
//! event is a flag set on the connection and a direct call.
//!
//! The handshake still runs on tokio (TLS, WebSocket upgrade, authentication). Its task then
//! hands both sockets over with `RelayLoops::submit` and waits, idle, for the relay's end: the
//! task keeps the connection's admission permit and credential slot, and is what the graceful
//! drain waits for. Connections are handed out round-robin and stay on their loop.
//!
//! Every wait has an end: each relay's deadlines (slow consumer, close handshake) are timers of
//! the loop; the shutdown flag is checked on every turn (and [`RelayLoops::wake_all`] makes a
//! turn happen); a loop that ends, or fails, drops its relays, which ends their tasks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::LoopInstant as Instant;

use parking_lot::Mutex;
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec, eventfd};
use slab::Slab;
use tokio::sync::oneshot;

use crate::error::ProxyError;
use crate::metrics::{ForwardedFrames, Metrics};
use crate::relay::{Drive, End, READ_CHUNK_BYTES, Relay, Side};

/// The token of a loop's waker (connection tokens are `2 * index + side`).
const WAKER: u64 = u64::MAX;
/// Longest single wait (a loop that wakes with nothing to do just waits again).
const MAX_WAIT: Timespec = Timespec {
    tv_sec: 3600,
    tv_nsec: 0,
};
/// Readiness events taken per wait.
const EVENTS_PER_WAIT: usize = 1024;

/// The running relay loops.
#[derive(Debug)]
pub struct RelayLoops {
    inboxes: Vec<Arc<Inbox>>,
    next: AtomicUsize,
    threads: Vec<JoinHandle<()>>,
}

/// What a loop is handed from other threads.
#[derive(Debug)]
struct Inbox {
    state: Mutex<InboxState>,
    /// An eventfd in the loop's epoll set: writing to it makes the loop take a turn.
    waker: OwnedFd,
    /// Set to end the loop (its relays are dropped).
    quit: AtomicBool,
}

#[derive(Debug, Default)]
struct InboxState {
    new: Vec<NewRelay>,
    /// The loop has ended: nothing handed over any more would be taken.
    closed: bool,
}

struct NewRelay {
    relay: Relay,
    done: oneshot::Sender<End>,
}

impl std::fmt::Debug for NewRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewRelay")
    }
}

impl Inbox {
    fn wake(&self) {
        match rustix::io::write(&self.waker, &1u64.to_ne_bytes()) {
            // The counter is full: a wake is pending anyway.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => tracing::error!(error = %e, "could not wake a relay loop"),
        }
    }

    /// Consumes the pending wakes (the eventfd is level-triggered).
    fn clear_wakes(&self) {
        let mut count = [0; 8];
        let _ = rustix::io::read(&self.waker, &mut count);
    }
}

impl RelayLoops {
    /// Starts `count` loops (0: one per available core). Once `stop` is set (and
    /// [`Self::wake_all`] called), every relay, present or future, closes with 1012.
    ///
    /// # Errors
    /// [`ProxyError::Io`] when a poller or a thread cannot be created.
    pub fn start(
        count: usize,
        stop: Arc<AtomicBool>,
        metrics: &Metrics,
    ) -> Result<Self, ProxyError> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        // Built as it goes: on an error, dropping it ends the loops already started.
        let mut loops = Self {
            inboxes: Vec::with_capacity(count),
            next: AtomicUsize::new(0),
            threads: Vec::with_capacity(count),
        };
        for i in 0..count {
            let io_error = |e: rustix::io::Errno| ProxyError::Io(e.into());
            let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(io_error)?;
            let waker =
                eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).map_err(io_error)?;
            epoll::add(&epoll, &waker, EventData::new_u64(WAKER), EventFlags::IN)
                .map_err(io_error)?;
            let inbox = Arc::new(Inbox {
                state: Mutex::new(InboxState::default()),
                waker,
                quit: AtomicBool::new(false),
            });
            let event_loop = EventLoop {
                epoll,
                inbox: Arc::clone(&inbox),
                stop: Arc::clone(&stop),
                stopping: false,
                conns: Slab::new(),
                timers: BinaryHeap::new(),
                ready: Vec::new(),
                driving: Vec::new(),
                next_generation: 0,
                scratch: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
                metrics: metrics.clone(),
                forwarded: ForwardedFrames::default(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("gwp-relay-{i}"))
                .spawn(move || event_loop.run())
                .map_err(ProxyError::Io)?;
            loops.inboxes.push(inbox);
            loops.threads.push(thread);
        }
        Ok(loops)
    }

    /// How many loops run.
    pub fn len(&self) -> usize {
        self.inboxes.len()
    }

    /// Never true (at least one loop runs); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.inboxes.is_empty()
    }

    /// Hands a relay to the next loop; the receiver gets how it ended (an error if its loop
    /// ended first).
    pub(crate) fn submit(&self, relay: Relay) -> oneshot::Receiver<End> {
        let (done, ended) = oneshot::channel();
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len();
        let inbox = &self.inboxes[i];
        let mut state = inbox.state.lock();
        if !state.closed {
            state.new.push(NewRelay { relay, done });
            drop(state);
            inbox.wake();
        }
        ended
    }

    /// Makes every loop look at the shutdown flag now.
    pub fn wake_all(&self) {
        for inbox in &self.inboxes {
            inbox.wake();
        }
    }

    /// Ends the loops (relays still on them are dropped) and waits for their threads.
    pub async fn stop(mut self) {
        self.quit();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a relay loop panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("joining the relay loops failed");
        }
    }

    fn quit(&self) {
        for inbox in &self.inboxes {
            inbox.quit.store(true, Ordering::Release);
            inbox.wake();
        }
    }
}

impl Drop for RelayLoops {
    /// Dropped without [`stop`](RelayLoops::stop) (the proxy's task was aborted): the threads
    /// still end, without being waited for.
    fn drop(&mut self) {
        self.quit();
    }
}

/// A relay on its loop.
struct Conn {
    relay: Relay,
    done: oneshot::Sender<End>,
    /// Tells a reused slab slot's timers apart from its previous occupant's.
    generation: u64,
    /// Already in the list of connections to drive.
    queued: bool,
    /// The deadline a timer is set for.
    armed: Option<Instant>,
}

/// One loop's state, owned by its thread.
struct EventLoop {
    epoll: OwnedFd,
    inbox: Arc<Inbox>,
    stop: Arc<AtomicBool>,
    /// The stop flag was seen: every relay has been told.
    stopping: bool,
    conns: Slab<Conn>,
    /// (deadline, slot, generation); entries whose connection re-armed are skipped.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Connections to drive this turn.
    ready: Vec<usize>,
    /// The list being driven (kept to reuse its memory: no allocation per turn).
    driving: Vec<usize>,
    next_generation: u64,
    /// Every read lands here first: no connection holds a read buffer.
    scratch: Box<[u8]>,
    metrics: Metrics,
    /// Frames forwarded this turn, added to `metrics` before the loop waits again.
    forwarded: ForwardedFrames,
}

/// Marks the inbox closed however the loop ends (a panic included), so that no relay handed
/// over later waits for a loop that is gone.
struct CloseInbox(Arc<Inbox>);

impl Drop for CloseInbox {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.closed = true;
        state.new.clear();
    }
}

impl EventLoop {
    fn run(mut self) {
        let _close = CloseInbox(Arc::clone(&self.inbox));
        let mut events: Vec<epoll::Event> = Vec::with_capacity(EVENTS_PER_WAIT);
        loop {
            let timeout = if self.ready.is_empty() {
                self.next_timer()
            } else {
                Some(Duration::ZERO)
            };
            let timeout = timeout.map(wait_timeout);
            self.forwarded.flush_into(&self.metrics);
            events.clear();
            match epoll::wait(&self.epoll, spare_capacity(&mut events), timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "relay loop cannot wait for events; its connections are dropped");
                    return;
                }
            }
            let mut woken = false;
            for event in &events {
                let token = event.data.u64();
                if token == WAKER {
                    woken = true;
                    continue;
                }
                let (slot, side) = (slot_of(token), side_of(token));
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.relay.socket(side).on_event(event.flags);
                    queue(&mut self.ready, slot, conn);
                }
            }
            if woken {
                // Drained before looking at what the wakes announce: a wake written after
                // the drain stays pending for the next wait, so none is lost.
                self.inbox.clear_wakes();
            }
            if self.inbox.quit.load(Ordering::Acquire) {
                return;
            }
            if woken {
                self.take_new();
            }
            if !self.stopping && self.stop.load(Ordering::Acquire) {
                self.stopping = true;
                for (slot, conn) in &mut self.conns {
                    conn.relay.stop();
                    queue(&mut self.ready, slot, conn);
                }
            }
            self.fire_timers();
            let mut driving = std::mem::replace(&mut self.ready, std::mem::take(&mut self.driving));
            for slot in driving.drain(..) {
                self.drive(slot);
            }
            self.driving = driving;
        }
    }

    /// Takes the relays handed over since the last turn.
    fn take_new(&mut self) {
        let new = std::mem::take(&mut self.inbox.state.lock().new);
        for NewRelay { mut relay, done } in new {
            let entry = self.conns.vacant_entry();
            let slot = entry.key();
            let epoll = self.epoll.as_fd();
            let registered = relay
                .socket(Side::Client)
                .register(epoll, token_of(slot, Side::Client))
                .and_then(|()| {
                    relay
                        .socket(Side::Upstream)
                        .register(epoll, token_of(slot, Side::Upstream))
                });
            if let Err(e) = registered {
                tracing::error!(error = %e, "could not register a relayed connection");
                relay.socket(Side::Client).deregister(epoll);
                relay.socket(Side::Upstream).deregister(epoll);
                continue;
            }
            if self.stopping {
                relay.stop();
            }
            self.next_generation += 1;
            let conn = entry.insert(Conn {
                relay,
                done,
                generation: self.next_generation,
                queued: false,
                armed: None,
            });
            queue(&mut self.ready, slot, conn);
        }
    }

    fn drive(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.queued = false;
        let (scratch, forwarded) = (&mut self.scratch, &mut self.forwarded);
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| conn.relay.drive(scratch, forwarded)));
        match outcome {
            Ok(Drive::Idle) => {
                let deadline = conn.relay.deadline();
                if deadline != conn.armed {
                    conn.armed = deadline;
                    if let Some(at) = deadline {
                        self.timers.push(Reverse((at, slot, conn.generation)));
                    }
                }
            }
            Ok(Drive::Busy) => queue(&mut self.ready, slot, conn),
            Ok(Drive::Done(end)) => {
                let conn = self.remove(slot);
                // The task may be gone already (the proxy is stopping): nobody to tell.
                let _ = conn.done.send(end);
            }
            Err(_) => {
                tracing::error!("a relay panicked; its connection is dropped");
                self.remove(slot);
            }
        }
    }

    fn remove(&mut self, slot: usize) -> Conn {
        let mut conn = self.conns.remove(slot);
        let epoll = self.epoll.as_fd();
        conn.relay.socket(Side::Client).deregister(epoll);
        conn.relay.socket(Side::Upstream).deregister(epoll);
        conn
    }

    /// How long the next wait may last: until the earliest timer (forever without one).
    fn next_timer(&self) -> Option<Duration> {
        let Reverse((at, _, _)) = self.timers.peek()?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    /// Queues the connections whose deadline has come.
    fn fire_timers(&mut self) {
        if self.timers.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(conn) = self.conns.get_mut(slot)
                && conn.generation == generation
                && conn.armed == Some(at)
            {
                conn.armed = None;
                queue(&mut self.ready, slot, conn);
            }
        }
    }
}

/// Adds a connection to this turn's list, once.
fn queue(ready: &mut Vec<usize>, slot: usize, conn: &mut Conn) {
    if !conn.queued {
        conn.queued = true;
        ready.push(slot);
    }
}

/// A wait's timeout for epoll, capped at [`MAX_WAIT`].
fn wait_timeout(wait: Duration) -> Timespec {
    match Timespec::try_from(wait) {
        Ok(t) if t.tv_sec < MAX_WAIT.tv_sec => t,
        _ => MAX_WAIT,
    }
}

/// A connection side's epoll token.
fn token_of(slot: usize, side: Side) -> u64 {
    2 * slot as u64 + u64::from(side == Side::Upstream)
}

fn slot_of(token: u64) -> usize {
    usize::try_from(token / 2).unwrap_or(usize::MAX)
}

fn side_of(token: u64) -> Side {
    if token.is_multiple_of(2) {
        Side::Client
    } else {
        Side::Upstream
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use shared_protocol::close_code;

    use super::*;
    use crate::inspector::Session;
    use crate::server::Shared;
    use crate::socket::Socket;
    use crate::wire::{self, Header, OP_CLOSE, OP_TEXT};

    const WAIT: Duration = Duration::from_secs(10);

    /// A connected pair: (the proxy's end, as the relay takes it; the peer's end).
    fn pair() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        peer.set_read_timeout(Some(WAIT)).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Socket::plain(ours), peer)
    }

    /// A relay between a client and a gateway, both played by the test.
    fn shared() -> Arc<Shared> {
        let config = crate::Config::from_toml(&crate::config::minimal_test_toml()).unwrap();
        crate::Proxy::new(config, prometheus::Registry::new())
            .unwrap()
            .shared()
    }

    fn relay(shared: &Arc<Shared>) -> (Relay, TcpStream, TcpStream) {
        let shared = Arc::clone(shared);
        let credential = shared.creds.authenticate("test").unwrap();
        let session = Session {
            scopes: credential.policy.grant,
            credential,
            defaults: Default::default(),
        };
        let (client, client_peer) = pair();
        let (upstream, gateway_peer) = pair();
        let who = (client_peer.local_addr().unwrap(), 1, tracing::Span::none());
        let relay = Relay::new(shared, who, session, client, upstream);
        (relay, client_peer, gateway_peer)
    }

    /// Reads one whole frame: (opcode, unmasked payload, was it masked).
    fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>, bool) {
        let mut buf = Vec::new();
        let mut chunk = [0; 1024];
        loop {
            if let Some(h) = Header::parse(&buf)
                && h.frame_len().is_some_and(|n| buf.len() as u64 >= n)
            {
                let mut payload = buf[h.len..].to_vec();
                if let Some(key) = h.mask {
                    wire::apply_mask(&mut payload, key);
                }
                return (h.opcode, payload, h.mask.is_some());
            }
            let n = s.read(&mut chunk).unwrap();
            assert_ne!(n, 0, "the stream ended inside a frame");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn assert_ended(s: &mut TcpStream) {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
    }

    /// Frames pass both ways through a loop, and once the stop flag is set and the loops woken,
    /// both sides get a 1012 close and the relay reports the shutdown. The frames forwarded
    /// reach the metrics by the time the loop has stopped.
    #[tokio::test]
    async fn relays_both_ways_then_closes_both_sides_on_stop() {
        let (stop, shared) = (Arc::new(AtomicBool::new(false)), shared());
        let loops = RelayLoops::start(1, Arc::clone(&stop), &shared.metrics).unwrap();
        let (relay, mut client, mut gateway) = relay(&shared);
        let ended = loops.submit(relay);

        let request = br#"{"type":"req","id":"1","method":"health","params":{}}"#;
        let mut frame = Vec::new();
        wire::encode(&mut frame, OP_TEXT, request, Some([1, 2, 3, 4]));
        client.write_all(&frame).unwrap();
        assert_eq!(read_frame(&mut gateway), (OP_TEXT, request.to_vec(), true));

        let mut frame = Vec::new();
        wire::encode(&mut frame, OP_TEXT, b"{\"type\":\"event\"}", None);
        gateway.write_all(&frame).unwrap();
        let (op, payload, masked) = read_frame(&mut client);
        assert_eq!(
            (op, payload.as_slice(), masked),
            (OP_TEXT, &b"{\"type\":\"event\"}"[..], false)
        );

        stop.store(true, Ordering::Release);
        loops.wake_all();
        let restart = close_code::SERVICE_RESTART.to_be_bytes();
        let (op, payload, masked) = read_frame(&mut client);
        assert_eq!((op, &payload[..2], masked), (OP_CLOSE, &restart[..], false));
        let (op, payload, masked) = read_frame(&mut gateway);
        assert_eq!((op, &payload[..2], masked), (OP_CLOSE, &restart[..], true));
        let end = tokio::time::timeout(WAIT, ended).await.unwrap().unwrap();
        assert_eq!(end, End::Shutdown);
        assert_ended(&mut client);
        assert_ended(&mut gateway);
        tokio::time::timeout(WAIT, loops.stop()).await.unwrap();
        let m = &shared.metrics;
        // The close frames are not messages; the two frames above are.
        assert_eq!(
            (
                m.frames_client_forwarded.get(),
                m.frames_upstream_forwarded.get()
            ),
            (1, 1)
        );
    }

    /// Dropping the loops drops their relays: the task waiting for one learns at once, and
    /// both sockets are closed.
    #[tokio::test]
    async fn dropping_the_loops_ends_their_relays() {
        let shared = shared();
        let loops =
            RelayLoops::start(2, Arc::new(AtomicBool::new(false)), &shared.metrics).unwrap();
        assert_eq!(loops.len(), 2);
        let (relay, mut client, mut gateway) = relay(&shared);
        let ended = loops.submit(relay);
        drop(loops);
        tokio::time::timeout(WAIT, ended)
            .await
            .unwrap()
            .unwrap_err();
        assert_ended(&mut client);
        assert_ended(&mut gateway);
    }

    /// A wake that comes while the loop is busy with the previous one is not lost: stopping
    /// right after waking ends the loop every time (the race this guards against was a quit
    /// flag set between the loop's look at it and its draining the waker).
    #[tokio::test]
    async fn a_stop_right_after_a_wake_is_never_lost() {
        let shared = shared();
        for round in 0..20_000u32 {
            let loops =
                RelayLoops::start(1, Arc::new(AtomicBool::new(false)), &shared.metrics).unwrap();
            loops.wake_all();
            // Stop at a different point of the loop's turn each round.
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_nanos(u64::from(round % 200) * 50) {
                std::hint::spin_loop();
            }
            tokio::time::timeout(WAIT, loops.stop()).await.unwrap();
        }
    }

    /// A relay handed to a loop that has already ended is dropped, not left waiting.
    #[tokio::test]
    async fn a_loop_that_has_ended_takes_nothing() {
        let shared = shared();
        let mut loops =
            RelayLoops::start(1, Arc::new(AtomicBool::new(false)), &shared.metrics).unwrap();
        loops.quit();
        for thread in std::mem::take(&mut loops.threads) {
            thread.join().unwrap();
        }
        let (relay, mut client, _gateway) = relay(&shared);
        let ended = loops.submit(relay);
        tokio::time::timeout(WAIT, ended)
            .await
            .unwrap()
            .unwrap_err();
        assert_ended(&mut client);
    }
}
