//! The echo request handler: routes the reserved paths, applies the query parameters
//! and echoes the request. It needs no socket: make an [`EchoService`], open a
//! [`ConnectionState`] and call [`EchoService::handle`] with any `http::Request` whose
//! body is a `hyper::body::Body` (tests and benches use `http_body_util::Full`).
//!
//! Hot path (an echo request without a query string): no locks, three relaxed atomic
//! updates for `/stats`, and no allocation of its own — the request's header map is
//! reused as the response's, and an empty request body is not collected at all.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Body;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::body::{EchoBody, read_body};
use super::params::{Draw, EchoParams, Limits};
use super::{EchoConfig, EchoConfigError, EchoStats};

/// `x-meshrig-server: NAME`, on every response when a name is configured.
pub const SERVER_HEADER: HeaderName = HeaderName::from_static("x-meshrig-server");
/// `x-meshrig-delay-capped: true`, when `delay=` asked for more than the maximum.
pub const DELAY_CAPPED_HEADER: HeaderName = HeaderName::from_static("x-meshrig-delay-capped");

const NOT_REFLECTED_LEN: usize = 12;

/// Request headers that are not reflected back: hop-by-hop headers (RFC 9110 §7.6.1),
/// the framing headers (the response has its own), `host`, and `expect` (a request to
/// the server, meaningless in a response).
static NOT_REFLECTED: [HeaderName; NOT_REFLECTED_LEN] = [
    header::CONNECTION,
    header::CONTENT_LENGTH,
    header::EXPECT,
    header::HOST,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The echo server's request handler and counters. Cheap to clone (one `Arc`); all
/// clones share the counters behind `/stats`.
#[derive(Debug, Clone)]
pub struct EchoService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: Limits,
    shutdown_timeout: Duration,
    server_header: Option<HeaderValue>,
    /// `config.seed`, or a random number picked once at start-up.
    seed_base: u64,
    requests_total: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    connections_total: AtomicU64,
}

/// Per-connection state: the connection's random number generator and the peer
/// address (for `/debug`). Open one per connection with [`EchoService::connection`].
/// It is `Send` but not `Sync`: requests of one connection draw from it in turn.
#[derive(Debug)]
pub struct ConnectionState {
    /// Seeded at the connection's first echo request, which is also when the
    /// connection is counted.
    rng: RefCell<Option<SmallRng>>,
    remote: Option<SocketAddr>,
}

/// Decrements `in_flight` when dropped (it rides in the response body).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// What is left to do after the synchronous part of [`EchoService::handle`].
enum Plan<B> {
    Ready(Response<EchoBody>),
    Debug {
        head: Response<()>,
        text: String,
        body: B,
    },
    Echo {
        head: Response<()>,
        body: B,
        draw: Draw,
        guard: InFlight,
    },
}

// === impl EchoService ===

impl EchoService {
    /// Checks the configuration and makes a handler with zeroed counters.
    pub fn new(config: EchoConfig) -> Result<Self, EchoConfigError> {
        let server_header = match config.name {
            None => None,
            Some(name) => {
                Some(HeaderValue::from_str(&name).map_err(|_| EchoConfigError::Name { name })?)
            }
        };
        let seed_base = config
            .seed
            .unwrap_or_else(|| SmallRng::from_os_rng().next_u64());
        Ok(EchoService {
            shared: Arc::new(Shared {
                limits: Limits {
                    max_delay: config.max_delay,
                    max_size: config.max_size,
                },
                shutdown_timeout: config.shutdown_timeout,
                server_header,
                seed_base,
                requests_total: AtomicU64::new(0),
                in_flight: AtomicU64::new(0),
                max_in_flight: AtomicU64::new(0),
                connections_total: AtomicU64::new(0),
            }),
        })
    }

