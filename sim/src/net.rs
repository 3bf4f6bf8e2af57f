//! The network between nodes: zones, links, loss, partitions, hold/release.
//!
//! Nodes are `u32` indices, each placed in a zone (`u32` index). Between every ordered
//! pair of zones (a zone to itself included) there is one directed link with a
//! [`LinkModel`]: a latency distribution, an optional bandwidth, a packet-loss rate.
//! [`Network::transit`] answers "a message of `bytes` leaves `from` for `to` now: when
//! does it arrive, if ever?" and the caller schedules the arrival.
//!
//! What is modelled, and what is not:
//! - **Latency**: one sample of the link's distribution per message.
//! - **Bandwidth**: a zone pair's directed link is one shared pipe (think of the
//!   inter-zone uplink). A message occupies it for `bytes × 8 / bandwidth_bps`; a busy
//!   link queues the next message behind it. Per-node NIC limits are not modelled.
//! - **Loss**: a message is `ceil(bytes / 1460)` packets (at least one). Each
//!   transmission of a packet is lost with the link's `loss` probability and costs a
//!   retransmission timeout: 200 ms, doubling per consecutive loss of that packet, capped
//!   at 60 s. Packets are in flight together, so the message is late by its worst
//!   packet's delay. After 6 consecutive losses of one packet the connection is reset
//!   ([`Transit::Reset`]) when the sender gives up. Retransmissions use no bandwidth.
//! - **Ordering**: messages are independent. Two messages on one connection can arrive
//!   out of order if their latency samples say so; a caller modelling a TCP stream keeps
//!   each arrival at or after the previous one.
//! - **Faults**: zone-pair partitions (symmetric or one-way), holds (messages wait until
//!   release), latency and loss overrides, and nodes marked down.

use mesh_core::time::Time;
use rand::Rng;

use crate::dist::{Dist, DistError};

/// Payload bytes per packet (a 1500-byte Ethernet MTU minus IPv4 and TCP headers).
pub const PACKET_PAYLOAD_BYTES: u64 = 1460;
/// The first retransmission timeout (Linux's `TCP_RTO_MIN`): 200 ms.
pub const INITIAL_RTO_NS: u64 = 200_000_000;
/// The largest retransmission timeout (Linux's `TCP_RTO_MAX` is 120 s; RFC 6298 allows
/// a cap of 60 s or more): 60 s.
pub const MAX_RTO_NS: u64 = 60_000_000_000;
/// Consecutive losses of one packet after which the connection is reset.
pub const MAX_CONSECUTIVE_LOSSES: u32 = 6;

/// One directed link's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkModel {
    /// One-way latency per message.
    pub latency: Dist,
    /// Capacity in bits per second; `None` (the default) is unlimited.
    pub bandwidth_bps: Option<u64>,
    /// Probability that one packet transmission is lost, in `[0, 1]`. Default 0.
    pub loss: f64,
}

impl LinkModel {
    /// A link with `latency`, unlimited bandwidth and no loss.
    pub fn new(latency: Dist) -> Self {
        LinkModel {
            latency,
            bandwidth_bps: None,
            loss: 0.0,
        }
    }

    /// Sets the capacity in bits per second.
    pub fn with_bandwidth_bps(mut self, bandwidth_bps: u64) -> Self {
        self.bandwidth_bps = Some(bandwidth_bps);
        self
    }

    /// Sets the per-packet loss probability.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    fn validate(&self) -> Result<(), NetError> {
        self.latency.validate()?;
        if self.bandwidth_bps == Some(0) {
            return Err(NetError::ZeroBandwidth);
        }
        check_loss(self.loss)
    }
}

/// What happened to a message handed to [`Network::transit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit {
    /// It arrives at this time.
    Deliver(Time),
    /// The link is held: nothing moves. Keep the message and call `transit` again after
    /// [`Network::release`].
    Held,
    /// It never arrives: the sender gave up retransmitting and reset the connection at
    /// `at` (after the full backoff series, 12.6 s from the first send). A partitioned
    /// link gives this: TCP keeps retrying into the void and then gives up. Callers
    /// with shorter timeouts see their timeout first.
    Reset { at: Time },
    /// A node at either end is down. The sender learns at `at`: at once if the sender
    /// itself is down (nothing is sent), else one round trip later, modelling the
    /// crashed node's host answering with a TCP RST (connection refused). A caller that
    /// wants a black hole instead ignores `at` and relies on its own timeout.
    Unreachable { at: Time },
}

