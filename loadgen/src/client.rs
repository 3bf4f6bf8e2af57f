//! Connections and requests: TCP (+ TLS) connect, the HTTP/1.1 or HTTP/2 connection,
//! one request/response exchange, and the classification of what went wrong.
//!
//! A worker owns an HTTP/1.1 connection outright (one request at a time, keep-alive,
//! reconnect when the server closes it) and drives it in its own task ([`crate::h1`]).
//! HTTP/2 runs on hyper; its connections are shared by several workers through a
//! [`H2Slot`], so one connection carries several streams at once.

use std::error::Error as _;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Instant as TokioInstant, timeout_at};
use tokio_rustls::TlsConnector;

use crate::h1::{H1Conn, H1Error, Stream};
use crate::stats::{ErrorKind, Outcome};

/// How often an HTTP/2 connection is pinged, and how long a ping may go unanswered
/// before the connection is closed (and replaced on the next request).
const H2_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
const H2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1 with keep-alive: one request at a time per connection.
    Http1,
    /// HTTP/2: h2c with prior knowledge on `http://`, ALPN `h2` on `https://`.
    Http2,
}

impl HttpVersion {
    /// The name used in results: `http/1.1` or `h2`.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http/1.1",
            HttpVersion::Http2 => "h2",
        }
    }
}

/// Everything needed to open a connection to one target and send its request.
pub(crate) struct Endpoint {
    pub addrs: Vec<SocketAddr>,
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub version: HttpVersion,
    pub method: Method,
    /// Absolute URI (HTTP/2).
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The whole HTTP/1.1 request, built once.
    pub h1_request: Bytes,
    pub group_by: Option<HeaderName>,
    /// Bytes one request puts on the wire (HTTP/1.1-equivalent estimate).
    pub request_bytes: u64,
}

/// A live connection's request handle.
pub(crate) enum Sender {
    H1(Box<H1Conn>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// The result of one request.
pub(crate) struct Exchange {
    pub outcome: OwnedOutcome,
    /// False when the connection must not be reused (timeout, error mid-exchange,
    /// `connection: close`).
    pub reusable: bool,
    /// True when the connection was found closed before the request was sent: the
    /// request never left, so it may be retried on a fresh connection.
    pub stale: bool,
}

/// [`Outcome`] with an owned group value, so it can cross an await.
#[derive(Debug)]
pub(crate) enum OwnedOutcome {
    Response {
        status: u16,
        body_bytes: u64,
        header_bytes: u64,
        group: Option<String>,
        group_missing: bool,
    },
    Error(ErrorKind),
}

impl OwnedOutcome {
    pub fn as_outcome(&self) -> Outcome<'_> {
        match self {
            OwnedOutcome::Response {
                status,
                body_bytes,
                header_bytes,
                group,
                group_missing,
            } => Outcome::Response {
                status: *status,
                body_bytes: *body_bytes,
                header_bytes: *header_bytes,
                group: group.as_deref(),
                group_missing: *group_missing,
            },
            OwnedOutcome::Error(kind) => Outcome::Error(*kind),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addrs", &self.addrs)
            .field("tls", &self.tls.is_some())
            .field("version", &self.version)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Opens a connection (TCP, TLS if configured, HTTP handshake) by `deadline`.
    pub async fn connect(&self, deadline: TokioInstant) -> Result<Sender, ErrorKind> {
        match timeout_at(deadline, self.connect_inner()).await {
            Ok(result) => result,
            Err(_) => Err(ErrorKind::ConnectTimeout),
        }
    }

    async fn connect_inner(&self) -> Result<Sender, ErrorKind> {
        let mut last = ErrorKind::Other;
        let mut tcp = None;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = classify_io(&e, true),
            }
        }
        let tcp = tcp.ok_or(last)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => match self.version {
                HttpVersion::Http1 => Ok(Sender::H1(Box::new(H1Conn::new(Stream::Plain(tcp))))),
                HttpVersion::Http2 => self.h2_handshake(TokioIo::new(tcp)).await,
            },
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|_| ErrorKind::Tls)?;
                let alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                match self.version {
                    HttpVersion::Http1 => Ok(Sender::H1(Box::new(H1Conn::new(Stream::Tls(
                        Box::new(tls),
                    ))))),
                    // The server did not agree to HTTP/2.
                    HttpVersion::Http2 if !alpn_h2 => Err(ErrorKind::Protocol),
                    HttpVersion::Http2 => self.h2_handshake(TokioIo::new(tls)).await,
                }
            }
        }
    }

    async fn h2_handshake<I>(&self, io: I) -> Result<Sender, ErrorKind>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        // Pings find a connection that stopped answering, so it is replaced instead of
        // timing out every request on it for the rest of the run.
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(H2_PING_INTERVAL)
            .keep_alive_timeout(H2_PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(io)
            .await
            .map_err(|e| classify_hyper(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Sender::H2(sender))
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }

    /// Sends one request on `sender` and reads the whole response by `deadline`.
    pub async fn exchange(&self, sender: &mut Sender, deadline: TokioInstant) -> Exchange {
        match timeout_at(deadline, self.exchange_inner(sender)).await {
            Ok(ex) => ex,
            Err(_) => Exchange {
                stale: false,
                outcome: OwnedOutcome::Error(ErrorKind::Timeout),
                // An HTTP/1.1 connection with a request still outstanding cannot be
                // reused; an HTTP/2 stream is reset when its future is dropped.
                reusable: matches!(sender, Sender::H2(_)),
            },
        }
    }

    async fn exchange_inner(&self, sender: &mut Sender) -> Exchange {
        let fail = |kind| Exchange {
            outcome: OwnedOutcome::Error(kind),
            reusable: false,
            stale: false,
        };
        let stale = |kind| Exchange {
            outcome: OwnedOutcome::Error(kind),
            reusable: false,
            stale: true,
        };
        let response = match sender {
            Sender::H1(conn) => {
                let head_only = self.method == Method::HEAD;
                let idempotent = matches!(
                    self.method,
                    Method::GET
                        | Method::HEAD
                        | Method::OPTIONS
                        | Method::TRACE
                        | Method::PUT
                        | Method::DELETE
                );
                return match conn
                    .exchange(
                        &self.h1_request,
                        head_only,
                        idempotent,
                        self.group_by.as_ref(),
                    )
                    .await
                {
                    Ok(r) => Exchange {
                        outcome: OwnedOutcome::Response {
                            status: r.status,
                            body_bytes: r.body_bytes,
                            header_bytes: r.header_bytes,
                            group_missing: self.group_by.is_some() && r.group.is_none(),
                            group: r.group,
                        },
                        reusable: r.keep_alive,
                        stale: false,
                    },
                    Err(H1Error::Stale) => stale(ErrorKind::Reset),
                    Err(H1Error::Failed(kind)) => fail(kind),
                };
            }
            Sender::H2(s) => {
                if let Err(e) = s.ready().await {
                    return stale(classify_hyper(&e));
                }
                s.send_request(self.request()).await
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return fail(classify_hyper(&e)),
        };
        let status = response.status().as_u16();
        let header_bytes = header_size(response.headers());
        let (group, group_missing) = match &self.group_by {
            Some(name) => match response.headers().get(name) {
                Some(v) => (
                    Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
                    false,
                ),
                None => (None, true),
            },
            None => (None, false),
        };
        let mut body = response.into_body();
        let mut body_bytes = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        body_bytes += data.len() as u64;
                    }
                }
                Err(e) => return fail(classify_hyper(&e)),
            }
        }
        Exchange {
            outcome: OwnedOutcome::Response {
                status,
                body_bytes,
                header_bytes,
                group,
                group_missing,
            },
            reusable: true,
            stale: false,
        }
    }
}

