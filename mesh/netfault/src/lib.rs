//! `netfault` — a userspace fault-injecting TCP proxy, in the spirit of Shopify's
//! [Toxiproxy], for meshrig's real-network mode (`meshrig run --mode real`).
//!
//! A [`Link`] listens on a local port and forwards every accepted TCP connection to
//! one upstream address, byte for byte in both directions, applying [`Faults`] per
//! [`Direction`] on the way. Sidecars talk to each other through links instead of
//! directly, so a scenario can slow, cap, cut or reset the network between them
//! without root and without `tc netem` (the kernels meshrig runs on have none).
//!
//! ```no_run
//! # async fn demo(server: std::net::SocketAddr) -> Result<(), netfault::LinkError> {
//! use std::time::Duration;
//! use netfault::{Direction, Latency, Link};
//!
//! let link = Link::builder(server).seed(42).bind().await?;
//! let net = link.handle();
//! net.set_latency(Direction::Upstream, Some(Latency::fixed(Duration::from_millis(50))));
//! // ... clients connect to link.local_addr() instead of `server` ...
//! net.partition();
//! net.heal();
//! link.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What it emulates
//!
//! - **Latency** ([`LinkHandle::set_latency`]): each chunk is delivered `delay` (plus a
//!   seeded uniform jitter) after it was read. Chunks wait in a queue with release
//!   times, so latency delays bytes without limiting throughput; jitter never reorders.
//! - **Bandwidth** ([`LinkHandle::set_bandwidth`]): a token bucket per connection per
//!   direction, with a burst of 50 ms worth of the rate.
//! - **Resets** ([`LinkHandle::set_reset_probability`]): per new connection, or per
//!   chunk read; the connection is closed with a TCP RST (`SO_LINGER` 0) on both sides.
//! - **Partitions** ([`LinkHandle::partition`], [`LinkHandle::partition_one_way`]):
//!   a partitioned direction neither reads nor delivers, so its sender stalls once its
//!   socket buffers fill. New connections are *blackholed*: the kernel has already
//!   completed the handshake, but the link does not connect upstream or forward a
//!   byte until [`heal`](LinkHandle::heal) — like a partition where SYNs vanish and are
//!   retried, rather than one that refuses. Clients see a hang, not an error; use their
//!   own timeouts (or the reset fault) to model a fast failure.
//! - **Hold / release** ([`LinkHandle::hold`], [`LinkHandle::release`]): bytes keep
//!   being accepted and queued but none are delivered; on release they are delivered
//!   in order. Unlike a partition, the sender sees its writes succeed until the queue
//!   limit is reached.
//!
//! Every change takes effect on existing connections at their next chunk (latency
//! applies to chunks read after the change). Random draws come from `SmallRng`s seeded
//! from [`LinkBuilder::seed`], one stream per connection direction in accept order, so
//! a seed gives the same draws regardless of how tasks interleave.
//!
//! # What it cannot emulate
//!
//! - **Packet loss.** The link sees a byte stream, not packets; on loopback TCP
//!   retransmission would hide loss anyway. Loss can only be modelled by what it does
//!   to TCP: extra delay (latency, jitter, hold) or a dead connection (reset,
//!   partition).
//! - **Packet-accurate timing.** Latency applies per chunk *as read* from the socket
//!   (up to 64 KiB); how bytes are split into chunks depends on the sender's writes
//!   and on scheduling, so the draws are reproducible but their alignment to bytes is
//!   not.
//! - **Handshake faults.** The kernel accepts connections before the link sees them,
//!   so a client's `connect` always succeeds quickly; partitions and resets show up
//!   on the first read or write instead.
//! - **Shared-link contention.** The bandwidth cap is per connection, not shared by
//!   all connections of a link.
//!
//! # Limits
//!
//! At most [`LinkBuilder::queue_limit_bytes`] are queued per connection per
//! direction (default 4 MiB); beyond that the link stops reading and TCP backpressure
//! reaches the sender. At most [`LinkBuilder::max_connections`] are proxied at once.
//! Dropping a [`Link`] (or [`LinkHandle::shutdown`]) closes the listener and every
//! proxied connection; no task outlives it.
//!
//! [Toxiproxy]: https://github.com/Shopify/toxiproxy

mod bucket;
mod conn;
mod error;
mod fault;
mod link;
mod stats;

pub use error::{InvalidProbability, LinkError};
pub use fault::{Direction, DirectionFaults, Faults, Latency, Probability, ResetScope};
pub use link::{Link, LinkBuilder, LinkHandle};
pub use stats::LinkStats;
