//! AuthorizationPolicy: Istio's access control, evaluated per request.
//!
//! * [`policy`] — the normalized policy model (what the config layer converts to).
//! * [`request`] — the request attributes authorization reads.
//! * [`evaluate()`] — Istio's evaluation order (CUSTOM, DENY, ALLOW; AUDIT recorded)
//!   returning an [`AuthzDecision`] with a trace of which policy and rule matched, and
//!   why.
//!
//! Semantics follow Istio's RBAC generator (`pilot/pkg/security/authz/model`) and the
//! AuthorizationPolicy reference; where meshrig departs from or simplifies Istio, the
//! item's docs say so:
//!
//! * request principals match the whole `<iss>/<sub>` string with the usual pattern
//!   rules (Istio splits iss and sub first; the results agree unless a `sub` contains
//!   `/`);
//! * `request.auth.claims[...]` reads [`RequestAttributes::claims`], which the driver
//!   fills from a validated JWT (mesh-core does not validate JWTs);
//! * `experimental.envoy.filters.*` keys are not supported;
//! * dry-run (`istio.io/dry-run`) and `targetRef` are not modelled.

mod evaluate;
mod matching;
pub mod policy;
pub mod request;

#[cfg(test)]
mod tests;

pub use evaluate::{
    Access, AuthzDecision, AuthzReason, AuthzTrace, DEFAULT_ROOT_NAMESPACE, PolicyEvaluation,
    PolicyMatch, PolicyScope, RuleEvaluation, RuleOutcome, Verdict, evaluate,
};
pub use matching::http_only_fields;
pub use policy::{
    Action, AuthorizationPolicy, AuthzError, Condition, ConditionKey, Operation, Rule, Source,
};
pub use request::{Protocol, RequestAttributes};
