//! The simulator held to queueing theory over long runs.
//!
//! These tests drive the building blocks the world is made of — [`Scheduler`],
//! [`CpuQueue`], [`Dist`] and the seeded rng streams — through classic queues whose
//! answers are known in closed form. If the event ordering, the FCFS model or the
//! samplers were subtly wrong, the means would drift away from theory. Each run is
//! seeded, so a pass is a pass on every machine; the tolerances (5%) leave several
//! standard errors of room at these sample sizes.

use mesh_core::time::Time;
use sim::cpu::CpuQueue;
use sim::dist::Dist;
use sim::engine::Scheduler;
use sim::rng::{fork, seeded};

const MS: f64 = 1_000_000.0;

#[derive(Debug)]
enum Event {
    Arrival,
    /// A job that arrived at this time completes now.
    Done(Time),
}

#[derive(Debug)]
struct Outcome {
    mean_response_ns: f64,
    mean_wait_ns: f64,
    utilization: f64,
}

/// An open queue: Poisson arrivals at `lambda_per_ms`, `service` times, `cores` FCFS
/// servers, `arrivals` jobs.
fn run_queue(seed: u64, cores: u32, lambda_per_ms: f64, service: &Dist, arrivals: u64) -> Outcome {
    let mut root = seeded(seed);
    let mut arrival_rng = fork(&mut root, 1);
    let mut service_rng = fork(&mut root, 2);
    let interarrival = Dist::Exponential {
        mean_ns: MS / lambda_per_ms,
    };
    let mut cpu = CpuQueue::new(cores);
    let mark = cpu.mark(Time::ZERO);
    let mut sched = Scheduler::with_capacity(1024);
    sched.schedule_at(Time::ZERO, Event::Arrival);
    let (mut arrived, mut done, mut response_sum_ns) = (0u64, 0u64, 0u128);
    let mut steps = 0u64;
    while let Some((now, ev)) = sched.pop() {
        steps += 1;
        assert!(steps <= 3 * arrivals, "stuck: {steps} steps");
        match ev {
            Event::Arrival => {
                arrived += 1;
                let finish = cpu.submit(now, service.sample(&mut service_rng));
                sched.schedule_at(finish, Event::Done(now));
                if arrived < arrivals {
                    sched.schedule_in(interarrival.sample(&mut arrival_rng), Event::Arrival);
                }
            }
            Event::Done(arrived_at) => {
                done += 1;
                response_sum_ns += u128::from(now.0 - arrived_at.0);
            }
        }
    }
    assert_eq!(done, arrivals);
    assert_eq!(sched.processed(), 2 * arrivals);
    Outcome {
        mean_response_ns: response_sum_ns as f64 / done as f64,
        mean_wait_ns: cpu.queue_delay().mean_ns(),
        utilization: cpu.utilization_since(sched.now(), mark),
    }
}

fn assert_within(what: &str, got: f64, want: f64, tolerance: f64) {
    let err = (got - want).abs() / want;
    assert!(
        err <= tolerance,
        "{what}: simulated {got:.4}, theory {want:.4}, off by {:.2}% (allowed {:.0}%)",
        err * 100.0,
        tolerance * 100.0
    );
}

/// Erlang C: the probability an arrival waits in an M/M/c queue with offered load
/// `a = λ/μ` (in Erlangs) on `c` servers.
fn erlang_c(c: u32, a: f64) -> f64 {
    let rho = a / f64::from(c);
    let mut term = 1.0; // a^k / k!
    let mut sum = 0.0;
    for k in 0..c {
        sum += term;
        term *= a / f64::from(k + 1);
    }
    // `term` is now a^c / c!.
    let top = term / (1.0 - rho);
    top / (sum + top)
}

#[test]
fn mm1_mean_response_time() {
    let (lambda, mu) = (0.7, 1.0); // per ms
    let out = run_queue(1, 1, lambda, &Dist::exponential(1_000_000), 600_000);
    assert_within(
        "M/M/1 W (ms)",
        out.mean_response_ns / MS,
        1.0 / (mu - lambda),
        0.05,
    );
    assert_within("M/M/1 ρ", out.utilization, lambda / mu, 0.02);
}

#[test]
fn mmc_mean_response_time_matches_erlang_c() {
    let (c, rho, mu) = (4u32, 0.8, 1.0);
    let lambda = rho * f64::from(c) * mu;
    let out = run_queue(2, c, lambda, &Dist::exponential(1_000_000), 800_000);
    let p_wait = erlang_c(c, lambda / mu);
    let wq = p_wait / (f64::from(c) * mu - lambda);
    assert_within("M/M/4 Wq (ms)", out.mean_wait_ns / MS, wq, 0.05);
    assert_within(
        "M/M/4 W (ms)",
        out.mean_response_ns / MS,
        wq + 1.0 / mu,
        0.05,
    );
    assert_within("M/M/4 ρ", out.utilization, rho, 0.02);
}

#[test]
fn doubling_the_cost_moves_queueing_delay_as_mm1_predicts() {
    // Wq = ρ / (μ − λ): at λ = 0.4/ms, 1 ms of work gives ρ = 0.4 and Wq = 2/3 ms;
    // 2 ms of work gives ρ = 0.8 and Wq = 8 ms — twelve times the delay, not two.
    let lambda = 0.4;
    let wq = |service_ms: f64| {
        let mu = 1.0 / service_ms;
        (lambda / mu) / (mu - lambda)
    };
    let base = run_queue(3, 1, lambda, &Dist::exponential(1_000_000), 500_000);
    let doubled = run_queue(4, 1, lambda, &Dist::exponential(2_000_000), 1_000_000);
    assert_within("Wq at 1 ms", base.mean_wait_ns / MS, wq(1.0), 0.05);
    assert_within("Wq at 2 ms", doubled.mean_wait_ns / MS, wq(2.0), 0.05);
    assert_within(
        "Wq ratio",
        doubled.mean_wait_ns / base.mean_wait_ns,
        wq(2.0) / wq(1.0),
        0.05,
    );
}

#[test]
fn same_seed_same_run() {
    let service = Dist::lognormal_from_p50_p99(500_000, 5_000_000);
    let a = run_queue(9, 2, 1.5, &service, 20_000);
    let b = run_queue(9, 2, 1.5, &service, 20_000);
    assert_eq!(a.mean_response_ns.to_bits(), b.mean_response_ns.to_bits());
    assert_eq!(a.mean_wait_ns.to_bits(), b.mean_wait_ns.to_bits());
    let c = run_queue(10, 2, 1.5, &service, 20_000);
    assert_ne!(a.mean_response_ns.to_bits(), c.mean_response_ns.to_bits());
}

#[test]
fn erlang_c_matches_known_values() {
    // One server: the waiting probability is ρ.
    assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-12);
    // c = 2, a = 1: C = (1/2 / (1 - 1/2)) / (1 + 1 + 1) = 1/3.
    assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
}
