//! Consistent-hash lookup structures: Envoy's ketama ring and Maglev table, built over
//! a set of weighted slots (endpoint indices).

use super::hash::hash64;

/// One endpoint as a table sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot<'a> {
    /// Index of the endpoint in the load balancer.
    pub index: usize,
    pub address: &'a str,
    pub weight: u32,
}

/// A built lookup structure.
#[derive(Debug, Clone)]
pub(crate) enum HashTable {
    /// Sorted `(hash, endpoint index)`.
    Ring(Vec<(u64, usize)>),
    /// `table[hash % len]` is the endpoint index.
    Maglev(Vec<usize>),
}

impl HashTable {
    /// Envoy's `RingHashLoadBalancer::Ring`: each endpoint gets a share of
    /// `scale` entries proportional to its weight, where the lightest endpoint gets at
    /// least `min_size × its share` entries, and the ring is at most `max_size`.
    pub fn ring(slots: &[Slot<'_>], min_size: u64, max_size: u64) -> HashTable {
        let total: f64 = slots.iter().map(|s| f64::from(s.weight.max(1))).sum();
        let min_norm = slots
            .iter()
            .map(|s| f64::from(s.weight.max(1)) / total)
            .fold(1.0, f64::min);
        let scale = ((min_norm * min_size as f64).ceil() / min_norm).min(max_size as f64);
        let mut ring = Vec::with_capacity(scale as usize + slots.len());
        let (mut target, mut current) = (0.0f64, 0u64);
        let mut key = String::new();
        for slot in slots {
            target += scale * f64::from(slot.weight.max(1)) / total;
            let mut i = 0u64;
            while (current as f64) < target {
                key.clear();
                key.push_str(slot.address);
                key.push('_');
                key.push_str(&i.to_string());
                ring.push((hash64(key.as_bytes(), 0), slot.index));
                i += 1;
                current += 1;
            }
        }
        ring.sort_unstable();
        HashTable::Ring(ring)
    }

    /// Envoy's `MaglevTable`: every endpoint walks its own permutation of the table
    /// (`offset + skip × j`), claiming free entries in turn; an endpoint of weight `w`
    /// takes a turn in `w / max weight` of the rounds.
    pub fn maglev(slots: &[Slot<'_>], size: u64) -> HashTable {
        let size = size.max(1);
        let mut table = vec![usize::MAX; size as usize];
        let max_weight = slots
            .iter()
            .map(|s| u64::from(s.weight.max(1)))
            .max()
            .unwrap_or(1);
        struct Entry {
            index: usize,
            offset: u64,
            skip: u64,
            next: u64,
            weight: u64,
            target: u64,
        }
        let mut entries: Vec<Entry> = slots
            .iter()
            .map(|s| Entry {
                index: s.index,
                offset: hash64(s.address.as_bytes(), 0) % size,
                skip: if size > 1 {
                    hash64(s.address.as_bytes(), 1) % (size - 1) + 1
                } else {
                    1
                },
                next: 0,
                weight: u64::from(s.weight.max(1)),
                target: 0,
            })
            .collect();
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < size && !entries.is_empty() {
            for e in &mut entries {
                if filled == size {
                    break;
                }
                if round * e.weight < e.target {
                    continue;
                }
                e.target += max_weight;
                let mut c = (e.offset + e.skip * e.next) % size;
                while table[c as usize] != usize::MAX {
                    e.next += 1;
                    c = (e.offset + e.skip * e.next) % size;
                }
                table[c as usize] = e.index;
                e.next += 1;
                filled += 1;
            }
            round += 1;
        }
        HashTable::Maglev(table)
    }

    /// The endpoint index for `hash`.
    pub fn lookup(&self, hash: u64) -> Option<usize> {
        match self {
            HashTable::Ring(ring) => {
                let i = ring.partition_point(|&(h, _)| h < hash);
                ring.get(i).or_else(|| ring.first()).map(|&(_, idx)| idx)
            }
            HashTable::Maglev(table) if !table.is_empty() => {
                Some(table[(hash % table.len() as u64) as usize])
            }
            HashTable::Maglev(_) => None,
        }
    }
}
