//! The API's request handlers: routing, authentication, the signing and rotation
//! endpoints, and the refusals (each a 4xx with `{"error": ...}`, a counter and a log
//! line).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{MAX_BODY_BYTES, Shared, SignOn, log_event, unix_ns};
use crate::CaError;
use crate::authority::unix_s;
use crate::csr::VerifiedCsr;
use crate::metrics::Reason;
use crate::roots::{Phase, RotateError, Timeline};
use crate::tokens::bearer_matches;

pub(super) type Resp = Response<Full<Bytes>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    csr: String,
    ttl_s: Option<u64>,
}

#[derive(Serialize)]
struct SignResponse<'a> {
    cert_chain: &'a str,
    bundle: &'a str,
    not_before: u64,
    not_after: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateRequest {
    overlap_s: u64,
}

/// A refusal: its status, counter and message.
struct Reject {
    status: StatusCode,
    reason: Reason,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, reason: Reason, message: impl Into<String>) -> Reject {
        Reject {
            status,
            reason,
            message: message.into(),
        }
    }
}

pub(super) async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_owned();
    let outcome = match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/sign") => sign(shared, req).await,
        (&Method::GET, "/v1/bundle") => Ok(text(
            StatusCode::OK,
            "application/x-pem-file",
            shared.snapshot().bundle_pem.to_string(),
        )),
        (&Method::POST, "/v1/rotate") => rotate(shared, req).await,
        (&Method::GET, "/ready") => Ok(text(StatusCode::OK, "text/plain", "ready\n".to_owned())),
        (&Method::GET, "/metrics") => Ok(text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(&shared.gauges()),
        )),
        (_, "/v1/sign" | "/v1/rotate" | "/v1/bundle" | "/ready" | "/metrics") => Err(Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Reason::NotFound,
            format!(
                "{} is not allowed on {path} (POST /v1/sign, POST /v1/rotate; GET /v1/bundle, /ready, /metrics)",
                req.method()
            ),
        )),
        _ => Err(Reject::new(
            StatusCode::NOT_FOUND,
            Reason::NotFound,
            format!(
                "no such endpoint: {path} (POST /v1/sign, POST /v1/rotate; GET /v1/bundle, /ready, /metrics)"
            ),
        )),
    };
    outcome.unwrap_or_else(|r| {
        shared.metrics.rejected(r.reason);
        log_event(&serde_json::json!({
            "event": "rejected",
            "status": r.status.as_u16(),
            "reason": r.reason.as_str(),
            "path": path,
            "peer": peer.to_string(),
            "error": r.message,
        }));
        json(r.status, &serde_json::json!({ "error": r.message }))
    })
}