/// A network that cannot be built as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NetError {
    #[error("a network needs at least one zone")]
    NoZones,
    #[error("node {node} is in zone {zone}, but there are only {zones} zones (0..{zones})")]
    ZoneOutOfRange { node: u32, zone: u32, zones: usize },
    #[error("link loss is {0}: it must be a probability in [0, 1]")]
    BadLoss(f64),
    #[error("link bandwidth_bps is 0: leave it unset for unlimited")]
    ZeroBandwidth,
    #[error("link latency: {0}")]
    Latency(#[from] DistError),
}

/// Counters over every message handed to [`Network::transit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStats {
    /// Messages delivered.
    pub delivered: u64,
    /// Packet retransmissions (lost transmissions of delivered or reset messages).
    pub retransmissions: u64,
    /// Messages that ended in [`Transit::Reset`].
    pub resets: u64,
    /// Messages that ended in [`Transit::Unreachable`].
    pub unreachable: u64,
    /// Times [`Transit::Held`] was answered.
    pub held: u64,
}

#[derive(Debug, Clone)]
struct Link {
    model: LinkModel,
    latency_override: Option<Dist>,
    loss_override: Option<f64>,
    /// The pipe is busy serialising earlier messages until then (ns).
    busy_until_ns: u64,
    blocked: bool,
    held: bool,
}

impl Link {
    fn new(model: LinkModel) -> Self {
        Link {
            model,
            latency_override: None,
            loss_override: None,
            busy_until_ns: 0,
            blocked: false,
            held: false,
        }
    }

    fn latency(&self) -> &Dist {
        self.latency_override
            .as_ref()
            .unwrap_or(&self.model.latency)
    }

    fn loss(&self) -> f64 {
        self.loss_override.unwrap_or(self.model.loss)
    }
}

/// Nodes in zones and the links between the zones.
#[derive(Debug, Clone)]
pub struct Network {
    zones: usize,
    /// Directed links, `from_zone * zones + to_zone`.
    links: Vec<Link>,
    node_zone: Vec<u32>,
    node_down: Vec<bool>,
    stats: NetStats,
}

// === impl Network: building ===

impl Network {
    /// A network of `zones` zones where every zone reaches itself over `intra` and every
    /// other zone over `inter`; node `i` lives in zone `node_zones[i]`. Override a zone
    /// pair with [`set_pair_link`](Self::set_pair_link).
    pub fn new(
        zones: usize,
        intra: LinkModel,
        inter: LinkModel,
        node_zones: Vec<u32>,
    ) -> Result<Self, NetError> {
        if zones == 0 {
            return Err(NetError::NoZones);
        }
        intra.validate()?;
        inter.validate()?;
        for (node, &zone) in node_zones.iter().enumerate() {
            check_zone(node as u32, zone, zones)?;
        }
        let links = (0..zones * zones)
            .map(|i| {
                let same = i / zones == i % zones;
                Link::new(if same { intra.clone() } else { inter.clone() })
            })
            .collect();
        let nodes = node_zones.len();
        Ok(Network {
            zones,
            links,
            node_zone: node_zones,
            node_down: vec![false; nodes],
            stats: NetStats::default(),
        })
    }

    /// Replaces the link model between zones `a` and `b`, both directions.
    pub fn set_pair_link(&mut self, a: u32, b: u32, link: LinkModel) -> Result<(), NetError> {
        link.validate()?;
        for i in self.pair(a, b) {
            self.links[i].model = link.clone();
        }
        Ok(())
    }

    /// Adds a node in `zone`; returns its index.
    pub fn add_node(&mut self, zone: u32) -> Result<u32, NetError> {
        let node = self.node_zone.len() as u32;
        check_zone(node, zone, self.zones)?;
        self.node_zone.push(zone);
        self.node_down.push(false);
        Ok(node)
    }

    /// Number of zones.
    pub fn zones(&self) -> usize {
        self.zones
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.node_zone.len()
    }

