//! The inbound listener: requests from the mesh to the local application.
//!
//! Each request is authorized with [`evaluate`] over the snapshot's `inbound_authz`
//! (the proxy's labels and namespace; root namespace `istio-system`). A denial is
//! `403 RBAC: access denied`, as Envoy answers; a CUSTOM policy's external authorizer
//! cannot be asked here, so it counts as a denial (fail closed). Allowed requests are
//! streamed to the application, without retries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::security::authz::{Access, DEFAULT_ROOT_NAMESPACE};
use mesh_core::security::{RequestAttributes, evaluate};

use crate::body::ProxyBody;
use crate::flags;
use crate::mesh::Mesh;
use crate::metrics::Reporter;
use crate::outbound::{forwarded_headers, local, upstream_response};

/// Handles one request from `peer` on the inbound listener, for the application at
/// `app`.
pub async fn handle(
    mesh: Arc<Mesh>,
    app: SocketAddr,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let (mut response, flag) = authorize_and_forward(&mesh, app, peer, request).await;
    if let Some(f) = flag {
        response
            .headers_mut()
            .insert(flags::HEADER, HeaderValue::from_static(f));
    }
    let proxy = &mesh.snapshot.proxy;
    let service = format!("{}.{}.svc.cluster.local", proxy.workload, proxy.namespace);
    mesh.metrics.record(
        Reporter::Destination,
        "unknown",
        &service,
        response.status().as_u16(),
        flag.unwrap_or(""),
        started.elapsed(),
    );
    response
}

async fn authorize_and_forward(
    mesh: &Mesh,
    app: SocketAddr,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> (Response<ProxyBody>, Option<&'static str>) {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut attributes = RequestAttributes::http(parts.method.as_str(), &path, host, app.port());
    attributes.source_ip = Some(peer.ip());
    attributes.destination_ip = Some(app.ip());
    attributes.headers = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let snapshot = &mesh.snapshot;
    let decision = evaluate(
        &snapshot.inbound_authz,
        &attributes,
        &snapshot.proxy.labels,
        &snapshot.proxy.namespace,
        DEFAULT_ROOT_NAMESPACE,
    );
    if decision.verdict.after_external_check(false) == Access::Deny {
        return (local(StatusCode::FORBIDDEN, "RBAC: access denied"), None);
    }
    let mut forward = Request::new(body.boxed());
    *forward.method_mut() = parts.method;
    *forward.headers_mut() = forwarded_headers(&parts.headers);
    match path.parse() {
        Ok(uri) => *forward.uri_mut() = uri,
        Err(_) => return (local(StatusCode::BAD_REQUEST, "bad path\n"), None),
    }
    match mesh.upstreams.send(&app.to_string(), forward).await {
        Ok(r) => (upstream_response(r), None),
        Err(e) => (
            local(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
            Some(flags::UPSTREAM_FAILURE),
        ),
    }
}
