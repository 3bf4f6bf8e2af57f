//! The connection pool of one cluster: which connection a request goes on, when to open
//! or close one, and when the circuit breaker refuses.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::limits::{ConnectionPoolLimits, Overflow, OverflowReason};
use crate::retry::RetryBudget;
use crate::{EndpointId, Time};

/// The protocol spoken to the cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// One request at a time per connection; connections are reused.
    Http1,
    /// Requests multiplexed on one connection per endpoint.
    Http2,
    /// One connection per request (TCP proxying); `maxConnections` refuses.
    Tcp,
}

/// One request's handle in the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// One upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ConnectionId(pub u64);

/// Why an admitted request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PendingCause {
    /// A connection is being opened for it.
    Connecting { connection: ConnectionId },
    /// `maxConnections` is reached: it waits for a busy connection to free up
    /// (Envoy's `upstream_cx_overflow`).
    ConnectionLimit { max_connections: u32 },
    /// Connections already being opened will serve it.
    QueuedBehindConnecting,
}

/// Where an admitted request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Disposition {
    /// Send it now on `connection`.
    Dispatched { connection: ConnectionId },
    /// Wait for a [`PoolAction::Dispatch`] (or [`PoolAction::Fail`]).
    Pending { cause: PendingCause },
}

/// An admitted request, with the pool's state for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Permit {
    pub request: RequestId,
    pub endpoint: EndpointId,
    pub disposition: Disposition,
    /// After admission: requests in flight, waiting, and open connections.
    pub active_requests: u32,
    pub pending_requests: u32,
    pub connections: u32,
}

/// Why a pending request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FailReason {
    /// `http2MaxRequests` was reached when its connection became free (503 `UO`).
    Overflow(Overflow),
    /// The connection opened for it failed (503 `UF`).
    ConnectFailure,
}

/// Why the pool closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// It served `maxRequestsPerConnection` requests.
    MaxRequestsPerConnection,
    /// TCP: its one request ended.
    RequestEnded,
}

/// Work for the driver, from [`ConnectionPool::poll_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum PoolAction {
    /// Open `connection` to `endpoint`; then call [`ConnectionPool::on_connected`] or
    /// [`ConnectionPool::on_connect_failed`].
    Connect {
        connection: ConnectionId,
        endpoint: EndpointId,
    },
    /// Send the pending `request` on `connection`.
    Dispatch {
        request: RequestId,
        connection: ConnectionId,
    },
    /// Close `connection` (it is idle).
    Close {
        connection: ConnectionId,
        reason: CloseReason,
    },
    /// Answer the pending `request` with a 503.
    Fail {
        request: RequestId,
        reason: FailReason,
    },
}

/// Counters, as Envoy's `upstream_rq_pending_overflow` & co.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub overflow_pending: u64,
    pub overflow_requests: u64,
    pub overflow_connections: u64,
    pub connection_limit_waits: u64,
    pub connections_opened: u64,
    pub connect_failures: u64,
}

#[derive(Debug, Clone)]
struct Connection {
    endpoint: EndpointId,
    ready: bool,
    active: u32,
    served: u32,
    /// The requests on it now (one at a time for HTTP/1.1).
    requests: Vec<RequestId>,
}

/// The connection pool and circuit breaker of one cluster. Owns the cluster's
/// [`RetryBudget`], whose request count it keeps.
#[derive(Debug, Clone)]
pub struct ConnectionPool {
    limits: ConnectionPoolLimits,
    protocol: Protocol,
    connections: BTreeMap<ConnectionId, Connection>,
    /// The connections of each endpoint (an index over `connections`, so finding an
    /// endpoint's free connection does not scan every connection of the cluster).
    by_endpoint: BTreeMap<EndpointId, BTreeSet<ConnectionId>>,
    /// Attached requests and their connection.
    attached: BTreeMap<RequestId, ConnectionId>,