impl Sender {
    /// True when the connection can no longer carry requests. (An HTTP/1.1 connection
    /// that cannot be reused is dropped by its worker as soon as that is known.)
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(_) => false,
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// Size of a response head as HTTP/1.1 would put it on the wire: status line, header
/// lines, blank line.
fn header_size(headers: &HeaderMap) -> u64 {
    let lines: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    (17 + lines + 2) as u64
}

/// Bytes a request puts on the wire, estimated as HTTP/1.1 would write it.
pub(crate) fn request_size(method: &Method, uri: &Uri, headers: &HeaderMap, body: usize) -> u64 {
    let path = uri.path_and_query().map_or(1, |p| p.as_str().len());
    let line = method.as_str().len() + 1 + path + 11;
    let lines: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + 2 + v.len() + 2)
        .sum();
    (line + lines + 2 + body) as u64
}

fn classify_io(e: &std::io::Error, connecting: bool) -> ErrorKind {
    match crate::h1::classify(e) {
        ErrorKind::Timeout if connecting => ErrorKind::ConnectTimeout,
        kind => kind,
    }
}

fn classify_hyper(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        return ErrorKind::Protocol;
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ErrorKind::Reset;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h2e) = s.downcast_ref::<h2::Error>() {
            if h2e.is_reset() || h2e.is_go_away() {
                return ErrorKind::Reset;
            }
            if let Some(io) = h2e.get_io() {
                return classify_io(io, false);
            }
            return ErrorKind::Protocol;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io(io, false);
        }
        source = s.source();
    }
    ErrorKind::Other
}

/// An HTTP/2 connection shared by the workers (streams) assigned to it. The first
/// worker that finds it missing or broken reconnects; the others wait for that and
/// share the new connection.
#[derive(Default)]
pub(crate) struct H2Slot {
    inner: tokio::sync::Mutex<Option<(u64, http2::SendRequest<Full<Bytes>>)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for H2Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Slot").finish_non_exhaustive()
    }
}

impl H2Slot {
    /// A sender on the shared connection (connecting if needed) and its generation.
    pub async fn get(
        &self,
        endpoint: &Endpoint,
        deadline: TokioInstant,
    ) -> Result<(u64, Sender), ErrorKind> {
        let mut guard = self.inner.lock().await;
        if let Some((generation, sender)) = guard.as_ref()
            && !sender.is_closed()
        {
            return Ok((*generation, Sender::H2(sender.clone())));
        }
        match endpoint.connect(deadline).await? {
            Sender::H2(sender) => {
                let generation = self
                    .generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *guard = Some((generation, sender.clone()));
                Ok((generation, Sender::H2(sender)))
            }
            Sender::H1(_) => Err(ErrorKind::Protocol),
        }
    }

    /// Drops the connection of `generation` if it is still the current one.
    pub async fn invalidate(&self, generation: u64) {
        let mut guard = self.inner.lock().await;
        if guard.as_ref().is_some_and(|(g, _)| *g == generation) {
            *guard = None;
        }
    }
}
