//! The certificate authority's hot path, in process (no socket, no TLS): what one CSR
//! costs the CA, split into its parts.
//!
//! - `ca/parse_csr`: PEM → DER, x509-parser parse of the PKCS#10, and the check of its
//!   ECDSA P-256 signature (ring) — [`VerifiedCsr::from_pem`];
//! - `ca/sign_verified_csr`: building the leaf (SAN, key usages, validity), DER
//!   serialization, the CA's ECDSA P-256 signature and PEM — [`Ca::sign`];
//! - `ca/sign_csr`: both, as the API does per request — [`Ca::sign_csr`];
//! - `ca/generate_csr`: the workload side, a new key and its CSR — [`generate_csr`].
//!
//! Goal (issue 6): ≥ 5,000 CSRs/s through the HTTPS API on this machine; the API's
//! throughput is measured by `scripts/bench-ca.sh` (docs/benchmarks.md).
//! Run with `cargo bench --bench ca`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_ca::{Ca, VerifiedCsr, generate_csr};

const TD: &str = "cluster.local";
const TTL: Duration = Duration::from_secs(3600);

fn bench(c: &mut Criterion) {
    let ca = Ca::generate(TD).expect("a root");
    let csr = generate_csr(TD, "default", "reviews").expect("a CSR");
    let verified = VerifiedCsr::from_pem(&csr.csr_pem).expect("a good CSR");
    let mut g = c.benchmark_group("ca");
    g.bench_function("parse_csr", |b| {
        b.iter(|| VerifiedCsr::from_pem(black_box(&csr.csr_pem)).unwrap());
    });
    g.bench_function("sign_verified_csr", |b| {
        b.iter(|| {
            ca.sign(
                black_box(&verified),
                "default",
                "reviews",
                TTL,
                SystemTime::now(),
            )
            .unwrap()
        });
    });
    g.bench_function("sign_csr", |b| {
        b.iter(|| {
            ca.sign_csr(black_box(&csr.csr_pem), "default", "reviews", TTL)
                .unwrap()
        });
    });
    g.bench_function("generate_csr", |b| {
        b.iter(|| generate_csr(TD, "default", black_box("reviews")).unwrap());
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