    pending: Pending,
    /// Per endpoint, the connections with room for a request now (ready, under the
    /// per-connection limits): an index kept by [`ConnectionPool::refresh_room`].
    room: BTreeMap<EndpointId, BTreeSet<ConnectionId>>,
    /// Per endpoint, connections being opened (not ready yet).
    connecting: BTreeMap<EndpointId, usize>,
    actions: VecDeque<PoolAction>,
    budget: RetryBudget,
    next_id: u64,
    stats: PoolStats,
}

// === impl ConnectionPool ===

impl ConnectionPool {
    /// An empty pool.
    pub fn new(limits: ConnectionPoolLimits, protocol: Protocol) -> Self {
        ConnectionPool {
            budget: RetryBudget::new(limits.retry_limit),
            limits,
            protocol,
            connections: BTreeMap::new(),
            by_endpoint: BTreeMap::new(),
            attached: BTreeMap::new(),

            pending: Pending::default(),
            room: BTreeMap::new(),
            connecting: BTreeMap::new(),
            actions: VecDeque::new(),
            next_id: 0,
            stats: PoolStats::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ConnectionPoolLimits {
        &self.limits
    }

    /// New limits from a config change, applied from the next admission on (as
    /// Envoy's circuit breakers take a cluster update): requests in flight and
    /// connections open stay; the retry budget gets the new limit and keeps its
    /// counts.
    pub fn set_limits(&mut self, limits: ConnectionPoolLimits) {
        self.budget.set_limit(limits.retry_limit);
        self.limits = limits;
    }

    /// Counters so far.
    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Requests in flight on a connection.
    pub fn active_requests(&self) -> u32 {
        self.attached.len() as u32
    }

    /// Requests waiting for a connection.
    pub fn pending_requests(&self) -> u32 {
        self.pending.len() as u32
    }

    /// Open or opening connections.
    pub fn connections(&self) -> u32 {
        self.connections.len() as u32
    }

    /// The cluster's retries resource, for [`RetryState`](crate::retry::RetryState).
    pub fn retry_budget_mut(&mut self) -> &mut RetryBudget {
        &mut self.budget
    }

    /// The cluster's retries resource.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.budget
    }

    /// Call for every try of a request to `endpoint` (the LB's pick), before sending
    /// it. Admits it (dispatched now, or pending) or refuses it: an [`Overflow`] is
    /// answered at once with a 503 `UO`. Then drain [`ConnectionPool::poll_action`].
    pub fn try_acquire_request(
        &mut self,
        now: Time,
        endpoint: EndpointId,
    ) -> Result<Permit, Overflow> {
        let ready = self
            .room
            .get(&endpoint)
            .and_then(|set| set.first().copied());
        let disposition = if let Some(connection) = ready {
            self.check_max_requests(now)?;
            let request = self.new_request();
            self.attach(request, connection);
            (request, Disposition::Dispatched { connection })
        } else {
            if self.protocol == Protocol::Tcp
                && self.connections.len() as u64 >= u64::from(self.limits.max_connections)
            {
                self.stats.overflow_connections += 1;
                let limit = self.limits.max_connections;
                return Err(Overflow {
                    reason: OverflowReason::MaxConnections,
                    limit,
                    at: now,
                });
            }
            if self.pending.len() as u64 >= u64::from(self.limits.max_pending_requests) {
                self.stats.overflow_pending += 1;
                let limit = self.limits.max_pending_requests;
                return Err(Overflow {
                    reason: OverflowReason::MaxPendingRequests,
                    limit,
                    at: now,
                });
            }
            let request = self.new_request();
            self.pending.push(request, endpoint);
            let cause = self.maybe_connect(endpoint);
            (request, Disposition::Pending { cause })
        };
        self.budget.on_request_start();
        Ok(Permit {
            request: disposition.0,
            endpoint,
            disposition: disposition.1,
            active_requests: self.active_requests(),
            pending_requests: self.pending_requests(),
            connections: self.connections(),
        })
    }

    /// The next thing the driver must do, if any. Call after every method that takes
    /// `&mut self`, until it returns `None`.
    pub fn poll_action(&mut self) -> Option<PoolAction> {
        self.actions.pop_front()
    }

    /// Call when `connection` (from [`PoolAction::Connect`]) is established: pending
    /// requests for its endpoint are dispatched on it.
    pub fn on_connected(&mut self, now: Time, connection: ConnectionId) {
        if let Some(c) = self.connections.get_mut(&connection) {
            if !c.ready {
                let endpoint = c.endpoint;
                c.ready = true;
                self.uncount_connecting(endpoint);
            }
            self.refresh_room(connection);
            self.drain_pending(now, connection);
        }
    }

    /// Call when opening `connection` failed: pending requests its capacity was meant
    /// for fail with [`FailReason::ConnectFailure`].
    pub fn on_connect_failed(&mut self, _now: Time, connection: ConnectionId) {
        let Some(c) = self.remove_connection(connection) else {
            return;
        };
        self.stats.connect_failures += 1;
        let capacity = self.connecting_capacity(c.endpoint);
        let waiting: Vec<RequestId> = self.pending.of(c.endpoint).collect();
        let excess = waiting.len().saturating_sub(capacity);
        for request in waiting.into_iter().take(excess) {
            self.pending.remove(request);
            self.budget.on_request_end();
            self.actions.push_back(PoolAction::Fail {
                request,
                reason: FailReason::ConnectFailure,
            });
        }
    }

    /// Call when an established `connection` closes under its requests (remote close,
    /// reset). Requests on it are over (the driver fails them; no
    /// [`ConnectionPool::on_request_end`] is needed). Pending requests may get a new
    /// connection.
    pub fn on_connection_closed(&mut self, _now: Time, connection: ConnectionId) {
        let Some(c) = self.remove_connection(connection) else {
            return;
        };
        for request in c.requests {
            self.attached.remove(&request);
            self.budget.on_request_end();
        }
        self.connect_for_pending(c.endpoint);
    }

    /// Call when `request` ends: answered, failed, timed out or cancelled (pending or
    /// in flight). Frees its slot; the connection serves the next pending request, or
    /// closes at `maxRequestsPerConnection`. Unknown or finished requests are ignored.
    pub fn on_request_end(&mut self, now: Time, request: RequestId) {
        if self.pending.remove(request).is_some() {
            self.budget.on_request_end();
            return;
        }
        let Some(connection) = self.attached.remove(&request) else {
            return;
        };
        if let Some(c) = self.connections.get_mut(&connection) {
            c.requests.retain(|r| *r != request);
        }
        self.budget.on_request_end();
        let Some(c) = self.connections.get_mut(&connection) else {
            return;
        };
        c.active -= 1;
        self.refresh_room(connection);
        let Some(c) = self.connections.get(&connection) else {
            return;
        };
        let per_conn = self.limits.max_requests_per_connection;
        let close = match self.protocol {
            Protocol::Tcp => Some(CloseReason::RequestEnded),
            _ if per_conn > 0 && c.served >= per_conn => {
                Some(CloseReason::MaxRequestsPerConnection)
            }
            _ => None,
        };
        let endpoint = c.endpoint;
        match close {
            Some(reason) if c.active == 0 => {
                self.remove_connection(connection);
                self.actions
                    .push_back(PoolAction::Close { connection, reason });
                self.connect_for_pending(endpoint);
            }
            Some(_) => {}
            None => self.drain_pending(now, connection),
        }
    }

    fn new_request(&mut self) -> RequestId {
        self.next_id += 1;
        RequestId(self.next_id)
    }

    fn check_max_requests(&mut self, now: Time) -> Result<(), Overflow> {
        if self.attached.len() as u64 >= u64::from(self.limits.max_requests) {
            self.stats.overflow_requests += 1;
            let limit = self.limits.max_requests;
            return Err(Overflow {
                reason: OverflowReason::MaxRequests,
                limit,
                at: now,
            });
        }
        Ok(())
    }

    /// Whether a ready connection can take one more request.
    /// One connection of `endpoint` is no longer being opened.
    fn uncount_connecting(&mut self, endpoint: EndpointId) {
        if let Some(n) = self.connecting.get_mut(&endpoint) {
            *n -= 1;
            if *n == 0 {
                self.connecting.remove(&endpoint);
            }
        }
    }

    /// Puts `connection` in (or takes it out of) its endpoint's room index, after a
    /// change to its readiness or load.
    fn refresh_room(&mut self, connection: ConnectionId) {
        let Some(c) = self.connections.get(&connection) else {
            return;
        };
        let (endpoint, room) = (c.endpoint, self.has_room(c));
        if room {
            self.room.entry(endpoint).or_default().insert(connection);
        } else if let Some(set) = self.room.get_mut(&endpoint) {
            set.remove(&connection);
            if set.is_empty() {
                self.room.remove(&endpoint);
            }
        }
    }

    /// `endpoint`'s connections, lowest id first.
    fn endpoint_connections(
        &self,
        endpoint: EndpointId,
    ) -> impl Iterator<Item = ConnectionId> + '_ {
        self.by_endpoint
            .get(&endpoint)
            .into_iter()
            .flatten()
            .copied()
    }

