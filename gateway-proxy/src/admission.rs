//! Admission: how many connections the proxy holds, counted in two pools so that sockets that
//! never authenticate cannot keep authenticated clients out.
//!
//! - **Pending** (accepted, not yet authenticated: TLS, upgrade, `connect`): at most
//!   `listen.max_pending_per_ip` from one source address and `listen.max_pending_connections`
//!   in all (as nginx's `limit_conn`). A socket over either is closed at once, before a byte is
//!   read, so a flood of idle sockets from one address costs the others nothing; the upgrade
//!   deadline (`listen.upgrade_timeout_ms`) frees the slots of sockets that send nothing.
//! - **Admitted** (authenticated and relayed): at most `listen.max_connections`; a client that
//!   authenticates beyond it is answered `UNAVAILABLE` (retryable) and closed 1013.
//!
//! Slots are guards: dropping one gives it back, however the connection ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// The two pools.
#[derive(Debug)]
pub struct Admission {
    pending: Mutex<Pending>,
    max_pending: usize,
    max_pending_per_ip: usize,
    admitted: AtomicUsize,
    max_admitted: usize,
}

#[derive(Debug, Default)]
struct Pending {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// A pending connection's slot.
#[derive(Debug)]
pub struct PendingSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

/// An admitted connection's slot.
#[derive(Debug)]
pub struct AdmittedSlot {
    admission: Arc<Admission>,
}

impl Admission {
    /// Pools of the given sizes.
    pub fn new(max_pending: usize, max_pending_per_ip: usize, max_admitted: usize) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            max_pending,
            max_pending_per_ip,
            admitted: AtomicUsize::new(0),
            max_admitted,
        })
    }

    /// A pending slot for a socket from `ip`, if neither limit is reached.
    pub fn try_pending(self: &Arc<Self>, ip: IpAddr) -> Option<PendingSlot> {
        let mut p = self.pending.lock();
        if p.total >= self.max_pending {
            return None;
        }
        let n = p.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_pending_per_ip {
            return None;
        }
        *n += 1;
        p.total += 1;
        Some(PendingSlot {
            admission: Arc::clone(self),
            ip,
        })
    }

    /// An admitted slot, if the pool has room.
    pub fn try_admit(self: &Arc<Self>) -> Option<AdmittedSlot> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_admitted).then_some(n + 1)
            })
            .ok()
            .map(|_| AdmittedSlot {
                admission: Arc::clone(self),
            })
    }

    /// Pending connections now (all addresses).
    pub fn pending(&self) -> usize {
        self.pending.lock().total
    }

    /// Admitted connections now.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut p = self.admission.pending.lock();
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Forgotten at zero: the map holds only addresses with sockets pending.
                p.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Drop for AdmittedSlot {
    fn drop(&mut self) {
        self.admission.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_is_bounded_per_address_and_in_all() {
        let a = Admission::new(5, 2, 1);
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let one: Vec<_> = (0..2).map(|_| a.try_pending(ip(1)).unwrap()).collect();
        assert!(a.try_pending(ip(1)).is_none(), "per address");
        let two: Vec<_> = (0..2).map(|_| a.try_pending(ip(2)).unwrap()).collect();
        let _three = a.try_pending(ip(3)).unwrap();
        assert!(a.try_pending(ip(4)).is_none(), "in all");
        drop(one);
        assert_eq!(a.pending(), 3);
        let _again = a.try_pending(ip(1)).unwrap();
        drop(two);
        assert_eq!(a.pending.lock().per_ip.len(), 2);
    }

    #[test]
    fn admitted_is_bounded_and_given_back() {
        let a = Admission::new(1, 1, 2);
        let x = a.try_admit().unwrap();
        let _y = a.try_admit().unwrap();
        assert!(a.try_admit().is_none());
        drop(x);
        assert_eq!(a.admitted(), 1);
        assert!(a.try_admit().is_some());
    }
}
