//! The outbound listener: requests from the local application to a mesh service.
//!
//! Per request, as the simulator's sidecar does (`sim/src/world/request/send.rs`):
//! [`decide`] the route (direct response, redirect, `404 NR`, fault delay and abort,
//! or forward), then the try loop — [`LoadBalancer::pick`](mesh_core::lb::LoadBalancer::pick)
//! skipping ejected and already-tried endpoints, one upstream try bounded by the
//! per-try and route deadlines of [`RetryState`], the outcome to the
//! [`OutlierDetector`](mesh_core::outlier::OutlierDetector) and to
//! [`RetryState::on_attempt_result`] with the cluster's retry budget, then the
//! backoff and another try, or the answer.
//!
//! Each try goes through the cluster's connection pool ([`crate::pool`]): past its
//! limits the answer is `503 UO`. Mirrors get a shadow copy ([`crate::mirror`]).
//!
//! Request bodies up to [`MAX_BUFFERED_BODY_BYTES`] are buffered so retries replay
//! them; larger ones are streamed and not retried. Responses are streamed back.
//!
//! Every request gets trace headers ([`crate::trace`]), one access-log line and its
//! metrics when its response body ends ([`crate::server::Sidecar::complete`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::EndpointId;
use mesh_core::lb::PickContext;
use mesh_core::outlier::Outcome;
use mesh_core::retry::{AttemptResult, GiveUpReason, RetryDecision, RetryPolicy, RetryState};
use mesh_core::route::{RouteOutcome, RouteRequest, decide};

use crate::body::{BodyEnd, MAX_BUFFERED_BODY_BYTES, OnEnd, ProxyBody, RequestBody, buffer, full};
use crate::flags;
use crate::mesh::{Cluster, Mesh, lock};
use crate::metrics::Reporter;
use crate::pool::SendError;
use crate::server::{Exchange, Sidecar};

/// What the route decision said to do upstream (mesh-core's plan).
type Plan = mesh_core::route::UpstreamPlan;

/// The answer and what the metrics and the access log record about it.
struct Answer {
    response: Response<ProxyBody>,
    destination: String,
    flags: Vec<&'static str>,
    upstream: Option<Upstream>,
}

/// What the try loop says about the upstream side.
#[derive(Debug, Clone, Default)]
struct Upstream {
    /// The last try's endpoint address and its `app` and `version` labels.
    host: Option<(String, Option<String>, Option<String>)>,
    cluster: String,
    attempts: u32,
    /// From the first try's start to the response headers.
    service_time: Option<Duration>,
}

/// Handles one request from `peer` on the outbound listener.
pub async fn handle(
    sidecar: Arc<Sidecar>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let mesh = &sidecar.mesh;
    let (mut exchange, request) = Exchange::start(mesh, Reporter::Source, peer, request);
    let proxy = &mesh.snapshot().proxy;
    exchange.labels.source_workload.clone_from(&proxy.workload);
    exchange
        .labels
        .source_workload_namespace
        .clone_from(&proxy.namespace);
    let Answer {
        mut response,
        destination,
        flags,
        upstream,
    } = route(&sidecar, request).await;
    let flags = flags.join(",");
    if !flags.is_empty()
        && let Ok(v) = HeaderValue::from_str(&flags)
    {
        response.headers_mut().insert(flags::HEADER, v);
    }
    if let Some(u) = &upstream
        && u.attempts > 1
    {
        // Tries this request took, for callers that count retries per edge.
        response
            .headers_mut()
            .insert(flags::ATTEMPTS_HEADER, HeaderValue::from(u.attempts));
    }
    let labels = &mut exchange.labels;
    labels.destination_service(&destination);
    if !flags.is_empty() {
        labels.response_flags = flags;
    }
    if let Some(u) = upstream {
        if let Some((address, app, version)) = u.host {
            labels.destination_workload =
                app.unwrap_or_else(|| labels.destination_service_name.clone());
            if let Some(v) = version {
                labels.destination_version = v;
            }
            exchange.upstream_host = Some(address);
        }
        exchange.upstream_cluster = Some(u.cluster);
        exchange.attempts = u.attempts;
        exchange.upstream_service_time = u.service_time;
    }
    sidecar.complete(exchange, response)
}

/// A response the proxy makes itself.
pub fn local(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    response
}

fn answer(response: Response<ProxyBody>, destination: &str, flags: Vec<&'static str>) -> Answer {
    Answer {
        response,
        destination: destination.to_owned(),
        flags,
        upstream: None,
    }
}

/// The authority a request names: its `Host` header, else its URI's (HTTP/2).
pub fn request_authority(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
        .trim()
        .to_owned()
}

