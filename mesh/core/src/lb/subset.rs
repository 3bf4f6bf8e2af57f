//! DestinationRule subsets: the endpoints whose labels match a subset's labels.

use std::collections::BTreeMap;

use crate::Endpoint;

/// The endpoints carrying every label in `labels` (a subset's `labels`), in their
/// original order. Empty `labels` select every endpoint, as Istio. Call when building
/// the load balancer of a subset, and again when endpoints change.
pub fn select_subset(endpoints: &[Endpoint], labels: &BTreeMap<String, String>) -> Vec<Endpoint> {
    endpoints
        .iter()
        .filter(|e| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v)))
        .cloned()
        .collect()
}
