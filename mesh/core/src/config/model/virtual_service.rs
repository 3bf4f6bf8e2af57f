//! `VirtualService`: how requests for a set of hosts are routed.
//!
//! Checked while decoding: durations, regexes, percentages and weights are in range;
//! the weights of a route with several destinations add up to 100 (Istio's rule);
//! `*` is not a host of a VirtualService bound to the `mesh` gateway; an abort's HTTP
//! status is a real status. Subset references are checked against the set's
//! DestinationRules later, in [`validate`](crate::config::validate).

use std::collections::BTreeMap;
use std::time::Duration;

use super::common::{Destination, Headers, StringMatch};
use crate::config::decode::Obj;
use crate::config::values::{IntPercent, Percent, RegexPattern, Weight};

/// The reserved gateway name meaning "every sidecar in the mesh".
pub const MESH_GATEWAY: &str = "mesh";

istio_struct! {
    /// The spec of a VirtualService.
    pub struct VirtualService check check_virtual_service {
        /// Hosts this routing applies to; short names are relative to the namespace.
        hosts: Vec<String> = "hosts",
        /// Gateways (and `mesh`) the routes apply to; empty means `mesh`.
        gateways: Vec<String> = "gateways",
        http: Vec<HttpRoute> = "http",
        tls: Vec<TlsRoute> = "tls",
        tcp: Vec<TcpRoute> = "tcp",
        export_to: Vec<String> = "exportTo",
    }
}

impl VirtualService {
    /// True if the routes apply to sidecars: no `gateways`, or `mesh` among them.
    pub fn binds_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == MESH_GATEWAY)
    }

    /// The gateways the routes apply to, `mesh` when none are named.
    pub fn effective_gateways(&self) -> Vec<&str> {
        if self.gateways.is_empty() {
            vec![MESH_GATEWAY]
        } else {
            self.gateways.iter().map(String::as_str).collect()
        }
    }
}

fn check_virtual_service(v: &mut VirtualService, o: &mut Obj<'_, '_, '_>) {
    if v.binds_mesh() {
        for (i, host) in v.hosts.iter().enumerate() {
            if host == "*" {
                o.error_at(
                    &format!("hosts[{i}]"),
                    "wildcard host `*` is not allowed for a VirtualService bound to the mesh gateway \
                     (name the hosts, or bind it only to ingress gateways with `gateways`)",
                );
            }
        }
    }
}

/// The weights of a route with several destinations must add up to 100.
fn check_weights(o: &mut Obj<'_, '_, '_>, weights: &[Option<Weight>]) {
    if weights.len() < 2 {
        return;
    }
    let sum: u32 = weights.iter().map(|w| w.map_or(0, |w| w.0)).sum();
    if sum != 100 {
        o.error_at(
            "route",
            format!(
                "weights of the {} destinations sum to {sum} (they must add up to 100)",
                weights.len()
            ),
        );
    }
}

istio_struct! {
    /// An HTTP route: conditions and what to do with matching requests.
    pub struct HttpRoute check check_http_route {
        name: Option<String> = "name",
        /// Any one of these matches (OR); within one, all conditions hold (AND).
        r#match: Vec<HttpMatchRequest> = "match",
        route: Vec<HttpRouteDestination> = "route",
        redirect: Option<HttpRedirect> = "redirect",
        direct_response: Option<HttpDirectResponse> = "directResponse",
        delegate: Option<Delegate> = "delegate",
        rewrite: Option<HttpRewrite> = "rewrite",
        timeout: Option<Duration> = "timeout",
        retries: Option<HttpRetry> = "retries",
        fault: Option<HttpFaultInjection> = "fault",
        mirror: Option<Destination> = "mirror",
        mirrors: Vec<HttpMirrorPolicy> = "mirrors",
        /// Deprecated integer form of `mirrorPercentage`.
        mirror_percent: Option<IntPercent> = "mirrorPercent",
        mirror_percentage: Option<Percent> = "mirrorPercentage",
        cors_policy: Option<CorsPolicy> = "corsPolicy",
        headers: Option<Headers> = "headers",
    }
}

fn check_http_route(v: &mut HttpRoute, o: &mut Obj<'_, '_, '_>) {
    let weights: Vec<_> = v.route.iter().map(|r| r.weight).collect();
    check_weights(o, &weights);
}