    /// Forgets a connection (and its index entry).
    fn remove_connection(&mut self, connection: ConnectionId) -> Option<Connection> {
        let c = self.connections.remove(&connection)?;
        if !c.ready {
            self.uncount_connecting(c.endpoint);
        }
        if let Some(set) = self.room.get_mut(&c.endpoint) {
            set.remove(&connection);
            if set.is_empty() {
                self.room.remove(&c.endpoint);
            }
        }
        if let Some(set) = self.by_endpoint.get_mut(&c.endpoint) {
            set.remove(&connection);
            if set.is_empty() {
                self.by_endpoint.remove(&c.endpoint);
            }
        }
        Some(c)
    }

    fn has_room(&self, c: &Connection) -> bool {
        let per_conn = self.limits.max_requests_per_connection;
        c.ready
            && (per_conn == 0 || c.served < per_conn)
            && match self.protocol {
                Protocol::Http2 => true,
                Protocol::Http1 | Protocol::Tcp => c.active == 0,
            }
    }

    /// How many pending requests the connections being opened to `endpoint` will take.
    fn connecting_capacity(&self, endpoint: EndpointId) -> usize {
        let connecting = self.connecting.get(&endpoint).copied().unwrap_or(0);
        match self.protocol {
            Protocol::Http2 if connecting > 0 => usize::MAX,
            _ => connecting,
        }
    }

