//! The CA's counters and their Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::roots::Phase;

/// Why a request was refused: the `reason` label of `meshrig_ca_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// 401: no token, not a bearer token, or a token bound to nobody.
    Unauthenticated,
    /// 403: the CSR asks for another identity than the token's, or rotation without
    /// the admin token.
    Forbidden,
    /// 400: the CSR does not parse, verify, or ask for one SPIFFE ID.
    BadCsr,
    /// 400/413: the body is not the expected JSON, or too large, or a bad TTL.
    BadRequest,
    /// 404/405: no such endpoint or method.
    NotFound,
    /// 409: a rotation that cannot start.
    RotateRefused,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::Unauthenticated,
        Reason::Forbidden,
        Reason::BadCsr,
        Reason::BadRequest,
        Reason::NotFound,
        Reason::RotateRefused,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Unauthenticated => "unauthenticated",
            Reason::Forbidden => "forbidden",
            Reason::BadCsr => "bad_csr",
            Reason::BadRequest => "bad_request",
            Reason::NotFound => "not_found",
            Reason::RotateRefused => "rotate_refused",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    signed: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
    sign_ns_sum: AtomicU64,
    sign_count: AtomicU64,
    tls_failures: AtomicU64,
    sign_errors: AtomicU64,
}

/// The gauges that live elsewhere, read when rendering.
pub(crate) struct Gauges {
    pub phase: Phase,
    pub rotations: u64,
    pub trusted_roots: usize,
}

impl Metrics {
    pub(crate) fn signed(&self, took: Duration) {
        self.signed.fetch_add(1, Ordering::Relaxed);
        self.sign_took(took);
    }

    /// A signing attempt that ended in an error (counted in the latency too).
    pub(crate) fn sign_took(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sign_ns_sum.fetch_add(ns, Ordering::Relaxed);
        self.sign_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, reason: Reason) {
        self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sign_error(&self) {
        self.sign_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_signed_total Certificates signed.\n# TYPE meshrig_ca_signed_total counter\nmeshrig_ca_signed_total {}",
            get(&self.signed)
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_rejected_total Requests refused, by reason.\n# TYPE meshrig_ca_rejected_total counter"
        );
        for r in Reason::ALL {
            let _ = writeln!(
                out,
                "meshrig_ca_rejected_total{{reason=\"{}\"}} {}",
                r.as_str(),
                get(&self.rejected[r.index()])
            );
        }
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_sign_errors_total Signing failures inside the CA (not the requester's fault).\n# TYPE meshrig_ca_sign_errors_total counter\nmeshrig_ca_sign_errors_total {}",
            get(&self.sign_errors)
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_sign_duration_seconds Time to parse, check and sign one CSR (including any queueing for the signing thread).\n# TYPE meshrig_ca_sign_duration_seconds summary\nmeshrig_ca_sign_duration_seconds_sum {:.9}\nmeshrig_ca_sign_duration_seconds_count {}",
            get(&self.sign_ns_sum) as f64 / 1e9,
            get(&self.sign_count)
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_rotation_phase 0 steady, 1 overlap with the old root signing, 2 overlap with the new root signing.\n# TYPE meshrig_ca_rotation_phase gauge\nmeshrig_ca_rotation_phase {}",
            g.phase.gauge()
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_rotations_total Root rotations started.\n# TYPE meshrig_ca_rotations_total counter\nmeshrig_ca_rotations_total {}",
            g.rotations
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_trusted_roots Roots in the trust bundle.\n# TYPE meshrig_ca_trusted_roots gauge\nmeshrig_ca_trusted_roots {}",
            g.trusted_roots
        );
        let _ = writeln!(
            out,
            "# HELP meshrig_ca_tls_handshake_failures_total TLS handshakes with the API that failed.\n# TYPE meshrig_ca_tls_handshake_failures_total counter\nmeshrig_ca_tls_handshake_failures_total {}",
            get(&self.tls_failures)
        );
        out
    }
}