istio_struct! {
    /// Conditions on an HTTP request; all that are set must hold.
    pub struct HttpMatchRequest {
        name: Option<String> = "name",
        uri: Option<StringMatch> = "uri",
        scheme: Option<StringMatch> = "scheme",
        method: Option<StringMatch> = "method",
        authority: Option<StringMatch> = "authority",
        headers: BTreeMap<String, StringMatch> = "headers",
        port: Option<u32> = "port",
        source_labels: BTreeMap<String, String> = "sourceLabels",
        gateways: Vec<String> = "gateways",
        query_params: BTreeMap<String, StringMatch> = "queryParams",
        ignore_uri_case: Option<bool> = "ignoreUriCase",
        without_headers: BTreeMap<String, StringMatch> = "withoutHeaders",
        source_namespace: Option<String> = "sourceNamespace",
        stat_prefix: Option<String> = "statPrefix",
    }
}

istio_struct! {
    /// A weighted HTTP destination with its header edits.
    pub struct HttpRouteDestination check check_route_destination {
        destination: Option<Destination> = "destination",
        weight: Option<Weight> = "weight",
        headers: Option<Headers> = "headers",
    }
}

fn check_route_destination(v: &mut HttpRouteDestination, o: &mut Obj<'_, '_, '_>) {
    super::common::require(
        o,
        v.destination.is_some() || o.has("destination"),
        "destination",
    );
}

istio_struct! {
    /// A weighted TCP/TLS destination.
    pub struct RouteDestination check check_l4_destination {
        destination: Option<Destination> = "destination",
        weight: Option<Weight> = "weight",
    }
}

fn check_l4_destination(v: &mut RouteDestination, o: &mut Obj<'_, '_, '_>) {
    super::common::require(
        o,
        v.destination.is_some() || o.has("destination"),
        "destination",
    );
}

istio_struct! {
    /// A TLS (SNI-routed) route.
    pub struct TlsRoute check check_tls_route {
        r#match: Vec<TlsMatchAttributes> = "match",
        route: Vec<RouteDestination> = "route",
    }
}

fn check_tls_route(v: &mut TlsRoute, o: &mut Obj<'_, '_, '_>) {
    let weights: Vec<_> = v.route.iter().map(|r| r.weight).collect();
    check_weights(o, &weights);
}

istio_struct! {
    /// A TCP route.
    pub struct TcpRoute check check_tcp_route {
        r#match: Vec<L4MatchAttributes> = "match",
        route: Vec<RouteDestination> = "route",
    }
}

fn check_tcp_route(v: &mut TcpRoute, o: &mut Obj<'_, '_, '_>) {
    let weights: Vec<_> = v.route.iter().map(|r| r.weight).collect();
    check_weights(o, &weights);
}

istio_struct! {
    /// Conditions on a TCP connection.
    pub struct L4MatchAttributes {
        destination_subnets: Vec<String> = "destinationSubnets",
        port: Option<u32> = "port",
        source_subnet: Option<String> = "sourceSubnet",
        source_labels: BTreeMap<String, String> = "sourceLabels",
        gateways: Vec<String> = "gateways",
        source_namespace: Option<String> = "sourceNamespace",
    }
}

istio_struct! {
    /// Conditions on a TLS connection (SNI).
    pub struct TlsMatchAttributes {
        sni_hosts: Vec<String> = "sniHosts",
        destination_subnets: Vec<String> = "destinationSubnets",
        port: Option<u32> = "port",
        source_labels: BTreeMap<String, String> = "sourceLabels",
        gateways: Vec<String> = "gateways",
        source_namespace: Option<String> = "sourceNamespace",
    }
}

istio_enum! {
    /// Which port a redirect keeps.
    pub enum RedirectPortSelection {
        FromProtocolDefault = "FROM_PROTOCOL_DEFAULT",
        FromRequestPort = "FROM_REQUEST_PORT",
    }
}

istio_struct! {
    /// Answer with a redirect instead of forwarding.
    pub struct HttpRedirect {
        uri: Option<String> = "uri",
        authority: Option<String> = "authority",
        port: Option<u32> = "port",
        derive_port: Option<RedirectPortSelection> = "derivePort",
        scheme: Option<String> = "scheme",
        redirect_code: Option<u32> = "redirectCode",
    }
}

istio_struct! {
    /// A fixed response body.
    pub struct HttpBody {
        string: Option<String> = "string",
        bytes: Option<String> = "bytes",
    }
}

