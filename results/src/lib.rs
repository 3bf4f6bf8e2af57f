//! `results` — the one result schema every meshrig run writes, and the HDR histogram
//! helpers behind it.
//!
//! IO-free by design: no sockets, no runtime, no clock. The load generator, the
//! simulator and the real-mode runner all fill in these types, so their output can be
//! compared row by row and merged.

pub mod units;