async fn route(sidecar: &Arc<Sidecar>, request: Request<ProxyBody>) -> Answer {
    let mesh = &sidecar.mesh;
    let (parts, body) = request.into_parts();
    let authority = request_authority(&parts);
    if authority.is_empty() {
        let r = local(StatusCode::BAD_REQUEST, "missing Host header\n");
        return answer(r, "unknown", Vec::new());
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let config = mesh.config();
    let snapshot = &config.snapshot;
    let req = RouteRequest {
        authority: &authority,
        method: parts.method.as_str(),
        path: &path,
        scheme: "http",
        headers: &headers,
        source_labels: &snapshot.proxy.labels,
        source_namespace: &snapshot.proxy.namespace,
        gateway: "mesh",
    };
    let decision = decide(&snapshot.routes, &req, &mut *mesh.rng(), false);
    let destination = decision.trace.host.clone();
    // A forwarding decision has an upstream plan; the others the sidecar answers.
    let Some(plan) = decision.outcome.upstream() else {
        return match decision.outcome {
            RouteOutcome::Redirect(r) => {
                // The request's port stays unless the redirect sets one or a new scheme.
                let port = match (r.port, &r.scheme) {
                    (Some(p), _) => Some(p.to_string()),
                    (None, None) => port_of(&authority).map(str::to_owned),
                    (None, Some(_)) => None,
                };
                let location = format!(
                    "{}://{}{}{}",
                    r.scheme.as_deref().unwrap_or("http"),
                    r.authority.as_deref().unwrap_or(authority_host(&authority)),
                    port.map(|p| format!(":{p}")).unwrap_or_default(),
                    r.uri.as_deref().unwrap_or(&path),
                );
                let status =
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                let mut response = local(status, "");
                if let Ok(v) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(LOCATION, v);
                }
                answer(response, &destination, Vec::new())
            }
            RouteOutcome::DirectResponse { status, body } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                answer(
                    local(status, body.unwrap_or_default()),
                    &destination,
                    Vec::new(),
                )
            }
            _ => {
                let response = local(StatusCode::NOT_FOUND, "no route\n");
                answer(response, &destination, vec![flags::NO_ROUTE])
            }
        };
    };
    let destination = plan.host.clone();
    let mut flags = Vec::new();
    if let Some(delay) = plan.delay {
        tokio::time::sleep(delay).await;
        flags.push(flags::DELAY_INJECTED);
    }
    if let Some(status) = plan.abort {
        flags.push(flags::FAULT_INJECTED);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return answer(local(status, "fault filter abort\n"), &destination, flags);
    }
    let Some(cluster) = mesh.cluster_in(&config, &plan.host, plan.subset.as_deref()) else {
        flags.push(flags::NO_CLUSTER);
        let body = format!("no cluster for {}\n", plan.host);
        return answer(
            local(StatusCode::SERVICE_UNAVAILABLE, body),
            &destination,
            flags,
        );
    };
    let body = match buffer(body, MAX_BUFFERED_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            let r = local(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}\n"),
            );
            return answer(r, &destination, flags);
        }
    };
    let head = Head {
        method: parts.method,
        path: plan.rewritten_path.clone().unwrap_or(path),
        authority: authority.clone(),
        http2: parts.version == Version::HTTP_2,
        headers: forwarded_headers(&parts.headers),
    };
    if let RequestBody::Buffered(b) = &body {
        for mirror in &plan.mirrors {
            crate::mirror::shadow(sidecar, mirror, &head, b.clone());
        }
    }
    let port = port_of(&authority).unwrap_or("80");
    let cluster_name = format!(
        "outbound|{port}|{}|{}",
        plan.subset.as_deref().unwrap_or(""),
        plan.host
    );
    let (response, mut upstream) = tries(sidecar, &cluster, plan, head, body, &mut flags).await;
    upstream.cluster = cluster_name;
    Answer {
        response,
        destination,
        flags,
        upstream: Some(upstream),
    }
}

/// The port of `host:port`, if any.
pub fn port_of(authority: &str) -> Option<&str> {
    authority
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| p.parse::<u16>().is_ok())
}

/// `host:port` without the port.
pub fn authority_host(authority: &str) -> &str {
    match port_of(authority) {
        Some(p) => &authority[..authority.len() - p.len() - 1],
        None => authority,
    }
}

/// The parts of the request every try sends.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    /// Origin-form path and query.
    pub path: String,
    pub authority: String,
    /// Speak HTTP/2 upstream (the downstream request was HTTP/2).
    pub http2: bool,
    pub headers: HeaderMap,
}

