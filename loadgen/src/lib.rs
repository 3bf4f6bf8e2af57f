//! `loadgen` — meshrig's load engine and test server.
//!
//! * [`engine`]: drives HTTP/1.1 and HTTP/2 load against one or more targets, open loop
//!   (a global schedule of intended send times, latency measured from the intended time
//!   so coordinated omission is corrected) or closed loop (back-to-back per connection).
//!   The `meshrig load` command and the scenario runner both drive it.
//! * [`schedule`]: rate profiles (constant, ramp, steps) and the intended send times
//!   they produce — pure, so the simulator can share them.
//! * [`report`]: turns an engine report into the `results` schema.
//! * [`echo`]: the `meshrig echo` server, with Fortio-compatible query parameters.
//!
//! This crate does IO (tokio, hyper, rustls). The result types it fills in live in the
//! IO-free `results` crate so the simulator can share them.

mod client;
pub mod echo;
pub mod engine;
pub mod h1;
pub mod pacer;
pub mod pem;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod sys;
pub mod tls;

pub use client::HttpVersion;
pub use engine::{
    ConfigError, Observed, Observer, ProgressFn, RunOptions, StopHandle, TargetConfig,
    TargetProgress, TargetReport, run,
};
pub use schedule::{RateProfile, Step};
