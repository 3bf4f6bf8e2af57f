use proptest::prelude::*;

use super::*;
use crate::retry::RetryLimit;
use crate::{EndpointId, Time};

const T: Time = Time::ZERO;
const E: EndpointId = EndpointId(7);

fn limits(max_connections: u32, max_pending: u32, max_requests: u32) -> ConnectionPoolLimits {
    ConnectionPoolLimits {
        max_connections,
        max_pending_requests: max_pending,
        max_requests,
        ..ConnectionPoolLimits::default()
    }
}

fn actions(pool: &mut ConnectionPool) -> Vec<PoolAction> {
    std::iter::from_fn(|| pool.poll_action()).collect()
}

#[test]
fn defaults_are_istios_unlimited_not_envoys() {
    let d = ConnectionPoolLimits::default();
    assert_eq!(
        (d.max_connections, d.max_pending_requests, d.max_requests),
        (u32::MAX, u32::MAX, u32::MAX)
    );
    assert_eq!(d.max_requests_per_connection, 0);
    assert_eq!(d.retry_limit, RetryLimit::MaxRetries(u32::MAX));
    let e = ConnectionPoolLimits::envoy_defaults();
    assert_eq!(
        (e.max_connections, e.max_pending_requests, e.max_requests),
        (1024, 1024, 1024)
    );
    assert_eq!(e.retry_limit, RetryLimit::MaxRetries(3));
}

#[test]
fn http1_opens_then_reuses_a_connection() {
    let mut pool = ConnectionPool::new(ConnectionPoolLimits::default(), Protocol::Http1);
    let p = pool.try_acquire_request(T, E).unwrap();
    let Disposition::Pending {
        cause: PendingCause::Connecting { connection },
    } = p.disposition
    else {
        panic!("{p:?}")
    };
    assert_eq!(
        actions(&mut pool),
        [PoolAction::Connect {
            connection,
            endpoint: E
        }]
    );
    pool.on_connected(T, connection);
    assert_eq!(
        actions(&mut pool),
        [PoolAction::Dispatch {
            request: p.request,
            connection
        }]
    );
    assert_eq!((pool.active_requests(), pool.pending_requests()), (1, 0));
    pool.on_request_end(T, p.request);
    let p2 = pool.try_acquire_request(T, E).unwrap();
    assert_eq!(p2.disposition, Disposition::Dispatched { connection });
    assert!(actions(&mut pool).is_empty());
    assert_eq!(pool.stats().connections_opened, 1);
}

#[test]
fn pending_overflow_fails_fast_with_503_uo() {
    let mut pool = ConnectionPool::new(limits(1, 1, u32::MAX), Protocol::Http1);
    pool.try_acquire_request(T, E).unwrap();
    let err = pool.try_acquire_request(Time(5), E).unwrap_err();
    assert_eq!(
        err,
        Overflow {
            reason: OverflowReason::MaxPendingRequests,
            limit: 1,
            at: Time(5)
        }
    );
    assert_eq!((Overflow::STATUS, Overflow::RESPONSE_FLAG), (503, "UO"));
    assert!(
        err.to_string().contains("max_pending_requests limit of 1"),
        "{err}"
    );
    assert_eq!(pool.stats().overflow_pending, 1);
    let json = serde_json::to_value(err).unwrap();
    assert_eq!(json["reason"], "max_pending_requests");
}

#[test]
fn http2_multiplexes_until_max_requests() {
    let mut pool = ConnectionPool::new(limits(u32::MAX, u32::MAX, 2), Protocol::Http2);
    let p = pool.try_acquire_request(T, E).unwrap();
    let p2 = pool.try_acquire_request(T, E).unwrap();
    assert!(matches!(
        p2.disposition,
        Disposition::Pending {
            cause: PendingCause::QueuedBehindConnecting
        }
    ));
    let [PoolAction::Connect { connection, .. }] = actions(&mut pool)[..] else {
        panic!()
    };
    pool.on_connected(T, connection);
    assert_eq!(
        actions(&mut pool),
        [
            PoolAction::Dispatch {
                request: p.request,
                connection
            },
            PoolAction::Dispatch {
                request: p2.request,
                connection
            }
        ]
    );
    let err = pool.try_acquire_request(T, E).unwrap_err();
    assert_eq!((err.reason, err.limit), (OverflowReason::MaxRequests, 2));
}

