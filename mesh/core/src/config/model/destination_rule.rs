//! `DestinationRule`: what happens to traffic for a host after routing — load
//! balancing, connection pools (circuit breaking), outlier detection, client TLS,
//! retry budgets — and the named subsets routes can pick.
//!
//! Checked while decoding: durations and percentages; subset names are present and
//! unique.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::common::{PortSelector, WorkloadSelector, require};
use crate::config::decode::Obj;
use crate::config::values::{IntPercent, PercentValue};

istio_struct! {
    /// The spec of a DestinationRule.
    pub struct DestinationRule check check_destination_rule {
        /// The service host; short names are relative to the namespace.
        host: String = "host",
        traffic_policy: Option<TrafficPolicy> = "trafficPolicy",
        subsets: Vec<Subset> = "subsets",
        export_to: Vec<String> = "exportTo",
        workload_selector: Option<WorkloadSelector> = "workloadSelector",
    }
}

impl DestinationRule {
    /// The subset named `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

fn check_destination_rule(v: &mut DestinationRule, o: &mut Obj<'_, '_, '_>) {
    require(o, !v.host.is_empty(), "host");
    let mut seen = BTreeSet::new();
    for (i, s) in v.subsets.iter().enumerate() {
        if !s.name.is_empty() && !seen.insert(s.name.as_str()) {
            o.error_at(
                &format!("subsets[{i}].name"),
                format!(
                    "duplicate subset name `{}` (subset names must be unique)",
                    s.name
                ),
            );
        }
    }
}

istio_struct! {
    /// A named group of a service's endpoints, picked by labels.
    pub struct Subset check check_subset {
        name: String = "name",
        labels: BTreeMap<String, String> = "labels",
        traffic_policy: Option<TrafficPolicy> = "trafficPolicy",
    }
}

fn check_subset(v: &mut Subset, o: &mut Obj<'_, '_, '_>) {
    require(o, !v.name.is_empty(), "name");
}

istio_struct! {
    /// Policies for traffic to a host (or a subset, or a port).
    pub struct TrafficPolicy {
        load_balancer: Option<LoadBalancerSettings> = "loadBalancer",
        connection_pool: Option<ConnectionPoolSettings> = "connectionPool",
        outlier_detection: Option<OutlierDetection> = "outlierDetection",
        tls: Option<ClientTlsSettings> = "tls",
        port_level_settings: Vec<PortTrafficPolicy> = "portLevelSettings",
        tunnel: Option<TunnelSettings> = "tunnel",
        proxy_protocol: Option<ProxyProtocol> = "proxyProtocol",
        retry_budget: Option<RetryBudget> = "retryBudget",
    }
}

istio_struct! {
    /// Policies for one port of the host.
    pub struct PortTrafficPolicy {
        port: Option<PortSelector> = "port",
        load_balancer: Option<LoadBalancerSettings> = "loadBalancer",
        connection_pool: Option<ConnectionPoolSettings> = "connectionPool",
        outlier_detection: Option<OutlierDetection> = "outlierDetection",
        tls: Option<ClientTlsSettings> = "tls",
    }
}

istio_enum! {
    /// Simple load-balancing algorithms.
    pub enum SimpleLb {
        Unspecified = "UNSPECIFIED",
        LeastConn = "LEAST_CONN",
        Random = "RANDOM",
        Passthrough = "PASSTHROUGH",
        RoundRobin = "ROUND_ROBIN",
        LeastRequest = "LEAST_REQUEST",
    }
}

istio_struct! {
    /// How requests are spread over endpoints.
    pub struct LoadBalancerSettings {
        simple: Option<SimpleLb> = "simple",
        consistent_hash: Option<ConsistentHashLb> = "consistentHash",
        locality_lb_setting: Option<LocalityLbSetting> = "localityLbSetting",
        warmup_duration_secs: Option<Duration> = "warmupDurationSecs",
        warmup: Option<WarmupConfiguration> = "warmup",
    }
}

istio_struct! {
    /// Slow start for new endpoints.
    pub struct WarmupConfiguration {
        duration: Option<Duration> = "duration",
        minimum_percent: Option<PercentValue> = "minimumPercent",
        aggression: Option<f64> = "aggression",
    }
}

istio_struct! {
    /// Session affinity by hashing a request property.
    pub struct ConsistentHashLb {
        http_header_name: Option<String> = "httpHeaderName",
        http_cookie: Option<HttpCookie> = "httpCookie",
        use_source_ip: Option<bool> = "useSourceIp",
        http_query_parameter_name: Option<String> = "httpQueryParameterName",
        ring_hash: Option<RingHash> = "ringHash",
        maglev: Option<Maglev> = "maglev",
        /// Deprecated: use `ringHash.minimumRingSize`.
        minimum_ring_size: Option<u64> = "minimumRingSize",
    }
}

istio_struct! {
    /// The cookie hashed for affinity (generated if missing, with `ttl`).
    pub struct HttpCookie {
        name: String = "name",
        path: Option<String> = "path",
        ttl: Option<Duration> = "ttl",
        attributes: Vec<CookieAttribute> = "attributes",
    }
}

istio_struct! {
    /// An attribute of a generated cookie.
    pub struct CookieAttribute {
        name: Option<String> = "name",
        value: Option<String> = "value",
    }
}

istio_struct! {
    /// Ring-hash (ketama) settings.
    pub struct RingHash {
        minimum_ring_size: Option<u64> = "minimumRingSize",
    }
}

istio_struct! {
    /// Maglev settings.
    pub struct Maglev {
        table_size: Option<u64> = "tableSize",
    }
}

istio_struct! {
    /// Locality-aware load balancing: weighted distribution or failover.
    pub struct LocalityLbSetting {
        distribute: Vec<LocalityDistribute> = "distribute",
        failover: Vec<LocalityFailover> = "failover",
        failover_priority: Vec<String> = "failoverPriority",
        enabled: Option<bool> = "enabled",
    }
}

istio_struct! {
    /// Traffic from locality `from` is spread over the `to` localities by weight.
    pub struct LocalityDistribute {
        from: Option<String> = "from",
        to: BTreeMap<String, u32> = "to",
    }
}

istio_struct! {
    /// Traffic from region `from` fails over to region `to`.
    pub struct LocalityFailover {
        from: Option<String> = "from",
        to: Option<String> = "to",
    }
}

istio_struct! {
    /// Connection-pool limits (circuit breaking).
    pub struct ConnectionPoolSettings {
        tcp: Option<TcpSettings> = "tcp",
        http: Option<HttpSettings> = "http",
    }
}

istio_struct! {
    /// TCP connection limits.
    pub struct TcpSettings {
        max_connections: Option<i32> = "maxConnections",
        connect_timeout: Option<Duration> = "connectTimeout",
        tcp_keepalive: Option<TcpKeepalive> = "tcpKeepalive",
        max_connection_duration: Option<Duration> = "maxConnectionDuration",
        idle_timeout: Option<Duration> = "idleTimeout",
    }
}

istio_struct! {
    /// TCP keepalive probes.
    pub struct TcpKeepalive {
        probes: Option<u32> = "probes",
        time: Option<Duration> = "time",
        interval: Option<Duration> = "interval",
    }
}

istio_enum! {
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    pub enum H2UpgradePolicy {
        Default = "DEFAULT",
        DoNotUpgrade = "DO_NOT_UPGRADE",
        Upgrade = "UPGRADE",
    }
}

istio_struct! {
    /// HTTP request limits.
    pub struct HttpSettings {
        http1_max_pending_requests: Option<i32> = "http1MaxPendingRequests",
        http2_max_requests: Option<i32> = "http2MaxRequests",
        max_requests_per_connection: Option<i32> = "maxRequestsPerConnection",
        max_retries: Option<i32> = "maxRetries",
        idle_timeout: Option<Duration> = "idleTimeout",
        h2_upgrade_policy: Option<H2UpgradePolicy> = "h2UpgradePolicy",
        use_client_protocol: Option<bool> = "useClientProtocol",
        max_concurrent_streams: Option<i32> = "maxConcurrentStreams",
    }
}

istio_struct! {
    /// Ejection of endpoints that keep failing.
    pub struct OutlierDetection {
        /// Deprecated: use `consecutive5xxErrors`.
        consecutive_errors: Option<i32> = "consecutiveErrors",
        consecutive_5xx_errors: Option<u32> = "consecutive5xxErrors",
        consecutive_gateway_errors: Option<u32> = "consecutiveGatewayErrors",
        consecutive_local_origin_failures: Option<u32> = "consecutiveLocalOriginFailures",
        split_external_local_origin_errors: Option<bool> = "splitExternalLocalOriginErrors",
        interval: Option<Duration> = "interval",
        base_ejection_time: Option<Duration> = "baseEjectionTime",
        max_ejection_percent: Option<IntPercent> = "maxEjectionPercent",
        min_health_percent: Option<IntPercent> = "minHealthPercent",
    }
}

istio_enum! {
    /// Client-side TLS modes.
    pub enum ClientTlsMode {
        Disable = "DISABLE",
        Simple = "SIMPLE",
        Mutual = "MUTUAL",
        IstioMutual = "ISTIO_MUTUAL",
    }
}

istio_struct! {
    /// TLS the client sidecar originates towards the host.
    pub struct ClientTlsSettings {
        mode: Option<ClientTlsMode> = "mode",
        client_certificate: Option<String> = "clientCertificate",
        private_key: Option<String> = "privateKey",
        ca_certificates: Option<String> = "caCertificates",
        credential_name: Option<String> = "credentialName",
        subject_alt_names: Vec<String> = "subjectAltNames",
        sni: Option<String> = "sni",
        insecure_skip_verify: Option<bool> = "insecureSkipVerify",
        ca_crl: Option<String> = "caCrl",
    }
}

istio_struct! {
    /// Tunnel the connection through a proxy (HTTP CONNECT).
    pub struct TunnelSettings {
        protocol: Option<String> = "protocol",
        target_host: Option<String> = "targetHost",
        target_port: Option<u32> = "targetPort",
    }
}

istio_enum! {
    /// PROXY protocol versions.
    pub enum ProxyProtocolVersion {
        V1 = "V1",
        V2 = "V2",
    }
}

istio_struct! {
    /// Send a PROXY protocol header upstream.
    pub struct ProxyProtocol {
        version: Option<ProxyProtocolVersion> = "version",
    }
}

istio_struct! {
    /// A limit on concurrent retries relative to active requests.
    pub struct RetryBudget {
        /// Percent of active requests that may be retries (default 20).
        percent: Option<PercentValue> = "percent",
        /// Retries always allowed regardless of the percentage (default 3).
        min_retry_concurrency: Option<u32> = "minRetryConcurrency",
        budget_interval: Option<Duration> = "budgetInterval",
    }
}
