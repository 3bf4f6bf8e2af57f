//! Traffic mirroring (VirtualService `mirror` / `mirrors`): a shadow copy of a request
//! to another cluster, as Envoy's request mirror policy sends it.
//!
//! Fire-and-forget: the shadow's `Host` is suffixed `-shadow` (before any port), it
//! goes through the mirror cluster's load balancer and connection pool, is never
//! retried, and its response is read and dropped. At most [`MAX_SHADOWS_IN_FLIGHT`]
//! shadows are in flight per proxy; beyond that a shadow is skipped and counted. Only
//! buffered (replayable) request bodies are mirrored; a streamed body is not.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::HeaderValue;
use http::header::HOST;
use http_body_util::BodyExt;
use mesh_core::route::Destination;

use crate::body::full;
use crate::mesh::lock;
use crate::outbound::{Head, authority_host, pick, port_of};
use crate::server::Sidecar;

/// Shadows in flight at once, per proxy.
pub const MAX_SHADOWS_IN_FLIGHT: usize = 64;

/// Longest a shadow may take, response body included, before it is abandoned.
pub const SHADOW_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Mirroring state: the in-flight bound and counters.
#[derive(Debug)]
pub struct Mirrors {
    in_flight: Arc<tokio::sync::Semaphore>,
    skipped: AtomicU64,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_SHADOWS_IN_FLIGHT)),
            skipped: AtomicU64::new(0),
        }
    }
}

impl Mirrors {
    /// Shadows not sent because [`MAX_SHADOWS_IN_FLIGHT`] were in flight (or no
    /// cluster or endpoint was there to take them).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
}

/// `reviews:9080` → `reviews-shadow:9080`.
pub fn shadow_authority(authority: &str) -> String {
    match port_of(authority) {
        Some(p) => format!("{}-shadow:{p}", authority_host(authority)),
        None => format!("{authority}-shadow"),
    }
}

/// Sends a shadow of the request `head` + `body` to `mirror`, in the background.
pub fn shadow(sidecar: &Arc<Sidecar>, mirror: &Destination, head: &Head, body: Bytes) {
    let mirrors = &sidecar.mirrors;
    let Ok(permit) = mirrors.in_flight.clone().try_acquire_owned() else {
        mirrors.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mesh = &sidecar.mesh;
    let Some(cluster) = mesh.cluster(&mirror.host, mirror.subset.as_deref()) else {
        mirrors.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some((endpoint, address, tls)) = pick(mesh, &cluster, &Default::default()) else {
        mirrors.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let authority = shadow_authority(&head.authority);
    let mut headers = head.headers.clone();
    if let Ok(v) = HeaderValue::from_str(&authority) {
        headers.insert(HOST, v);
    }
    let shadow = Head {
        method: head.method.clone(),
        path: head.path.clone(),
        authority,
        http2: head.http2,
        headers,
    };
    let Some(request) = shadow.request(full(body)) else {
        return;
    };
    let limits = lock(&cluster).policy.pool;
    let pool = sidecar
        .pools
        .pool(&mirror.host, mirror.subset.as_deref(), head.http2, limits);
    tokio::spawn(async move {
        let _permit = permit;
        let send = async {
            if let Ok((response, lease)) = pool.send(endpoint, &address, &tls, request).await {
                let complete = response.into_body().collect().await.is_ok();
                lease.finish(complete);
            }
        };
        let _ = tokio::time::timeout(SHADOW_TIMEOUT, send).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_host_keeps_the_port() {
        assert_eq!(shadow_authority("reviews"), "reviews-shadow");
        assert_eq!(shadow_authority("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(
            shadow_authority("reviews.default.svc.cluster.local"),
            "reviews.default.svc.cluster.local-shadow"
        );
    }
}
