//! Istio's authorization evaluation order, with a decision trace.
//!
//! For one request to one workload (Istio "Authorization Policy" concepts page, and
//! the layering of Envoy filters Istio configures):
//!
//! 1. **CUSTOM**: if a CUSTOM policy matches, the request must pass the external
//!    authorizer first. mesh-core cannot call it, so the verdict is
//!    [`Verdict::Custom`]: the provider to ask, and what the local policies decide if
//!    it allows ([`Verdict::after_external_check`]). If it denies, the request is
//!    denied.
//! 2. **DENY**: any matching DENY policy denies.
//! 3. **ALLOW**: if no ALLOW policy applies to the workload, the request is allowed;
//!    otherwise it is allowed only if one matches.
//! 4. **AUDIT** policies never change the verdict; matches are listed in the trace.
//!
//! Applicability: a policy applies when its selector matches the workload's labels
//! (an empty selector matches all) and it lives in the workload's namespace or in the
//! root namespace (mesh-wide). Policies are evaluated, and reported, in the order
//! CUSTOM, DENY, ALLOW, AUDIT, then by namespace and name, so the trace does not
//! depend on the input order.

use std::collections::BTreeMap;

use serde::Serialize;

use super::matching::{http_only_fields, match_rule};
use super::policy::{Action, AuthorizationPolicy};
use super::request::{Protocol, RequestAttributes};
use crate::security::PolicyRef;
use crate::security::peer_authn::selector_matches;

/// Istio's default root namespace; policies there apply mesh-wide.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The outcome for the request: allowed or denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Allow,
    Deny,
}

/// The verdict of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
    /// A CUSTOM policy matched: ask the external authorizer `provider`. If it denies,
    /// the request is denied; if it allows, the result is `on_external_allow` (what
    /// the DENY and ALLOW policies decided).
    Custom {
        provider: String,
        on_external_allow: Access,
    },
}

impl Verdict {
    /// The final access once the external authorizer has answered (`external_allows`);
    /// verdicts that need no external check ignore it.
    pub fn after_external_check(&self, external_allows: bool) -> Access {
        match self {
            Verdict::Allow => Access::Allow,
            Verdict::Deny => Access::Deny,
            Verdict::Custom { .. } if !external_allows => Access::Deny,
            Verdict::Custom {
                on_external_allow, ..
            } => *on_external_allow,
        }
    }
}

impl From<Access> for Verdict {
    fn from(access: Access) -> Self {
        match access {
            Access::Allow => Verdict::Allow,
            Access::Deny => Verdict::Deny,
        }
    }
}

/// Why the local (DENY/ALLOW) part decided as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthzReason {
    /// A DENY policy matched.
    DenyMatched,
    /// An ALLOW policy matched and no DENY did.
    AllowMatched,
    /// ALLOW policies apply to the workload but none matched: denied.
    NoAllowMatched,
    /// No ALLOW policy applies to the workload (and no DENY matched): allowed.
    NoAllowPolicies,
}

/// Where an applicable policy comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyScope {
    /// The root namespace: applies mesh-wide.
    Mesh,
    /// The workload's namespace.
    Namespace,
}

/// A policy whose rule matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyMatch {
    pub policy: PolicyRef,
    pub action: Action,
    /// Index into the policy's `rules`.
    pub rule_index: usize,
    /// Every condition of the rule that held (`to[0].methods: "GET" matched "GET"`).
    pub because: Vec<String>,
}

/// How one rule fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    Matched {
        because: Vec<String>,
    },
    NotMatched {
        because: String,
    },
    /// An ALLOW rule with HTTP-only fields, on a TCP request: Istio drops the rule.
    SkippedHttpOnlyOnTcp {
        fields: Vec<String>,
    },
}

/// One rule's evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleEvaluation {
    pub index: usize,
    #[serde(flatten)]
    pub outcome: RuleOutcome,
    /// DENY/AUDIT/CUSTOM on TCP: HTTP-only fields dropped, making the rule wider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_http_only_fields: Vec<String>,
}

/// One applicable policy's evaluation. Rules are evaluated in order up to the first
/// match; a policy with no rules matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyEvaluation {
    pub policy: PolicyRef,
    pub action: Action,
    pub scope: PolicyScope,
    pub rules: Vec<RuleEvaluation>,
    pub matched_rule: Option<usize>,
}

/// The decision trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzTrace {
    pub reason: AuthzReason,
    /// The DENY or ALLOW match that decided, if one did.
    pub decided_by: Option<PolicyMatch>,
    /// The CUSTOM match that requires the external check, if any.
    pub custom: Option<PolicyMatch>,
    /// AUDIT policies that matched.
    pub audit: Vec<PolicyMatch>,
    /// Every applicable policy, in evaluation order.
    pub evaluated: Vec<PolicyEvaluation>,
}

/// A verdict with its trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthzDecision {
    pub verdict: Verdict,
    pub trace: AuthzTrace,
}