    /// The zone of `node`.
    pub fn zone_of(&self, node: u32) -> u32 {
        self.node_zone[node as usize]
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn link_index(&self, from_zone: u32, to_zone: u32) -> usize {
        let (f, t) = (from_zone as usize, to_zone as usize);
        assert!(
            f < self.zones && t < self.zones,
            "zone pair ({f}, {t}) out of range: {} zones",
            self.zones
        );
        f * self.zones + t
    }

    fn node_link(&self, from: u32, to: u32) -> usize {
        self.link_index(self.zone_of(from), self.zone_of(to))
    }

    /// The directed links `a → b` and `b → a` (one link when `a == b`).
    fn pair(&self, a: u32, b: u32) -> impl Iterator<Item = usize> + use<> {
        let (ab, ba) = (self.link_index(a, b), self.link_index(b, a));
        std::iter::once(ab).chain((ab != ba).then_some(ba))
    }
}

// === impl Network: faults ===

impl Network {
    /// Marks `node` down (crashed) or up again. Messages from or to a down node are
    /// [`Transit::Unreachable`].
    pub fn set_node_down(&mut self, node: u32, down: bool) {
        self.node_down[node as usize] = down;
    }

    /// True if `node` is down.
    pub fn is_node_down(&self, node: u32) -> bool {
        self.node_down[node as usize]
    }

    /// Blocks traffic between zones `zone_a` and `zone_b`: both directions, or only
    /// `zone_a → zone_b` when `one_way`. Blocked messages end in [`Transit::Reset`].
    pub fn partition(&mut self, zone_a: u32, zone_b: u32, one_way: bool) {
        if one_way {
            let i = self.link_index(zone_a, zone_b);
            self.links[i].blocked = true;
        } else {
            for i in self.pair(zone_a, zone_b) {
                self.links[i].blocked = true;
            }
        }
    }

    /// Unblocks both directions between `zone_a` and `zone_b`.
    pub fn heal(&mut self, zone_a: u32, zone_b: u32) {
        for i in self.pair(zone_a, zone_b) {
            self.links[i].blocked = false;
        }
    }

    /// Holds both directions between `zone_a` and `zone_b`: [`transit`](Self::transit)
    /// answers [`Transit::Held`] until [`release`](Self::release).
    pub fn hold(&mut self, zone_a: u32, zone_b: u32) {
        for i in self.pair(zone_a, zone_b) {
            self.links[i].held = true;
        }
    }

    /// Ends a [`hold`](Self::hold). Held messages move when their holders call
    /// `transit` again.
    pub fn release(&mut self, zone_a: u32, zone_b: u32) {
        for i in self.pair(zone_a, zone_b) {
            self.links[i].held = false;
        }
    }

    /// Overrides the latency between `zone_a` and `zone_b` (both directions), or with
    /// `None` restores the configured one.
    pub fn set_link_latency(&mut self, zone_a: u32, zone_b: u32, latency: Option<Dist>) {
        for i in self.pair(zone_a, zone_b) {
            self.links[i].latency_override = latency.clone();
        }
    }

    /// Overrides the loss probability between `zone_a` and `zone_b` (both directions),
    /// or with `None` restores the configured one.
    pub fn set_link_loss(
        &mut self,
        zone_a: u32,
        zone_b: u32,
        loss: Option<f64>,
    ) -> Result<(), NetError> {
        if let Some(l) = loss {
            check_loss(l)?;
        }
        for i in self.pair(zone_a, zone_b) {
            self.links[i].loss_override = loss;
        }
        Ok(())
    }

    /// True if messages from node `from` to node `to` are held.
    pub fn is_held(&self, from: u32, to: u32) -> bool {
        self.links[self.node_link(from, to)].held
    }

