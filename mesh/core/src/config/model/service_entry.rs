//! `ServiceEntry`: a service added to the mesh's registry (usually one outside it).

use std::collections::BTreeMap;

use super::common::{NetworkingWorkloadSelector, Port};

istio_enum! {
    /// Whether the service is part of the mesh.
    pub enum Location {
        MeshExternal = "MESH_EXTERNAL",
        MeshInternal = "MESH_INTERNAL",
    }
}

istio_enum! {
    /// How the service's endpoints are found.
    pub enum Resolution {
        None = "NONE",
        Static = "STATIC",
        Dns = "DNS",
        DnsRoundRobin = "DNS_ROUND_ROBIN",
        DynamicDns = "DYNAMIC_DNS",
    }
}

istio_struct! {
    /// The spec of a ServiceEntry.
    pub struct ServiceEntry {
        hosts: Vec<String> = "hosts",
        addresses: Vec<String> = "addresses",
        ports: Vec<Port> = "ports",
        location: Option<Location> = "location",
        resolution: Option<Resolution> = "resolution",
        endpoints: Vec<WorkloadEntry> = "endpoints",
        workload_selector: Option<NetworkingWorkloadSelector> = "workloadSelector",
        export_to: Vec<String> = "exportTo",
        subject_alt_names: Vec<String> = "subjectAltNames",
    }
}

istio_struct! {
    /// One endpoint of a ServiceEntry.
    pub struct WorkloadEntry {
        address: Option<String> = "address",
        /// Port name → endpoint port.
        ports: BTreeMap<String, u32> = "ports",
        labels: BTreeMap<String, String> = "labels",
        network: Option<String> = "network",
        locality: Option<String> = "locality",
        weight: Option<u32> = "weight",
        service_account: Option<String> = "serviceAccount",
    }
}
