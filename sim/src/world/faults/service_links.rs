//! Network faults between two services: `partition`, `linkLatency`, `linkLoss` and
//! `hold` with `between: [svcA, svcB]`.
//!
//! The network model ([`crate::net`]) has links between zones, not services, so these
//! act in the world instead: every message the world puts on the network goes through
//! [`World::transit`], which looks at the services of the two nodes (their instances;
//! load generators belong to no service) and applies the faults in force between them
//! on top of the zone link:
//! - **partition**: the message is lost, as on a partitioned zone pair: the sender
//!   retransmits into the void and resets the connection after TCP's give-up time
//!   ([`net::give_up_after_ns`]); a connection attempt times out. `oneWay` blocks only
//!   the messages from the first service to the second.
//! - **linkLatency**: one sample of the distribution is *added* to the one-way latency
//!   of each message (the two services' instances may sit in different zones, so the
//!   fault adds to whichever zone link they use rather than replacing it).
//! - **linkLoss**: each packet of the message is lost with that probability and
//!   retransmitted after TCP's backed-off timeout, as the network model does for a
//!   lossy zone link; six losses in a row reset the connection.
//! - **hold**: messages wait and go out when the hold is released.
//!
//! A connection being set up when a partition heals or a hold is released gets through
//! as TCP would, if before the connect timeout ([`World::setup_transit`]).
//!
//! Faults are kept by their index in `spec.faults` (a `BTreeMap`: deterministic), and
//! each is undone when its `for` elapses.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_core::Time;
use rand::Rng;

use crate::dist::Dist;
use crate::net::{self, Transit};
use crate::world::World;

/// The first SYN retransmission timeout (Linux's `TCP_TIMEOUT_INIT`): 1 s.
const SYN_RTO_NS: u64 = 1_000_000_000;

/// What a fault between two services does to their messages.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    Partition { one_way: bool },
    Latency(Dist),
    Loss(f64),
    Hold,
}

#[derive(Debug, Clone)]
struct PairFault {
    a: usize,
    b: usize,
    effect: Effect,
    /// When it is undone (its `for`), if that is before the end of the run.
    until: Option<Time>,
}

impl PairFault {
    /// Whether it acts on a message from an instance of `from` to one of `to`.
    fn applies(&self, from: usize, to: usize) -> bool {
        let forward = self.a == from && self.b == to;
        match self.effect {
            Effect::Partition { one_way: true } => forward,
            _ => forward || (self.a == to && self.b == from),
        }
    }
}

/// The faults between services in force, by fault index.
#[derive(Debug, Default)]
pub(crate) struct ServiceLinks {
    active: BTreeMap<usize, PairFault>,
}

impl ServiceLinks {
    pub fn start(&mut self, fault: usize, a: usize, b: usize, effect: Effect, until: Option<Time>) {
        self.active.insert(
            fault,
            PairFault {
                a,
                b,
                effect,
                until,
            },
        );
    }

    pub fn end(&mut self, fault: usize) {
        self.active.remove(&fault);
    }

    fn on(&self, from: usize, to: usize) -> impl Iterator<Item = &Effect> + '_ {
        self.active
            .values()
            .filter(move |f| f.applies(from, to))
            .map(|f| &f.effect)
    }

    fn blocked(&self, from: usize, to: usize) -> bool {
        self.on(from, to)
            .any(|e| matches!(e, Effect::Partition { .. }))
    }

    fn held(&self, from: usize, to: usize) -> bool {
        self.on(from, to).any(|e| matches!(e, Effect::Hold))
    }

    /// When every partition and hold of messages `from` → `to` is over (`None`: one
    /// lasts to the end of the run).
    fn clear_at(&self, from: usize, to: usize) -> Option<Time> {
        self.active
            .values()
            .filter(|f| f.applies(from, to))
            .filter(|f| matches!(f.effect, Effect::Partition { .. } | Effect::Hold))
            .try_fold(Time(0), |t, f| Some(t.max(f.until?)))
    }
}

impl World {
    /// The services of nodes `from` and `to` when a fault between services is in
    /// force (and both are instances).
    fn service_pair(&self, from: u32, to: u32) -> Option<(usize, usize)> {
        if self.faults.links.active.is_empty() {
            return None;
        }
        let (a, _) = self.nodes[from as usize].instance?;
        let (b, _) = self.nodes[to as usize].instance?;
        Some((a, b))
    }

