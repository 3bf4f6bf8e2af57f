//! The field table in `docs/istio-config.md` lists every field meshrig models, and
//! every row marked `enforced` names the test that proves it.

use std::path::Path;

/// Every field of every modelled object has a row in `docs/istio-config.md`, and
/// every row marked `enforced` names a test.
#[test]
fn field_table_lists_every_modelled_field() {
    use mesh_core::config::model::{
        common, destination_rule, gateway, security, service_entry, sidecar, virtual_service,
    };
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/istio-config.md");
    let doc = std::fs::read_to_string(&doc_path).expect("read docs/istio-config.md");
    let section = |name: &str| -> String {
        let head = format!("\n### {name}\n");
        let start = doc
            .find(&head)
            .unwrap_or_else(|| panic!("no section `### {name}` in the field table"));
        let body = &doc[start + head.len()..];
        body[..body.find("\n#").unwrap_or(body.len())].to_owned()
    };
    let objects: &[(&str, &[&str])] = &[
        ("VirtualService", virtual_service::VirtualService::FIELDS),
        ("HttpRoute", virtual_service::HttpRoute::FIELDS),
        (
            "HttpMatchRequest",
            virtual_service::HttpMatchRequest::FIELDS,
        ),
        (
            "HttpRouteDestination",
            virtual_service::HttpRouteDestination::FIELDS,
        ),
        (
            "RouteDestination",
            virtual_service::RouteDestination::FIELDS,
        ),
        ("TlsRoute", virtual_service::TlsRoute::FIELDS),
        ("TcpRoute", virtual_service::TcpRoute::FIELDS),
        (
            "L4MatchAttributes",
            virtual_service::L4MatchAttributes::FIELDS,
        ),
        (
            "TlsMatchAttributes",
            virtual_service::TlsMatchAttributes::FIELDS,
        ),
        ("HttpRedirect", virtual_service::HttpRedirect::FIELDS),
        ("HttpBody", virtual_service::HttpBody::FIELDS),
        (
            "HttpDirectResponse",
            virtual_service::HttpDirectResponse::FIELDS,
        ),
        ("Delegate", virtual_service::Delegate::FIELDS),
        ("RegexRewrite", virtual_service::RegexRewrite::FIELDS),
        ("HttpRewrite", virtual_service::HttpRewrite::FIELDS),
        ("HttpRetry", virtual_service::HttpRetry::FIELDS),
        ("CorsPolicy", virtual_service::CorsPolicy::FIELDS),
        (
            "HttpFaultInjection",
            virtual_service::HttpFaultInjection::FIELDS,
        ),
        ("Delay", virtual_service::Delay::FIELDS),
        ("Abort", virtual_service::Abort::FIELDS),
        (
            "HttpMirrorPolicy",
            virtual_service::HttpMirrorPolicy::FIELDS,
        ),
        ("DestinationRule", destination_rule::DestinationRule::FIELDS),
        ("Subset", destination_rule::Subset::FIELDS),
        ("TrafficPolicy", destination_rule::TrafficPolicy::FIELDS),
        (
            "PortTrafficPolicy",
            destination_rule::PortTrafficPolicy::FIELDS,
        ),
        (
            "LoadBalancerSettings",
            destination_rule::LoadBalancerSettings::FIELDS,
        ),
        (
            "WarmupConfiguration",
            destination_rule::WarmupConfiguration::FIELDS,
        ),
        (
            "ConsistentHashLb",
            destination_rule::ConsistentHashLb::FIELDS,
        ),
        ("HttpCookie", destination_rule::HttpCookie::FIELDS),
        ("CookieAttribute", destination_rule::CookieAttribute::FIELDS),
        ("RingHash", destination_rule::RingHash::FIELDS),
        ("Maglev", destination_rule::Maglev::FIELDS),
        (
            "LocalityLbSetting",
            destination_rule::LocalityLbSetting::FIELDS,
        ),
        (
            "LocalityDistribute",
            destination_rule::LocalityDistribute::FIELDS,
        ),
        (
            "LocalityFailover",
            destination_rule::LocalityFailover::FIELDS,
        ),
        (
            "ConnectionPoolSettings",
            destination_rule::ConnectionPoolSettings::FIELDS,
        ),
        ("TcpSettings", destination_rule::TcpSettings::FIELDS),
        ("TcpKeepalive", destination_rule::TcpKeepalive::FIELDS),
        ("HttpSettings", destination_rule::HttpSettings::FIELDS),
        (
            "OutlierDetection",
            destination_rule::OutlierDetection::FIELDS,
        ),
        (
            "ClientTlsSettings",
            destination_rule::ClientTlsSettings::FIELDS,
        ),
        ("TunnelSettings", destination_rule::TunnelSettings::FIELDS),
        ("ProxyProtocol", destination_rule::ProxyProtocol::FIELDS),
        ("RetryBudget", destination_rule::RetryBudget::FIELDS),
        ("ServiceEntry", service_entry::ServiceEntry::FIELDS),
        ("WorkloadEntry", service_entry::WorkloadEntry::FIELDS),
        ("Gateway", gateway::Gateway::FIELDS),
        ("Server", gateway::Server::FIELDS),
        ("TlsCertificate", gateway::TlsCertificate::FIELDS),
        ("ServerTlsSettings", gateway::ServerTlsSettings::FIELDS),
        ("Sidecar", sidecar::Sidecar::FIELDS),
        ("IngressListener", sidecar::IngressListener::FIELDS),
        ("EgressListener", sidecar::EgressListener::FIELDS),
        (
            "OutboundTrafficPolicy",
            sidecar::OutboundTrafficPolicy::FIELDS,
        ),
        ("MutualTls", security::MutualTls::FIELDS),
        ("PeerAuthentication", security::PeerAuthentication::FIELDS),
        ("AuthorizationPolicy", security::AuthorizationPolicy::FIELDS),
        ("ExtensionProvider", security::ExtensionProvider::FIELDS),
        ("Rule", security::Rule::FIELDS),
        ("RuleFrom", security::RuleFrom::FIELDS),
        ("RuleTo", security::RuleTo::FIELDS),
        ("Source", security::Source::FIELDS),
        ("Operation", security::Operation::FIELDS),
        ("Condition", security::Condition::FIELDS),
        (
            "RequestAuthentication",
            security::RequestAuthentication::FIELDS,
        ),
        ("JwtRule", security::JwtRule::FIELDS),
        ("JwtHeader", security::JwtHeader::FIELDS),
        ("ClaimToHeader", security::ClaimToHeader::FIELDS),
        ("PortSelector", common::PortSelector::FIELDS),
        ("Destination", common::Destination::FIELDS),
        ("HeaderOperations", common::HeaderOperations::FIELDS),
        ("Headers", common::Headers::FIELDS),
        ("WorkloadSelector", common::WorkloadSelector::FIELDS),
        (
            "NetworkingWorkloadSelector",
            common::NetworkingWorkloadSelector::FIELDS,
        ),
        (
            "PolicyTargetReference",
            common::PolicyTargetReference::FIELDS,
        ),
        ("Port", common::Port::FIELDS),
        ("StringMatch", common::StringMatch::FIELDS),
    ];
    for (name, fields) in objects {
        let body = section(name);
        for field in *fields {
            assert!(
                body.contains(&format!("| `{field}` |")),
                "field table: `{field}` missing from ### {name}"
            );
        }
    }
    for row in doc.lines().filter(|l| l.contains("| enforced |")) {
        let test = row.trim_end_matches('|').rsplit('|').next().unwrap_or("");
        assert!(
            ["validate::", "config::", "compile::", "route::"]
                .iter()
                .any(|module| test.contains(module)),
            "enforced row names no test: {row}"
        );
    }
}
