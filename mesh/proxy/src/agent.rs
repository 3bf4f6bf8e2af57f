//! The identity agent: keeps the sidecar's workload certificate fresh.
//!
//! A tokio driver of mesh-core's [`CertLifecycle`] (the same state machine the
//! simulator drives): at start it makes a key (ECDSA P-256, kept in memory — it never
//! leaves the process) and sends a CSR to the CA ([`mesh_ca::CaClient`]); it renews at
//! the lifecycle's jittered point (default 50 % ± 10 % of the lifetime) with a fresh
//! key, backs off exponentially while the CA is unreachable or refuses, and installs
//! each new certificate and trust bundle into the [`Identity`] — new handshakes use
//! them at once, established connections keep theirs until they close, so a rotation
//! fails no request.
//!
//! Every lifecycle event is one JSON line on stderr (`csr`, `cert_issued`,
//! `cert_request_failed`, `cert_renewal_failed`, `cert_expired`), the event kinds the
//! simulator logs, for `meshrig run --mode real` to read.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mesh_ca::CaClient;
use mesh_core::Time;
use mesh_core::identity::{CertLifecycle, CertState, IdentityEvent, LifecycleConfig};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::tls::Identity;

/// Converts a wall-clock instant to the proxy's monotonic [`Time`], relative to now.
fn to_time(clock: &Clock, t: SystemTime) -> Time {
    let now_wall = SystemTime::now();
    let now = clock.now();
    match t.duration_since(now_wall) {
        Ok(ahead) => now + ahead,
        Err(e) => Time(now.as_nanos().saturating_sub(nanos(e.duration()))),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One lifecycle event as a JSON line on stderr.
fn log(identity: &Identity, renewing: bool, event: &IdentityEvent, extra: Option<&str>) {
    use std::io::Write as _;
    let (kind, message) = match event {
        IdentityEvent::RequestCertificate {
            attempt, reason, ..
        } => ("csr", format!("attempt {attempt}: {reason:?}")),
        IdentityEvent::Issued {
            not_after,
            renew_at,
            at,
            ..
        } => (
            "cert_issued",
            format!(
                "valid for {:.1} s more; renewal in {:.1} s",
                not_after.as_nanos().saturating_sub(at.as_nanos()) as f64 / 1e9,
                renew_at.as_nanos().saturating_sub(at.as_nanos()) as f64 / 1e9
            ),
        ),
        IdentityEvent::RequestFailed {
            attempt,
            cause,
            backoff_ns,
            ..
        } => (
            if renewing {
                "cert_renewal_failed"
            } else {
                "cert_request_failed"
            },
            format!(
                "attempt {attempt}: {cause:?}; next try in {} ms",
                backoff_ns / 1_000_000
            ),
        ),
        IdentityEvent::Expired { .. } => (
            "cert_expired",
            "the certificate expired before a renewal arrived: mTLS handshakes with it fail"
                .to_owned(),
        ),
        IdentityEvent::AnswerIgnored { answer, state, .. } => (
            "cert_answer_ignored",
            format!("{answer:?} answer ignored in state {state}"),
        ),
    };
    let message = match extra {
        Some(x) => format!("{message} ({x})"),
        None => message,
    };
    let line = serde_json::json!({
        "event": kind,
        "unix_ns": unix_ns(),
        "identity": identity.id().as_str(),
        "message": message,
        "detail": event,
    });
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether the lifecycle holds a certificate (so a failure is a renewal failure).
fn holds_certificate(lc: &CertLifecycle) -> bool {
    matches!(
        lc.state(),
        CertState::Valid { .. } | CertState::Renewing { .. } | CertState::Expired { .. }
    )
}

/// Runs the lifecycle of `identity` against the CA `client` forever. `ready` turns
/// `true` when the first certificate is installed. `seed` seeds the jitter.
pub async fn run(
    identity: Arc<Identity>,
    client: CaClient,
    config: LifecycleConfig,
    clock: Clock,
    seed: u64,
    ready: watch::Sender<bool>,
) {
    let timeout = config.request_timeout;
    let mut lc = match CertLifecycle::new(config) {
        Ok(lc) => lc,
        Err(e) => {
            eprintln!("meshrig proxy: identity agent not started: {e}");
            return;
        }
    };
    let mut rng = SmallRng::seed_from_u64(seed);
    let (td, ns, sa) = {
        let id = identity.id();
        (
            id.trust_domain().to_owned(),
            id.namespace().unwrap_or_default().to_owned(),
            id.service_account().unwrap_or_default().to_owned(),
        )
    };
    loop {
        let now = clock.now();
        let renewing = holds_certificate(&lc);
        for event in lc.handle_timeout(now, &mut rng) {
            log(&identity, renewing, &event, None);
            let IdentityEvent::RequestCertificate {
                ttl_requested_ns, ..
            } = event
            else {
                continue;
            };
            let ttl = Duration::from_nanos(ttl_requested_ns);
            let renewing = holds_certificate(&lc);
            let answer = request(&client, (&td, &ns, &sa), ttl, timeout).await;
            let now = clock.now();
            let events = match answer {
                Ok((signed, key_pem)) => {
                    // The CA backdates `not_before` (so a verifier whose clock is a
                    // little behind accepts the certificate); the renewal schedule
                    // counts the lifetime from when the certificate arrived.
                    let not_after = to_time(&clock, signed.not_after);
                    let written = to_time(&clock, signed.not_before);
                    let not_before = if now < not_after {
                        written.max(now)
                    } else {
                        written
                    };
                    let events = lc.on_issued(now, not_before, not_after, &mut rng);
                    let accepted = events
                        .iter()
                        .any(|e| matches!(e, IdentityEvent::Issued { .. }));
                    let mut note = None;
                    if accepted {
                        match install(&identity, &signed, &key_pem) {
                            Ok(n) => {
                                note = Some(format!("trust bundle: {n} root(s)"));
                                ready.send_replace(true);
                            }
                            Err(e) => note = Some(format!("NOT installed: {e}")),
                        }
                    }
                    for e in &events {
                        log(&identity, renewing, e, note.as_deref());
                    }
                    continue;
                }
                Err(message) => lc.on_request_failed(now, message, &mut rng),
            };
            for e in &events {
                log(&identity, renewing, e, None);
            }
        }
        match lc.poll_timeout() {
            Some(at) => tokio::time::sleep_until(clock.instant(at).into()).await,
            None => return,
        }
    }
}

/// One CSR round trip: a fresh key, the CSR, the CA's answer.
async fn request(
    client: &CaClient,
    (td, ns, sa): (&str, &str, &str),
    ttl: Duration,
    timeout: Duration,
) -> Result<(mesh_ca::Signed, String), String> {
    let csr = mesh_ca::generate_csr(td, ns, sa).map_err(|e| format!("making the CSR: {e}"))?;
    match tokio::time::timeout(timeout, client.sign(&csr.csr_pem, ttl)).await {
        Ok(Ok(signed)) => Ok((signed, csr.key_pem)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("the CA did not answer within {timeout:?}")),
    }
}

/// Installs the bundle, then the certificate; the number of roots.
fn install(
    identity: &Identity,
    signed: &mesh_ca::Signed,
    key_pem: &str,
) -> Result<usize, crate::tls::IdentityError> {
    let roots = identity.set_bundle(&signed.bundle_pem)?;
    identity.install(&signed.cert_chain_pem, key_pem)?;
    Ok(roots)
}
