//! Counters a link keeps while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Direction;

/// A snapshot of a link's counters, from [`LinkHandle::stats`](crate::LinkHandle::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// TCP connections the listener accepted, including those then reset or refused.
    pub connections_accepted: u64,
    /// Connections currently being proxied (or blackholed by a partition).
    pub connections_active: u64,
    /// Connections reset at once because `max_connections` were already active.
    pub connections_refused: u64,
    /// Resets caused by the reset fault (per connection or per chunk).
    pub resets_injected: u64,
    /// Connections reset because the upstream could not be reached in time.
    pub upstream_connect_failures: u64,
    /// Bytes delivered client → server.
    pub bytes_upstream: u64,
    /// Bytes delivered server → client.
    pub bytes_downstream: u64,
    /// Bytes read from clients and not yet fully delivered upstream (all connections).
    pub bytes_queued_upstream: u64,
    /// Bytes read from servers and not yet fully delivered downstream (all connections).
    pub bytes_queued_downstream: u64,
}

impl LinkStats {
    /// Bytes delivered in one direction.
    pub fn bytes(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Upstream => self.bytes_upstream,
            Direction::Downstream => self.bytes_downstream,
        }
    }

    /// Bytes queued in one direction.
    pub fn bytes_queued(&self, dir: Direction) -> u64 {
        match dir {
            Direction::Upstream => self.bytes_queued_upstream,
            Direction::Downstream => self.bytes_queued_downstream,
        }
    }
}

/// The live counters behind [`LinkStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_active: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) resets_injected: AtomicU64,
    pub(crate) upstream_connect_failures: AtomicU64,
    pub(crate) bytes: [AtomicU64; 2],
    pub(crate) bytes_queued: [AtomicU64; 2],
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_bytes(&self, dir: Direction, n: usize) {
        self.bytes[dir.index()].fetch_add(as_u64(n), Ordering::Relaxed);
    }

    pub(crate) fn queue(&self, dir: Direction, n: usize) {
        self.bytes_queued[dir.index()].fetch_add(as_u64(n), Ordering::Relaxed);
    }

    pub(crate) fn dequeue(&self, dir: Direction, n: usize) {
        self.bytes_queued[dir.index()].fetch_sub(as_u64(n), Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LinkStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LinkStats {
            connections_accepted: get(&self.connections_accepted),
            connections_active: get(&self.connections_active),
            connections_refused: get(&self.connections_refused),
            resets_injected: get(&self.resets_injected),
            upstream_connect_failures: get(&self.upstream_connect_failures),
            bytes_upstream: get(&self.bytes[0]),
            bytes_downstream: get(&self.bytes[1]),
            bytes_queued_upstream: get(&self.bytes_queued[0]),
            bytes_queued_downstream: get(&self.bytes_queued[1]),
        }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