    /// True if messages from node `from` to node `to` are blocked by a partition.
    pub fn is_partitioned(&self, from: u32, to: u32) -> bool {
        self.links[self.node_link(from, to)].blocked
    }
}

// === impl Network: moving messages ===

impl Network {
    /// Sends a message of `bytes` from node `from` to node `to` at `now`.
    ///
    /// Checked in this order: a down sender, a partition, a hold, a down receiver, then
    /// the message travels (bandwidth queueing, loss and retransmission, latency).
    /// A node sending to itself is loopback: delivered at `now`.
    pub fn transit(
        &mut self,
        now: Time,
        from: u32,
        to: u32,
        bytes: u64,
        rng: &mut impl Rng,
    ) -> Transit {
        if self.is_node_down(from) {
            self.stats.unreachable += 1;
            return Transit::Unreachable { at: now };
        }
        let li = self.node_link(from, to);
        if self.links[li].blocked {
            self.stats.resets += 1;
            self.stats.retransmissions += u64::from(MAX_CONSECUTIVE_LOSSES - 1);
            return Transit::Reset {
                at: Time(now.0.saturating_add(give_up_after_ns())),
            };
        }
        if self.links[li].held {
            self.stats.held += 1;
            return Transit::Held;
        }
        if self.is_node_down(to) {
            self.stats.unreachable += 1;
            let rtt = self.rtt_sample(now, from, to, rng);
            return Transit::Unreachable {
                at: Time(now.0.saturating_add(rtt)),
            };
        }
        if from == to {
            self.stats.delivered += 1;
            return Transit::Deliver(now);
        }

        let link = &mut self.links[li];
        let sent_ns = match link.model.bandwidth_bps {
            Some(bps) => {
                let start = link.busy_until_ns.max(now.0);
                let done = start.saturating_add(serialization_ns(bytes, bps));
                link.busy_until_ns = done;
                done
            }
            None => now.0,
        };
        let loss = link.loss();
        let mut worst_penalty_ns = 0;
        if loss > 0.0 {
            let packets = bytes.div_ceil(PACKET_PAYLOAD_BYTES).max(1);
            for _ in 0..packets {
                let mut penalty_ns = 0u64;
                let mut losses = 0;
                while rng.random::<f64>() < loss {
                    penalty_ns = penalty_ns.saturating_add(rto_ns(losses));
                    losses += 1;
                    self.stats.retransmissions += 1;
                    if losses == MAX_CONSECUTIVE_LOSSES {
                        self.stats.retransmissions -= 1; // the last loss is not resent
                        self.stats.resets += 1;
                        return Transit::Reset {
                            at: Time(sent_ns.saturating_add(penalty_ns)),
                        };
                    }
                }
                worst_penalty_ns = worst_penalty_ns.max(penalty_ns);
            }
        }
        let latency_ns = self.links[li].latency().sample(rng);
        self.stats.delivered += 1;
        Transit::Deliver(Time(
            sent_ns
                .saturating_add(worst_penalty_ns)
                .saturating_add(latency_ns),
        ))
    }

