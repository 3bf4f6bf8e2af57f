//! `security.istio.io` kinds: `PeerAuthentication` (mTLS mode), `AuthorizationPolicy`
//! (who may do what), `RequestAuthentication` (which JWTs are accepted).
//!
//! Checked while decoding: IP blocks are addresses or CIDRs; `CUSTOM` has a
//! `provider` (and only `CUSTOM` does); a condition has values; a selector is not
//! combined with target references; a JWT rule names its issuer.

use std::collections::BTreeMap;
use std::time::Duration;

use super::common::{PolicyTargetReference, WorkloadSelector, require};
use crate::config::decode::{Decode, Decoder, Obj};
use crate::config::yaml::{self, Node};

istio_enum! {
    /// Mutual-TLS modes of a workload's inbound traffic.
    pub enum MtlsMode {
        Unset = "UNSET",
        Disable = "DISABLE",
        Permissive = "PERMISSIVE",
        Strict = "STRICT",
    }
}

istio_struct! {
    /// `mtls: {mode: STRICT}`.
    pub struct MutualTls {
        mode: Option<MtlsMode> = "mode",
    }
}

istio_struct! {
    /// The spec of a PeerAuthentication.
    pub struct PeerAuthentication {
        selector: Option<WorkloadSelector> = "selector",
        mtls: Option<MutualTls> = "mtls",
        /// Port number → mode for that port (needs a `selector`).
        port_level_mtls: BTreeMap<u32, MutualTls> = "portLevelMtls",
    }
}

istio_enum! {
    /// What an AuthorizationPolicy does with matching requests.
    pub enum AuthzAction {
        Allow = "ALLOW",
        Deny = "DENY",
        Audit = "AUDIT",
        Custom = "CUSTOM",
    }
}

istio_struct! {
    /// The spec of an AuthorizationPolicy.
    pub struct AuthorizationPolicy check check_authorization_policy {
        selector: Option<WorkloadSelector> = "selector",
        target_ref: Option<PolicyTargetReference> = "targetRef",
        target_refs: Vec<PolicyTargetReference> = "targetRefs",
        rules: Vec<Rule> = "rules",
        /// Default `ALLOW`.
        action: Option<AuthzAction> = "action",
        provider: Option<ExtensionProvider> = "provider",
    }
}

impl AuthorizationPolicy {
    /// The action, `ALLOW` when not given.
    pub fn effective_action(&self) -> AuthzAction {
        self.action.unwrap_or(AuthzAction::Allow)
    }
}

fn check_selector_and_targets(o: &mut Obj<'_, '_, '_>, selector: bool, targets: bool) {
    if selector && targets {
        o.error_at(
            "selector",
            "`selector` and `targetRef`/`targetRefs` are set together (use one of them)",
        );
    }
}

fn check_authorization_policy(v: &mut AuthorizationPolicy, o: &mut Obj<'_, '_, '_>) {
    let custom = v.action == Some(AuthzAction::Custom);
    if custom && v.provider.is_none() {
        o.error_at(
            "action",
            "action CUSTOM needs a `provider` (name the extension provider)",
        );
    }
    if !custom && v.provider.is_some() {
        o.error_at(
            "provider",
            "`provider` is only used with action CUSTOM (set `action: CUSTOM`)",
        );
    }
    let targets = v.target_ref.is_some() || !v.target_refs.is_empty();
    check_selector_and_targets(o, v.selector.is_some(), targets);
}

istio_struct! {
    /// The extension provider of a CUSTOM policy.
    pub struct ExtensionProvider {
        name: Option<String> = "name",
    }
}

istio_struct! {
    /// A rule: requests from any `from`, to any `to`, when all `when` hold.
    pub struct Rule {
        from: Vec<RuleFrom> = "from",
        to: Vec<RuleTo> = "to",
        when: Vec<Condition> = "when",
    }
}

istio_struct! {
    /// `from: - source: {...}`.
    pub struct RuleFrom {
        source: Option<Source> = "source",
    }
}

istio_struct! {
    /// `to: - operation: {...}`.
    pub struct RuleTo {
        operation: Option<Operation> = "operation",
    }
}