impl Head {
    /// The request for one try: origin-form with `Host` for HTTP/1.1, absolute-form
    /// (`:authority`) for HTTP/2.
    pub fn request(&self, body: ProxyBody) -> Option<Request<ProxyBody>> {
        let mut headers = self.headers.clone();
        let (uri, version) = if self.http2 {
            headers.remove(HOST);
            let uri: Uri = format!("http://{}{}", self.authority, self.path)
                .parse()
                .ok()?;
            (uri, Version::HTTP_2)
        } else {
            if !headers.contains_key(HOST) {
                headers.insert(HOST, HeaderValue::from_str(&self.authority).ok()?);
            }
            (self.path.parse().ok()?, Version::HTTP_11)
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(uri)
            .version(version)
            .body(body)
            .ok()?;
        *request.headers_mut() = headers;
        Some(request)
    }
}

/// The load balancer's pick for a try: endpoint, address and labels; `None` when no
/// endpoint is healthy.
pub fn pick(
    mesh: &Mesh,
    cluster: &Mutex<Cluster>,
    exclude: &std::collections::BTreeSet<EndpointId>,
) -> Option<(EndpointId, String, Arc<crate::tls::Upstream>)> {
    let now = mesh.now();
    let mut c = lock(cluster);
    c.sweep(now);
    let ctx = PickContext {
        exclude,
        ..Default::default()
    };
    let Cluster { lb, outlier, .. } = &mut *c;
    let pick = match outlier.as_ref().filter(|od| od.ejected_count() > 0) {
        Some(od) => lb.pick(&ctx, |id| !od.is_ejected(id), &mut *mesh.rng()),
        None => lb.pick_all_healthy(&ctx, &mut *mesh.rng()),
    };
    let endpoint = pick.ok()?.endpoint;
    let address = c.address(endpoint)?.to_owned();
    let tls = c.upstream_tls(&mesh.tls, endpoint);
    Some((endpoint, address, tls))
}

/// The `app` and `version` labels of `host`'s endpoint `id`.
fn endpoint_labels(mesh: &Mesh, host: &str, id: EndpointId) -> (Option<String>, Option<String>) {
    let snapshot = mesh.snapshot();
    let Some(e) = snapshot
        .cluster(host)
        .and_then(|all| all.iter().find(|e| e.id == id))
    else {
        return (None, None);
    };
    (
        e.labels.get("app").cloned(),
        e.labels.get("version").cloned(),
    )
}

/// The try loop. Ends the request in the cluster's retry budget on every path.
async fn tries(
    sidecar: &Sidecar,
    cluster: &Mutex<Cluster>,
    plan: Plan,
    head: Head,
    body: RequestBody,
    flags: &mut Vec<&'static str>,
) -> (Response<ProxyBody>, Upstream) {
    let mesh = &sidecar.mesh;
    let (replayable, mut streaming) = match body {
        RequestBody::Buffered(b) => (Some(b), None),
        RequestBody::Streaming(p) => (None, Some(p)),
    };
    let policy = if replayable.is_some() {
        plan.retry
    } else {
        RetryPolicy::disabled()
    };
    let limits = lock(cluster).policy.pool;
    let pool = sidecar
        .pools
        .pool(&plan.host, plan.subset.as_deref(), head.http2, limits);
    let mut upstream = Upstream::default();
    let first_try = Instant::now();
    lock(cluster).budget.on_request_start();
    let mut state = RetryState::start(policy, mesh.now(), plan.timeout);
    let response = loop {
        let now = mesh.now();
        // The route deadline may have passed during a backoff.
        if state.poll_timeout().is_some_and(|d| now >= d) {
            let decision = {
                let mut c = lock(cluster);
                state.handle_timeout(now, &mut c.budget, &mut *mesh.rng())
            };
            if decision.is_some() {
                flags.push(flags::UPSTREAM_TIMEOUT);
                break local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n");
            }
        }
        let Some((endpoint, address, tls)) = pick(mesh, cluster, state.excluded_endpoints()) else {
            flags.push(flags::NO_HEALTHY_UPSTREAM);
            break local(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n");
        };
        let Ok(start) = state.on_attempt_start(now, endpoint) else {
            flags.push(flags::UPSTREAM_FAILURE);
            break local(StatusCode::SERVICE_UNAVAILABLE, "upstream try refused\n");
        };
        upstream.attempts += 1;
        let (app, version) = endpoint_labels(mesh, &plan.host, endpoint);
        upstream.host = Some((address.clone(), app, version));
        let body = match (&replayable, streaming.take()) {
            (Some(b), _) => full(b.clone()),
            (None, Some(p)) => p.boxed(),
            (None, None) => crate::body::empty(),
        };
        let Some(request) = head.request(body) else {
            break local(StatusCode::BAD_REQUEST, "bad request\n");
        };
        lock(cluster).lb.on_request_start(endpoint);
        let send = pool.send(endpoint, &address, &tls, request);
        let sent = match start.deadline {
            Some(d) => tokio::time::timeout_at(mesh.clock.instant(d).into(), send)
                .await
                .ok(),
            None => Some(send.await),
        };
        let now = mesh.now();
        let timed_out = sent.is_none();
        if let Some(Err(SendError::Overflow(_))) = &sent {
            // The circuit breaker refused the try: no endpoint outcome, no retry
            // (Envoy answers 503 UO at once).
            lock(cluster).lb.on_request_end(endpoint);
            flags.push(flags::UPSTREAM_OVERFLOW);
            break local(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream connect error or disconnect/reset before headers. reset reason: overflow\n",
            );
        }
        let (result, outcome, answered) = match sent {
            None => (AttemptResult::PerTryTimeout, Outcome::Timeout, None),
            Some(Ok((r, lease))) => {
                let status = r.status().as_u16();
                (
                    AttemptResult::http(status),
                    Outcome::Http { status },
                    Some((r, lease)),
                )
            }
            Some(Err(SendError::Connect { .. })) => {
                (AttemptResult::ConnectFailure, Outcome::ConnectFailure, None)
            }
            Some(Err(SendError::Reset { .. } | SendError::Overflow(_))) => {
                (AttemptResult::Reset, Outcome::Reset, None)
            }
        };
        let decision = {
            let mut c = lock(cluster);
            c.lb.on_request_end(endpoint);
            if let Some(od) = &mut c.outlier {
                let events = od.on_response(now, endpoint, outcome);
                c.report(&events);
            }
            let mut rng = mesh.rng();
            if timed_out {
                state.handle_timeout(now, &mut c.budget, &mut *rng)
            } else {
                state
                    .on_attempt_result(now, result, &mut c.budget, &mut *rng)
                    .ok()
            }
        };
        let failed = |flags: &mut Vec<&'static str>| match result {
            AttemptResult::PerTryTimeout => {
                flags.push(flags::UPSTREAM_TIMEOUT);
                local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n")
            }
            _ => {
                flags.push(flags::UPSTREAM_FAILURE);
                local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "upstream connect error or reset\n",
                )
            }
        };
        let mut answer_with = |flags: &mut Vec<&'static str>, answered| match answered {
            Some((r, lease)) => {
                upstream.service_time = Some(first_try.elapsed());
                upstream_response(r, Some(lease))
            }
            None => failed(flags),
        };
        match decision {
            Some(RetryDecision::Retry { retry_at, .. }) => {
                drop(answered);
                tokio::time::sleep_until(mesh.clock.instant(retry_at).into()).await;
            }
            Some(RetryDecision::GiveUp {
                reason: GiveUpReason::Timeout { .. },
                ..
            }) => {
                flags.push(flags::UPSTREAM_TIMEOUT);
                break local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout\n");
            }
            Some(RetryDecision::GiveUp { attempts, reason }) => {
                match reason {
                    GiveUpReason::BudgetExhausted(_) => flags.push(flags::UPSTREAM_OVERFLOW),
                    GiveUpReason::AttemptsExhausted { .. } if attempts > 1 => {
                        flags.push(flags::RETRY_LIMIT_EXCEEDED);
                    }
                    _ => {}
                }
                break answer_with(flags, answered);
            }
            Some(RetryDecision::Complete { .. }) | None => break answer_with(flags, answered),
        }
    };
    let mut c = lock(cluster);
    state.cancel(&mut c.budget);
    c.budget.on_request_end();
    (response, upstream)
}

/// Hop-by-hop headers: they describe one connection and are not forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The headers to forward: without hop-by-hop headers, those `connection` names, and
/// `transfer-encoding` (hyper frames the body itself).
pub fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = headers.clone();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(["transfer-encoding"])
        .chain(named.iter().map(String::as_str))
    {
        out.remove(name);
    }
    out
}

/// An upstream response, streamed back without its hop-by-hop headers; its pool
/// `lease` ends when the body does.
pub fn upstream_response(
    response: Response<Incoming>,
    lease: Option<crate::pool::Lease>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    parts.headers = forwarded_headers(&parts.headers);
    // The client sees HTTP/1.1 or HTTP/2 as it spoke, whatever the upstream spoke.
    parts.version = Version::default();
    let body = match lease {
        Some(lease) => OnEnd::new(body, move |end: BodyEnd| lease.finish(end.complete)).boxed(),
        None => body.boxed(),
    };
    Response::from_parts(parts, body)
}