#[test]
fn connection_limit_makes_requests_wait_not_fail() {
    let mut pool = ConnectionPool::new(limits(1, 10, u32::MAX), Protocol::Http1);
    let p1 = pool.try_acquire_request(T, E).unwrap();
    let [PoolAction::Connect { connection, .. }] = actions(&mut pool)[..] else {
        panic!()
    };
    pool.on_connected(T, connection);
    actions(&mut pool);
    let p2 = pool.try_acquire_request(T, E).unwrap();
    assert_eq!(
        p2.disposition,
        Disposition::Pending {
            cause: PendingCause::ConnectionLimit { max_connections: 1 }
        }
    );
    pool.on_request_end(T, p1.request);
    assert_eq!(
        actions(&mut pool),
        [PoolAction::Dispatch {
            request: p2.request,
            connection
        }]
    );
    // Another endpoint with no connection at all still gets one (Envoy's anti-starvation).
    let p3 = pool.try_acquire_request(T, EndpointId(8)).unwrap();
    assert!(matches!(
        p3.disposition,
        Disposition::Pending {
            cause: PendingCause::Connecting { .. }
        }
    ));
}

#[test]
fn max_requests_per_connection_closes_and_reopens() {
    let l = ConnectionPoolLimits {
        max_requests_per_connection: 1,
        ..Default::default()
    };
    let mut pool = ConnectionPool::new(l, Protocol::Http1);
    let p1 = pool.try_acquire_request(T, E).unwrap();
    let [PoolAction::Connect { connection, .. }] = actions(&mut pool)[..] else {
        panic!()
    };
    pool.on_connected(T, connection);
    actions(&mut pool);
    let p2 = pool.try_acquire_request(T, E).unwrap();
    assert!(matches!(
        p2.disposition,
        Disposition::Pending {
            cause: PendingCause::Connecting { .. }
        }
    ));
    actions(&mut pool);
    pool.on_request_end(T, p1.request);
    assert_eq!(
        actions(&mut pool),
        [PoolAction::Close {
            connection,
            reason: CloseReason::MaxRequestsPerConnection
        }]
    );
}

#[test]
fn connect_failure_fails_the_requests_waiting_on_it() {
    let mut pool = ConnectionPool::new(ConnectionPoolLimits::default(), Protocol::Http2);
    let p1 = pool.try_acquire_request(T, E).unwrap();
    let p2 = pool.try_acquire_request(T, E).unwrap();
    let [PoolAction::Connect { connection, .. }] = actions(&mut pool)[..] else {
        panic!()
    };
    pool.on_connect_failed(T, connection);
    assert_eq!(
        actions(&mut pool),
        [
            PoolAction::Fail {
                request: p1.request,
                reason: FailReason::ConnectFailure
            },
            PoolAction::Fail {
                request: p2.request,
                reason: FailReason::ConnectFailure
            }
        ]
    );
    assert_eq!(pool.retry_budget().active_requests(), 0);
}

#[test]
fn tcp_refuses_past_max_connections() {
    let mut pool = ConnectionPool::new(limits(1, 10, u32::MAX), Protocol::Tcp);
    pool.try_acquire_request(T, E).unwrap();
    let err = pool.try_acquire_request(T, E).unwrap_err();
    assert_eq!(err.reason, OverflowReason::MaxConnections);
}

