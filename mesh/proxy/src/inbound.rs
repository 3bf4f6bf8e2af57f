//! The inbound listener: requests from the mesh to the local application.
//!
//! Each request is authorized with [`evaluate`] over the snapshot's `inbound_authz`
//! (the proxy's labels and namespace; root namespace `istio-system`). A denial is
//! `403 RBAC: access denied`, as Envoy answers; a CUSTOM policy's external authorizer
//! cannot be asked here, so it counts as a denial (fail closed). Allowed requests are
//! streamed to the application over HTTP/1.1 (whatever the client spoke), without
//! retries or connection-pool limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use mesh_core::security::authz::{Access, DEFAULT_ROOT_NAMESPACE};
use mesh_core::security::{RequestAttributes, evaluate};

use crate::body::ProxyBody;
use crate::flags;
use crate::mesh::Mesh;
use crate::metrics::Reporter;
use crate::outbound::{forwarded_headers, local, request_authority, upstream_response};
use crate::server::{Exchange, Sidecar};
use crate::tls::Peer;

/// The FQDN of the service this proxy is the sidecar of.
pub fn service_fqdn(mesh: &Mesh) -> String {
    let proxy = &mesh.snapshot().proxy;
    format!("{}.{}.svc.cluster.local", proxy.workload, proxy.namespace)
}

/// Handles one request from `peer` on the inbound listener, for the application at
/// `app`.
pub async fn handle(
    sidecar: Arc<Sidecar>,
    app: SocketAddr,
    peer: Arc<Peer>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let mesh = &sidecar.mesh;
    let (mut exchange, request) = Exchange::start(mesh, Reporter::Destination, peer.addr, request);
    if let Some(p) = &peer.principal {
        exchange.labels.source_principal = p.as_str().to_owned();
    }
    exchange.labels.connection_security_policy = peer.security_policy().to_owned();
    let started = Instant::now();
    let (mut response, flag, forwarded) = authorize_and_forward(mesh, app, &peer, request).await;
    if let Some(f) = flag {
        response
            .headers_mut()
            .insert(flags::HEADER, HeaderValue::from_static(f));
        exchange.labels.response_flags = f.to_owned();
    }
    let proxy = &mesh.snapshot().proxy;
    let labels = &mut exchange.labels;
    labels.destination_service(&service_fqdn(mesh));
    labels.destination_workload.clone_from(&proxy.workload);
    if let Some(v) = proxy.labels.get("version") {
        labels.destination_version.clone_from(v);
    }
    if forwarded {
        exchange.upstream_host = Some(app.to_string());
        exchange.upstream_cluster = Some(format!("inbound|{}||", app.port()));
        exchange.attempts = 1;
        exchange.upstream_service_time = Some(started.elapsed());
    }
    sidecar.complete(exchange, response)
}

/// The response, its flag, and whether the application was asked.
async fn authorize_and_forward(
    mesh: &Mesh,
    app: SocketAddr,
    peer: &Peer,
    request: Request<ProxyBody>,
) -> (Response<ProxyBody>, Option<&'static str>, bool) {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = request_authority(&parts);
    let mut attributes = RequestAttributes::http(parts.method.as_str(), &path, &host, app.port());
    attributes.source_ip = Some(peer.addr.ip());
    if let Some(id) = &peer.principal {
        attributes.source_principal = Some(id.istio_principal().to_owned());
        attributes.source_namespace = id.namespace().map(str::to_owned);
    }
    attributes.destination_ip = Some(app.ip());
    attributes.headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let snapshot = &mesh.snapshot();
    let decision = evaluate(
        &snapshot.inbound_authz,
        &attributes,
        &snapshot.proxy.labels,
        &snapshot.proxy.namespace,
        DEFAULT_ROOT_NAMESPACE,
    );
    if decision.verdict.after_external_check(false) == Access::Deny {
        return (
            local(StatusCode::FORBIDDEN, "RBAC: access denied"),
            None,
            false,
        );
    }
    let mut forward = Request::new(body);
    *forward.method_mut() = parts.method;
    *forward.version_mut() = Version::HTTP_11;
    *forward.headers_mut() = forwarded_headers(&parts.headers);
    if !forward.headers().contains_key(HOST)
        && let Ok(v) = HeaderValue::from_str(&host)
    {
        forward.headers_mut().insert(HOST, v);
    }
    match path.parse() {
        Ok(uri) => *forward.uri_mut() = uri,
        Err(_) => return (local(StatusCode::BAD_REQUEST, "bad path\n"), None, false),
    }
    match mesh.upstreams.send(&app.to_string(), forward).await {
        Ok(r) => (upstream_response(r, None), None, true),
        Err(e) => (
            local(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            Some(flags::UPSTREAM_FAILURE),
            true,
        ),
    }
}
