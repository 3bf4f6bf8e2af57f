//! Binding the listeners and serving them until shutdown; what every request shares
//! ([`Sidecar`]) and records ([`Exchange`]).
//!
//! Each listener serves HTTP/1.1 and HTTP/2 with prior knowledge (h2c), with the
//! [`ServerLimits`] on header size, header count and header read time: a malformed
//! request gets hyper's `400`, oversized headers `431`, and the connection closes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::access_log::{self, AccessLog};
use crate::body::{BodyEnd, Counted, OnEnd, ProxyBody};
use crate::mesh::Mesh;
use crate::metrics::{ConnectionLabels, Reporter, RequestLabels, RequestSample, TcpSeries};
use crate::mirror::Mirrors;
use crate::pool::Pools;
use crate::tls::{Peer, Stream};
use crate::{admin, inbound, outbound, trace};

/// Where to listen; each listener is optional. Port 0 picks a free port.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    pub outbound: Option<SocketAddr>,
    /// The inbound listener needs `app`, the local application's address.
    pub inbound: Option<SocketAddr>,
    pub app: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Limits on what a downstream client may send before the proxy reads its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Bytes of request line plus headers (hyper's read buffer; at least 8 KiB).
    /// Past it: `431`. Default is 60 KiB, as Envoy's `max_request_headers_kb`.
    pub max_header_bytes: usize,
    /// Header fields per request. Past it: `431`. Default is 100, as Envoy.
    pub max_headers: usize,
    /// Longest wait for a request's complete head (slowloris). Default is 10 s.
    pub header_read_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_header_bytes: 60 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// What every request on every listener shares: the mesh view and the driver's own
/// state (connection pools, mirroring, the access log).
#[derive(Debug)]
pub struct Sidecar {
    pub mesh: Arc<Mesh>,
    pub pools: Pools,
    pub mirrors: Mirrors,
    pub access_log: Option<AccessLog>,
}

/// A proxy whose listeners are bound.
#[derive(Debug)]
pub struct Proxy {
    mesh: Arc<Mesh>,
    limits: ServerLimits,
    access_log: Option<AccessLog>,
    outbound: Option<TcpListener>,
    inbound: Option<(TcpListener, SocketAddr)>,
    admin: Option<TcpListener>,
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({which}): {source}")]
pub struct BindError {
    pub which: &'static str,
    pub addr: SocketAddr,
    pub source: io::Error,
}

async fn bind(which: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        which,
        addr,
        source,
    })
}

impl Proxy {
    /// Binds every listener asked for. An inbound listener without `app` is not bound.
    pub async fn bind(mesh: Arc<Mesh>, listeners: &Listeners) -> Result<Self, BindError> {
        let outbound = match listeners.outbound {
            Some(a) => Some(bind("outbound", a).await?),
            None => None,
        };
        let inbound = match (listeners.inbound, listeners.app) {
            (Some(a), Some(app)) => Some((bind("inbound", a).await?, app)),
            _ => None,
        };
        let admin = match listeners.admin {
            Some(a) => Some(bind("admin", a).await?),
            None => None,
        };
        Ok(Proxy {
            mesh,
            limits: ServerLimits::default(),
            access_log: None,
            outbound,
            inbound,
            admin,
        })
    }

    /// Writes an access log line per request to `log`. Default is no access log.
    pub fn with_access_log(mut self, log: AccessLog) -> Self {
        self.access_log = Some(log);
        self
    }

