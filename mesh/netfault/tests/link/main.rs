//! Integration tests of `netfault` links over real sockets on 127.0.0.1.
//!
//! Timing assertions are lower bounds (a slow machine only makes them hold more
//! easily) or upper bounds with an order of magnitude of headroom; "nothing arrived"
//! checks can only pass more easily on a slow machine. Every test is bounded by a
//! timeout so a bug fails instead of hanging.

mod faults;
mod lifecycle;
mod passthrough;
mod shaping;
mod support;