    /// A connection set-up round trip from `from` to `to`, in ns: one latency sample
    /// each way, without bandwidth or loss. `now` is unused today (latency does not
    /// vary with time) and kept so time-varying links need no signature change.
    pub fn rtt_sample(&self, now: Time, from: u32, to: u32, rng: &mut impl Rng) -> u64 {
        let _ = now;
        let there = self.links[self.node_link(from, to)].latency().sample(rng);
        let back = self.links[self.node_link(to, from)].latency().sample(rng);
        there.saturating_add(back)
    }
}

/// The retransmission timeout after `losses` earlier consecutive losses of a packet.
pub fn rto_ns(losses: u32) -> u64 {
    1u64.checked_shl(losses)
        .and_then(|factor| INITIAL_RTO_NS.checked_mul(factor))
        .map_or(MAX_RTO_NS, |rto| rto.min(MAX_RTO_NS))
}

/// How long after the first send a sender gives up on a packet that is always lost:
/// the sum of the backoff series (12.6 s with the defaults).
pub fn give_up_after_ns() -> u64 {
    (0..MAX_CONSECUTIVE_LOSSES).map(rto_ns).sum()
}

/// Time to put `bytes` on a `bps` link, rounded up to whole ns.
fn serialization_ns(bytes: u64, bps: u64) -> u64 {
    let ns = (u128::from(bytes) * 8 * 1_000_000_000).div_ceil(u128::from(bps.max(1)));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

fn check_zone(node: u32, zone: u32, zones: usize) -> Result<(), NetError> {
    if (zone as usize) < zones {
        Ok(())
    } else {
        Err(NetError::ZoneOutOfRange { node, zone, zones })
    }
}

fn check_loss(loss: f64) -> Result<(), NetError> {
    if (0.0..=1.0).contains(&loss) {
        Ok(())
    } else {
        Err(NetError::BadLoss(loss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    const MS: u64 = 1_000_000;

    /// Zones a = 0, b = 1; nodes 0, 1 in a and 2 in b. 1 ms within a zone, 10 ms across.
    fn net() -> Network {
        Network::new(
            2,
            LinkModel::new(Dist::fixed(MS)),
            LinkModel::new(Dist::fixed(10 * MS)),
            vec![0, 0, 1],
        )
        .expect("valid")
    }

    fn deliver(t: Transit) -> u64 {
        match t {
            Transit::Deliver(at) => at.0,
            other => panic!("expected delivery, got {other:?}"),
        }
    }

    #[test]
    fn latency_follows_the_zone_pair() {
        let (mut n, mut rng) = (net(), seeded(1));
        assert_eq!(deliver(n.transit(Time(5), 0, 1, 100, &mut rng)), 5 + MS);
        assert_eq!(
            deliver(n.transit(Time(5), 0, 2, 100, &mut rng)),
            5 + 10 * MS
        );
        assert_eq!(deliver(n.transit(Time(5), 2, 2, 100, &mut rng)), 5);
        assert_eq!(n.rtt_sample(Time(0), 0, 2, &mut rng), 20 * MS);
        n.set_link_latency(0, 1, Some(Dist::uniform(50 * MS, 60 * MS)));
        let at = deliver(n.transit(Time(0), 2, 0, 100, &mut rng));
        assert!((50 * MS..=60 * MS).contains(&at), "{at}");
        n.set_link_latency(1, 0, None);
        assert_eq!(deliver(n.transit(Time(0), 0, 2, 100, &mut rng)), 10 * MS);
    }

    #[test]
    fn bandwidth_queues_back_to_back_messages() {
        let mut n = net();
        let link = LinkModel::new(Dist::fixed(10 * MS)).with_bandwidth_bps(1_000_000_000);
        n.set_pair_link(0, 1, link).expect("valid");
        let mut rng = seeded(1);
        let arrivals: Vec<u64> = (0..100)
            .map(|_| deliver(n.transit(Time(0), 0, 2, 1_000_000, &mut rng)))
            .collect();
        // 1 MB = 8 Mbit = 8 ms at 1 Gbps, then 10 ms of latency.
        assert_eq!(arrivals[0], 18 * MS);
        for w in arrivals.windows(2) {
            assert_eq!(w[1] - w[0], 8 * MS);
        }
        // The reverse direction has its own pipe.
        assert_eq!(
            deliver(n.transit(Time(0), 2, 0, 1_000_000, &mut rng)),
            18 * MS
        );
        // An idle pipe starts fresh.
        let late = Time(10_000 * MS);
        assert_eq!(
            deliver(n.transit(late, 0, 2, 1_000, &mut rng)),
            late.0 + 10 * MS + 8_000
        );
    }

    #[test]
    fn total_loss_resets_after_the_backoff_series() {
        let mut n = net();
        n.set_link_loss(0, 1, Some(1.0)).expect("valid");
        let mut rng = seeded(1);
        let want = (200 + 400 + 800 + 1600 + 3200 + 6400) * MS;
        assert_eq!(give_up_after_ns(), want);
        assert_eq!(
            n.transit(Time(7), 0, 2, 10, &mut rng),
            Transit::Reset { at: Time(7 + want) }
        );
        assert_eq!(n.stats().resets, 1);
        assert_eq!(n.stats().retransmissions, 5);
        n.set_link_loss(0, 1, None).expect("valid");
        assert_eq!(deliver(n.transit(Time(0), 0, 2, 10, &mut rng)), 10 * MS);
    }

    #[test]
    fn loss_delays_by_retransmission_timeouts() {
        let mut n = net();
        n.set_link_loss(0, 1, Some(0.3)).expect("valid");
        let mut rng = seeded(3);
        let mut delays = Vec::new();
        for _ in 0..20_000 {
            match n.transit(Time(0), 0, 2, 100, &mut rng) {
                Transit::Deliver(at) => delays.push(at.0 - 10 * MS),
                Transit::Reset { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        // Every delay is a partial sum of the backoff series: 0, 200, 600, 1400, ... ms.
        let sums: Vec<u64> = (0..6).map(|k| (0..k).map(rto_ns).sum()).collect();
        assert!(delays.iter().all(|d| sums.contains(d)));
        // One packet: P(no loss) = 0.7, P(exactly one loss) = 0.21.
        let share = |d: u64| delays.iter().filter(|&&x| x == d).count() as f64 / 20_000.0;
        assert!((share(0) - 0.7).abs() < 0.01, "{}", share(0));
        assert!((share(200 * MS) - 0.21).abs() < 0.01, "{}", share(200 * MS));
        // Reset needs 6 losses in a row: 0.3^6 ≈ 0.07%.
        assert!(n.stats().resets < 40, "{:?}", n.stats());
    }

    #[test]
    fn bigger_messages_are_more_likely_to_be_late() {
        let mut n = net();
        n.set_link_loss(0, 1, Some(0.01)).expect("valid");
        let mut rng = seeded(4);
        let mut late = |bytes| {
            (0..2_000)
                .filter(|_| deliver(n.transit(Time(0), 0, 2, bytes, &mut rng)) > 10 * MS)
                .count()
        };
        let (small, big) = (late(100), late(100 * 1460));
        // P(late) = 1 - 0.99^packets: 1% for one packet, 63% for 100.
        assert!(small < 60 && big > 1_100, "small {small}, big {big}");
    }

    #[test]
    fn partitions_symmetric_and_one_way() {
        let (mut n, mut rng) = (net(), seeded(1));
        n.partition(0, 1, true);
        assert!(n.is_partitioned(0, 2) && !n.is_partitioned(2, 0));
        assert!(matches!(
            n.transit(Time(0), 0, 2, 1, &mut rng),
            Transit::Reset { .. }
        ));
        assert_eq!(deliver(n.transit(Time(0), 2, 0, 1, &mut rng)), 10 * MS);
        assert_eq!(deliver(n.transit(Time(0), 0, 1, 1, &mut rng)), MS);
        n.heal(1, 0);
        assert_eq!(deliver(n.transit(Time(0), 0, 2, 1, &mut rng)), 10 * MS);
        n.partition(1, 0, false);
        assert!(n.is_partitioned(0, 2) && n.is_partitioned(2, 0));
        assert!(matches!(
            n.transit(Time(0), 2, 0, 1, &mut rng),
            Transit::Reset { .. }
        ));
        n.heal(0, 1);
        assert!(!n.is_partitioned(0, 2) && !n.is_partitioned(2, 0));
    }

    #[test]
    fn hold_and_release() {
        let (mut n, mut rng) = (net(), seeded(1));
        n.hold(0, 1);
        assert!(n.is_held(0, 2) && n.is_held(2, 1) && !n.is_held(0, 1));
        assert_eq!(n.transit(Time(0), 0, 2, 1, &mut rng), Transit::Held);
        assert_eq!(deliver(n.transit(Time(0), 0, 1, 1, &mut rng)), MS);
        n.release(0, 1);
        assert_eq!(deliver(n.transit(Time(3 * MS), 0, 2, 1, &mut rng)), 13 * MS);
        assert_eq!(n.stats().held, 1);
    }

    #[test]
    fn down_nodes_are_unreachable() {
        let (mut n, mut rng) = (net(), seeded(1));
        n.set_node_down(2, true);
        assert_eq!(
            n.transit(Time(0), 0, 2, 1, &mut rng),
            Transit::Unreachable { at: Time(20 * MS) }
        );
        assert_eq!(
            n.transit(Time(0), 2, 0, 1, &mut rng),
            Transit::Unreachable { at: Time(0) }
        );
        n.set_node_down(2, false);
        assert_eq!(deliver(n.transit(Time(0), 0, 2, 1, &mut rng)), 10 * MS);
    }

    #[test]
    fn bad_networks_are_refused() {
        let l = || LinkModel::new(Dist::fixed(1));
        assert_eq!(
            Network::new(0, l(), l(), vec![]).unwrap_err(),
            NetError::NoZones
        );
        assert_eq!(
            Network::new(2, l(), l(), vec![0, 2]).unwrap_err(),
            NetError::ZoneOutOfRange {
                node: 1,
                zone: 2,
                zones: 2
            }
        );
        assert_eq!(
            Network::new(1, l().with_loss(1.5), l(), vec![]).unwrap_err(),
            NetError::BadLoss(1.5)
        );
        let mut n = net();
        assert!(n.set_pair_link(0, 1, l().with_bandwidth_bps(0)).is_err());
        assert_eq!(n.add_node(1), Ok(3));
        assert!(n.add_node(5).is_err());
    }

    #[test]
    fn rto_backs_off_and_caps() {
        assert_eq!(rto_ns(0), 200 * MS);
        assert_eq!(rto_ns(3), 1_600 * MS);
        assert_eq!(rto_ns(9), MAX_RTO_NS);
        assert_eq!(rto_ns(80), MAX_RTO_NS);
    }
}