istio_struct! {
    /// Answer directly instead of forwarding.
    pub struct HttpDirectResponse {
        status: Option<u32> = "status",
        body: Option<HttpBody> = "body",
    }
}

istio_struct! {
    /// Hand routing over to another VirtualService.
    pub struct Delegate {
        name: Option<String> = "name",
        namespace: Option<String> = "namespace",
    }
}

istio_struct! {
    /// Rewrite the path with a regex.
    pub struct RegexRewrite {
        pattern: Option<RegexPattern> = "match",
        rewrite: Option<String> = "rewrite",
    }
}

istio_struct! {
    /// Rewrite the path or authority before forwarding.
    pub struct HttpRewrite {
        uri: Option<String> = "uri",
        authority: Option<String> = "authority",
        uri_regex_rewrite: Option<RegexRewrite> = "uriRegexRewrite",
    }
}

istio_struct! {
    /// Retry policy of a route.
    pub struct HttpRetry check check_retry {
        attempts: Option<i32> = "attempts",
        per_try_timeout: Option<Duration> = "perTryTimeout",
        /// Comma-separated Envoy retry conditions (`5xx,connect-failure`).
        retry_on: Option<String> = "retryOn",
        retry_remote_localities: Option<bool> = "retryRemoteLocalities",
        retry_ignore_previous_hosts: Option<bool> = "retryIgnorePreviousHosts",
        backoff: Option<Duration> = "backoff",
    }
}

fn check_retry(v: &mut HttpRetry, o: &mut Obj<'_, '_, '_>) {
    if let Some(n) = v.attempts.filter(|n| *n < 0) {
        o.error_at(
            "attempts",
            format!("negative retry attempts {n} (use 0 to disable retries)"),
        );
    }
}

istio_enum! {
    /// What to do with a CORS preflight that does not match the policy.
    pub enum UnmatchedPreflights {
        Unspecified = "UNSPECIFIED",
        Forward = "FORWARD",
        Ignore = "IGNORE",
    }
}

istio_struct! {
    /// Cross-origin resource sharing policy.
    pub struct CorsPolicy {
        allow_origins: Vec<StringMatch> = "allowOrigins",
        /// Deprecated: exact origins.
        allow_origin: Vec<String> = "allowOrigin",
        allow_methods: Vec<String> = "allowMethods",
        allow_headers: Vec<String> = "allowHeaders",
        expose_headers: Vec<String> = "exposeHeaders",
        max_age: Option<Duration> = "maxAge",
        allow_credentials: Option<bool> = "allowCredentials",
        unmatched_preflights: Option<UnmatchedPreflights> = "unmatchedPreflights",
    }
}

istio_struct! {
    /// Faults injected into matching requests.
    pub struct HttpFaultInjection {
        delay: Option<Delay> = "delay",
        abort: Option<Abort> = "abort",
    }
}

istio_struct! {
    /// Delay a share of requests.
    pub struct Delay {
        fixed_delay: Option<Duration> = "fixedDelay",
        exponential_delay: Option<Duration> = "exponentialDelay",
        percentage: Option<Percent> = "percentage",
        /// Deprecated integer form of `percentage`.
        percent: Option<IntPercent> = "percent",
    }
}

istio_struct! {
    /// Abort a share of requests with an error.
    pub struct Abort check check_abort {
        http_status: Option<i32> = "httpStatus",
        grpc_status: Option<String> = "grpcStatus",
        http2_error: Option<String> = "http2Error",
        percentage: Option<Percent> = "percentage",
        /// Deprecated integer form of `percentage` (older Istio samples use it).
        percent: Option<IntPercent> = "percent",
    }
}

fn check_abort(v: &mut Abort, o: &mut Obj<'_, '_, '_>) {
    if let Some(s) = v.http_status.filter(|s| !(200..=599).contains(s)) {
        o.error_at(
            "httpStatus",
            format!("HTTP status {s} is not a valid status (200..=599)"),
        );
    }
}

istio_struct! {
    /// Copy a share of requests to another destination.
    pub struct HttpMirrorPolicy check check_mirror {
        destination: Option<Destination> = "destination",
        percentage: Option<Percent> = "percentage",
    }
}

fn check_mirror(v: &mut HttpMirrorPolicy, o: &mut Obj<'_, '_, '_>) {
    super::common::require(
        o,
        v.destination.is_some() || o.has("destination"),
        "destination",
    );
}
