//! Lifecycle timelines, driven the way a driver would: step to the next wake-up.

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;
use crate::Time;

const SEC: u64 = 1_000_000_000;

fn t(secs: f64) -> Time {
    Time((secs * SEC as f64) as u64)
}

fn secs(d_ns: u64) -> f64 {
    d_ns as f64 / SEC as f64
}

/// How the fake CA answers a request sent at a given time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ca {
    Up,
    Refuses,
    Silent,
}

/// A tiny driver: a lifecycle, a fake CA with a fixed latency, a seeded RNG.
struct Harness {
    lc: CertLifecycle,
    rng: SmallRng,
    now: Time,
    /// An answer in flight: when it lands, and whether the CA was up when asked.
    pending: Option<(Time, Ca)>,
    ca_latency: Duration,
    cert_lifetime: Duration,
    log: Vec<IdentityEvent>,
}

impl Harness {
    fn new(config: LifecycleConfig, seed: u64) -> Self {
        let cert_lifetime = config.ttl;
        Harness {
            lc: CertLifecycle::new(config).unwrap(),
            rng: SmallRng::seed_from_u64(seed),
            now: Time::ZERO,
            pending: None,
            ca_latency: Duration::from_millis(100),
            cert_lifetime,
            log: Vec::new(),
        }
    }

    /// Steps to each wake-up up to `end`, asking `ca(now)` how the CA behaves.
    /// Capped at 10 000 steps so a stuck machine fails instead of hanging.
    fn run_until(&mut self, end: Time, ca: impl Fn(Time) -> Ca) {
        for _ in 0..10_000 {
            let timer = self.lc.poll_timeout().unwrap_or(Time(u64::MAX));
            let answer = self.pending.map_or(Time(u64::MAX), |(at, _)| at);
            let next = timer.min(answer);
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let events = if answer <= timer {
                let (_, mode) = self.pending.take().unwrap();
                match mode {
                    Ca::Up => self
                        .lc
                        .on_issued(now, now, now + self.cert_lifetime, &mut self.rng),
                    _ => self
                        .lc
                        .on_request_failed(now, "ca unreachable", &mut self.rng),
                }
            } else {
                self.lc.handle_timeout(now, &mut self.rng)
            };
            for event in &events {
                if let IdentityEvent::RequestCertificate { .. } = event {
                    match ca(now) {
                        Ca::Silent => self.pending = None,
                        mode => self.pending = Some((now + self.ca_latency, mode)),
                    }
                }
            }
            self.log.extend(events);
        }
        panic!("no progress after 10000 steps at {:?}", self.now);
    }

    fn failures(&self) -> Vec<(u64, bool)> {
        self.log
            .iter()
            .filter_map(|e| match e {
                IdentityEvent::RequestFailed {
                    backoff_ns,
                    backoff_capped,
                    ..
                } => Some((*backoff_ns, *backoff_capped)),
                _ => None,
            })
            .collect()
    }
}

fn short_config() -> LifecycleConfig {
    LifecycleConfig {
        ttl: Duration::from_secs(100),
        ..LifecycleConfig::default()
    }
}

