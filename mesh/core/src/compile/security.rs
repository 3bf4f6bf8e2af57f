//! AuthorizationPolicy and PeerAuthentication resources → the normalized policies the
//! [`security`](crate::security) evaluators take.
//!
//! Ports written as strings are parsed; `when` keys and IP values are checked. A value
//! that cannot be converted (validation reports it) drops only the condition or rule
//! it belongs to and is returned as a problem, so one bad policy never hides the rest.

use crate::config::model::common::WorkloadSelector;
use crate::config::model::security::{
    AuthzAction, MtlsMode as ConfigMtls, Operation as ConfigOperation, Rule as ConfigRule,
    Source as ConfigSource,
};
use crate::config::{self, ConfigSet, Resource};
use crate::security::authz::{Action, Condition, ConditionKey, Operation, Rule, Source};
use crate::security::pattern::IpBlock;
use crate::security::{AuthorizationPolicy, MtlsMode, PeerAuthentication};

/// Every AuthorizationPolicy of `set`, normalized, oldest (first given) first, and the
/// problems met converting them (`namespace/name: what`).
pub fn authorization_policies(set: &ConfigSet) -> (Vec<AuthorizationPolicy>, Vec<String>) {
    let mut problems = Vec::new();
    let policies = set
        .authorization_policies()
        .iter()
        .map(|res| authorization_policy(res, &mut problems))
        .collect();
    (policies, problems)
}

fn authorization_policy(
    res: &Resource<config::AuthorizationPolicy>,
    problems: &mut Vec<String>,
) -> AuthorizationPolicy {
    let p = &res.spec;
    let id = format!("{}/{}", res.metadata.namespace, res.metadata.name);
    let action = match p.effective_action() {
        AuthzAction::Allow => Action::Allow,
        AuthzAction::Deny => Action::Deny,
        AuthzAction::Audit => Action::Audit,
        AuthzAction::Custom => Action::Custom,
    };
    AuthorizationPolicy {
        name: res.metadata.name.clone(),
        namespace: res.metadata.namespace.clone(),
        selector: selector_labels(p.selector.as_ref()),
        action,
        provider: p.provider.as_ref().and_then(|pr| pr.name.clone()),
        rules: p.rules.iter().map(|r| rule(r, &id, problems)).collect(),
    }
}

fn rule(r: &ConfigRule, id: &str, problems: &mut Vec<String>) -> Rule {
    Rule {
        from: r
            .from
            .iter()
            .filter_map(|f| f.source.as_ref().map(source))
            .collect(),
        to: r
            .to
            .iter()
            .filter_map(|t| t.operation.as_ref().map(|o| operation(o, id, problems)))
            .collect(),
        when: r
            .when
            .iter()
            .filter_map(|c| {
                let key = match c.key.parse::<ConditionKey>() {
                    Ok(k) => k,
                    Err(e) => {
                        problems.push(format!("{id}: when key {:?}: {e}", c.key));
                        return None;
                    }
                };
                Condition::new(key, c.values.clone(), c.not_values.clone())
                    .map_err(|e| problems.push(format!("{id}: when {:?}: {e}", c.key)))
                    .ok()
            })
            .collect(),
    }
}

fn source(s: &ConfigSource) -> Source {
    let blocks = |v: &[ipnet::IpNet]| v.iter().copied().map(IpBlock).collect();
    Source {
        principals: s.principals.clone(),
        not_principals: s.not_principals.clone(),
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        service_accounts: s.service_accounts.clone(),
        not_service_accounts: s.not_service_accounts.clone(),
        ip_blocks: blocks(&s.ip_blocks),
        not_ip_blocks: blocks(&s.not_ip_blocks),
        remote_ip_blocks: blocks(&s.remote_ip_blocks),
        not_remote_ip_blocks: blocks(&s.not_remote_ip_blocks),
    }
}