    /// Opens the state of a new connection from `remote`.
    ///
    /// A connection is counted in `connections_total` at its first echo request,
    /// not here, so connections that only poll `/stats` or `/healthz` are not
    /// counted. Its RNG is seeded then too, with `seed + k` for the k-th counted
    /// connection (from 0): with a configured seed, the same connections in the same
    /// order get the same outcomes, whatever health checks happen alongside.
    pub fn connection(&self, remote: Option<SocketAddr>) -> ConnectionState {
        ConnectionState {
            rng: RefCell::new(None),
            remote,
        }
    }

    /// [`EchoConfig::shutdown_timeout`].
    pub(crate) fn shutdown_timeout(&self) -> Duration {
        self.shared.shutdown_timeout
    }

    /// A snapshot of the counters behind `/stats`.
    pub fn stats(&self) -> EchoStats {
        let s = &self.shared;
        EchoStats {
            requests_total: s.requests_total.load(Relaxed),
            in_flight: s.in_flight.load(Relaxed),
            max_in_flight: s.max_in_flight.load(Relaxed),
            connections_total: s.connections_total.load(Relaxed),
        }
    }

    /// Handles one request of the connection `conn`.
    ///
    /// Routing, the query parameters and the random draws are done before this
    /// returns; the future only reads the request body (if any), waits out the delay
    /// (if any) and assembles the response. It never fails: bad parameters are a 400,
    /// an oversized body a 413, a broken body a 400. A future with a delay to wait out
    /// needs a tokio runtime (the timer); one without completes on its first poll when
    /// the request body is already complete.
    ///
    /// * `/healthz`: 200 `ok`.
    /// * `/stats`: the counters as JSON (see [`EchoStats`]).
    /// * `/debug`: a plain-text dump of the request.
    /// * anything else: the echo. Only these requests count in `/stats`.
    pub fn handle<B>(
        &self,
        req: Request<B>,
        conn: &ConnectionState,
    ) -> impl Future<Output = Response<EchoBody>> + Send + use<B>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let plan = self.plan(req, conn);
        let max_size = self.shared.limits.max_size;
        async move {
            match plan {
                Plan::Ready(response) => response,
                Plan::Debug { head, text, body } => match read_body(body, max_size).await {
                    Ok(bytes) => {
                        let mut text = text;
                        let _ = writeln!(text, "\nbody ({} bytes):", bytes.len());
                        text.push_str(&String::from_utf8_lossy(&bytes));
                        head.map(|()| EchoBody::full(text))
                    }
                    Err(failure) => failure.into_response(head),
                },
                Plan::Echo {
                    head,
                    body,
                    draw,
                    guard,
                } => {
                    let body = match read_body(body, max_size).await {
                        Ok(bytes) => bytes,
                        Err(failure) => {
                            let response = failure.into_response(head);
                            return response.map(|body| body.with_in_flight(guard));
                        }
                    };
                    if !draw.delay.is_zero() {
                        tokio::time::sleep(draw.delay).await;
                    }
                    let status = head.status();
                    let body =
                        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
                            EchoBody::empty()
                        } else if let Some(len) = draw.size {
                            EchoBody::generated(len)
                        } else {
                            EchoBody::full(body)
                        };
                    head.map(|()| body.with_in_flight(guard))
                }
            }
        }
    }

    fn plan<B>(&self, req: Request<B>, conn: &ConnectionState) -> Plan<B> {
        match req.uri().path() {
            "/healthz" => Plan::Ready(self.text(StatusCode::OK, "ok")),
            "/stats" => {
                let mut response = self.text(StatusCode::OK, self.stats().to_json());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Plan::Ready(response)
            }
            "/debug" => {
                let text = debug_text(&req, conn.remote);
                let head = self.text(StatusCode::OK, "").map(|_| ());
                Plan::Debug {
                    head,
                    text,
                    body: req.into_body(),
                }
            }
            _ => self.plan_echo(req, conn),
        }
    }

    fn plan_echo<B>(&self, req: Request<B>, conn: &ConnectionState) -> Plan<B> {
        let shared = &self.shared;
        let mut rng = conn.rng.borrow_mut();
        let rng = rng.get_or_insert_with(|| {
            let index = shared.connections_total.fetch_add(1, Relaxed);
            SmallRng::seed_from_u64(shared.seed_base.wrapping_add(index))
        });
        shared.requests_total.fetch_add(1, Relaxed);
        let now_in_flight = shared.in_flight.fetch_add(1, Relaxed) + 1;
        if now_in_flight > shared.max_in_flight.load(Relaxed) {
            shared.max_in_flight.fetch_max(now_in_flight, Relaxed);
        }
        let guard = InFlight(Arc::clone(shared));

        let (params, draw) = match req.uri().query() {
            None => (None, Draw::default()),
            Some(query) => match EchoParams::parse(query, &shared.limits) {
                Ok(params) => {
                    let draw = params.draw(rng, &shared.limits);
                    (Some(params), draw)
                }
                Err(err) => {
                    let response = self.text(StatusCode::BAD_REQUEST, format!("{err}\n"));
                    return Plan::Ready(response.map(|body| body.with_in_flight(guard)));
                }
            },
        };

        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        strip_not_reflected(&mut headers);
        if let Some(params) = &params {
            for (i, (name, value)) in params.headers.iter().enumerate() {
                // The first header= of a name replaces the reflected request header;
                // later ones with the same name add values.
                if params.headers[..i]
                    .iter()
                    .any(|(earlier, _)| earlier == name)
                {
                    headers.append(name.clone(), value.clone());
                } else {
                    headers.insert(name.clone(), value.clone());
                }
            }
        }
        if draw.delay_capped {
            headers.insert(DELAY_CAPPED_HEADER, HeaderValue::from_static("true"));
        }
        // HTTP/2 has no per-request way to close the connection: close= is ignored.
        if draw.close && parts.version < Version::HTTP_2 {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(name) = &shared.server_header {
            headers.insert(SERVER_HEADER, name.clone());
        }
        let mut head = Response::new(());
        *head.status_mut() = draw.status;
        *head.headers_mut() = headers;
        Plan::Echo {
            head,
            body,
            draw,
            guard,
        }
    }

    /// A plain-text response with the server header.
    fn text(&self, status: StatusCode, text: impl Into<Bytes>) -> Response<EchoBody> {
        let mut response = Response::new(EchoBody::full(text));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(name) = &self.shared.server_header {
            headers.insert(SERVER_HEADER, name.clone());
        }
        response
    }
}