fn action_rank(action: Action) -> u8 {
    match action {
        Action::Custom => 0,
        Action::Deny => 1,
        Action::Allow => 2,
        Action::Audit => 3,
    }
}

/// Authorizes one request (or TCP connection) arriving at a workload.
///
/// Call it on the server side for each request (HTTP) or connection (TCP), after mTLS
/// has established the peer. `policies` are all AuthorizationPolicies in the mesh;
/// the function picks the applicable ones. `root_namespace` is usually
/// [`DEFAULT_ROOT_NAMESPACE`].
pub fn evaluate(
    policies: &[AuthorizationPolicy],
    request: &RequestAttributes,
    workload_labels: &BTreeMap<String, String>,
    workload_namespace: &str,
    root_namespace: &str,
) -> AuthzDecision {
    let mut applicable: Vec<(&AuthorizationPolicy, PolicyScope)> = policies
        .iter()
        .filter(|p| selector_matches(&p.selector, workload_labels))
        .filter_map(|p| {
            if p.namespace == root_namespace {
                Some((p, PolicyScope::Mesh))
            } else if p.namespace == workload_namespace {
                Some((p, PolicyScope::Namespace))
            } else {
                None
            }
        })
        .collect();
    applicable.sort_by(|(a, _), (b, _)| {
        (action_rank(a.action), &a.namespace, &a.name).cmp(&(
            action_rank(b.action),
            &b.namespace,
            &b.name,
        ))
    });

    let mut evaluated = Vec::with_capacity(applicable.len());
    let mut matches: Vec<(PolicyMatch, Option<&str>)> = Vec::new();
    for (policy, scope) in &applicable {
        let (evaluation, matched) = evaluate_policy(policy, *scope, request);
        evaluated.push(evaluation);
        if let Some(m) = matched {
            matches.push((m, policy.provider.as_deref()));
        }
    }

    let first = |action| matches.iter().find(|(m, _)| m.action == action);
    let allow_present = applicable.iter().any(|(p, _)| p.action == Action::Allow);
    let (access, reason, decided_by) = if let Some((m, _)) = first(Action::Deny) {
        (Access::Deny, AuthzReason::DenyMatched, Some(m.clone()))
    } else if !allow_present {
        (Access::Allow, AuthzReason::NoAllowPolicies, None)
    } else if let Some((m, _)) = first(Action::Allow) {
        (Access::Allow, AuthzReason::AllowMatched, Some(m.clone()))
    } else {
        (Access::Deny, AuthzReason::NoAllowMatched, None)
    };
    let custom = first(Action::Custom);
    let verdict = match custom {
        Some((_, provider)) => Verdict::Custom {
            provider: provider.unwrap_or("").to_owned(),
            on_external_allow: access,
        },
        None => access.into(),
    };
    let custom = custom.map(|(m, _)| m.clone());
    let audit = matches
        .iter()
        .filter(|(m, _)| m.action == Action::Audit)
        .map(|(m, _)| m.clone())
        .collect();
    AuthzDecision {
        verdict,
        trace: AuthzTrace {
            reason,
            decided_by,
            custom,
            audit,
            evaluated,
        },
    }
}

fn evaluate_policy(
    policy: &AuthorizationPolicy,
    scope: PolicyScope,
    request: &RequestAttributes,
) -> (PolicyEvaluation, Option<PolicyMatch>) {
    let policy_ref = PolicyRef::of(&policy.namespace, &policy.name);
    let tcp = request.protocol == Protocol::Tcp;
    let mut rules = Vec::new();
    let mut matched = None;
    for (index, rule) in policy.rules.iter().enumerate() {
        let http_only = if tcp {
            http_only_fields(rule)
        } else {
            Vec::new()
        };
        if policy.action == Action::Allow && !http_only.is_empty() {
            rules.push(RuleEvaluation {
                index,
                outcome: RuleOutcome::SkippedHttpOnlyOnTcp { fields: http_only },
                ignored_http_only_fields: Vec::new(),
            });
            continue;
        }
        let ignore = !http_only.is_empty();
        let outcome = match match_rule(rule, request, &policy.namespace, ignore) {
            Ok(because) => {
                matched = Some(PolicyMatch {
                    policy: policy_ref.clone(),
                    action: policy.action,
                    rule_index: index,
                    because: because.clone(),
                });
                RuleOutcome::Matched { because }
            }
            Err(because) => RuleOutcome::NotMatched { because },
        };
        rules.push(RuleEvaluation {
            index,
            outcome,
            ignored_http_only_fields: http_only,
        });
        if matched.is_some() {
            break;
        }
    }
    let evaluation = PolicyEvaluation {
        policy: policy_ref,
        action: policy.action,
        scope,
        rules,
        matched_rule: matched.as_ref().map(|m| m.rule_index),
    };
    (evaluation, matched)
}