istio_struct! {
    /// Who sends the request; all fields that are set must match.
    pub struct Source {
        principals: Vec<String> = "principals",
        not_principals: Vec<String> = "notPrincipals",
        request_principals: Vec<String> = "requestPrincipals",
        not_request_principals: Vec<String> = "notRequestPrincipals",
        namespaces: Vec<String> = "namespaces",
        not_namespaces: Vec<String> = "notNamespaces",
        ip_blocks: Vec<ipnet::IpNet> = "ipBlocks",
        not_ip_blocks: Vec<ipnet::IpNet> = "notIpBlocks",
        remote_ip_blocks: Vec<ipnet::IpNet> = "remoteIpBlocks",
        not_remote_ip_blocks: Vec<ipnet::IpNet> = "notRemoteIpBlocks",
        service_accounts: Vec<String> = "serviceAccounts",
        not_service_accounts: Vec<String> = "notServiceAccounts",
    }
}

istio_struct! {
    /// What the request does; all fields that are set must match.
    pub struct Operation {
        hosts: Vec<String> = "hosts",
        not_hosts: Vec<String> = "notHosts",
        ports: Vec<String> = "ports",
        not_ports: Vec<String> = "notPorts",
        methods: Vec<String> = "methods",
        not_methods: Vec<String> = "notMethods",
        paths: Vec<String> = "paths",
        not_paths: Vec<String> = "notPaths",
    }
}

istio_struct! {
    /// A condition on a request attribute (`request.headers[x]`, `source.ip`, ...).
    pub struct Condition check check_condition {
        key: String = "key",
        values: Vec<String> = "values",
        not_values: Vec<String> = "notValues",
    }
}

fn check_condition(v: &mut Condition, o: &mut Obj<'_, '_, '_>) {
    require(o, !v.key.is_empty(), "key");
    if v.values.is_empty() && v.not_values.is_empty() && !o.has("values") && !o.has("notValues") {
        o.error("a condition needs `values` or `notValues`");
    }
}

/// An IP block: an address (`10.0.0.1`, taken as a /32 or /128) or a CIDR.
impl Decode for ipnet::IpNet {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let text = String::decode(d, node)?;
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Some(net);
        }
        if let Ok(addr) = text.parse::<std::net::IpAddr>() {
            return Some(ipnet::IpNet::from(addr));
        }
        d.error(
            yaml::line(node),
            format!("invalid IP block {text:?} (an address or a CIDR, e.g. 10.0.0.0/8)"),
        );
        None
    }
}

istio_struct! {
    /// The spec of a RequestAuthentication.
    pub struct RequestAuthentication check check_request_authentication {
        selector: Option<WorkloadSelector> = "selector",
        target_ref: Option<PolicyTargetReference> = "targetRef",
        target_refs: Vec<PolicyTargetReference> = "targetRefs",
        jwt_rules: Vec<JwtRule> = "jwtRules",
    }
}

fn check_request_authentication(v: &mut RequestAuthentication, o: &mut Obj<'_, '_, '_>) {
    let targets = v.target_ref.is_some() || !v.target_refs.is_empty();
    check_selector_and_targets(o, v.selector.is_some(), targets);
}

istio_struct! {
    /// How JWTs of one issuer are found and verified.
    pub struct JwtRule check check_jwt_rule {
        issuer: String = "issuer",
        audiences: Vec<String> = "audiences",
        jwks_uri: Option<String> = "jwksUri",
        jwks: Option<String> = "jwks",
        from_headers: Vec<JwtHeader> = "fromHeaders",
        from_params: Vec<String> = "fromParams",
        from_cookies: Vec<String> = "fromCookies",
        output_payload_to_header: Option<String> = "outputPayloadToHeader",
        forward_original_token: Option<bool> = "forwardOriginalToken",
        output_claim_to_headers: Vec<ClaimToHeader> = "outputClaimToHeaders",
        timeout: Option<Duration> = "timeout",
    }
}

fn check_jwt_rule(v: &mut JwtRule, o: &mut Obj<'_, '_, '_>) {
    require(o, !v.issuer.is_empty(), "issuer");
}

istio_struct! {
    /// A header a JWT is read from, with its value prefix (`Bearer `).
    pub struct JwtHeader {
        name: String = "name",
        prefix: Option<String> = "prefix",
    }
}

istio_struct! {
    /// Copy a JWT claim into a request header.
    pub struct ClaimToHeader {
        header: String = "header",
        claim: String = "claim",
    }
}