    /// Sets the downstream limits. Default is [`ServerLimits::default`].
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bound addresses: (outbound, inbound, admin).
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>) {
        let addr = |l: &TcpListener| l.local_addr().ok();
        (
            self.outbound.as_ref().and_then(addr),
            self.inbound.as_ref().and_then(|(l, _)| addr(l)),
            self.admin.as_ref().and_then(addr),
        )
    }

    /// Serves until `shutdown` resolves, then stops accepting. Connections in flight
    /// end with the runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let mesh = self.mesh.clone();
        let sidecar = Arc::new(Sidecar {
            pools: Pools::new(mesh.clock),
            mirrors: Mirrors::default(),
            access_log: self.access_log,
            mesh: mesh.clone(),
        });
        let limits = self.limits;
        let proxy = &mesh.snapshot().proxy;
        let unknown = || "unknown".to_owned();
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(l) = self.outbound {
            let sc = sidecar.clone();
            let tcp = mesh.metrics.tcp(&ConnectionLabels {
                reporter: Reporter::Source,
                source_workload: proxy.workload.clone(),
                source_workload_namespace: proxy.namespace.clone(),
                source_principal: unknown(),
                destination_workload: unknown(),
                destination_service: unknown(),
                connection_security_policy: "none".to_owned(),
            });
            tasks.spawn(accept_loop(l, limits, tcp, None, move |peer, req| {
                outbound::handle(sc.clone(), peer.addr, req)
            }));
        }
        if let Some((l, app)) = self.inbound {
            let sc = sidecar.clone();
            let tcp = mesh.metrics.tcp(&ConnectionLabels {
                reporter: Reporter::Destination,
                source_workload: unknown(),
                source_workload_namespace: unknown(),
                source_principal: unknown(),
                destination_workload: proxy.workload.clone(),
                destination_service: inbound::service_fqdn(&mesh),
                connection_security_policy: "none".to_owned(),
            });
            let tls = Some((mesh.clone(), app.port()));
            tasks.spawn(accept_loop(l, limits, tcp, tls, move |peer, req| {
                inbound::handle(sc.clone(), app, peer, req)
            }));
        }
        if let Some(l) = self.admin {
            let mesh = mesh.clone();
            let tcp = Arc::new(TcpSeries::default());
            tasks.spawn(accept_loop(l, limits, tcp, None, move |_, req| {
                std::future::ready(admin::handle(&mesh, &req))
            }));
        }
        shutdown.await;
        tasks.abort_all();
    }
}

// === impl Sidecar ===

impl Sidecar {
    /// Wraps `response` so that when its body ends (or is dropped) the request is
    /// counted in the metrics and written to the access log.
    pub fn complete(
        self: &Arc<Self>,
        mut exchange: Exchange,
        response: Response<ProxyBody>,
    ) -> Response<ProxyBody> {
        exchange.labels.response_code = response.status().as_u16();
        let sidecar = self.clone();
        response
            .map(|body| OnEnd::new(body, move |end: BodyEnd| sidecar.record(exchange, end)).boxed())
    }

