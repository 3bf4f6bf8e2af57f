//! Checks that look across the resources of a set, run after every document is
//! decoded and duplicates are resolved. They find positions through each resource's
//! [`Origin`](super::Origin) table, so they still point at lines.
//!
//! * A route (HTTP, TCP, TLS, mirror) to a subset must name a subset that the set's
//!   DestinationRule for that host defines (error). When the set has no
//!   DestinationRule for the host, the reference cannot be checked (warning); when
//!   only a wildcard DestinationRule (`*.local`) covers the host and lacks the
//!   subset, that is a warning too (a per-host rule may exist outside the set).
//! * Two VirtualServices claiming one host on a shared gateway (warning): for
//!   sidecars only one takes effect, at gateways their routes merge in no guaranteed
//!   order.

use std::collections::BTreeMap;

use super::finding::Finding;
use super::host::fqdn;
use super::model::Resource;
use super::model::common::Destination;
use super::model::virtual_service::{MESH_GATEWAY, VirtualService};
use super::set::ConfigSet;

/// Every cross-resource finding of `set`.
pub(crate) fn check_set(set: &ConfigSet) -> Vec<Finding> {
    let mut out = Vec::new();
    for vs in set.virtual_services() {
        check_subsets(set, vs, &mut out);
    }
    check_host_claims(set.virtual_services(), &mut out);
    out
}

/// Every destination of a VirtualService with its field path.
pub fn destinations(vs: &VirtualService) -> Vec<(String, &Destination)> {
    let mut out = Vec::new();
    for (i, http) in vs.http.iter().enumerate() {
        for (j, r) in http.route.iter().enumerate() {
            if let Some(d) = &r.destination {
                out.push((format!("spec.http[{i}].route[{j}].destination"), d));
            }
        }
        if let Some(d) = &http.mirror {
            out.push((format!("spec.http[{i}].mirror"), d));
        }
        for (j, m) in http.mirrors.iter().enumerate() {
            if let Some(d) = &m.destination {
                out.push((format!("spec.http[{i}].mirrors[{j}].destination"), d));
            }
        }
    }
    for (i, tcp) in vs.tcp.iter().enumerate() {
        for (j, r) in tcp.route.iter().enumerate() {
            if let Some(d) = &r.destination {
                out.push((format!("spec.tcp[{i}].route[{j}].destination"), d));
            }
        }
    }
    for (i, tls) in vs.tls.iter().enumerate() {
        for (j, r) in tls.route.iter().enumerate() {
            if let Some(d) = &r.destination {
                out.push((format!("spec.tls[{i}].route[{j}].destination"), d));
            }
        }
    }
    out
}

fn check_subsets(set: &ConfigSet, vs: &Resource<VirtualService>, out: &mut Vec<Finding>) {
    for (path, dest) in destinations(&vs.spec) {
        let Some(subset) = &dest.subset else { continue };
        let host = fqdn(&dest.host, &vs.metadata.namespace);
        let path = format!("{path}.subset");
        let line = vs.origin.line_of(&path);
        let rules = set.destination_rules_for(&host);
        if rules.is_empty() {
            out.push(Finding::warning(
                &vs.origin.file,
                line,
                &path,
                format!(
                    "subset `{subset}` cannot be checked: the set has no DestinationRule for {host} \
                     (validate this file together with the one that defines the subset)"
                ),
            ));
            continue;
        }
        if rules.iter().any(|dr| dr.spec.subset(subset).is_some()) {
            continue;
        }
        let defined: Vec<&str> = rules
            .iter()
            .flat_map(|dr| dr.spec.subsets.iter().map(|s| s.name.as_str()))
            .collect();
        let defined = if defined.is_empty() {
            "it defines no subsets".to_owned()
        } else {
            format!("defined: {}", defined.join(", "))
        };
        let names: Vec<String> = rules
            .iter()
            .map(|dr| format!("{} ({})", dr.key(), dr.locate("spec.host")))
            .collect();
        let names = names.join(", ");
        // Only a rule written for this very host makes a missing subset certain; a
        // wildcard rule (`*.local`) may be meant to sit beside per-host rules that
        // were not given with this set.
        let exact = rules
            .iter()
            .any(|dr| fqdn(&dr.spec.host, &dr.metadata.namespace) == host);
        let finding = if exact {
            Finding::error(
                &vs.origin.file,
                line,
                &path,
                format!(
                    "subset `{subset}` is not defined by DestinationRule {names} for {host} ({defined})"
                ),
            )
        } else {
            let wildcard = rules
                .first()
                .map(|dr| fqdn(&dr.spec.host, &dr.metadata.namespace))
                .unwrap_or_default();
            Finding::warning(
                &vs.origin.file,
                line,
                &path,
                format!(
                    "subset `{subset}` is not defined by DestinationRule {names}, whose wildcard host {wildcard} \
                     is the only one covering {host} ({defined}; add a DestinationRule for {host} that defines it)"
                ),
            )
        };
        out.push(finding);
    }
}

fn check_host_claims(services: &[Resource<VirtualService>], out: &mut Vec<Finding>) {
    // (host, gateway) → the first VirtualService claiming it.
    let mut first: BTreeMap<(String, String), &Resource<VirtualService>> = BTreeMap::new();
    for vs in services {
        for (i, host) in vs.spec.hosts.iter().enumerate() {
            let host = fqdn(host, &vs.metadata.namespace);
            let mut reported = false;
            for gw in vs.spec.effective_gateways() {
                let gw = gateway_key(gw, &vs.metadata.namespace);
                let key = (host.clone(), gw.clone());
                match first.get(&key) {
                    None => {
                        first.insert(key, vs);
                    }
                    Some(other) if !reported && other.key() != vs.key() => {
                        reported = true;
                        let effect = if gw == MESH_GATEWAY {
                            "for sidecars only one of them takes effect"
                        } else {
                            "at the gateway their routes are merged in no guaranteed order"
                        };
                        let path = format!("spec.hosts[{i}]");
                        out.push(Finding::warning(
                            &vs.origin.file,
                            vs.origin.line_of(&path),
                            &path,
                            format!(
                                "host {host} is also claimed by VirtualService {} ({}) on gateway `{gw}`; {effect} \
                                 (keep a host's routes in one VirtualService)",
                                other.key(),
                                other.locate("metadata.name")
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
    }
}

/// `mesh` stays `mesh`; `gw` is qualified with the VirtualService's namespace.
fn gateway_key(gateway: &str, namespace: &str) -> String {
    if gateway == MESH_GATEWAY || gateway.contains('/') {
        gateway.to_owned()
    } else {
        format!("{namespace}/{gateway}")
    }
}