/// Removes [`NOT_REFLECTED`] and whatever the `connection` header names.
///
/// One pass over the request's (few) header names, then a removal for each one found,
/// rather than a lookup for each of the twelve names: a typical request carries only
/// `host` of them.
fn strip_not_reflected(headers: &mut HeaderMap) {
    if let Some(connection) = headers.remove(header::CONNECTION)
        && let Ok(tokens) = connection.to_str()
    {
        for token in tokens.split(',') {
            headers.remove(token.trim());
        }
    }
    let mut found: [Option<HeaderName>; NOT_REFLECTED_LEN] = Default::default();
    let mut slots = found.iter_mut();
    for name in headers.keys() {
        if NOT_REFLECTED.contains(name) {
            // keys() yields each name once, so there are enough slots.
            if let Some(slot) = slots.next() {
                *slot = Some(name.clone());
            }
        }
    }
    for name in found.iter().flatten() {
        headers.remove(name);
    }
}

/// Method, URI, version, peer and headers; the body is appended once read.
fn debug_text<B>(req: &Request<B>, remote: Option<SocketAddr>) -> String {
    let mut text = String::with_capacity(256);
    let _ = writeln!(text, "meshrig echo debug");
    let _ = writeln!(text, "method: {}", req.method());
    let _ = writeln!(text, "uri: {}", req.uri());
    let _ = writeln!(text, "version: {:?}", req.version());
    match remote {
        Some(addr) => _ = writeln!(text, "remote: {addr}"),
        None => _ = writeln!(text, "remote: unknown"),
    }
    let _ = writeln!(text, "\nheaders ({}):", req.headers().len());
    for (name, value) in req.headers() {
        let _ = writeln!(
            text,
            "{name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    text
}

#[cfg(test)]
#[path = "handler_tests.rs"]
mod tests;
