//! Load balancing, as Istio's DestinationRule `trafficPolicy.loadBalancer` and
//! `subsets` configure Envoy's.
//!
//! A pick goes through, in order:
//!
//! 1. **Priorities** — with locality failover engaged, endpoints are ranked by locality
//!    match with the client (same subzone, zone, region, anywhere), and traffic spills
//!    to the next priority as a priority's healthy share falls under 1/1.4 (Envoy's
//!    overprovisioning factor). Istio engages this *only when outlier detection is
//!    configured* — see [`LbPolicy::with_locality_failover`].
//! 2. **Panic mode** — in the chosen priority, if fewer than
//!    [`LbPolicy::panic_threshold_percent`] of endpoints are healthy, health is ignored
//!    and all endpoints are candidates (the trace says `panic: true`).
//! 3. **Retry exclusion** — endpoints a retry already tried are skipped, unless that
//!    leaves nothing (Envoy's `previous_hosts` predicate; consistent hashing keeps its
//!    endpoint, as Istio).
//! 4. **The algorithm** — round robin (smooth weighted), random (weighted), least
//!    request (power of two choices), ring hash or Maglev over the candidates. Hash
//!    tables are built over the candidate set and rebuilt when it changes, as Envoy
//!    rebuilds them on health changes.
//!
//! Every pick returns a [`PickTrace`]. Randomness comes only from the `rng` argument.
//!
//! Not modelled: Envoy's total-panic redistribution across priorities, slow start,
//! locality-weighted (non-failover) balancing, cookie generation for `httpCookie.ttl`,
//! Istio's explicit `failover` / `failoverPriority` / `distribute` settings.
//!
//! * [`policy`] — [`LbPolicy`], [`LbAlgorithm`], [`HashPolicy`].
//! * [`balancer`] — [`LoadBalancer`], [`Pick`], [`PickTrace`].
//! * [`locality`] — priority levels and priority load.
//! * [`hash`] — the hash function and request hash keys.
//! * [`subset`] — [`select_subset`].

pub mod balancer;
pub mod hash;
pub mod locality;
pub mod policy;
pub mod subset;
mod table;

pub use balancer::{Exclusion, LoadBalancer, Pick, PickContext, PickDetail, PickError, PickTrace};
pub use hash::{RequestKeys, hash64};
pub use locality::{PriorityHealth, locality_priority, priority_loads};
pub use policy::{
    DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MAXIMUM_RING_SIZE, DEFAULT_MINIMUM_RING_SIZE, HashPolicy,
    LbAlgorithm, LbPolicy, LocalityFailover,
};
pub use subset::select_subset;

#[cfg(test)]
mod tests;
