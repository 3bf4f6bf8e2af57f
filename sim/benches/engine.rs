//! Throughput of the simulator's inner loop.
//!
//! * `scheduler/hold_10k`: the classic hold model — 10k events pending; each step pops
//!   the earliest and schedules one new event at now + an exponential delay (mean 1 ms).
//!   Delays are pre-sampled so the figure is the heap's, not the sampler's. One element
//!   = one pop + one schedule.
//! * `scheduler/hold_10k_sampled`: the same, sampling each delay as the world would.
//! * `cpu/submit_4_cores`: one job submitted to a 4-core FCFS queue at ~80% load.
//! * `dist/sample_lognormal`: one log-normal service-time draw.
//!
//! Run with `cargo bench -p sim --bench engine`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mesh_core::time::Time;
use sim::cpu::CpuQueue;
use sim::dist::Dist;
use sim::engine::Scheduler;
use sim::rng::seeded;

const PENDING: usize = 10_000;

/// A payload about the size of a real world event (a kind, a node, an id).
#[derive(Debug, Clone, Copy)]
struct Payload {
    _node: u32,
    _kind: u32,
    _id: u64,
    _generation: u64,
}

fn payload(i: u64) -> Payload {
    Payload {
        _node: i as u32,
        _kind: 1,
        _id: i,
        _generation: 0,
    }
}

fn scheduler(c: &mut Criterion) {
    let exp = Dist::exponential(1_000_000);
    let mut rng = seeded(1);
    let delays: Vec<u64> = (0..1 << 16).map(|_| exp.sample(&mut rng)).collect();

    let mut group = c.benchmark_group("scheduler");
    group.throughput(Throughput::Elements(1));

    let mut sched = Scheduler::with_capacity(PENDING + 1);
    for i in 0..PENDING as u64 {
        sched.schedule_in(delays[i as usize], payload(i));
    }
    let mut i = 0usize;
    group.bench_function("hold_10k", |b| {
        b.iter(|| {
            let (_, ev) = sched.pop().expect("hold model never drains");
            i = (i + 1) & 0xFFFF;
            sched.schedule_in(delays[i], black_box(ev));
        })
    });

    let mut sched = Scheduler::with_capacity(PENDING + 1);
    for i in 0..PENDING as u64 {
        sched.schedule_in(exp.sample(&mut rng), payload(i));
    }
    group.bench_function("hold_10k_sampled", |b| {
        b.iter(|| {
            let (_, ev) = sched.pop().expect("hold model never drains");
            sched.schedule_in(exp.sample(&mut rng), black_box(ev));
        })
    });
    group.finish();
}

fn cpu(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu");
    group.throughput(Throughput::Elements(1));
    let mut cpu = CpuQueue::new(4);
    let mut now = 0u64;
    let mut k = 0u64;
    group.bench_function("submit_4_cores", |b| {
        b.iter(|| {
            // Arrivals every 250 ns, work 600–1000 ns: ~80% load on 4 cores.
            now += 250;
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let work = 600 + (k >> 55);
            black_box(cpu.submit(Time(now), work))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("dist");
    group.throughput(Throughput::Elements(1));
    let lognormal = Dist::lognormal_from_p50_p99(2_000_000, 20_000_000);
    let mut rng = seeded(2);
    group.bench_function("sample_lognormal", |b| {
        b.iter(|| black_box(lognormal.sample(&mut rng)))
    });
    group.finish();
}

criterion_group!(benches, scheduler, cpu);
criterion_main!(benches);
