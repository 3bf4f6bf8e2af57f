//! The listener side of a link: [`Link`], its builder and its runtime handle.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::conn::{reset, serve};
use crate::fault::stream_seed;
use crate::stats::Counters;
use crate::{Direction, Faults, Latency, LinkError, LinkStats, Probability, ResetScope};

/// How long the accept loop backs off after an accept error (e.g. out of file descriptors).
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// Settings fixed when a link starts.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) seed: u64,
    pub(crate) queue_limit_bytes: usize,
    pub(crate) max_connections: usize,
    pub(crate) connect_timeout: Duration,
}

/// State shared by the accept loop, every connection and every [`LinkHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) local_addr: SocketAddr,
    pub(crate) upstream: SocketAddr,
    pub(crate) config: Config,
    pub(crate) faults: watch::Sender<Faults>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) counters: Counters,
}

// === impl LinkBuilder ===

/// Configures a [`Link`]. Every setting has a default, listed on its setter.
#[derive(Clone, Debug)]
pub struct LinkBuilder {
    upstream: SocketAddr,
    listen_addr: SocketAddr,
    config: Config,
    faults: Faults,
}

impl LinkBuilder {
    /// Address to listen on. Default `127.0.0.1:0` (an ephemeral loopback port; read
    /// the bound one from [`Link::local_addr`]).
    pub fn listen_addr(mut self, addr: SocketAddr) -> Self {
        self.listen_addr = addr;
        self
    }

    /// Port to listen on, on `127.0.0.1`. `0` picks an ephemeral port. Default `0`.
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        self
    }

    /// Seed of every random draw (jitter, resets). Each connection direction draws
    /// from its own stream derived from this seed and the connection's accept order.
    /// Default `0`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Most bytes queued inside the link per connection per direction (waiting out
    /// latency, a bandwidth cap or a hold). When full, the link stops reading from
    /// the sender. Values below 1 are raised to 1. Default 4 MiB.
    pub fn queue_limit_bytes(mut self, bytes: usize) -> Self {
        self.config.queue_limit_bytes = bytes.max(1);
        self
    }

    /// Most connections proxied at once; further ones are reset on accept. Default 1024.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long to wait for the upstream to accept a connection before resetting the
    /// client. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Faults in force from the first connection on. Default: none.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Binds the listener and starts accepting. Must be called inside a tokio runtime.
    pub async fn bind(self) -> Result<Link, LinkError> {
        let bind_error = |source| LinkError::Bind {
            addr: self.listen_addr,
            source,
        };
        let listener = TcpListener::bind(self.listen_addr)
            .await
            .map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            local_addr,
            upstream: self.upstream,
            config: self.config,
            faults: watch::Sender::new(self.faults),
            shutdown,
            counters: Counters::default(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown_rx));
        Ok(Link {
            handle: LinkHandle { shared },
            task: Some(task),
        })
    }
}

// === impl Link ===

/// A fault-injecting TCP proxy: accepts connections on [`local_addr`](Self::local_addr)
/// and forwards each to the upstream address, applying the link's [`Faults`].
///
/// Dropping the link shuts it down: the listener closes and every proxied connection
/// is closed. [`Link::shutdown`] does the same and waits until it is done.
#[derive(Debug)]
pub struct Link {
    handle: LinkHandle,
    task: Option<JoinHandle<()>>,
}

impl Link {
    /// A builder for a link to `upstream`, with every default.
    pub fn builder(upstream: SocketAddr) -> LinkBuilder {
        LinkBuilder {
            upstream,
            listen_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            config: Config {
                seed: 0,
                queue_limit_bytes: 4 * 1024 * 1024,
                max_connections: 1024,
                connect_timeout: Duration::from_secs(5),
            },
            faults: Faults::default(),
        }
    }

    /// A link to `upstream` on an ephemeral loopback port, with every default.
    pub async fn bind(upstream: SocketAddr) -> Result<Link, LinkError> {
        Link::builder(upstream).bind().await
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// The address connections are forwarded to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.handle.shared.upstream
    }

    /// A handle to change faults and read stats, usable from anywhere.
    pub fn handle(&self) -> LinkHandle {
        self.handle.clone()
    }

    /// Stops the link and waits until the listener is closed (the port is free) and
    /// every proxied connection is closed. Bytes still queued in the link are dropped.
    pub async fn shutdown(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            // The accept loop neither panics nor gets cancelled by us; either way it is over.
            let _ = task.await;
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

// === impl LinkHandle ===

/// Changes a link's faults at runtime and reads its counters. Cheap to clone.
///
/// Every change applies to existing connections from their next chunk on (a chunk
/// already stamped with a release time keeps it) and to all later connections.
#[derive(Clone, Debug)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

impl LinkHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.shared.faults.borrow().clone()
    }