#[derive(Debug, Clone)]
enum Op {
    Acquire(u32),
    End(usize),
    Connected(usize),
    ConnectFailed(usize),
    Closed(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..3).prop_map(Op::Acquire),
        2 => any::<usize>().prop_map(Op::End),
        2 => any::<usize>().prop_map(Op::Connected),
        1 => any::<usize>().prop_map(Op::ConnectFailed),
        1 => any::<usize>().prop_map(Op::Closed),
    ]
}

proptest! {
    /// Limits hold after every step, and the retry budget's request count matches.
    #[test]
    fn limits_always_hold(
        max_conn in 1u32..4,
        max_pending in 0u32..4,
        max_req in 1u32..5,
        per_conn in 0u32..3,
        http2 in any::<bool>(),
        ops in proptest::collection::vec(arb_op(), 1..200),
    ) {
        let l = ConnectionPoolLimits {
            max_connections: max_conn,
            max_pending_requests: max_pending,
            max_requests: max_req,
            max_requests_per_connection: per_conn,
            ..Default::default()
        };
        let protocol = if http2 { Protocol::Http2 } else { Protocol::Http1 };
        let mut pool = ConnectionPool::new(l, protocol);
        let mut live: Vec<RequestId> = Vec::new();
        let mut connecting: Vec<ConnectionId> = Vec::new();
        let mut open: Vec<ConnectionId> = Vec::new();
        for op in ops {
            match op {
                Op::Acquire(e) => {
                    if let Ok(p) = pool.try_acquire_request(T, EndpointId(e)) {
                        live.push(p.request);
                    }
                }
                Op::End(i) if !live.is_empty() => {
                    let r = live.remove(i % live.len());
                    pool.on_request_end(T, r);
                }
                Op::Connected(i) if !connecting.is_empty() => {
                    let c = connecting.remove(i % connecting.len());
                    pool.on_connected(T, c);
                    open.push(c);
                }
                Op::ConnectFailed(i) if !connecting.is_empty() => {
                    let c = connecting.remove(i % connecting.len());
                    pool.on_connect_failed(T, c);
                }
                Op::Closed(i) if !open.is_empty() => {
                    let c = open.remove(i % open.len());
                    pool.on_connection_closed(T, c);
                }
                _ => {}
            }
            while let Some(a) = pool.poll_action() {
                match a {
                    PoolAction::Connect { connection, .. } => connecting.push(connection),
                    PoolAction::Close { connection, .. } => open.retain(|c| *c != connection),
                    PoolAction::Fail { request, .. } => live.retain(|r| *r != request),
                    PoolAction::Dispatch { .. } => {}
                }
            }
            prop_assert!(pool.active_requests() <= max_req);
            prop_assert!(pool.pending_requests() <= max_pending);
            // Past the limit only by Envoy's one-connection-per-starved-endpoint rule.
            prop_assert!(pool.connections() <= max_conn + 3);
            prop_assert_eq!(
                pool.retry_budget().active_requests(),
                u64::from(pool.active_requests() + pool.pending_requests())
            );
        }
    }
}

/// A config change raises `maxPendingRequests`: the next admission uses the new limit,
/// requests already admitted stay.
#[test]
fn new_limits_apply_from_the_next_admission() {
    let limits = ConnectionPoolLimits {
        max_connections: 1,
        max_pending_requests: 1,
        ..ConnectionPoolLimits::default()
    };
    let mut pool = ConnectionPool::new(limits, Protocol::Http1);
    let e = EndpointId(0);
    assert!(pool.try_acquire_request(Time::ZERO, e).is_ok());
    assert!(
        pool.try_acquire_request(Time::ZERO, e).is_err(),
        "second pending request overflows"
    );
    pool.set_limits(ConnectionPoolLimits {
        max_pending_requests: 10,
        ..limits
    });
    assert!(pool.try_acquire_request(Time::ZERO, e).is_ok());
    assert_eq!(pool.pending_requests(), 2);
    assert_eq!(pool.limits().max_pending_requests, 10);
}
