//! Serving [`EchoService`] on a listener: connections, TLS, graceful shutdown.
//!
//! Plaintext ports speak HTTP/1.1 and HTTP/2 with prior knowledge (h2c) side by side:
//! hyper-util's `auto` builder tells them apart by the HTTP/2 preface. With TLS, the
//! port speaks TLS only and ALPN offers `h2` and `http/1.1`. HTTP/1.1 keep-alive is
//! on. A connection's errors (resets, bad requests, failed handshakes) end that
//! connection only; they are not reported, since under load they are routine.
//!
//! Shutdown: when the `shutdown` future completes the listener is closed, every
//! connection is asked to finish gracefully (HTTP/1.1: close after the current
//! response; HTTP/2: GOAWAY, then finish open streams), and [`serve`] returns once they
//! have, or after [`EchoConfig::shutdown_timeout`], whichever is first.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::{Service, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{self, HttpServerConnExec};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::{EchoBody, EchoConfig, EchoConfigError, EchoService, EchoStats};
use crate::pem::{PemError, crypto_provider, load_certs, load_key};

/// A TLS handshake that takes longer than this is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

type Builder = auto::Builder<TokioExecutor>;

/// What a server did, returned when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSummary {
    /// The counters at the end.
    pub stats: EchoStats,
    /// Connections still busy when the shutdown timeout ran out (closed anyway).
    pub unfinished_connections: usize,
}

/// TLS certificate or key files that cannot be served with.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file is unreadable or has no certificate.
    #[error("certificate {0}")]
    Cert(#[source] PemError),
    /// The key file is unreadable or has no private key.
    #[error("key {0}")]
    Key(#[source] PemError),
    /// Both files parsed but do not make a usable pair (e.g. the key is not the
    /// certificate's).
    #[error("{cert} with key {key}: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
}

/// A rustls server config for `cert` (PEM chain, leaf first) and `key` (PEM private
/// key), with the ring provider, TLS 1.2 and 1.3, and ALPN `h2`, `http/1.1`.
pub fn tls_server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = load_certs(cert).map_err(TlsConfigError::Cert)?;
    let private_key = load_key(key).map_err(TlsConfigError::Key)?;
    let pair_error = |source| TlsConfigError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(pair_error)?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(pair_error)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves the echo server described by `config` on `listener` until `shutdown`
/// completes, then drains (see the module docs). With `tls`, every connection is TLS;
/// a config without ALPN protocols gets `h2` and `http/1.1`.
pub async fn serve<F>(
    listener: TcpListener,
    config: EchoConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: F,
) -> Result<ServeSummary, EchoConfigError>
where
    F: Future<Output = ()>,
{
    let service = EchoService::new(config)?;
    Ok(serve_service(listener, service, tls, shutdown).await)
}

/// [`serve`] with a service made beforehand (keep a clone to read
/// [`EchoService::stats`] while it runs).
pub async fn serve_service<F>(
    listener: TcpListener,
    service: EchoService,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: F,
) -> ServeSummary
where
    F: Future<Output = ()>,
{
    let acceptor = tls.map(|config| {
        let config = if config.alpn_protocols.is_empty() {
            let mut config = (*config).clone();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Arc::new(config)
        } else {
            config
        };
        TlsAcceptor::from(config)
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    let (drain_tx, drain_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    connections.spawn(serve_connection(
                        service.clone(),
                        Arc::clone(&builder),
                        stream,
                        remote,
                        acceptor.clone(),
                        drain_rx.clone(),
                    ));
                }
                Err(err) if is_per_connection(&err) => {}
                Err(err) => {
                    eprintln!("meshrig echo: accept failed: {err} (retrying)");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    drain_tx.send_replace(());
    let drained = tokio::time::timeout(service.shutdown_timeout(), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    let unfinished_connections = if drained.is_ok() {
        0
    } else {
        connections.len()
    };
    connections.shutdown().await;
    ServeSummary {
        stats: service.stats(),
        unfinished_connections,
    }
}

/// Accept errors that concern one connection (the peer gave up before we accepted).
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

async fn serve_connection(
    service: EchoService,
    builder: Arc<Builder>,
    stream: TcpStream,
    remote: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    mut drain: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let state = service.connection(Some(remote));
    let hyper_service = service_fn(move |req: Request<Incoming>| {
        let response = service.handle(req, &state);
        async move { Ok::<_, Infallible>(response.await) }
    });
    match acceptor {
        None => drive(&builder, TokioIo::new(stream), hyper_service, drain).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let tls_stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(tls_stream)) => tls_stream,
                    _ => return,
                },
                _ = drain.changed() => return,
            };
            drive(&builder, TokioIo::new(tls_stream), hyper_service, drain).await;
        }
    }
}

/// Runs one HTTP connection to completion, or until drain is signalled and it has
/// finished gracefully.
async fn drive<I, S>(builder: &Builder, io: I, service: S, mut drain: watch::Receiver<()>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<EchoBody>, Error = Infallible>,
    S::Future: Send + 'static,
    TokioExecutor: HttpServerConnExec<S::Future, EchoBody>,
{
    let mut connection = pin!(builder.serve_connection(io, service));
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = drain.changed() => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = connection.await;
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
