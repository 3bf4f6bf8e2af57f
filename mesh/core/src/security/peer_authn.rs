//! PeerAuthentication: which mTLS mode a workload's inbound port accepts.
//!
//! Resolution follows Istio (`pilot/pkg/security/authn` `ComposePeerAuthentication`
//! and the PeerAuthentication reference):
//!
//! 1. start from the default, **PERMISSIVE**;
//! 2. a *mesh-level* policy (in the root namespace, no selector) sets the mode;
//! 3. a *namespace-level* policy (in the workload's namespace, no selector) overrides it;
//! 4. a *workload-level* policy (in the workload's namespace, selector matching the
//!    workload's labels) overrides that;
//! 5. the workload-level policy's `port_level` entry for the port overrides everything.
//!
//! A level whose mode is UNSET (`mode: None`) inherits from the level below it. Port
//! overrides are honoured only on workload-level policies (Istio ignores them
//! elsewhere). When several policies sit at the same level, Istio keeps the oldest;
//! mesh-core has no creation times, so **the earlier one in the input slice wins** —
//! pass policies oldest first. Ignored policies are listed in the trace.

use std::collections::BTreeMap;

use serde::Serialize;

use super::PolicyRef;

/// An inbound mTLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtlsMode {
    /// Only mutual TLS with a mesh identity is accepted; plaintext is rejected.
    Strict,
    /// Both mutual TLS and plaintext are accepted (Istio's default).
    Permissive,
    /// The sidecar does not terminate mTLS; traffic is handled as plaintext.
    Disable,
}

/// A PeerAuthentication, normalized from the Istio resource.
///
/// `selector` empty means "no selector" (a namespace- or mesh-level policy). `mode`
/// `None` is UNSET. `port_level` maps a workload (container) port to its mode; leave
/// UNSET ports out — an absent entry already inherits the workload's mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerAuthentication {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub mode: Option<MtlsMode>,
    pub port_level: BTreeMap<u16, MtlsMode>,
}

/// The level a PeerAuthentication (or the default) acts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MtlsLevel {
    Default,
    Mesh,
    Namespace,
    Workload,
    Port,
}

/// One level of the resolution, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtlsStep {
    pub level: MtlsLevel,
    /// The policy at this level; `None` for the default.
    pub policy: Option<PolicyRef>,
    /// The mode this level sets; `None` when UNSET (it inherits).
    pub mode: Option<MtlsMode>,
}

/// Why a policy that could have applied did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// Another policy earlier in the input already holds this level.
    ShadowedByEarlierPolicy,
    /// `port_level` on a policy without a selector has no effect.
    PortLevelWithoutSelector,
}

/// A policy ignored during resolution, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredPolicy {
    pub policy: PolicyRef,
    pub reason: IgnoredReason,
}

/// How a mode was resolved, for the event log and the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtlsTrace {
    /// The level whose mode won.
    pub decided_by: MtlsLevel,
    /// The policy that decided, `None` for the default.
    pub policy: Option<PolicyRef>,
    /// Every level that was present, lowest precedence first.
    pub steps: Vec<MtlsStep>,
    pub ignored: Vec<IgnoredPolicy>,
}

/// The resolved mode with its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MtlsResolution {
    pub mode: MtlsMode,
    pub trace: MtlsTrace,
}

