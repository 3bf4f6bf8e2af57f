//! The load engine as a library, against in-process servers whose behaviour the test
//! controls exactly.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use loadgen::report::ResultMeta;
use loadgen::{RateProfile, RunOptions, Step, StopHandle, TargetConfig};

/// An HTTP/1.1 server that answers at once, except that request number `stall_at`
/// (counting from 1) takes `stall` to answer. Returns its address and request counter.
async fn stalling_server(stall_at: u64, stall: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if n == stall_at {
                            tokio::time::sleep(stall).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}

fn target(addr: SocketAddr, rate: RateProfile) -> TargetConfig {
    let mut t = TargetConfig::new(format!("http://{addr}/").parse().unwrap());
    t.rate = rate;
    t
}

/// A server that stalls once for 1 s during an open-loop run: the stall shows in the
/// corrected p99 (every request scheduled during the stall waited for it) and not in
/// the uncorrected one (only one request was slow once sent) — coordinated omission,
/// measured both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_stall_shows_in_corrected_p99_only() {
    let (addr, _) = stalling_server(100, Duration::from_secs(1)).await;
    let mut t = target(addr, RateProfile::Constant { rps: 200.0 });
    t.connections = 1;
    t.duration = Some(Duration::from_secs(3));
    let reports = loadgen::run(vec![t], RunOptions::default()).await.unwrap();
    let r = reports[0].to_result(&ResultMeta::default());
    assert_eq!(r.requests_total, 600);
    assert_eq!(r.success_total, 600);
    // ~200 of 600 requests were scheduled during the stall, waiting up to 1 s.
    assert!(
        r.latency_us.p99 >= 900_000,
        "corrected p99 {}",
        r.latency_us.p99
    );
    assert!(
        r.latency_uncorrected_us.p99 < 100_000,
        "uncorrected p99 {}",
        r.latency_uncorrected_us.p99
    );
    assert!(r.latency_uncorrected_us.max >= 1_000_000);
    assert!(r.send_lag_us.max >= 900_000, "lag {}", r.send_lag_us.max);
    // The schedule caught up after the stall: the rate was still delivered.
    assert!(r.schedule.target_met, "{:?}", r.schedule);
}

/// Several targets at once, each with its own profile and limit, as the scenario
/// runner drives the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_targets_with_rate_profiles() {
    let (a, count_a) = stalling_server(0, Duration::ZERO).await;
    let (b, count_b) = stalling_server(0, Duration::ZERO).await;
    let mut ramp = target(
        a,
        RateProfile::Ramp {
            from_rps: 0.0,
            to_rps: 400.0,
            over: Duration::from_secs(1),
        },
    );
    ramp.duration = Some(Duration::from_millis(1500));
    let mut steps = target(
        b,
        RateProfile::Steps(vec![
            Step {
                rps: 100.0,
                hold: Duration::from_millis(500),
            },
            Step {
                rps: 300.0,
                hold: Duration::from_secs(10),
            },
        ]),
    );
    steps.max_requests = Some(120);
    steps.duration = None;
    let reports = loadgen::run(vec![ramp, steps], RunOptions::default())
        .await
        .unwrap();
    // Ramp: 200 requests in the first second, then 400 rps for 0.5 s.
    assert_eq!(reports[0].stats.responses, 400);
    assert_eq!(count_a.load(Ordering::SeqCst), 400);
    // Steps: exactly 120 (50 in the first step, 70 in the second).
    assert_eq!(reports[1].stats.responses, 120);
    assert_eq!(count_b.load(Ordering::SeqCst), 120);
    let r1 = reports[1].to_result(&ResultMeta::default());
    // 50 requests in 0.5 s + 70 at 300 rps ≈ 0.73 s.
    let span = r1.duration_ns as f64 / 1e9;
    assert!((0.70..1.0).contains(&span), "span {span}");
}

/// Stopping a run returns what ran so far, marked interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_handle_interrupts() {
    let (addr, count) = stalling_server(0, Duration::ZERO).await;
    let mut t = target(addr, RateProfile::Constant { rps: 100.0 });
    t.duration = Some(Duration::from_secs(60));
    t.connections = 4;
    let stop = StopHandle::new();
    let stopper = stop.clone();
    let watcher = tokio::spawn(async move {
        while count.load(Ordering::SeqCst) < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stopper.stop();
    });
    let reports = loadgen::run(
        vec![t],
        RunOptions {
            stop,
            progress: None,
            observer: None,
            start_at: None,
        },
    )
    .await
    .unwrap();
    watcher.await.unwrap();
    let r = &reports[0];
    assert!(r.interrupted);
    let n = r.stats.responses;
    assert!((10..200).contains(&n), "{n}");
    // Every request the schedule handed out is accounted for: finished, or unsent
    // (received by a worker after the stop, or still queued).
    assert_eq!(
        r.issued,
        r.stats.responses + r.stats.errors_total() + r.unsent,
        "issued {} = responses {} + errors {} + unsent {}",
        r.issued,
        r.stats.responses,
        r.stats.errors_total(),
        r.unsent
    );
}

/// Closed loop with an exact count sends exactly that many, across connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_exact_count() {
    let (addr, count) = stalling_server(0, Duration::ZERO).await;
    let mut t = target(addr, RateProfile::Max);
    t.connections = 7;
    t.max_requests = Some(1001);
    t.duration = None;
    let reports = loadgen::run(vec![t], RunOptions::default()).await.unwrap();
    assert_eq!(reports[0].stats.responses, 1001);
    assert_eq!(count.load(Ordering::SeqCst), 1001);
}
