//! `mesh-core` — every decision the mesh makes, written once.
//!
//! The Istio configuration model (parsing, validation) and the sans-IO policy engine:
//! routing, load balancing, retries with budgets, outlier detection, connection-pool
//! limits, fault injection, authorization, and the workload-certificate lifecycle. The
//! real proxy (tokio) and the simulator both drive this crate, so what the simulator
//! predicts is about the same logic the proxy runs.
//!
//! What it is not: it never reads the clock (`now: Time` is passed in), never uses
//! unseeded randomness (`rng: &mut impl rand::Rng` is passed in), never touches a
//! socket, spawns a task or iterates a `HashMap` where the order could leak into a
//! decision. `clippy.toml` beside this crate enforces it. Decisions are returned as
//! values, with a decision trace for teaching and the event log.
//!
//! Modules:
//! * [`config`] — Istio resources from YAML, with positions; validation.
//! * [`compile`] — configuration set → route table and policies.
//! * [`route`] — VirtualService matching and the routing decision.
//! * [`cost`] — what a decision costs, for the simulator's CPU model.
//! * [`lb`] — load balancers and locality-aware failover.
//! * [`outlier`] — outlier detection (ejection) with Envoy semantics.
//! * [`retry`] — retry policy, backoff and retry budgets.
//! * [`pool`] — connection-pool limits (circuit breaking).
//! * [`security`] — SPIFFE IDs, PeerAuthentication, client TLS modes, AuthorizationPolicy.
//! * [`identity`] — the workload certificate lifecycle state machine.

pub mod compile;
pub mod config;
pub mod cost;
pub mod endpoint;
pub mod identity;
pub mod lb;
pub mod outlier;
pub mod pool;
pub mod retry;
pub mod route;
pub mod security;
pub mod time;

pub use endpoint::{Endpoint, EndpointId, Locality};

pub use time::Time;

/// Helpers shared by this crate's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// Istio's public samples: `$MESHRIG_ISTIO_SAMPLES`, or `shared/testdata/istio`
    /// beside the repository (where CI and every checkout have it).
    pub fn istio_samples_dir() -> PathBuf {
        std::env::var_os("MESHRIG_ISTIO_SAMPLES")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/istio")
            })
    }

    /// One sample as a `(name, contents)` source for `ConfigSet::load`.
    pub fn istio_sample(name: &str) -> (String, String) {
        let path = istio_samples_dir().join(name);
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        (name.to_owned(), text)
    }
}
