//! `scenario` — the scenario format shared by `meshrig run --mode sim|real` and
//! `meshrig validate`: the model, its parser (with file:line positions), validation,
//! and the assertion evaluator. IO-free: files are read by the caller.
//!
//! * [`parse`] — YAML text → [`Scenario`], every problem as a
//!   [`Finding`](mesh_core::config::Finding) (`file:line: field.path: message`),
//!   cross-references (services, versions, zones) checked before anything runs.
//! * [`load`] — [`parse`], then the Istio configuration the scenario references (read
//!   through a callback), loaded with [`mesh_core::config::ConfigSet::load`] and
//!   checked against the topology; the scenario hash.
//! * [`assert`] — the assertion grammar and its evaluator over
//!   [`results::scenario::ScenarioResult`].
//! * [`model`], [`dist`] — the plain types the drivers read.
//!
//! What it is not: no sampling (drivers sample [`Dist`] with their seeded RNG), no IO,
//! no clock. The format is documented in `docs/scenarios.md`.

pub mod assert;
pub mod dist;
mod load;
pub mod model;
mod parse;
mod validate;

pub use validate::EVENT_KINDS;

#[cfg(test)]
mod tests;

pub use assert::{AssertExpr, evaluate, is_timing, windows_needed};
pub use dist::Dist;
pub use load::{Loaded, load};
pub use model::*;
pub use parse::{
    DEFAULT_COST_TABLE, DEFAULT_REGION, DEFAULT_SEED, DEFAULT_TIMEOUT_NS, is_scenario, parse,
};
