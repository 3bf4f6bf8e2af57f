//! Locality-aware priorities and how load spills between them (Envoy's priority load
//! with the overprovisioning factor).

use crate::Locality;

/// Number of priority levels: same subzone, same zone, same region, anywhere (Istio's
/// failover order without `failover` / `failoverPriority` settings).
pub const PRIORITY_LEVELS: usize = 4;

/// The priority of an endpoint at `endpoint` for a client at `client`: 0 = same
/// region/zone/subzone, 1 = same region/zone, 2 = same region, 3 = anywhere else.
/// (With subzones unset, every same-zone endpoint is priority 0.)
pub fn locality_priority(client: &Locality, endpoint: &Locality) -> u32 {
    if client.region != endpoint.region {
        3
    } else if client.zone != endpoint.zone {
        2
    } else if client.subzone != endpoint.subzone {
        1
    } else {
        0
    }
}

/// Healthy and total endpoint counts of one priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorityHealth {
    pub healthy: u32,
    pub total: u32,
}

/// Envoy's priority load: each priority's health is `min(100, overprovisioning ×
/// healthy / total)`; priorities take load in order, each as much as its health
/// (normalized when the total health is under 100), the rest spilling to the next.
/// Returns the percent of traffic per priority (sums to 100, or all zero when there are
/// no endpoints at all). With no healthy endpoint anywhere, priority 0 gets everything.
pub fn priority_loads(levels: &[PriorityHealth], overprovisioning_percent: u32) -> Vec<u32> {
    let health: Vec<u64> = levels
        .iter()
        .map(|l| {
            if l.total == 0 {
                0
            } else {
                (u64::from(l.healthy) * u64::from(overprovisioning_percent) / u64::from(l.total))
                    .min(100)
            }
        })
        .collect();
    let mut loads = vec![0u32; levels.len()];
    let total_health = health.iter().sum::<u64>().min(100);
    if total_health == 0 {
        if let Some(first) = levels.iter().position(|l| l.total > 0) {
            loads[first] = 100;
        }
        return loads;
    }
    let mut remaining = 100u64;
    for (load, h) in loads.iter_mut().zip(&health) {
        let share = (h * 100 / total_health).min(remaining);
        *load = share as u32;
        remaining -= share;
    }
    // Rounding leftovers go to the first priority with health.
    if remaining > 0
        && let Some(i) = health.iter().position(|&h| h > 0)
    {
        loads[i] += remaining as u32;
    }
    loads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(healthy: u32, total: u32) -> PriorityHealth {
        PriorityHealth { healthy, total }
    }

    #[test]
    fn priorities_by_locality_match() {
        let c = Locality::parse("us/us-a/1");
        assert_eq!(locality_priority(&c, &Locality::parse("us/us-a/1")), 0);
        assert_eq!(locality_priority(&c, &Locality::parse("us/us-a/2")), 1);
        assert_eq!(locality_priority(&c, &Locality::parse("us/us-b/1")), 2);
        assert_eq!(locality_priority(&c, &Locality::parse("eu/us-a/1")), 3);
    }

    #[test]
    fn overprovisioning_spills_only_below_71_percent() {
        // 8/10 healthy × 1.4 = 112% → keeps everything.
        assert_eq!(priority_loads(&[l(8, 10), l(5, 5)], 140), [100, 0]);
        // 5/10 × 1.4 = 70% → 30% spills to the next priority.
        assert_eq!(priority_loads(&[l(5, 10), l(5, 5)], 140), [70, 30]);
        // Nothing healthy in P0: all to P1.
        assert_eq!(priority_loads(&[l(0, 3), l(2, 2)], 140), [0, 100]);
        // Total health under 100 is normalized: 1/10×1.4=14, 1/10×1.4=14 → 50/50.
        assert_eq!(priority_loads(&[l(1, 10), l(1, 10)], 140), [50, 50]);
        // Nothing healthy anywhere: P0 (its panic mode decides).
        assert_eq!(priority_loads(&[l(0, 0), l(0, 2)], 140), [0, 100]);
        assert_eq!(priority_loads(&[l(0, 0)], 140), [0]);
    }
}