fn operation(o: &ConfigOperation, id: &str, problems: &mut Vec<String>) -> Operation {
    let mut ports = |v: &[String]| {
        v.iter()
            .filter_map(|p| {
                p.parse::<u16>()
                    .map_err(|_| problems.push(format!("{id}: port {p:?} is not a port number")))
                    .ok()
            })
            .collect::<Vec<_>>()
    };
    let (ports_in, ports_out) = (ports(&o.ports), ports(&o.not_ports));
    Operation {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: ports_in,
        not_ports: ports_out,
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}

/// A `selector: {matchLabels: ...}`'s labels; none selects every workload in scope.
fn selector_labels(
    selector: Option<&WorkloadSelector>,
) -> std::collections::BTreeMap<String, String> {
    selector.map(|s| s.match_labels.clone()).unwrap_or_default()
}

/// Every PeerAuthentication of `set`, normalized (UNSET becomes "inherit").
pub fn peer_authentications(set: &ConfigSet) -> Vec<PeerAuthentication> {
    let mode = |m: Option<ConfigMtls>| match m {
        Some(ConfigMtls::Strict) => Some(MtlsMode::Strict),
        Some(ConfigMtls::Permissive) => Some(MtlsMode::Permissive),
        Some(ConfigMtls::Disable) => Some(MtlsMode::Disable),
        Some(ConfigMtls::Unset) | None => None,
    };
    set.peer_authentications()
        .iter()
        .map(|res| {
            let p = &res.spec;
            PeerAuthentication {
                name: res.metadata.name.clone(),
                namespace: res.metadata.namespace.clone(),
                selector: selector_labels(p.selector.as_ref()),
                mode: mode(p.mtls.as_ref().and_then(|m| m.mode)),
                port_level: p
                    .port_level_mtls
                    .iter()
                    .filter_map(|(port, m)| Some((u16::try_from(*port).ok()?, mode(m.mode)?)))
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::security::authz::{RequestAttributes, Verdict, evaluate};
    use crate::security::{SpiffeId, resolve_mtls_mode};

    fn load(name: &str) -> ConfigSet {
        ConfigSet::load(&[crate::test_support::istio_sample(name)]).0
    }

    /// Istio's `productpage-viewer` sample: GET to productpage is allowed from anyone,
    /// other methods are denied (an ALLOW policy is present and does not match).
    #[test]
    fn productpage_viewer_sample() {
        let set = load("docs-authz-http-productpage-viewer.yaml");
        let (policies, problems) = authorization_policies(&set);
        assert!(problems.is_empty(), "{problems:?}");
        let labels: BTreeMap<String, String> =
            [("app".to_owned(), "productpage".to_owned())].into();
        let peer: SpiffeId = "spiffe://cluster.local/ns/default/sa/sleep"
            .parse()
            .unwrap();
        let get =
            RequestAttributes::http("GET", "/productpage", "productpage", 9080).with_peer(&peer);
        let post =
            RequestAttributes::http("POST", "/productpage", "productpage", 9080).with_peer(&peer);
        let ns = "default";
        assert_eq!(
            evaluate(&policies, &get, &labels, ns, "istio-system").verdict,
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&policies, &post, &labels, ns, "istio-system").verdict,
            Verdict::Deny
        );
    }

    /// Istio's `allow-nothing` sample denies everything in its namespace.
    #[test]
    fn allow_nothing_sample() {
        let set = load("docs-authz-allow-nothing.yaml");
        let (policies, _) = authorization_policies(&set);
        let labels = BTreeMap::new();
        let get = RequestAttributes::http("GET", "/", "any", 80);
        let ns = policies[0].namespace.clone();
        assert_eq!(
            evaluate(&policies, &get, &labels, &ns, "istio-system").verdict,
            Verdict::Deny
        );
    }

    /// PeerAuthentication samples resolve through the normalized form.
    #[test]
    fn peer_authentication_conversion() {
        let dir = crate::test_support::istio_samples_dir();
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.contains("peer") || name.contains("mtls") {
                sources.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
        sources.sort();
        for (name, text) in sources {
            let (set, _) = ConfigSet::load(&[(name.clone(), text)]);
            for pa in peer_authentications(&set) {
                // Every converted policy resolves for a workload it selects.
                let r = resolve_mtls_mode(
                    std::slice::from_ref(&pa),
                    "istio-system",
                    &pa.namespace,
                    &pa.selector,
                    None,
                );
                if let Some(mode) = pa.mode {
                    assert_eq!(r.mode, mode, "{name}: {pa:?}");
                }
            }
        }
    }
}
