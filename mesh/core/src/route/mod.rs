//! Routing: which VirtualService and rule a request matches, and what the rule asks of
//! the proxy.
//!
//! * [`table`] — VirtualServices compiled for matching (regexes built, hosts indexed).
//! * [`decide`](mod@decide) — the per-request decision and its trace.
//!
//! Semantics follow Istio: an exact host beats a wildcard, the most specific wildcard
//! wins, a VirtualService without `gateways` binds to the implicit `mesh` gateway,
//! rules are tried in order and the first match wins, a host claimed by a
//! VirtualService with no matching rule is a 404 decided by the client-side proxy, and
//! a host no VirtualService claims goes straight to its service with Istio's default
//! retry policy (2 retries) — made explicit in the decision.

pub mod decide;
pub mod table;

pub use decide::{
    Forward, HostMatch, RouteDecision, RouteOutcome, RouteRequest, RouteTrace, SkippedRule,
    UpstreamPlan, decide, expand_authority, pick_weighted,
};
pub use table::{
    Destination, Fault, HeaderOps, HttpMatch, HttpRoute, Mirror, Redirect, Rewrite, RouteAction,
    RouteRetries, RouteTable, StringMatch, ValueMatch, VirtualServiceRoutes, WeightedDestination,
};

#[cfg(test)]
mod tests;