async fn sign(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Reject> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = shared
        .tokens
        .authenticate(authorization)
        .map_err(|e| {
            Reject::new(
                StatusCode::UNAUTHORIZED,
                Reason::Unauthenticated,
                e.to_string(),
            )
        })?
        .clone();
    let body = read_body(req).await?;
    let request: SignRequest = serde_json::from_slice(&body).map_err(|e| {
        Reject::new(
            StatusCode::BAD_REQUEST,
            Reason::BadRequest,
            format!("the body is not {{\"csr\": \"<PEM>\", \"ttl_s\": <seconds, optional>}}: {e}"),
        )
    })?;
    let ttl = match request.ttl_s {
        None => shared.default_ttl,
        Some(0) => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                Reason::BadRequest,
                "ttl_s must be at least 1",
            ));
        }
        Some(s) => Duration::from_secs(s).min(shared.max_ttl),
    };
    let snapshot = shared.snapshot();
    let started = Instant::now();
    let signer = Arc::clone(&snapshot.signer);
    let work = move || {
        let csr = VerifiedCsr::from_pem(&request.csr)?;
        signer.sign(
            &csr,
            &identity.namespace,
            &identity.service_account,
            ttl,
            SystemTime::now(),
        )
    };
    let result = match shared.sign_on {
        SignOn::Inline => work(),
        SignOn::Blocking => match tokio::task::spawn_blocking(work).await {
            Ok(r) => r,
            Err(e) => Err(CaError::Chain(format!("the signing task failed: {e}"))),
        },
    };
    let took = started.elapsed();
    match result {
        Ok(leaf) => {
            shared.metrics.signed(took);
            let body = SignResponse {
                cert_chain: &leaf.cert_chain_pem,
                bundle: &snapshot.bundle_pem,
                not_before: unix_s(leaf.not_before),
                not_after: unix_s(leaf.not_after),
            };
            Ok(json(StatusCode::OK, &body))
        }
        Err(e) => {
            shared.metrics.sign_took(took);
            Err(match e {
                CaError::WrongIdentity { asked, allowed } => Reject::new(
                    StatusCode::FORBIDDEN,
                    Reason::Forbidden,
                    format!("token is bound to {allowed}; the CSR asks for {asked}"),
                ),
                CaError::Crypto(_) | CaError::Chain(_) => {
                    shared.metrics.sign_error();
                    return Ok(json(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        &serde_json::json!({ "error": format!("the CA could not sign: {e}") }),
                    ));
                }
                other => Reject::new(StatusCode::BAD_REQUEST, Reason::BadCsr, other.to_string()),
            })
        }
    }
}

async fn rotate(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Reject> {
    let Some(admin) = &shared.admin_token else {
        return Err(Reject::new(
            StatusCode::FORBIDDEN,
            Reason::Forbidden,
            "rotation is disabled: this CA was started without an admin token",
        ));
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !bearer_matches(authorization, admin) {
        return Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            Reason::Unauthenticated,
            if authorization.is_none() {
                "rotation needs the admin token: send 'Authorization: Bearer <admin token>'"
            } else {
                "that is not the admin token"
            },
        ));
    }
    let body = read_body(req).await?;
    let request: RotateRequest = serde_json::from_slice(&body).map_err(|e| {
        Reject::new(
            StatusCode::BAD_REQUEST,
            Reason::BadRequest,
            format!("the body is not {{\"overlap_s\": <seconds>}}: {e}"),
        )
    })?;
    let overlap = Duration::from_secs(request.overlap_s);
    let now = SystemTime::now();
    let (rotation, bundle) = {
        let mut control = shared.control();
        let rotation = control
            .roots
            .rotate(now, overlap)
            .map_err(|e: RotateError| {
                Reject::new(StatusCode::CONFLICT, Reason::RotateRefused, e.to_string())
            })?;
        shared.publish(&mut control, now);
        (rotation, control.bundle_pem.clone())
    };
    shared.wake.notify_one();
    let Timeline {
        started,
        switch_at,
        drop_old_at,
    } = rotation.timeline;
    let body = serde_json::json!({
        "trust_domain": shared.trust_domain,
        "phase": Phase::OverlapOldSigning.as_str(),
        "overlap_s": request.overlap_s,
        "started": unix_s(started),
        "switch_at": unix_s(switch_at),
        "drop_old_at": unix_s(drop_old_at),
        "note": rotation.note,
        "bundle": bundle,
    });
    log_event(&serde_json::json!({
        "event": "root_rotation_started",
        "unix_ns": unix_ns(SystemTime::now()),
        "message": format!(
            "a new root is trusted alongside the old one; it signs in {} s, the old root is dropped in {} s",
            request.overlap_s as f64 / 2.0,
            request.overlap_s
        ),
        "overlap_s": request.overlap_s,
        "switch_at": unix_s(switch_at),
        "drop_old_at": unix_s(drop_old_at),
        "note": rotation.note,
    }));
    Ok(json(StatusCode::OK, &body))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Reject> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BadRequest,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )),
        Err(e) => Err(Reject::new(
            StatusCode::BAD_REQUEST,
            Reason::BadRequest,
            format!("cannot read the body: {e}"),
        )),
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}
