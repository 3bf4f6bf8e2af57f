//! AuthorizationPolicy tests: evaluation order (`order`), every field and its `not_`
//! form (`fields`), and Istio's documented samples (`samples`, `full_rule`).

use std::collections::BTreeMap;

use super::*;
use crate::security::spiffe::SpiffeId;

mod fields;
mod full_rule;
mod order;
mod samples;

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

pub(super) fn policy(
    name: &str,
    namespace: &str,
    selector: &[(&str, &str)],
    action: Action,
    rules: Vec<Rule>,
) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        namespace: namespace.into(),
        selector: labels(selector),
        action,
        provider: None,
        rules,
    }
}

pub(super) fn peer(ns: &str, sa: &str) -> SpiffeId {
    SpiffeId::workload("cluster.local", ns, sa).unwrap()
}

/// Evaluates for the workload `app=httpbin` in namespace `foo`.
pub(super) fn eval(policies: &[AuthorizationPolicy], request: &RequestAttributes) -> AuthzDecision {
    evaluate(
        policies,
        request,
        &labels(&[("app", "httpbin")]),
        "foo",
        DEFAULT_ROOT_NAMESPACE,
    )
}

pub(super) fn rule_to(op: Operation) -> Rule {
    Rule {
        to: vec![op],
        ..Rule::default()
    }
}

pub(super) fn rule_from(source: Source) -> Rule {
    Rule {
        from: vec![source],
        ..Rule::default()
    }
}

pub(super) fn methods(m: &[&str]) -> Operation {
    Operation {
        methods: strings(m),
        ..Operation::default()
    }
}

pub(super) fn get() -> RequestAttributes {
    RequestAttributes::http("GET", "/ip", "httpbin.foo", 8000).with_peer(&peer("foo", "sleep"))
}

pub(super) fn post() -> RequestAttributes {
    RequestAttributes::http("POST", "/ip", "httpbin.foo", 8000).with_peer(&peer("foo", "sleep"))
}

pub(super) fn allowed(d: &AuthzDecision) -> bool {
    match d.verdict {
        Verdict::Allow => true,
        Verdict::Deny => false,
        Verdict::Custom { .. } => panic!("unexpected CUSTOM verdict: {d:?}"),
    }
}
