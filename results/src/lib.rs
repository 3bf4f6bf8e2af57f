//! `results` — the one result schema every meshrig run writes, and the HDR histogram
//! helpers behind it.
//!
//! IO-free by design: no sockets, no runtime, no clock. The load generator, the
//! simulator and the real-mode runner all fill in these types, so their output can be
//! compared row by row and merged. The schema is documented for users in
//! `docs/results.md`; every field carries its unit in its name.

pub mod fortio;
pub mod histogram;
pub mod recorder;
pub mod scenario;
pub mod schema;
pub mod units;

pub use histogram::{Recorder, Summary};
pub use schema::*;
