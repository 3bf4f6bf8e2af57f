use std::collections::BTreeMap;

use crate::assert::{Cmp, Func, Target, Unit, Window};
use crate::dist::Dist;
use crate::model::*;

const FULL: &str = r#"apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: outlier-failover, description: "reviews v1 dies in zone a" }
spec:
  seed: 42
  duration: 60s
  topology:
    zones: [a, { name: b, region: r2 }]
    services:
      - name: frontend
        port: 8080
        cores: 4
        instances: [{ zone: a, count: 2 }]
        app:
          serviceTime: { lognormal: { p50: 2ms, p99: 20ms } }
          calls: [{ service: reviews, path: /reviews, headers: { x: y } }]
      - name: reviews
        namespace: shop
        serviceAccount: bookinfo-reviews
        app:
          errorRate: 1%
          responseBytes: 1KiB
        versions:
          v1: { instances: [{ zone: a, count: 2 }, { zone: b, count: 1 }], labels: { track: stable } }
          v2: { instances: [{ zone: a }], app: { errorRate: 0.5, errorStatus: 503 } }
  network:
    intraZone: { latency: { fixed: 100us } }
    interZone: { latency: { normal: { mean: 2ms, stdev: 200us } } }
    links: [{ between: [a, b], bandwidth: 1Gbps, loss: 0.1% }]
  mesh:
    mtls: STRICT
    proxiesPerHop: 1
    config:
      - { file: istio/reviews-dr.yaml }
      - inline: "apiVersion: x\n"
    controlPlane: { pushDelay: 250ms }
    ca: { trustDomain: example.org, certTtl: 1h, issueLatency: { fixed: 10ms } }
  workload:
    - target: frontend
      fromZone: b
      headers: { end-user: jason }
      rate: { ramp: { from: 100/s, to: 60000/m } }
      start: 5s
      duration: 30s
      timeout: 10s
      newConnectionPerRequest: true
    - target: frontend
      users: 50
      thinkTime: { exponential: { mean: 100ms } }
  faults:
    - { at: 20s, kill: { service: reviews, version: v1, zone: a, count: 1 } }
    - { at: 30s, partition: { between: [a, b], oneWay: true }, for: 10s }
    - { at: 40s, ca: outage, for: 5m }
    - { at: 10s, clockSkew: { service: reviews, offset: -2h, driftPpm: 50 } }
    - { at: 10s, app: { service: reviews, version: v2, errorRate: 50% }, for: 20s }
  assertions:
    - "p99(frontend)[40s..60s] < 50ms"
    - "share(reviews:v2) == 10% ± 2%"
  sim: { costTable: laptop }
"#;

