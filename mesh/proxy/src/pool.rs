//! Upstream connections of the outbound listener, driven by mesh-core's
//! [`ConnectionPool`] (connection-pool limits, i.e. circuit breaking), as the simulator
//! drives it (`sim/src/world/request/send.rs`).
//!
//! One pool per (cluster, protocol). For each try, [`Pools::send`] asks the pool to
//! admit the request on the endpoint the load balancer picked: an [`Overflow`] is a
//! `503 UO` at once; otherwise the request is dispatched on a connection now or waits
//! for one. The pool's actions are carried out here: open a connection (HTTP/1.1 or
//! HTTP/2 prior knowledge), hand a connection to a waiting request, close one, fail a
//! waiting request. A request ends in the pool (its [`Lease`] is finished or dropped)
//! when its response body has been read to the end, or when it is abandoned.
//!
//! The pool's own retry budget is not consulted: retries are bounded by the
//! cluster's [`RetryBudget`](mesh_core::retry::RetryBudget) in [`crate::mesh`].
//! mesh-core's [`ClusterPolicy`](mesh_core::compile::ClusterPolicy) does not expose
//! `h2UpgradePolicy`, so the upstream protocol is the downstream one
//! (`useClientProtocol`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mesh_core::EndpointId;
use mesh_core::pool::{
    ConnectionId, ConnectionPool, ConnectionPoolLimits, Disposition, FailReason, Overflow,
    PoolAction, Protocol, RequestId,
};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::body::ProxyBody;
use crate::clock::Clock;
use crate::tls;
use crate::upstream::CONNECT_TIMEOUT;

/// Why a try got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The circuit breaker refused it: 503 `UO`.
    #[error("{0}")]
    Overflow(Overflow),
    #[error("connect to {address} failed")]
    Connect { address: String },
    #[error("upstream {address} reset: {reason}")]
    Reset { address: String, reason: String },
}

/// A pool's key: the cluster (host, subset) and whether it speaks HTTP/2.
type PoolKey = (String, Option<String>, bool);

/// The pools of one proxy, by (host, subset, protocol).
#[derive(Debug)]
pub struct Pools {
    clock: Clock,
    pools: Mutex<BTreeMap<PoolKey, Arc<PoolCell>>>,
}

/// One cluster's pool and the connections it manages.
#[derive(Debug)]
pub struct PoolCell {
    clock: Clock,
    protocol: Protocol,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    pool: ConnectionPool,
    connections: BTreeMap<ConnectionId, Conn>,
    waiting: BTreeMap<RequestId, oneshot::Sender<Result<ConnectionId, FailReason>>>,
    /// Each endpoint's address and how to connect to it.
    addresses: BTreeMap<EndpointId, (String, Arc<tls::Upstream>)>,
}

#[derive(Debug)]
enum Conn {
    Connecting,
    /// HTTP/1.1: the sender is out (in a [`Lease`]) while a request uses it.
    Http1(Option<http1::SendRequest<ProxyBody>>),
    Http2(http2::SendRequest<ProxyBody>),
}

/// A request's place in its pool; ends it there when finished or dropped.
#[derive(Debug)]
pub struct Lease {
    cell: Arc<PoolCell>,
    request: RequestId,
    connection: Option<ConnectionId>,
    http1: Option<http1::SendRequest<ProxyBody>>,
    ended: bool,
}

impl Pools {
    pub fn new(clock: Clock) -> Self {
        Pools {
            clock,
            pools: Mutex::new(BTreeMap::new()),
        }
    }

    /// The pool of (`host`, `subset`) for `http2` or HTTP/1.1, with `limits` in
    /// force (a changed configuration's limits apply from the next request on).
    pub fn pool(
        &self,
        host: &str,
        subset: Option<&str>,
        http2: bool,
        limits: ConnectionPoolLimits,
    ) -> Arc<PoolCell> {
        let key = (host.to_owned(), subset.map(str::to_owned), http2);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let cell = pools.entry(key).or_insert_with(|| {
            let protocol = if http2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            Arc::new(PoolCell {
                clock: self.clock,
                protocol,
                state: Mutex::new(PoolState {
                    pool: ConnectionPool::new(limits, protocol),
                    connections: BTreeMap::new(),
                    waiting: BTreeMap::new(),
                    addresses: BTreeMap::new(),
                }),
            })
        });
        {
            let mut st = cell.lock();
            if *st.pool.limits() != limits {
                st.pool.set_limits(limits);
            }
        }
        cell.clone()
    }
}

