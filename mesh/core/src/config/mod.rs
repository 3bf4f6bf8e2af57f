//! Istio configuration: the typed model of networking.istio.io and security.istio.io
//! resources, loaded from YAML with positions, and validated.
//!
//! Load a configuration set with [`ConfigSet::load`]: the caller reads the files and
//! passes `(display path, contents)` pairs (this module does no IO). Every document of
//! every file is read; Istio kinds (VirtualService, DestinationRule, ServiceEntry,
//! Gateway, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication)
//! become typed [`Resource`]s; Kubernetes Services, Deployments, Pods, ServiceAccounts
//! and Namespaces become topology; other kinds are skipped with a note. Problems come
//! back as [`Finding`]s, `file:line: field.path: message`, all of them at once.
//!
//! Modules:
//! * [`model`] — the typed resources (one module per kind).
//! * [`values`] — durations, percentages, weights, regexes: what Istio accepts.
//! * [`host`] — short host names to FQDNs ([`fqdn`]).
//! * `set` — [`ConfigSet`]: loading, duplicates, accessors.
//! * [`validate`] — checks across resources (subset references, host claims).
//! * `decode`, `yaml` — the position-keeping decoder (unknown fields with the closest
//!   known name, snake_case accepted).
//!
//! See `docs/istio-config.md` for the field table: which fields are parsed and which
//! are validated, and by which test.

#[macro_use]
mod macros;

mod decode;
mod decode_impls;
mod finding;
pub mod host;
pub mod model;
mod set;
pub mod validate;
pub mod values;
pub mod yaml;

#[cfg(test)]
mod samples_tests;
#[cfg(test)]
mod tests;

pub use finding::{Finding, Severity, Tally};
pub use host::fqdn;
pub use model::destination_rule::DestinationRule;
pub use model::gateway::Gateway;
pub use model::k8s::{Namespace, Service, ServiceAccount, Workload, WorkloadKind};
pub use model::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
pub use model::service_entry::ServiceEntry;
pub use model::sidecar::Sidecar;
pub use model::virtual_service::VirtualService;
pub use model::{DEFAULT_NAMESPACE, Kind, Metadata, Origin, Resource};
pub use set::ConfigSet;
pub use values::{DurationError, parse_duration};
