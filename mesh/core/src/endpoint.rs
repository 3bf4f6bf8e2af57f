//! Endpoints: the instances a request can be sent to, as every policy sees them.

use std::collections::BTreeMap;

/// A stable, dense identifier of an endpoint within one cluster (one service host, or
/// one subset of it). Policies key their state by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EndpointId(pub u32);

/// Where an endpoint runs: region / zone / subzone, as Istio's locality.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

impl Locality {
    /// `region/zone/subzone`, empty parts allowed (`us-east/us-east-1a/`).
    pub fn parse(text: &str) -> Self {
        let mut parts = text.splitn(3, '/');
        Locality {
            region: parts.next().unwrap_or("").to_owned(),
            zone: parts.next().unwrap_or("").to_owned(),
            subzone: parts.next().unwrap_or("").to_owned(),
        }
    }
}

/// One instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    /// `ip:port` or a simulator node name; opaque to policies.
    pub address: String,
    /// Instance labels (`app`, `version`, ...): subsets select on these.
    pub labels: BTreeMap<String, String>,
    pub locality: Locality,
    /// Load-balancing weight (default 1).
    pub weight: u32,
    pub namespace: String,
    pub service_account: String,
}