impl PoolCell {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Requests in flight and waiting, and open connections.
    pub fn load(&self) -> (u32, u32, u32) {
        let st = self.lock();
        (
            st.pool.active_requests(),
            st.pool.pending_requests(),
            st.pool.connections(),
        )
    }

    /// Sends `request` to `endpoint` at `address` through the pool; resolves with the
    /// response head and the request's [`Lease`] (finish it when the body has ended).
    pub async fn send(
        self: &Arc<Self>,
        endpoint: EndpointId,
        address: &str,
        upstream: &Arc<tls::Upstream>,
        request: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let reset = |reason: &str| SendError::Reset {
            address: address.to_owned(),
            reason: reason.to_owned(),
        };
        let (mut lease, wait) = {
            let mut st = self.lock();
            let known = st
                .addresses
                .get(&endpoint)
                .is_some_and(|(a, u)| a == address && Arc::ptr_eq(u, upstream));
            if !known {
                st.addresses
                    .insert(endpoint, (address.to_owned(), upstream.clone()));
            }
            let permit = st
                .pool
                .try_acquire_request(self.clock.now(), endpoint)
                .map_err(SendError::Overflow)?;
            let mut lease = Lease {
                cell: self.clone(),
                request: permit.request,
                connection: None,
                http1: None,
                ended: false,
            };
            let wait = match permit.disposition {
                Disposition::Dispatched { connection } => {
                    lease.connection = Some(connection);
                    None
                }
                Disposition::Pending { .. } => {
                    let (tx, rx) = oneshot::channel();
                    st.waiting.insert(permit.request, tx);
                    Some(rx)
                }
            };
            self.drain(&mut st);
            (lease, wait)
        };
        if let Some(rx) = wait {
            match rx.await {
                Ok(Ok(connection)) => lease.connection = Some(connection),
                Ok(Err(FailReason::Overflow(o))) => return Err(SendError::Overflow(o)),
                Ok(Err(FailReason::ConnectFailure)) => {
                    return Err(SendError::Connect {
                        address: address.to_owned(),
                    });
                }
                Err(_) => return Err(reset("the pool dropped the request")),
            }
        }
        let Some(connection) = lease.connection else {
            return Err(reset("no connection"));
        };
        let sender = {
            let mut st = self.lock();
            match st.connections.get_mut(&connection) {
                Some(Conn::Http1(s)) => s.take().map(Sender::Http1),
                Some(Conn::Http2(s)) => Some(Sender::Http2(s.clone())),
                _ => None,
            }
        };
        let response = match sender {
            Some(Sender::Http1(mut s)) => {
                let sent = match s.ready().await {
                    Ok(()) => s.send_request(request).await,
                    Err(e) => Err(e),
                };
                lease.http1 = Some(s);
                sent
            }
            Some(Sender::Http2(mut s)) => s.send_request(request).await,
            None => return Err(reset("the connection closed")),
        };
        // A failed request's lease drops here: an HTTP/1.1 connection closes with it.
        response
            .map(|r| (r, lease))
            .map_err(|e| reset(&e.to_string()))
    }

