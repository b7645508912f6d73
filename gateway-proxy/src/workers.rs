//! Connection workers: threads that each run their own single-threaded tokio runtime. The
//! accept loop hands every accepted socket to the next worker, round-robin, and the connection
//! (TLS, handshake, relay) lives on that worker until it ends.
//!
//! Why not the default work-stealing runtime: a relay is one task polling two sockets, woken
//! once per frame. On the work-stealing scheduler every wakeup also pays for its bookkeeping
//! (clock reads and poll-time averaging per batch, the shared queues), which the profile showed
//! as the largest userland cost per frame after the syscalls themselves. A single-threaded
//! runtime per core is nginx's model: no sharing on the hot path, and with many connections the
//! round-robin spreads them evenly. The accept loop, the admin endpoint and the background
//! tasks stay on the caller's runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::error::ProxyError;

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` workers (0: one per available core).
    ///
    /// # Errors
    /// [`ProxyError::Io`] when a runtime or thread cannot be created.
    pub fn start(count: usize) -> Result<Self, ProxyError> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let stop = CancellationToken::new();
        let mut handles = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(ProxyError::Io)?;
            handles.push(runtime.handle().clone());
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("gwp-worker-{i}"))
                .spawn(move || runtime.block_on(stop.cancelled()))
                .map_err(ProxyError::Io)?;
            threads.push(thread);
        }
        Ok(Self {
            handles,
            next: AtomicUsize::new(0),
            stop,
            threads,
        })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true (at least one worker runs); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The worker for the next connection.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// Stops the workers (tasks still on them are dropped) and waits for their threads.
    pub async fn stop(mut self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a connection worker panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("joining the connection workers failed");
        }
    }
}

impl Drop for Workers {
    /// Dropped without [`stop`](Workers::stop) (the proxy's task was aborted): the threads
    /// still end, without being waited for.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are spread over every worker, each a thread of its own, and stopping joins
    /// them all.
    #[tokio::test]
    async fn round_robin_over_threads_of_their_own() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let mut names = Vec::new();
        for _ in 0..6 {
            let name = workers
                .next()
                .spawn(async { std::thread::current().name().map(str::to_string) })
                .await
                .unwrap();
            names.push(name.unwrap());
        }
        assert_eq!(
            names,
            [
                "gwp-worker-0",
                "gwp-worker-1",
                "gwp-worker-2",
                "gwp-worker-0",
                "gwp-worker-1",
                "gwp-worker-2"
            ]
        );
        tokio::time::timeout(std::time::Duration::from_secs(10), workers.stop())
            .await
            .unwrap();
    }

    /// Dropping the workers ends their runtimes: what they run is dropped with them.
    #[tokio::test]
    async fn dropping_the_workers_ends_their_tasks() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        workers.next().spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The sender is dropped when the worker's runtime drops the pending task.
        tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .unwrap()
            .unwrap_err();
    }
}