/// Whether every `selector` label is present with the same value in `labels`.
/// An empty selector matches everything.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Resolves the inbound mTLS mode for one workload port.
///
/// Call it when building a workload's inbound listener (or, in the simulator, when a
/// connection arrives): `policies` are all PeerAuthentications in the mesh, oldest
/// first; `port` is the workload (container) port, `None` for "the workload as a
/// whole".
pub fn resolve_mtls_mode(
    policies: &[PeerAuthentication],
    root_namespace: &str,
    workload_namespace: &str,
    workload_labels: &BTreeMap<String, String>,
    port: Option<u16>,
) -> MtlsResolution {
    let mut mesh: Option<&PeerAuthentication> = None;
    let mut namespace: Option<&PeerAuthentication> = None;
    let mut workload: Option<&PeerAuthentication> = None;
    let mut ignored = Vec::new();

    for policy in policies {
        let slot = if policy.selector.is_empty() {
            if policy.namespace == root_namespace {
                &mut mesh
            } else if policy.namespace == workload_namespace {
                &mut namespace
            } else {
                continue;
            }
        } else if policy.namespace == workload_namespace
            && selector_matches(&policy.selector, workload_labels)
        {
            &mut workload
        } else {
            continue;
        };
        if slot.is_some() {
            ignored.push(IgnoredPolicy {
                policy: PolicyRef::of(&policy.namespace, &policy.name),
                reason: IgnoredReason::ShadowedByEarlierPolicy,
            });
            continue;
        }
        if policy.selector.is_empty() && !policy.port_level.is_empty() {
            ignored.push(IgnoredPolicy {
                policy: PolicyRef::of(&policy.namespace, &policy.name),
                reason: IgnoredReason::PortLevelWithoutSelector,
            });
        }
        *slot = Some(policy);
    }

    let mut steps = vec![MtlsStep {
        level: MtlsLevel::Default,
        policy: None,
        mode: Some(MtlsMode::Permissive),
    }];
    let mut mode = MtlsMode::Permissive;
    let mut decided_by = MtlsLevel::Default;
    let mut decider: Option<PolicyRef> = None;
    let mut apply = |level, policy: &PeerAuthentication, level_mode: Option<MtlsMode>| {
        let policy_ref = PolicyRef::of(&policy.namespace, &policy.name);
        if let Some(m) = level_mode {
            mode = m;
            decided_by = level;
            decider = Some(policy_ref.clone());
        }
        steps.push(MtlsStep {
            level,
            policy: Some(policy_ref),
            mode: level_mode,
        });
    };
    if let Some(p) = mesh {
        apply(MtlsLevel::Mesh, p, p.mode);
    }
    if let Some(p) = namespace {
        apply(MtlsLevel::Namespace, p, p.mode);
    }
    if let Some(p) = workload {
        apply(MtlsLevel::Workload, p, p.mode);
        if let Some(port_mode) = port.and_then(|port| p.port_level.get(&port)) {
            apply(MtlsLevel::Port, p, Some(*port_mode));
        }
    }
    MtlsResolution {
        mode,
        trace: MtlsTrace {
            decided_by,
            policy: decider,
            steps,
            ignored,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pa(
        name: &str,
        ns: &str,
        selector: &[(&str, &str)],
        mode: Option<MtlsMode>,
        ports: &[(u16, MtlsMode)],
    ) -> PeerAuthentication {
        PeerAuthentication {
            name: name.into(),
            namespace: ns.into(),
            selector: labels(selector),
            mode,
            port_level: ports.iter().copied().collect(),
        }
    }

    use MtlsMode::*;

    #[test]
    fn precedence_table() {
        let app = [("app", "httpbin")];
        let mesh = pa("mesh", "istio-system", &[], Some(Strict), &[]);
        let ns = pa("ns", "test", &[], Some(Disable), &[]);
        let wl = pa("wl", "test", &app, Some(Permissive), &[(9080, Disable)]);
        let wl_unset = pa("wl-unset", "test", &app, None, &[(9080, Strict)]);
        let ns_unset = pa("ns-unset", "test", &[], None, &[]);
        let other_ns = pa("other", "other", &[], Some(Disable), &[]);
        let other_app = pa("other-app", "test", &[("app", "x")], Some(Disable), &[]);
        let root_selector = pa("root-sel", "istio-system", &app, Some(Disable), &[]);

        // (policies, port, want mode, decided by)
        let table: Vec<(Vec<&PeerAuthentication>, Option<u16>, MtlsMode, MtlsLevel)> = vec![
            (vec![], None, Permissive, MtlsLevel::Default),
            (vec![&mesh], None, Strict, MtlsLevel::Mesh),
            (vec![&mesh, &ns], None, Disable, MtlsLevel::Namespace),
            (vec![&mesh, &ns, &wl], None, Permissive, MtlsLevel::Workload),
            (vec![&mesh, &ns, &wl], Some(9080), Disable, MtlsLevel::Port),
            (
                vec![&mesh, &ns, &wl],
                Some(8080),
                Permissive,
                MtlsLevel::Workload,
            ),
            (
                vec![&mesh, &ns, &wl_unset],
                None,
                Disable,
                MtlsLevel::Namespace,
            ),
            (
                vec![&mesh, &ns, &wl_unset],
                Some(9080),
                Strict,
                MtlsLevel::Port,
            ),
            (vec![&mesh, &ns_unset], None, Strict, MtlsLevel::Mesh),
            (
                vec![&mesh, &other_ns, &other_app],
                None,
                Strict,
                MtlsLevel::Mesh,
            ),
            (vec![&root_selector], None, Permissive, MtlsLevel::Default),
        ];
        for (i, (policies, port, want, level)) in table.into_iter().enumerate() {
            let policies: Vec<PeerAuthentication> = policies.into_iter().cloned().collect();
            let got = resolve_mtls_mode(&policies, "istio-system", "test", &labels(&app), port);
            assert_eq!(got.mode, want, "case {i}");
            assert_eq!(got.trace.decided_by, level, "case {i}");
        }
    }

    /// docs-peerauthn-portlevelmtls-disable.yaml: STRICT for httpbin, DISABLE on 9080.
    #[test]
    fn sample_port_level_disable() {
        let policy = pa(
            "disable-peer-auth-for-external-mtls-port",
            "test",
            &[("app", "httpbin")],
            Some(Strict),
            &[(9080, Disable)],
        );
        let wl = labels(&[("app", "httpbin")]);
        let at = |port| {
            resolve_mtls_mode(
                std::slice::from_ref(&policy),
                "istio-system",
                "test",
                &wl,
                port,
            )
        };
        assert_eq!(at(Some(9080)).mode, Disable);
        assert_eq!(at(Some(8000)).mode, Strict);
        assert_eq!(at(None).mode, Strict);
        let other = resolve_mtls_mode(
            std::slice::from_ref(&policy),
            "istio-system",
            "test",
            &labels(&[("app", "sleep")]),
            Some(9080),
        );
        assert_eq!(other.mode, Permissive);
    }

    /// sectest-peerauthn-per-port-mtls.yaml: DISABLE for app b, STRICT on 8090.
    #[test]
    fn sample_per_port_strict() {
        let policy = pa(
            "per-port",
            "ns",
            &[("app", "b")],
            Some(Disable),
            &[(8090, Strict)],
        );
        let wl = labels(&[("app", "b")]);
        let policies = [policy];
        assert_eq!(
            resolve_mtls_mode(&policies, "istio-system", "ns", &wl, Some(8090)).mode,
            Strict
        );
        assert_eq!(
            resolve_mtls_mode(&policies, "istio-system", "ns", &wl, Some(8080)).mode,
            Disable
        );
    }

    /// docs-mtls-migration-peerauthn-strict-namespace.yaml (applied in the root
    /// namespace: mesh-wide STRICT) and tests-authn-peerauthn-permissive.yaml.
    #[test]
    fn sample_mesh_strict_and_namespace_permissive() {
        let mesh = pa("default", "istio-system", &[], Some(Strict), &[]);
        let ns = pa("default", "default", &[], Some(Permissive), &[]);
        let wl = labels(&[("app", "x")]);
        let policies = [mesh.clone(), ns];
        assert_eq!(
            resolve_mtls_mode(&[mesh], "istio-system", "foo", &wl, None).mode,
            Strict
        );
        let got = resolve_mtls_mode(&policies, "istio-system", "default", &wl, None);
        assert_eq!(got.mode, Permissive);
        assert_eq!(got.trace.steps.len(), 3);
        assert_eq!(got.trace.policy, Some(PolicyRef::of("default", "default")));
    }

    #[test]
    fn duplicates_and_port_level_without_selector_are_reported() {
        let first = pa("a", "test", &[], Some(Strict), &[(80, Disable)]);
        let second = pa("b", "test", &[], Some(Disable), &[]);
        let got = resolve_mtls_mode(
            &[first, second],
            "istio-system",
            "test",
            &BTreeMap::new(),
            Some(80),
        );
        assert_eq!(got.mode, Strict, "earlier policy wins; port level ignored");
        assert_eq!(
            got.trace.ignored,
            vec![
                IgnoredPolicy {
                    policy: PolicyRef::of("test", "a"),
                    reason: IgnoredReason::PortLevelWithoutSelector
                },
                IgnoredPolicy {
                    policy: PolicyRef::of("test", "b"),
                    reason: IgnoredReason::ShadowedByEarlierPolicy
                },
            ]
        );
        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(json["mode"], "strict");
        assert_eq!(json["trace"]["decided_by"], "namespace");
        assert_eq!(
            json["trace"]["ignored"][1]["reason"],
            "shadowed_by_earlier_policy"
        );
    }
}
