//! Binding the listeners and serving them until shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::body::ProxyBody;
use crate::mesh::Mesh;
use crate::{admin, inbound, outbound};

/// Where to listen; each listener is optional. Port 0 picks a free port.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    pub outbound: Option<SocketAddr>,
    /// The inbound listener needs `app`, the local application's address.
    pub inbound: Option<SocketAddr>,
    pub app: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// A proxy whose listeners are bound.
#[derive(Debug)]
pub struct Proxy {
    mesh: Arc<Mesh>,
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
    pub source: std::io::Error,
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
            outbound,
            inbound,
            admin,
        })
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
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(l) = self.outbound {
            let mesh = self.mesh.clone();
            tasks.spawn(accept_loop(l, move |_, req| {
                outbound::handle(mesh.clone(), req)
            }));
        }
        if let Some((l, app)) = self.inbound {
            let mesh = self.mesh.clone();
            tasks.spawn(accept_loop(l, move |peer, req| {
                inbound::handle(mesh.clone(), app, peer, req)
            }));
        }
        if let Some(l) = self.admin {
            let mesh = self.mesh.clone();
            tasks.spawn(accept_loop(l, move |_, req| {
                std::future::ready(admin::handle(&mesh, &req))
            }));
        }
        shutdown.await;
        tasks.abort_all();
    }
}

/// Accepts connections and serves HTTP/1.1 on each with `handler`.
async fn accept_loop<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(SocketAddr, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
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
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let fut = handler(peer, req);
                async move { Ok::<_, Infallible>(fut.await) }
            });
            // Malformed requests get hyper's 400; connection errors end the task.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
