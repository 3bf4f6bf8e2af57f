//! The wire: pooled connections (TCP and TLS 1.3 handshakes, mTLS modes and
//! certificate checks), messages on the network, resets and held links.

use super::*;

impl World {
    /// Opens a pooled connection: a TCP round trip, then (mTLS) a TLS 1.3 handshake
    /// round trip with handshake CPU on both sides.
    pub(super) fn open_connection(
        &mut self,
        node: u32,
        cl: u32,
        conn: ConnectionId,
        endpoint: mesh_core::EndpointId,
    ) {
        let now = self.now();
        let service = self.nodes[node as usize].sidecar.clusters[cl as usize].service;
        let callee = self
            .topo
            .node_of(service, endpoint)
            .expect("cluster endpoints are instances");
        let epoch = self.nodes[callee as usize].epoch;
        let caller_epoch = self.nodes[node as usize].epoch;
        let tls_decision = self.tls_for(node, cl, callee);
        self.nodes[node as usize].sidecar.clusters[cl as usize]
            .conns
            .insert(
                conn,
                crate::world::control::Conn {
                    epoch,
                    tls: matches!(tls_decision, Ok(true)),
                    ready: false,
                },
            );
        let _ = self.charge(node, self.costs.tcp_connect_ns);
        // SYN and SYN-ACK (faults between the two services apply to them too).
        let deadline = now + ns(CONNECT_TIMEOUT_NS);
        let syn = self.setup_transit(now, node, callee, deadline);
        let (fail, at) = match syn {
            crate::net::Transit::Deliver(t1) if self.nodes[callee as usize].up => {
                match self.setup_transit(t1, callee, node, deadline) {
                    crate::net::Transit::Deliver(t2) => (None, t2),
                    _ => (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS)),
                }
            }
            crate::net::Transit::Deliver(t1) => {
                if self.faults.zone_down(self.nodes[callee as usize].zone) {
                    (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS))
                } else {
                    // The host answers with a reset: nothing listens.
                    let back = t1.as_nanos() - now.as_nanos();
                    (Some(ConnFail::Refused), t1 + ns(back))
                }
            }
            // A crashed instance on a live host: the host answers the SYN with a reset
            // (connection refused) one round trip later. A whole zone down is silence.
            crate::net::Transit::Unreachable { at }
                if !self.faults.zone_down(self.nodes[callee as usize].zone) =>
            {
                (Some(ConnFail::Refused), at)
            }
            _ => (Some(ConnFail::Timeout), now + ns(CONNECT_TIMEOUT_NS)),
        };
        // An instance whose sidecar has no config yet has no inbound listener.
        let (fail, at) = match fail {
            None if self.inbound_proxy()
                && self.nodes[callee as usize].sidecar.snapshot.is_none() =>
            {
                (Some(ConnFail::Refused), at)
            }
            other => (other, at),
        };
        if fail.is_none() {
            match tls_decision {
                Ok(false) => {}
                Ok(true) => {
                    // ClientHello → server (handshake CPU) → client (handshake CPU).
                    // Each side's CPU is charged when the flight reaches it, as an
                    // event: submitted ahead of time, it would hold a core idle until
                    // then and delay everything else queued on that instance.
                    let one_way = self.one_way(node, callee);
                    self.metrics.count_event("tls_handshake");
                    self.sched.schedule_at(
                        at + ns(one_way),
                        Ev::Handshake {
                            node,
                            cluster: cl,
                            conn: conn.0,
                            epoch: caller_epoch,
                            callee,
                            server: true,
                        },
                    );
                    return;
                }
                Err(why) => {
                    let name = self.nodes[node as usize].name.clone();
                    let callee_name = self.nodes[callee as usize].name.clone();
                    self.log(
                        "mtls_handshake_failed",
                        &name,
                        format!("to {callee_name}: {why}"),
                    );
                    let one_way = self.one_way(node, callee);
                    self.sched.schedule_at(
                        at + ns(2 * one_way),
                        Ev::Connected {
                            node,
                            cluster: cl,
                            conn: conn.0,
                            epoch: caller_epoch,
                            fail: Some(ConnFail::Tls),
                        },
                    );
                    return;
                }
            }
        }
        self.sched.schedule_at(
            at,
            Ev::Connected {
                node,
                cluster: cl,
                conn: conn.0,
                epoch: caller_epoch,
                fail,
            },
        );
    }

    /// A TLS 1.3 handshake flight reaches the server (`server`: it answers after its
    /// handshake CPU) or the client (its handshake CPU, then the connection is ready).
    pub(in crate::world) fn on_handshake(
        &mut self,
        node: u32,
        cl: u32,
        conn: u64,
        epoch: u32,
        callee: u32,
        server: bool,
    ) {
        if self.nodes[node as usize].epoch != epoch {
            return; // the caller crashed: nobody waits for this connection
        }
        if server {
            let cpu = self.cost(
                CostKind::TlsHandshake {
                    role: TlsRole::Server,
                },
                0,
            );
            let done = self.charge(callee, cpu);
            let back = self.one_way(callee, node);
            self.sched.schedule_at(
                done + ns(back),
                Ev::Handshake {
                    node,
                    cluster: cl,
                    conn,
                    epoch,
                    callee,
                    server: false,
                },
            );
        } else {
            let cpu = self.cost(
                CostKind::TlsHandshake {
                    role: TlsRole::Client,
                },
                0,
            );
            let done = self.charge(node, cpu);
            self.sched.schedule_at(
                done,
                Ev::Connected {
                    node,
                    cluster: cl,
                    conn,
                    epoch,
                    fail: None,
                },
            );
        }
    }

    /// Whether a connection from `node` to `callee` uses mTLS (`Ok(true)`), plaintext
    /// (`Ok(false)`), or cannot be made (`Err(why)`).
    pub(super) fn tls_for(&self, node: u32, cl: u32, callee: u32) -> Result<bool, String> {
        if !self.inbound_proxy() {
            return Ok(false);
        }
        let policy = &self.nodes[node as usize].sidecar.clusters[cl as usize].policy;
        let callee_node = &self.nodes[callee as usize];
        let port = callee_node.instance.map_or(0, |(s, _)| {
            self.topo.registry.services[s]
                .ports
                .first()
                .copied()
                .unwrap_or(0)
        });
        // A PeerAuthentication in the config decides; without one, the scenario's
        // mesh-wide `mtls` does.
        let default = self.control.mtls_default();
        let server_mode = callee_node.sidecar.snapshot.as_ref().map_or(default, |s| {
            if s.inbound_mtls.trace.policy.is_none() && !s.inbound_mtls_ports.contains_key(&port) {
                default
            } else {
                s.inbound_mtls_mode(port)
            }
        });
        let client = decide_client_tls(
            policy.client_tls,
            AutoMtls {
                enabled: true,
                destination_has_sidecar: true,
                destination_mtls: Some(server_mode),
            },
        );
        match handshake_outcome(client.mode, server_mode) {
            HandshakeOutcome::Rejected { reason } => Err(format!("{reason:?}")),
            HandshakeOutcome::Plaintext | HandshakeOutcome::PassThrough => Ok(false),
            HandshakeOutcome::Mtls => {
                debug_assert_eq!(client.mode, ClientTlsMode::IstioMutual);
                let now = self.now();
                self.cert_problem(node, callee, now).map_or(Ok(true), Err)
            }
        }
    }

    pub(in crate::world) fn on_connected(
        &mut self,
        node: u32,
        cl: u32,
        conn: u64,
        epoch: u32,
        fail: Option<ConnFail>,
    ) {
        let now = self.now();
        let n = &mut self.nodes[node as usize];
        if n.epoch != epoch || !n.up {
            return;
        }
        let Some(cluster) = n.sidecar.clusters.get_mut(cl as usize) else {
            return;
        };
        let conn = ConnectionId(conn);
        match fail {
            None => {
                if let Some(c) = cluster.conns.get_mut(&conn) {
                    c.ready = true;
                }
                cluster.pool.on_connected(now, conn);
            }
            Some(_) => {
                cluster.conns.remove(&conn);
                cluster.pool.on_connect_failed(now, conn);
            }
        }
        self.drain_pool(node, cl);
    }

    /// Sends a try's request on `conn`.
    pub(super) fn dispatch(&mut self, attempt: u32, conn: ConnectionId) {
        let now = self.now();
        let Some(a) = self.reqs.attempts.get_mut(attempt) else {
            return;
        };
        a.conn = Some(conn);
        let (tag, call, callee, cl) = (a.tag, a.call, a.node, a.cluster);
        let caller = self.reqs.calls.get(call).map_or(0, |c| c.caller);
        let t = self.reqs.calls.get(call).map_or(0, |c| c.template);
        let bytes = REQUEST_HEADER_BYTES + self.reqs.templates[t as usize].request_bytes;
        let conn_info = self.nodes[caller as usize].sidecar.clusters[cl as usize]
            .conns
            .get(&conn)
            .copied();
        if let Some(a) = self.reqs.attempts.get_mut(attempt) {
            a.tls = conn_info.is_some_and(|c| c.tls);
        }
        let stale = conn_info.is_none_or(|c| c.epoch != self.nodes[callee as usize].epoch);
        let ev = Ev::Arrive { attempt, tag };
        if stale {
            // The callee restarted since the connection opened: its reset comes back.
            self.send_reset(caller, callee, attempt, tag, now);
            return;
        }
        self.send(caller, callee, bytes, ev);
    }

    /// Puts a message on the network (zone links and faults between services); a
    /// lost connection comes back as a reset of the try.
    pub(super) fn send(&mut self, from: u32, to: u32, bytes: u64, ev: Ev) {
        let now = self.now();
        match self.transit(now, from, to, bytes) {
            crate::net::Transit::Deliver(at) => self.sched.schedule_at(at, ev),
            crate::net::Transit::Held => self.reqs.held.push((from, to, bytes, ev)),
            crate::net::Transit::Reset { at } | crate::net::Transit::Unreachable { at } => {
                if let Ev::Arrive { attempt, tag } | Ev::Respond { attempt, tag, .. } = ev {
                    let reset = Ev::Respond {
                        attempt,
                        tag,
                        status: 0,
                        reset: true,
                    };
                    self.sched.schedule_at(at, reset);
                }
            }
        }
    }

    pub(super) fn send_reset(
        &mut self,
        caller: u32,
        callee: u32,
        attempt: u32,
        tag: u32,
        now: Time,
    ) {
        let back = self.one_way(callee, caller);
        self.sched.schedule_at(
            now + ns(back),
            Ev::Respond {
                attempt,
                tag,
                status: 0,
                reset: true,
            },
        );
    }

    /// Held messages go out again (after a hold between zones or services ends).
    pub(crate) fn release_held(&mut self) {
        let held = std::mem::take(&mut self.reqs.held);
        for (from, to, bytes, ev) in held {
            // Still held (another hold of the zones or services) → held again.
            self.send(from, to, bytes, ev);
        }
    }
}
