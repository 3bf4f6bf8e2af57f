//! `Sidecar`: what a workload's sidecar listens on and which services it can reach.

use super::common::{Destination, NetworkingWorkloadSelector, Port};
use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTlsSettings;

istio_enum! {
    /// How traffic reaches a listener.
    pub enum CaptureMode {
        Default = "DEFAULT",
        Iptables = "IPTABLES",
        None = "NONE",
    }
}

istio_struct! {
    /// The spec of a Sidecar.
    pub struct Sidecar {
        workload_selector: Option<NetworkingWorkloadSelector> = "workloadSelector",
        ingress: Vec<IngressListener> = "ingress",
        egress: Vec<EgressListener> = "egress",
        inbound_connection_pool: Option<ConnectionPoolSettings> = "inboundConnectionPool",
        outbound_traffic_policy: Option<OutboundTrafficPolicy> = "outboundTrafficPolicy",
    }
}

istio_struct! {
    /// An inbound listener.
    pub struct IngressListener {
        port: Option<Port> = "port",
        bind: Option<String> = "bind",
        capture_mode: Option<CaptureMode> = "captureMode",
        default_endpoint: Option<String> = "defaultEndpoint",
        tls: Option<ServerTlsSettings> = "tls",
        connection_pool: Option<ConnectionPoolSettings> = "connectionPool",
    }
}

istio_struct! {
    /// Outbound reachability: `namespace/host` patterns (`./*`, `istio-system/*`).
    pub struct EgressListener {
        port: Option<Port> = "port",
        bind: Option<String> = "bind",
        capture_mode: Option<CaptureMode> = "captureMode",
        hosts: Vec<String> = "hosts",
    }
}

istio_enum! {
    /// What happens to traffic for hosts not in the registry.
    pub enum OutboundMode {
        RegistryOnly = "REGISTRY_ONLY",
        AllowAny = "ALLOW_ANY",
    }
}

istio_struct! {
    /// Policy for traffic to unknown hosts.
    pub struct OutboundTrafficPolicy {
        mode: Option<OutboundMode> = "mode",
        egress_proxy: Option<Destination> = "egressProxy",
    }
}