#[test]
fn a_full_scenario_parses_into_the_model() {
    let (s, findings) = crate::parse("full.yaml", FULL);
    assert_eq!(findings, vec![], "{findings:#?}");
    let s = s.expect("valid");
    let ms = 1_000_000;
    assert_eq!(
        (s.name.as_str(), s.description.as_deref()),
        ("outlier-failover", Some("reviews v1 dies in zone a"))
    );
    assert_eq!(
        (s.seed, s.duration_ns, s.cost_table.as_str()),
        (42, 60_000 * ms, "laptop")
    );
    assert_eq!(
        s.topology.zones,
        [
            Zone {
                name: "a".into(),
                region: "region".into()
            },
            Zone {
                name: "b".into(),
                region: "r2".into()
            }
        ]
    );

    let fe = s.service("frontend").expect("frontend");
    assert_eq!(
        (
            fe.namespace.as_str(),
            fe.service_account.as_str(),
            fe.port,
            fe.cores
        ),
        ("default", "frontend", 8080, 4)
    );
    assert_eq!(
        fe.versions.len(),
        1,
        "the instances shorthand is one version v1"
    );
    let v1 = &fe.versions[0];
    assert_eq!(v1.name, "v1");
    assert_eq!(
        v1.placements,
        [Placement {
            zone: "a".into(),
            count: 2
        }]
    );
    let labels: BTreeMap<String, String> = [("app", "frontend"), ("version", "v1")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    assert_eq!(v1.labels, labels);
    assert_eq!(
        v1.app.service_time,
        Dist::LogNormal {
            p50_ns: 2 * ms,
            p99_ns: 20 * ms
        }
    );
    assert_eq!(
        (
            v1.app.error_rate,
            v1.app.error_status,
            v1.app.response_bytes
        ),
        (0.0, 500, 512)
    );
    assert_eq!(
        v1.app.calls[0].headers.get("x").map(String::as_str),
        Some("y")
    );

    let rv = s.service("reviews").expect("reviews");
    assert_eq!(
        (
            rv.namespace.as_str(),
            rv.service_account.as_str(),
            rv.port,
            rv.cores
        ),
        ("shop", "bookinfo-reviews", 9080, 2)
    );
    let r1 = rv.version("v1").expect("v1");
    assert_eq!(r1.instance_count(), 3);
    assert_eq!(r1.labels.get("track").map(String::as_str), Some("stable"));
    assert_eq!(r1.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(
        (
            r1.app.error_rate,
            r1.app.response_bytes,
            r1.app.error_status
        ),
        (0.01, 1024, 500)
    );
    let r2 = rv.version("v2").expect("v2");
    assert_eq!(
        r2.placements,
        [Placement {
            zone: "a".into(),
            count: 1
        }],
        "count defaults to 1"
    );
    assert_eq!(
        (
            r2.app.error_rate,
            r2.app.error_status,
            r2.app.response_bytes
        ),
        (0.5, 503, 1024),
        "merged field by field"
    );
    assert_eq!(
        r2.app.service_time,
        Dist::Fixed { ns: ms },
        "default service time"
    );

    assert_eq!(s.network.intra_zone.latency, Dist::Fixed { ns: 100_000 });
    assert_eq!(
        s.network.inter_zone.latency,
        Dist::Normal {
            mean_ns: 2 * ms,
            stdev_ns: 200_000
        }
    );
    let ab = s.network.link("b", "a");
    assert_eq!((ab.bandwidth_bps, ab.loss), (Some(1_000_000_000), 0.001));
    assert_eq!(
        ab.latency, s.network.inter_zone.latency,
        "unset link fields keep the inter-zone values"
    );

    let mesh = &s.mesh;
    assert_eq!((mesh.proxies_per_hop, mesh.mtls), (1, MtlsSetting::Strict));
    assert_eq!(
        mesh.config[0],
        ConfigSource::File {
            path: "istio/reviews-dr.yaml".into(),
            line: 34
        }
    );
    assert!(
        matches!(&mesh.config[1], ConfigSource::Inline { text, .. } if text == "apiVersion: x\n")
    );
    assert_eq!(mesh.push_delay, Dist::Fixed { ns: 250 * ms });
    assert_eq!(
        (mesh.trust_domain.as_str(), mesh.cert_ttl_ns),
        ("example.org", 3_600_000 * ms)
    );

    let w = &s.workload[0];
    assert_eq!(
        (w.from_zone.as_str(), w.method.as_str(), w.path.as_str()),
        ("b", "GET", "/")
    );
    assert_eq!(
        w.load,
        Load::Open(RateProfile::Ramp {
            from_rps: 100.0,
            to_rps: 1000.0
        })
    );
    assert_eq!(
        (w.start_ns, w.duration_ns, w.timeout_ns),
        (5_000 * ms, Some(30_000 * ms), 10_000 * ms)
    );
    assert!(w.new_connection_per_request);
    let w = &s.workload[1];
    assert_eq!(
        w.load,
        Load::Closed {
            users: 50,
            think_time: Dist::Exponential { mean_ns: 100 * ms }
        }
    );
    assert_eq!(
        (w.from_zone.as_str(), w.timeout_ns, w.duration_ns),
        ("a", crate::DEFAULT_TIMEOUT_NS, None)
    );

    assert_eq!(s.faults.len(), 5);
    assert_eq!(
        s.faults[0],
        Fault {
            at_ns: 20_000 * ms,
            for_ns: None,
            line: 51,
            kind: FaultKind::Kill(Selector {
                service: "reviews".into(),
                version: Some("v1".into()),
                zone: Some("a".into()),
                count: Some(1)
            }),
        }
    );
    assert_eq!(
        s.faults[1].kind,
        FaultKind::Partition {
            a: "a".into(),
            b: "b".into(),
            one_way: true
        }
    );
    assert_eq!(
        (s.faults[2].kind.clone(), s.faults[2].for_ns),
        (FaultKind::CaOutage, Some(300_000 * ms))
    );
    assert!(matches!(
        s.faults[3].kind,
        FaultKind::ClockSkew {
            offset_ns: -7_200_000_000_000,
            drift_ppm: 50.0,
            ..
        }
    ));
    assert!(
        matches!(&s.faults[4].kind, FaultKind::App { error_rate: Some(r), service_time: None, .. } if *r == 0.5)
    );

    let a = &s.assertions[0];
    assert_eq!(
        (a.line, a.expr.func, a.expr.cmp, a.expr.unit),
        (57, Func::P99, Cmp::Lt, Unit::Millis)
    );
    assert_eq!(
        a.expr.window,
        Some(Window {
            from_ns: 40_000 * ms,
            to_ns: 60_000 * ms
        })
    );
    let b = &s.assertions[1].expr;
    assert_eq!(
        b.target,
        Target::Version {
            service: "reviews".into(),
            version: "v2".into()
        }
    );
    assert_eq!(
        (b.value, b.tolerance, b.unit),
        (0.1, Some(0.02), Unit::Percent)
    );
}

#[test]
fn defaults_fill_everything_left_out() {
    let (s, findings) = crate::parse("s.yaml", super::BASE);
    assert_eq!(findings, vec![]);
    let s = s.expect("valid");
    assert_eq!((s.seed, s.cost_table.as_str()), (1, "default"));
    assert_eq!(s.network, Network::default());
    assert_eq!(s.mesh, Mesh::default());
    assert_eq!(s.mesh.proxies_per_hop, 2);
    assert_eq!(s.mesh.mtls, MtlsSetting::Permissive);
    let rv = s.service("reviews").expect("reviews");
    assert_eq!(
        rv.versions
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    assert_eq!(rv.versions[0].app, App::default());
    assert_eq!(
        s.workload[0].load,
        Load::Open(RateProfile::Constant { rps: 100.0 })
    );
}

#[test]
fn mesh_disabled_means_no_proxies() {
    let text = super::BASE.replace("  workload:", "  mesh: { enabled: false }\n  workload:");
    let (s, findings) = crate::parse("s.yaml", &text);
    assert_eq!(findings, vec![]);
    assert_eq!(s.expect("valid").mesh.proxies_per_hop, 0);
}

#[test]
fn rate_profiles_give_the_rate_at_each_time() {
    let s = 1_000_000_000u64;
    let c = RateProfile::Constant { rps: 100.0 };
    assert_eq!(
        (c.rate_at(0, 10 * s), c.rate_at(99 * s, 10 * s)),
        (100.0, 100.0)
    );
    let r = RateProfile::Ramp {
        from_rps: 100.0,
        to_rps: 1100.0,
    };
    assert_eq!(r.rate_at(0, 10 * s), 100.0);
    assert_eq!(r.rate_at(5 * s, 10 * s), 600.0);
    assert_eq!(r.rate_at(10 * s, 10 * s), 1100.0);
    assert_eq!(r.rate_at(20 * s, 10 * s), 1100.0, "held at the end");
    let st = RateProfile::Steps {
        steps: vec![(s, 100.0), (10 * s, 500.0)],
    };
    assert_eq!(st.rate_at(0, 0), 0.0, "nothing before the first step");
    assert_eq!(st.rate_at(s, 0), 100.0);
    assert_eq!(st.rate_at(10 * s - 1, 0), 100.0);
    assert_eq!(st.rate_at(10 * s, 0), 500.0);
    let sine = RateProfile::Sine {
        mean_rps: 500.0,
        amplitude_rps: 200.0,
        period_ns: 4 * s,
    };
    assert!((sine.rate_at(0, 0) - 500.0).abs() < 1e-9);
    assert!((sine.rate_at(s, 0) - 700.0).abs() < 1e-9);
    assert!((sine.rate_at(3 * s, 0) - 300.0).abs() < 1e-9);
    let deep = RateProfile::Sine {
        mean_rps: 100.0,
        amplitude_rps: 200.0,
        period_ns: 4 * s,
    };
    assert_eq!(deep.rate_at(3 * s, 0), 0.0, "never below 0");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ramps_stay_between_their_ends(from in 0.0f64..1e5, to in 0.0f64..1e5, t in 0u64..2_000, d in 1u64..1_000) {
            let r = RateProfile::Ramp { from_rps: from, to_rps: to }.rate_at(t, d);
            prop_assert!(r >= from.min(to) - 1e-6 && r <= from.max(to) + 1e-6);
        }

        #[test]
        fn sines_stay_within_mean_plus_amplitude(mean in 0.0f64..1e4, amp in 0.0f64..1e4, t in 0u64..u64::MAX / 2, p in 1u64..1_000_000_000_000) {
            let r = RateProfile::Sine { mean_rps: mean, amplitude_rps: amp, period_ns: p }.rate_at(t, 0);
            prop_assert!(r >= 0.0 && r <= mean + amp + 1e-6);
        }
    }
}
