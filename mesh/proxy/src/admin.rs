//! The admin listener: `/ready` (200 once the proxy listens), `/config_dump` (the
//! snapshot in service as JSON: its `version` is the configuration version, also in
//! the `x-meshrig-config-version` header), `/metrics` (Prometheus text). Anything
//! else is a 404.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::mesh::Mesh;
use crate::outbound::local;

/// Handles one admin request.
pub fn handle(mesh: &Arc<Mesh>, request: &Request<Incoming>) -> Response<ProxyBody> {
    match request.uri().path() {
        "/ready" => local(StatusCode::OK, "ready\n"),
        "/config_dump" => {
            let config = mesh.config();
            match serde_json::to_vec_pretty(&*config.snapshot) {
                Ok(json) => {
                    let mut r = with_type(local(StatusCode::OK, json), "application/json");
                    if let Ok(v) = HeaderValue::from_str(&config.version.to_string()) {
                        r.headers_mut().insert("x-meshrig-config-version", v);
                    }
                    r
                }
                Err(e) => local(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        "/metrics" => with_type(
            local(StatusCode::OK, mesh.metrics.render()),
            "text/plain; version=0.0.4",
        ),
        _ => local(
            StatusCode::NOT_FOUND,
            "not found: try /ready, /config_dump or /metrics\n",
        ),
    }
}

fn with_type(mut response: Response<ProxyBody>, content_type: &'static str) -> Response<ProxyBody> {
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}