fn issued(log: &[IdentityEvent]) -> Vec<(Time, Time, Time, Time)> {
    log.iter()
        .filter_map(|e| match e {
            IdentityEvent::Issued {
                not_before,
                renew_at,
                renew_window_start,
                renew_window_end,
                ..
            } => Some((
                *not_before,
                *renew_at,
                *renew_window_start,
                *renew_window_end,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn renews_near_half_lifetime_within_jitter_bounds() {
    let mut seen = Vec::new();
    for seed in 0..20 {
        let mut h = Harness::new(short_config(), seed);
        h.run_until(t(120.0), |_| Ca::Up);
        let certs = issued(&h.log);
        assert!(certs.len() >= 2, "seed {seed}: renewed at least once");
        let (nb, renew_at, start, end) = certs[0];
        let offset = secs((renew_at - nb).as_nanos() as u64);
        assert!(
            (45.0..=55.0).contains(&offset),
            "seed {seed}: renew at {offset}s"
        );
        assert_eq!(
            (start - nb, end - nb),
            (Duration::from_secs(45), Duration::from_secs(55))
        );
        let renewal = h.log.iter().find_map(|e| match e {
            IdentityEvent::RequestCertificate {
                at,
                reason: RequestReason::RenewalDue { .. },
                ..
            } => Some(*at),
            _ => None,
        });
        assert_eq!(
            renewal,
            Some(renew_at),
            "seed {seed}: renewal request at renew_at"
        );
        seen.push(offset);
    }
    seen.sort_by(f64::total_cmp);
    assert!(
        seen[19] - seen[0] > 1.0,
        "jitter spreads renewals: {seen:?}"
    );
}

#[test]
fn backoff_doubles_then_caps() {
    let config = LifecycleConfig {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(8),
        backoff_jitter_fraction: 0.0,
        ..short_config()
    };
    let mut h = Harness::new(config, 7);
    h.ca_latency = Duration::ZERO;
    h.run_until(t(40.0), |_| Ca::Refuses);
    let got: Vec<(f64, bool)> = h.failures().iter().map(|(ns, c)| (secs(*ns), *c)).collect();
    assert_eq!(
        &got[..7],
        &[
            (1.0, false),
            (2.0, false),
            (4.0, false),
            (8.0, true),
            (8.0, true),
            (8.0, true),
            (8.0, true)
        ]
    );
    let attempts: Vec<(u32, Time)> = h
        .log
        .iter()
        .filter_map(|e| match e {
            IdentityEvent::RequestCertificate { attempt, at, .. } => Some((*attempt, *at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        &attempts[..5],
        &[
            (1, t(0.0)),
            (2, t(1.0)),
            (3, t(3.0)),
            (4, t(7.0)),
            (5, t(15.0))
        ]
    );
    assert!(!h.lc.is_usable(h.now));
}

#[test]
fn backoff_jitter_stays_within_bounds_and_cap() {
    let config = LifecycleConfig {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(8),
        backoff_jitter_fraction: 0.5,
        ..short_config()
    };
    let mut h = Harness::new(config, 3);
    h.ca_latency = Duration::ZERO;
    h.run_until(t(200.0), |_| Ca::Refuses);
    for (i, (ns, _)) in h.failures().into_iter().enumerate() {
        let nominal = (1u64 << i.min(3)) as f64;
        let d = secs(ns);
        assert!(
            d >= nominal * 0.5 - 1e-9 && d <= (nominal * 1.5).min(8.0) + 1e-9,
            "#{i}: {d}s"
        );
    }
}

#[test]
fn silent_ca_times_out() {
    let mut h = Harness::new(short_config(), 1);
    h.run_until(t(10.0), |_| Ca::Silent);
    match &h.log[..] {
        [
            IdentityEvent::RequestCertificate { at: t0, .. },
            IdentityEvent::RequestFailed { at, cause, .. },
        ] => {
            assert_eq!(*t0, Time::ZERO);
            assert_eq!(*at, t(10.0));
            assert_eq!(
                *cause,
                FailureCause::TimedOut {
                    timeout_ns: 10 * SEC
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expires_when_ca_stays_down_then_recovers() {
    let mut h = Harness::new(short_config(), 11);
    let ca = |now: Time| {
        if now < t(1.0) || now >= t(200.0) {
            Ca::Up
        } else {
            Ca::Refuses
        }
    };
    h.run_until(t(99.0), ca);
    assert!(matches!(h.lc.state(), CertState::Renewing { .. }));
    assert!(
        h.lc.is_usable(t(99.0)),
        "the old certificate still works while renewing"
    );
    h.run_until(t(150.0), ca);
    let expired: Vec<&IdentityEvent> = h
        .log
        .iter()
        .filter(|e| matches!(e, IdentityEvent::Expired { .. }))
        .collect();
    // Issued at 0.1 s (CA latency), lifetime 100 s.
    assert_eq!(
        expired,
        vec![&IdentityEvent::Expired {
            at: t(100.1),
            not_after: t(100.1)
        }]
    );
    assert!(matches!(h.lc.state(), CertState::Expired { .. }));
    assert!(!h.lc.is_usable(t(100.1)));
    h.run_until(t(300.0), ca);
    let certs = issued(&h.log);
    assert!(certs.len() >= 2, "recovered once the CA came back");
    let recovered_at = certs[1].0;
    assert!(
        recovered_at >= t(200.0) && recovered_at <= t(200.0 + 66.1),
        "{recovered_at:?}"
    );
    assert!(matches!(h.lc.state(), CertState::Valid { .. }));
    assert!(h.lc.is_usable(h.now));
}

#[test]
fn answers_without_an_outstanding_request_are_ignored() {
    let mut rng = SmallRng::seed_from_u64(0);
    let mut lc = CertLifecycle::new(short_config()).unwrap();
    let ignored = |answer| IdentityEvent::AnswerIgnored {
        at: Time::ZERO,
        answer,
        state: "unissued",
    };
    assert_eq!(
        lc.on_issued(Time::ZERO, Time::ZERO, t(100.0), &mut rng),
        vec![ignored(IgnoredAnswer::Issued)]
    );
    assert_eq!(
        lc.on_request_failed(Time::ZERO, "x", &mut rng),
        vec![ignored(IgnoredAnswer::Failed)]
    );
    assert_eq!(lc.poll_timeout(), Some(Time::ZERO));
    lc.handle_timeout(Time::ZERO, &mut rng);
    // Timed out, backing off: a late failure is ignored, a late certificate accepted.
    lc.handle_timeout(t(10.0), &mut rng);
    assert!(matches!(
        lc.on_request_failed(t(10.5), "late", &mut rng)[..],
        [IdentityEvent::AnswerIgnored { .. }]
    ));
    assert!(matches!(
        lc.on_issued(t(10.5), t(10.5), t(110.5), &mut rng)[..],
        [IdentityEvent::Issued { .. }]
    ));
    assert!(matches!(
        lc.on_issued(t(10.6), t(10.6), t(110.6), &mut rng)[..],
        [IdentityEvent::AnswerIgnored { state: "valid", .. }]
    ));
}

#[test]
fn handle_timeout_before_due_does_nothing() {
    let mut rng = SmallRng::seed_from_u64(0);
    let mut lc = CertLifecycle::new(short_config()).unwrap();
    lc.handle_timeout(Time::ZERO, &mut rng);
    lc.on_issued(t(1.0), t(1.0), t(101.0), &mut rng);
    let due = lc.poll_timeout().unwrap();
    let before = *lc.state();
    assert!(lc.handle_timeout(Time(due.0 - 1), &mut rng).is_empty());
    assert_eq!(*lc.state(), before);
    assert_eq!(lc.handle_timeout(due, &mut rng).len(), 1);
}

#[test]
fn clock_skew_shows_as_not_yet_valid_expired_on_arrival_or_immediate_renewal() {
    let mut rng = SmallRng::seed_from_u64(0);
    let start = |rng: &mut SmallRng, now| {
        let mut lc = CertLifecycle::new(short_config()).unwrap();
        lc.handle_timeout(now, rng);
        lc
    };
    // Workload clock 5 s behind the CA.
    let mut lc = start(&mut rng, Time::ZERO);
    let ev = lc.on_issued(Time::ZERO, t(5.0), t(105.0), &mut rng);
    assert!(matches!(
        ev[..],
        [IdentityEvent::Issued {
            not_yet_valid: true,
            ..
        }]
    ));
    assert!(!lc.is_usable(t(4.9)));
    assert!(lc.is_usable(t(5.0)));
    assert!(!lc.is_usable(t(105.0)));
    // Workload clock 200 s ahead: the certificate is already expired.
    let mut lc = start(&mut rng, t(200.0));
    let ev = lc.on_issued(t(200.0), Time::ZERO, t(100.0), &mut rng);
    match &ev[..] {
        [IdentityEvent::RequestFailed { cause, .. }] => {
            assert_eq!(
                *cause,
                FailureCause::ExpiredOnArrival {
                    not_after: t(100.0)
                }
            )
        }
        other => panic!("{other:?}"),
    }
    // 80 s ahead: past the renewal window, renew at once.
    let mut lc = start(&mut rng, t(80.0));
    let ev = lc.on_issued(t(80.0), Time::ZERO, t(100.0), &mut rng);
    assert!(matches!(
        ev[..],
        [IdentityEvent::Issued {
            renew_at_clamped_to_now: true,
            ..
        }]
    ));
    assert_eq!(lc.poll_timeout(), Some(t(80.0)));
    let ev = lc.handle_timeout(t(80.0), &mut rng);
    assert!(matches!(
        ev[..],
        [IdentityEvent::RequestCertificate {
            reason: RequestReason::RenewalDue { .. },
            ..
        }]
    ));
}

#[test]
fn invalid_config_reports_every_problem() {
    let config = LifecycleConfig {
        ttl: Duration::ZERO,
        renew_fraction: 1.5,
        jitter_fraction: -0.1,
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(1),
        ..LifecycleConfig::default()
    };
    let IdentityError::InvalidConfig { problems } = CertLifecycle::new(config).unwrap_err();
    assert_eq!(problems.len(), 4, "{problems:?}");
    let config = LifecycleConfig {
        renew_fraction: 0.9,
        jitter_fraction: 0.2,
        ..LifecycleConfig::default()
    };
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("before expiry"), "{err}");
    assert!(LifecycleConfig::default().validate().is_ok());
}

#[test]
fn events_and_state_serialize_with_snake_case_tags() {
    let mut h = Harness::new(short_config(), 5);
    h.run_until(t(1.0), |_| Ca::Up);
    let json = serde_json::to_value(&h.log).unwrap();
    assert_eq!(json[0]["event"], "request_certificate");
    assert_eq!(json[0]["reason"]["kind"], "initial");
    assert_eq!(json[0]["ttl_requested_ns"], 100 * SEC);
    assert_eq!(json[1]["event"], "issued");
    let state = serde_json::to_value(h.lc.state()).unwrap();
    assert_eq!(state["state"], "valid");
    let failed = IdentityEvent::RequestFailed {
        at: Time::ZERO,
        attempt: 1,
        cause: FailureCause::CaError {
            message: "down".into(),
        },
        backoff_ns: SEC,
        retry_at: t(1.0),
        backoff_capped: false,
    };
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["event"], "request_failed");
    assert_eq!(json["cause"]["kind"], "ca_error");
}

proptest! {
    /// The renewal point is always inside its jitter window and before expiry.
    #[test]
    fn renewal_within_jitter_bounds_and_before_expiry(
        lifetime_ms in 1u64..10_000_000_000,
        renew_fraction in 0.05f64..0.95,
        jitter_fraction in 0.0f64..0.5,
        not_before_ms in 0u64..1_000_000,
        seed in any::<u64>(),
    ) {
        prop_assume!(renew_fraction * (1.0 + jitter_fraction) < 1.0);
        let config = LifecycleConfig { renew_fraction, jitter_fraction, ..LifecycleConfig::default() };
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut lc = CertLifecycle::new(config).unwrap();
        let nb = Time(not_before_ms * 1_000_000);
        let na = nb + Duration::from_millis(lifetime_ms);
        lc.handle_timeout(nb, &mut rng);
        let events = lc.on_issued(nb, nb, na, &mut rng);
        let IdentityEvent::Issued { renew_at, renew_window_start, renew_window_end, .. } = events[0] else {
            panic!("{events:?}");
        };
        prop_assert!(renew_window_start <= renew_at && renew_at <= renew_window_end);
        prop_assert!(renew_at < na);
        let lifetime = (na - nb).as_secs_f64();
        let low = nb + Duration::from_secs_f64(lifetime * renew_fraction * (1.0 - jitter_fraction));
        let high = nb + Duration::from_secs_f64(lifetime * renew_fraction * (1.0 + jitter_fraction));
        let slack = Duration::from_micros(1);
        prop_assert!(renew_at + slack >= low && renew_at <= high + slack);
    }

    /// Same seed, same CA behaviour: the same timeline, event for event.
    #[test]
    fn same_seed_same_timeline(
        seed in any::<u64>(),
        outage_start in 0u64..300,
        outage_len in 0u64..300,
    ) {
        let ca = |now: Time| {
            let s = now.as_nanos() / SEC;
            if s >= outage_start && s < outage_start + outage_len { Ca::Refuses } else { Ca::Up }
        };
        let mut a = Harness::new(short_config(), seed);
        let mut b = Harness::new(short_config(), seed);
        a.run_until(t(600.0), ca);
        b.run_until(t(600.0), ca);
        prop_assert_eq!(&a.log, &b.log);
        prop_assert_eq!(a.lc.state(), b.lc.state());
        for (ns, _) in a.failures() {
            prop_assert!(ns <= 60 * SEC, "backoff above the cap: {}", ns);
        }
    }
}