    /// Replaces all faults at once.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.send_replace(faults);
    }

    /// Removes every fault: heals, releases, no latency, no cap, no resets.
    pub fn clear(&self) {
        self.set_faults(Faults::default());
    }

    /// Sets (or with `None` removes) the delay of `dir`. Applies to chunks read from
    /// now on; chunks already queued keep their release time.
    pub fn set_latency(&self, dir: Direction, latency: Option<Latency>) {
        self.modify(|f| f.direction_mut(dir).latency = latency);
    }

    /// Caps `dir` at `bytes_per_sec` per connection, or with `None` removes the cap.
    pub fn set_bandwidth(&self, dir: Direction, bytes_per_sec: Option<NonZeroU64>) {
        self.modify(|f| f.direction_mut(dir).bandwidth_bytes_per_sec = bytes_per_sec);
    }

    /// Sets the probability that a connection ([`ResetScope::Connection`]) or a chunk
    /// ([`ResetScope::Chunk`]) is answered with a TCP reset.
    pub fn set_reset_probability(&self, scope: ResetScope, p: Probability) {
        self.modify(|f| match scope {
            ResetScope::Connection => f.reset_per_connection = p,
            ResetScope::Chunk => f.reset_per_chunk = p,
        });
    }

    /// Partitions both directions: existing connections stall, new ones are blackholed.
    pub fn partition(&self) {
        self.modify(|f| {
            for dir in Direction::BOTH {
                f.direction_mut(dir).partitioned = true;
            }
        });
    }

    /// Partitions `dir` only: bytes in `dir` stall while the other direction flows.
    /// The other direction is left as it was. New connections are blackholed, since
    /// a handshake cannot complete across a one-way partition either.
    pub fn partition_one_way(&self, dir: Direction) {
        self.modify(|f| f.direction_mut(dir).partitioned = true);
    }

    /// Ends every partition; stalled bytes and blackholed connections resume.
    pub fn heal(&self) {
        self.modify(|f| {
            for dir in Direction::BOTH {
                f.direction_mut(dir).partitioned = false;
            }
        });
    }

    /// Holds both directions: bytes keep being read and queued (up to the queue
    /// limit) but none are delivered until [`release`](Self::release).
    pub fn hold(&self) {
        self.modify(|f| {
            for dir in Direction::BOTH {
                f.direction_mut(dir).held = true;
            }
        });
    }

    /// Delivers everything held, in order, and stops holding.
    pub fn release(&self) {
        self.modify(|f| {
            for dir in Direction::BOTH {
                f.direction_mut(dir).held = false;
            }
        });
    }

    /// A snapshot of the link's counters.
    pub fn stats(&self) -> LinkStats {
        self.shared.counters.snapshot()
    }

    /// Stops the link without waiting: the listener closes and every proxied
    /// connection is closed. Idempotent. See [`Link::shutdown`] to wait.
    pub fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    /// Whether [`shutdown`](Self::shutdown) was called or the [`Link`] dropped.
    pub fn is_shut_down(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    fn modify(&self, edit: impl FnOnce(&mut Faults)) {
        self.shared.faults.send_modify(edit);
    }
}

// === accept loop ===

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let mut next_conn_id: u64 = 0;
    // Stream 0: per-connection reset draws, in accept order.
    let mut rng = SmallRng::seed_from_u64(stream_seed(shared.config.seed, 0));
    let counters = &shared.counters;
    loop {
        tokio::select! {
            _ = shutdown_signalled(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((client, _peer)) = accepted else {
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                };
                Counters::bump(&counters.connections_accepted);
                while connections.try_join_next().is_some() {}
                if connections.len() >= shared.config.max_connections {
                    Counters::bump(&counters.connections_refused);
                    reset(&client);
                    continue;
                }
                let reset_p = shared.faults.borrow().reset_per_connection;
                if reset_p.draw(&mut rng) {
                    Counters::bump(&counters.resets_injected);
                    reset(&client);
                    continue;
                }
                let conn_id = next_conn_id;
                next_conn_id += 1;
                connections.spawn(connection_task(client, conn_id, Arc::clone(&shared)));
            }
        }
    }
    // Close the port first, then every connection (aborting any that is mid-await).
    drop(listener);
    connections.shutdown().await;
}

async fn connection_task(client: tokio::net::TcpStream, conn_id: u64, shared: Arc<Shared>) {
    let _active = ActiveGuard::new(&shared.counters);
    let mut shutdown = shared.shutdown.subscribe();
    tokio::select! {
        _ = shutdown_signalled(&mut shutdown) => {}
        _ = serve(client, conn_id, Arc::clone(&shared)) => {}
    }
}

/// Resolves once shutdown is requested (or nobody can request it any more).
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Counts a connection as active for as long as it lives, however its task ends.
struct ActiveGuard<'a>(&'a Counters);

impl<'a> ActiveGuard<'a> {
    fn new(counters: &'a Counters) -> Self {
        counters.connections_active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(counters)
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.connections_active.fetch_sub(1, Ordering::Relaxed);
    }
}