    /// Opens a connection for `endpoint`'s pending requests if they need one and the
    /// limit allows — or if the endpoint has none at all, as Envoy does so requests
    /// cannot starve behind other endpoints' connections.
    fn maybe_connect(&mut self, endpoint: EndpointId) -> PendingCause {
        let waiting = self.pending.count(endpoint);
        if waiting <= self.connecting_capacity(endpoint) {
            return PendingCause::QueuedBehindConnecting;
        }
        let has_any = self.endpoint_connections(endpoint).next().is_some();
        let under_limit = (self.connections.len() as u64) < u64::from(self.limits.max_connections);
        if !under_limit && has_any {
            self.stats.connection_limit_waits += 1;
            return PendingCause::ConnectionLimit {
                max_connections: self.limits.max_connections,
            };
        }
        self.next_id += 1;
        let connection = ConnectionId(self.next_id);
        let conn = Connection {
            endpoint,
            ready: false,
            active: 0,
            served: 0,
            requests: Vec::new(),
        };
        self.connections.insert(connection, conn);
        *self.connecting.entry(endpoint).or_default() += 1;
        self.by_endpoint
            .entry(endpoint)
            .or_default()
            .insert(connection);
        self.stats.connections_opened += 1;
        self.actions.push_back(PoolAction::Connect {
            connection,
            endpoint,
        });
        PendingCause::Connecting { connection }
    }