    fn record(&self, x: Exchange, end: BodyEnd) {
        let duration = x.started.elapsed();
        let received = x.received.load(Ordering::Relaxed);
        self.mesh.metrics.record(
            &x.labels,
            RequestSample {
                duration,
                request_bytes: received,
                response_bytes: end.bytes,
            },
        );
        let Some(log) = &self.access_log else {
            return;
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        log.log(&access_log::Entry {
            start_time: access_log::rfc3339(x.start_time),
            method: x.method,
            path: x.path,
            protocol: match x.protocol {
                Version::HTTP_2 => "HTTP/2",
                Version::HTTP_10 => "HTTP/1.0",
                _ => "HTTP/1.1",
            }
            .to_owned(),
            response_code: x.labels.response_code,
            response_flags: x.labels.response_flags.clone(),
            bytes_received: received,
            bytes_sent: end.bytes,
            duration_ms: ms(duration),
            upstream_service_time: x.upstream_service_time.map(ms),
            upstream_host: x.upstream_host,
            upstream_cluster: x.upstream_cluster,
            x_request_id: Some(x.request_id),
            authority: x.authority,
            downstream_remote_address: x.peer.to_string(),
            reporter: x.labels.reporter.as_str(),
            attempts: x.attempts,
            downstream_peer_uri_san: (x.labels.connection_security_policy == "mutual_tls")
                .then(|| x.labels.source_principal.clone()),
        });
    }
}

/// One request as it is recorded: started by a listener's handler, filled in as it
/// goes, recorded by [`Sidecar::complete`].
#[derive(Debug)]
pub struct Exchange {
    pub start_time: SystemTime,
    pub started: Instant,
    pub method: String,
    pub path: String,
    pub protocol: Version,
    pub authority: Option<String>,
    pub request_id: String,
    pub peer: SocketAddr,
    /// Request body bytes read so far.
    pub received: Arc<AtomicU64>,
    /// The metric labels; `response_code` is set by [`Sidecar::complete`].
    pub labels: RequestLabels,
    pub upstream_host: Option<String>,
    pub upstream_cluster: Option<String>,
    pub upstream_service_time: Option<Duration>,
    pub attempts: u32,
}

impl Exchange {
    /// Starts the record of `request` from `peer`: propagates the trace headers
    /// ([`trace::propagate`]) and counts the request body's bytes.
    pub fn start(
        mesh: &Mesh,
        reporter: Reporter,
        peer: SocketAddr,
        request: Request<Incoming>,
    ) -> (Self, Request<ProxyBody>) {
        let (mut parts, body) = request.into_parts();
        let ids = trace::propagate(&mut parts.headers, &mut *mesh.rng());
        let authority = outbound::request_authority(&parts);
        let received = Arc::new(AtomicU64::new(0));
        let exchange = Exchange {
            start_time: SystemTime::now(),
            started: Instant::now(),
            method: parts.method.as_str().to_owned(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            protocol: parts.version,
            authority: Some(authority).filter(|a| !a.is_empty()),
            request_id: ids.request_id,
            peer,
            received: received.clone(),
            labels: RequestLabels::unknown(reporter),
            upstream_host: None,
            upstream_cluster: None,
            upstream_service_time: None,
            attempts: 0,
        };
        let body = Counted::new(body, received).boxed();
        (exchange, Request::from_parts(parts, body))
    }
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits until the first bytes say HTTP/1 or HTTP/2 (hyper-util's auto builder waits
/// for them with no deadline), so the header read timeout covers a client that
/// stalls inside the HTTP/2 preface. `false` when the peer closed or failed.
async fn await_protocol(tcp: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    loop {
        match tcp.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if n >= H2_PREFACE.len() || buf[..n] != H2_PREFACE[..n] => return true,
            // A partial preface: more bytes are coming (or the deadline ends it).
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// Accepts connections and serves HTTP/1.1 and h2c on each with `handler`. With
/// `inbound` (the mesh and the application's port), each connection is first
/// accepted under the port's PeerAuthentication mode ([`Tls::accept`](crate::tls::Tls::accept)):
/// mTLS, plaintext, or refused.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: ServerLimits,
    tcp_metrics: Arc<TcpSeries>,
    inbound: Option<(Arc<Mesh>, u16)>,
    handler: F,
) where
    F: Fn(Arc<Peer>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let builder = Arc::new(builder);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(_) => {
                // Out of file descriptors or similar: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let tcp_metrics = tcp_metrics.clone();
        let inbound = inbound.clone();
        tokio::spawn(async move {
            tcp_metrics.on_open();
            let _closed = OnDrop(Some(|| tcp_metrics.on_close()));
            let (stream, peer) = match inbound {
                Some((mesh, port)) => {
                    let mode = mesh.snapshot().inbound_mtls_mode(port);
                    // A client that never sends its first byte (or stalls in the TLS
                    // handshake) is cut off like a slow request head.
                    let accept = mesh.tls.accept(tcp, peer, mode);
                    match tokio::time::timeout(limits.header_read_timeout, accept).await {
                        Ok(Some(accepted)) => accepted,
                        Ok(None) | Err(_) => return,
                    }
                }
                None => (Stream::Plain(tcp), Peer::plaintext(peer)),
            };
            if let Stream::Plain(tcp) = &stream {
                match tokio::time::timeout(limits.header_read_timeout, await_protocol(tcp)).await {
                    Ok(true) => {}
                    Ok(false) | Err(_) => return,
                }
            }
            let io = CountingIo {
                inner: stream,
                series: tcp_metrics.clone(),
            };
            let peer = Arc::new(peer);
            let service = service_fn(move |req| {
                let fut = handler(peer.clone(), req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            // Malformed requests get hyper's 400; connection errors end the task.
            let _ = builder.serve_connection(TokioIo::new(io), service).await;
        });
    }
}

/// Runs a closure when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A downstream connection that counts its bytes into the TCP metrics.
struct CountingIo {
    inner: Stream,
    series: Arc<TcpSeries>,
}

impl AsyncRead for CountingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            self.series
                .on_received((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl AsyncWrite for CountingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.series.on_sent(n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.series.on_sent(n as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
