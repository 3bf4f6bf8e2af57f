//! Hot paths of the load generator: what every request costs the client.
//!
//! * `histogram/record`: one latency into the HDR histogram.
//! * `stats/record`: everything a worker records per request (three latency
//!   histograms, sizes, status, byte counts, per-second interval).
//! * `schedule/next_offset`: computing the next intended send time (constant and ramp).
//! * `pacer/wait_until_past`: the pacer's check when it is behind schedule (no wait).
//!
//! Run with `cargo bench --bench hot_paths`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use loadgen::pacer::PreciseTimer;
use loadgen::schedule::{RateProfile, Schedule};
use loadgen::stats::{Outcome, Stats};
use results::Recorder;

fn histogram(c: &mut Criterion) {
    let mut rec = Recorder::latency();
    let mut v = 1u64;
    c.bench_function("histogram/record", |b| {
        b.iter(|| {
            // A cheap varying value spread over 1 µs .. ~1 s.
            v = (v.wrapping_mul(6364136223846793005).wrapping_add(1)) % 1_000_000 + 1;
            rec.record(black_box(v));
        })
    });
    let mut filled = Recorder::latency();
    for i in 1..100_000u64 {
        filled.record(i * 7 % 2_000_000);
    }
    c.bench_function("histogram/summary", |b| {
        b.iter(|| black_box(filled.summary()))
    });
}

fn stats(c: &mut Criterion) {
    let mut stats = Stats::new();
    let t0 = Instant::now();
    let outcome = Outcome::Response {
        status: 200,
        body_bytes: 120,
        header_bytes: 90,
        group: None,
        group_missing: false,
    };
    let mut i = 0u64;
    c.bench_function("stats/record", |b| {
        b.iter(|| {
            i += 1;
            let sent = t0 + Duration::from_micros(i % 1000);
            let done = sent + Duration::from_micros(200 + i % 5000);
            stats.record(t0, sent, done, 80, black_box(&outcome));
        })
    });
}

fn schedule(c: &mut Criterion) {
    let mut constant = Schedule::new(RateProfile::Constant { rps: 10_000.0 });
    c.bench_function("schedule/next_offset/constant", |b| {
        b.iter(|| black_box(constant.next_offset()))
    });
    let mut ramp = Schedule::new(RateProfile::Ramp {
        from_rps: 100.0,
        to_rps: 10_000.0,
        over: Duration::from_secs(3600),
    });
    c.bench_function("schedule/next_offset/ramp", |b| {
        b.iter(|| black_box(ramp.next_offset()))
    });
    let mut timer = PreciseTimer::new();
    c.bench_function("pacer/wait_until_past", |b| {
        b.iter(|| black_box(timer.wait_until(Instant::now(), || false)))
    });
}

criterion_group!(benches, histogram, stats, schedule);
criterion_main!(benches);
