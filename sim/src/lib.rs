//! `sim` — the deterministic discrete-event simulator, the sim driver of mesh-core.
//!
//! A single-threaded discrete-event engine ([`engine`]) in virtual nanoseconds with one
//! seeded RNG ([`rng`]); latency and service-time distributions ([`dist`]); k-core
//! CPU queues per node ([`cpu`]); the network between zones with latency, bandwidth,
//! loss, partitions and holds ([`net`]); the CPU cost table mesh-core's `Cost`
//! descriptors are charged from ([`cost`]); and the simulated mesh itself ([`world`]):
//! instances with mesh-core sidecars, load generators, a control plane and a CA,
//! driven by a scenario. [`run`] runs one.
//!
//! What it is not: it never reads the clock, never uses unseeded randomness, never
//! iterates a hash map (`clippy.toml` enforces it), and has no tokio, hyper or rustls.
//! The same scenario, seed and binary give byte-identical results.

pub mod cost;
pub mod cpu;
pub mod dist;
pub mod engine;
pub mod net;
pub mod rng;
pub mod world;

pub use world::{BuildError, Progress, SimOptions, mean_rate, run, workload_target_name};