    fn connect_for_pending(&mut self, endpoint: EndpointId) {
        if self.pending.count(endpoint) > 0 {
            self.maybe_connect(endpoint);
        }
        // A freed connection slot may serve another endpoint's waiting requests —
        // which only wait for a slot when the pool was at `maxConnections`.
        let was_at_limit =
            self.connections.len() as u64 + 1 >= u64::from(self.limits.max_connections);
        if !was_at_limit {
            return;
        }
        let others: Vec<EndpointId> = self.pending.fifo().map(|(_, e)| e).collect();
        for other in others {
            if (self.connections.len() as u64) >= u64::from(self.limits.max_connections) {
                break;
            }
            self.maybe_connect(other);
        }
    }

    fn attach(&mut self, request: RequestId, connection: ConnectionId) {
        let c = self
            .connections
            .get_mut(&connection)
            .expect("attach to a known connection");
        c.active += 1;
        c.served += 1;
        c.requests.push(request);
        self.refresh_room(connection);
        self.attached.insert(request, connection);
    }

    /// Dispatches pending requests for `connection`'s endpoint while it has room.
    fn drain_pending(&mut self, now: Time, connection: ConnectionId) {
        loop {
            let Some(c) = self.connections.get(&connection) else {
                return;
            };
            if !self.has_room(c) {
                return;
            }
            let endpoint = c.endpoint;
            let Some(request) = self.pending.of(endpoint).next() else {
                return;
            };
            self.pending.remove(request);
            match self.check_max_requests(now) {
                Ok(()) => {
                    self.attach(request, connection);
                    self.actions.push_back(PoolAction::Dispatch {
                        request,
                        connection,
                    });
                }
                Err(overflow) => {
                    self.budget.on_request_end();
                    let reason = FailReason::Overflow(overflow);
                    self.actions.push_back(PoolAction::Fail { request, reason });
                }
            }
        }
    }
}

// === Pending ===

/// Requests waiting for a connection, in arrival order (request ids increase), with
/// an index per endpoint so every operation is logarithmic, however long the queue.
#[derive(Debug, Clone, Default)]
struct Pending {
    order: BTreeMap<RequestId, EndpointId>,
    by_endpoint: BTreeMap<EndpointId, BTreeSet<RequestId>>,
}

impl Pending {
    fn len(&self) -> usize {
        self.order.len()
    }

    fn push(&mut self, request: RequestId, endpoint: EndpointId) {
        self.order.insert(request, endpoint);
        self.by_endpoint
            .entry(endpoint)
            .or_default()
            .insert(request);
    }

    /// Removes `request`, returning its endpoint if it was waiting.
    fn remove(&mut self, request: RequestId) -> Option<EndpointId> {
        let endpoint = self.order.remove(&request)?;
        if let Some(set) = self.by_endpoint.get_mut(&endpoint) {
            set.remove(&request);
            if set.is_empty() {
                self.by_endpoint.remove(&endpoint);
            }
        }
        Some(endpoint)
    }

    /// Requests waiting for `endpoint`, oldest first.
    fn of(&self, endpoint: EndpointId) -> impl Iterator<Item = RequestId> + '_ {
        self.by_endpoint
            .get(&endpoint)
            .into_iter()
            .flatten()
            .copied()
    }

    fn count(&self, endpoint: EndpointId) -> usize {
        self.by_endpoint.get(&endpoint).map_or(0, BTreeSet::len)
    }

    /// Every waiting request, oldest first.
    fn fifo(&self) -> impl Iterator<Item = (RequestId, EndpointId)> + '_ {
        self.order.iter().map(|(&r, &e)| (r, e))
    }
}
