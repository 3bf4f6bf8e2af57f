//! Errors of this crate, one small type per concern.

use std::io;
use std::net::SocketAddr;

/// A link could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The listening socket could not be bound (port in use, address not local, ...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address that was asked for.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// A probability outside `[0, 1]` (or NaN).
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("probability must be a number in [0, 1], got {value}")]
pub struct InvalidProbability {
    /// The rejected value.
    pub value: f64,
}