    /// A message of `bytes` leaves `from` for `to` at `now`: the network model's
    /// answer, with the faults between the two nodes' services applied.
    pub(in crate::world) fn transit(
        &mut self,
        now: Time,
        from: u32,
        to: u32,
        bytes: u64,
    ) -> Transit {
        let pair = self.service_pair(from, to);
        // A down sender sends nothing at all: the network model says so.
        if let Some((a, b)) = pair.filter(|_| !self.net.is_node_down(from)) {
            if self.faults.links.blocked(a, b) {
                return Transit::Reset {
                    at: now + Duration::from_nanos(net::give_up_after_ns()),
                };
            }
            if self.faults.links.held(a, b) {
                return Transit::Held;
            }
        }
        let at = match self.net.transit(now, from, to, bytes, &mut self.rng) {
            Transit::Deliver(at) => at,
            other => return other,
        };
        let Some((a, b)) = pair else {
            return Transit::Deliver(at);
        };
        let mut late = self.service_link_latency(from, to);
        let losses: Vec<f64> = self
            .faults
            .links
            .on(a, b)
            .filter_map(|e| match e {
                Effect::Loss(p) => Some(*p),
                _ => None,
            })
            .collect();
        for loss in losses {
            match retransmissions(bytes, loss, &mut self.rng) {
                Ok(penalty) => late += penalty,
                Err(give_up) => {
                    return Transit::Reset {
                        at: now + Duration::from_nanos(give_up),
                    };
                }
            }
        }
        Transit::Deliver(at + Duration::from_nanos(late))
    }

    /// A connection set-up packet (SYN, SYN-ACK) from `from` to `to` at `at`: as
    /// [`transit`](Self::transit), except that TCP resends one lost to a partition or
    /// caught by a hold between services: a held packet goes out at the release, a
    /// lost one at the first retransmission after the heal (Linux: 1 s, then doubling).
    /// It gets through if that is before `deadline` (the connect timeout); otherwise,
    /// or when the fault lasts to the end of the run, the attempt times out. (Faults
    /// between zones keep the network model's answer: the attempt times out.)
    pub(in crate::world) fn setup_transit(
        &mut self,
        at: Time,
        from: u32,
        to: u32,
        deadline: Time,
    ) -> Transit {
        let t = self.transit(at, from, to, 64);
        if matches!(t, Transit::Deliver(_))
            || self.net.is_held(from, to)
            || self.net.is_partitioned(from, to)
        {
            return t;
        }
        let Some((a, b)) = self.service_pair(from, to) else {
            return t;
        };
        let links = &self.faults.links;
        let blocked = links.blocked(a, b);
        if !blocked && !links.held(a, b) {
            return t; // lost to `linkLoss`, or a node is down
        }
        let Some(clear) = links.clear_at(a, b) else {
            return t;
        };
        let resend = if blocked {
            let (mut send, mut rto) = (at, SYN_RTO_NS);
            while send < clear {
                send = send + Duration::from_nanos(rto);
                rto = rto.saturating_mul(2);
            }
            send
        } else {
            clear.max(at)
        };
        let arrive = resend + Duration::from_nanos(self.one_way(from, to));
        if arrive <= deadline {
            Transit::Deliver(arrive)
        } else {
            t
        }
    }

    /// The latency that `linkLatency` faults between the services of `from` and `to`
    /// add to one message between them (0 without one).
    pub(in crate::world) fn service_link_latency(&mut self, from: u32, to: u32) -> u64 {
        let Some((a, b)) = self.service_pair(from, to) else {
            return 0;
        };
        let mut total = 0u64;
        for f in self.faults.links.active.values() {
            if let Effect::Latency(d) = &f.effect
                && f.applies(a, b)
            {
                total = total.saturating_add(d.sample(&mut self.rng));
            }
        }
        total
    }
}

/// Per-packet loss as the network model applies it on a lossy link: each transmission
/// of each of the message's packets is lost with probability `loss` and resent after
/// the backed-off retransmission timeout. `Ok(delay)`: the message is late by its worst
/// packet's delay; `Err(after)`: a packet was lost [`net::MAX_CONSECUTIVE_LOSSES`]
/// times in a row and the sender reset the connection that long after sending.
fn retransmissions(bytes: u64, loss: f64, rng: &mut impl Rng) -> Result<u64, u64> {
    let packets = bytes.div_ceil(net::PACKET_PAYLOAD_BYTES).max(1);
    let mut worst = 0u64;
    for _ in 0..packets {
        let (mut penalty, mut losses) = (0u64, 0);
        while rng.random::<f64>() < loss {
            penalty = penalty.saturating_add(net::rto_ns(losses));
            losses += 1;
            if losses == net::MAX_CONSECUTIVE_LOSSES {
                return Err(penalty);
            }
        }
        worst = worst.max(penalty);
    }
    Ok(worst)
}