    /// Carries out the pool's actions.
    fn drain(self: &Arc<Self>, st: &mut PoolState) {
        while let Some(action) = st.pool.poll_action() {
            match action {
                PoolAction::Connect {
                    connection,
                    endpoint,
                } => {
                    let target = st.addresses.get(&endpoint).cloned();
                    // A lease dropped while the runtime shuts down has no runtime to
                    // connect on: the connection fails instead of panicking.
                    match (tokio::runtime::Handle::try_current(), target) {
                        (Ok(runtime), Some((address, upstream))) => {
                            st.connections.insert(connection, Conn::Connecting);
                            let cell = self.clone();
                            runtime.spawn(async move {
                                cell.connect(connection, address, upstream).await;
                            });
                        }
                        _ => st.pool.on_connect_failed(self.clock.now(), connection),
                    }
                }
                PoolAction::Dispatch {
                    request,
                    connection,
                } => {
                    let delivered = st
                        .waiting
                        .remove(&request)
                        .is_some_and(|tx| tx.send(Ok(connection)).is_ok());
                    if !delivered {
                        st.pool.on_request_end(self.clock.now(), request);
                    }
                }
                PoolAction::Close { connection, .. } => {
                    // Dropping the sender closes the idle connection.
                    st.connections.remove(&connection);
                }
                PoolAction::Fail { request, reason } => {
                    if let Some(tx) = st.waiting.remove(&request) {
                        let _ = tx.send(Err(reason));
                    }
                }
            }
        }
    }

    /// Opens `connection`, reports it to the pool, and watches it until it closes.
    async fn connect(
        self: Arc<Self>,
        connection: ConnectionId,
        address: String,
        upstream: Arc<tls::Upstream>,
    ) {
        let opened = self.open(&address, &upstream).await;
        let driver = {
            let mut st = self.lock();
            let now = self.clock.now();
            match opened {
                Ok((conn, driver)) if st.connections.contains_key(&connection) => {
                    st.connections.insert(connection, conn);
                    st.pool.on_connected(now, connection);
                    self.drain(&mut st);
                    Some(driver)
                }
                Ok(_) => None,
                Err(()) => {
                    st.connections.remove(&connection);
                    st.pool.on_connect_failed(now, connection);
                    self.drain(&mut st);
                    None
                }
            }
        };
        if let Some(driver) = driver {
            driver.await;
            let mut st = self.lock();
            if st.connections.remove(&connection).is_some() {
                st.pool.on_connection_closed(self.clock.now(), connection);
                self.drain(&mut st);
            }
        }
    }

    async fn open(
        &self,
        address: &str,
        upstream: &tls::Upstream,
    ) -> Result<(Conn, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>), ()> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(drop)?
            .map_err(drop)?;
        let _ = tcp.set_nodelay(true);
        // A failed handshake is a connect failure (logged by `connect`).
        let stream = upstream.connect(tcp, address).await.map_err(drop)?;
        let io = TokioIo::new(stream);
        if self.protocol == Protocol::Http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(drop)?;
            Ok((
                Conn::Http2(sender),
                Box::pin(async move {
                    let _ = conn.await;
                }),
            ))
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(drop)?;
            Ok((
                Conn::Http1(Some(sender)),
                Box::pin(async move {
                    let _ = conn.await;
                }),
            ))
        }
    }
}

enum Sender {
    Http1(http1::SendRequest<ProxyBody>),
    Http2(http2::SendRequest<ProxyBody>),
}

// === impl Lease ===

impl Lease {
    /// Ends the request in the pool. `complete`: its response was read to the end,
    /// so an HTTP/1.1 connection can serve the next request; otherwise it is closed.
    pub fn finish(mut self, complete: bool) {
        self.end(complete);
    }

    fn end(&mut self, complete: bool) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let cell = self.cell.clone();
        let mut st = cell.lock();
        let now = cell.clock.now();
        match (self.connection, cell.protocol) {
            (Some(connection), Protocol::Http1) => {
                let sender = self.http1.take().filter(|s| complete && !s.is_closed());
                match (sender, st.connections.get_mut(&connection)) {
                    (Some(s), Some(Conn::Http1(slot))) => {
                        *slot = Some(s);
                        st.pool.on_request_end(now, self.request);
                    }
                    (_, Some(_)) => {
                        st.connections.remove(&connection);
                        st.pool.on_connection_closed(now, connection);
                    }
                    // Already closed under it: the pool knows.
                    (_, None) => st.pool.on_request_end(now, self.request),
                }
            }
            _ => {
                st.waiting.remove(&self.request);
                st.pool.on_request_end(now, self.request);
            }
        }
        cell.drain(&mut st);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.end(false);
    }
}
