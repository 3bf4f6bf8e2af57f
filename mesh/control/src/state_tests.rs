use std::time::{Duration, Instant};

use super::*;

const DR: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
";

fn vs(subset: &str) -> String {
    format!(
        "
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{ name: reviews, namespace: default }}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {{ host: reviews, subset: {subset} }}
"
    )
}

const REGISTRY: &str = r#"{"services":[{"name":"reviews","instances":[
    {"address":"127.0.0.1:9081","labels":{"version":"v1"},"via":{"productpage":"127.0.0.1:7001"}},
    {"address":"127.0.0.1:9082","labels":{"version":"v2"}}]}]}"#;

fn state() -> State {
    State::new(
        vec![Source::new("dr.yaml", DR), Source::new("vs.yaml", vs("v1"))],
        RegistryFile::parse(REGISTRY).unwrap(),
        Duration::from_secs(40),
    )
    .unwrap()
}

fn ack(id: &str, version: u64, ok: bool) -> Ack {
    Ack {
        proxy: id.to_owned(),
        version,
        ok,
        error: (!ok).then(|| "bad".to_owned()),
    }
}

#[test]
fn a_version_is_bumped_only_when_content_changes() {
    let mut s = state();
    let now = Instant::now();
    assert_eq!(s.current().version, 1);
    let same = vec![Source::new("dr.yaml", DR), Source::new("vs.yaml", vs("v1"))];
    assert_eq!(s.set_files(same, now), Change::Unchanged);
    let changed = vec![Source::new("dr.yaml", DR), Source::new("vs.yaml", vs("v2"))];
    assert_eq!(s.set_files(changed.clone(), now), Change::Published(2));
    assert_eq!(s.set_files(changed, now), Change::Unchanged);
    assert_eq!(s.set_registry_text(REGISTRY, now), Change::Unchanged);
    let fewer = r#"{"services":[{"name":"reviews","instances":[{"address":"127.0.0.1:9081"}]}]}"#;
    assert_eq!(s.set_registry_text(fewer, now), Change::Published(3));
    assert_eq!(s.current().registry.services[0].instances.len(), 1);
}

#[test]
fn published_sources_layer_over_the_files_and_replace_by_name() {
    let mut s = state();
    let now = Instant::now();
    assert_eq!(
        s.publish(vec![Source::new("push", vs("v2"))], now),
        Change::Published(2)
    );
    // The later VirtualService of the same name wins, as with kubectl apply.
    let p = ProxyIdentity::new("client", "default");
    let v2 = s.current().view_for(&p);
    assert_eq!(v2.sources.len(), 3);
    assert_eq!(
        s.publish(vec![Source::new("push", vs("v1"))], now),
        Change::Published(3)
    );
    assert_eq!(s.current().sources.len(), 3, "replaced, not appended");
    assert_eq!(
        s.publish(vec![Source::new("push", vs("v1"))], now),
        Change::Unchanged
    );
    assert_ne!(s.current().view_for(&p).snapshot_hash, v2.snapshot_hash);
}

#[test]
fn a_rejected_change_keeps_the_last_good_version() {
    let mut s = state();
    let now = Instant::now();
    let bad = vec![
        Source::new("dr.yaml", DR),
        Source::new("vs.yaml", "kind: VirtualService\n  bad: [indent\n"),
    ];
    let Change::Rejected(r) = s.set_files(bad, now) else {
        panic!("bad YAML must be rejected");
    };
    assert_eq!((r.origin.as_str(), r.kept_version), ("files", 1));
    assert!(
        r.line()
            .starts_with("rejected files change, keeping version 1: vs.yaml:"),
        "{}",
        r.line()
    );
    assert_eq!(s.current().version, 1);
    assert_eq!(s.current().sources[1].text, vs("v1"));
    // A published change still layers over the last good files.
    let Change::Rejected(r) = s.publish(vec![Source::new("push", "spec: [unclosed\n")], now) else {
        panic!("bad YAML must be rejected");
    };
    assert_eq!(r.origin, "api");
    let Change::Rejected(r) = s.set_registry_text(
        r#"{"services":[{"name":"a","instances":[{"address":"x"}]}]}"#,
        now,
    ) else {
        panic!("bad registry must be rejected");
    };
    assert!(r.errors[0].contains("is not IP:PORT"), "{r:?}");
    let status = s.status(now);
    assert_eq!((status.version, status.rejections_total), (1, 3));
    assert_eq!(status.last_rejection.unwrap().origin, "registry");
    assert!(
        s.metrics(now)
            .contains("meshrig_control_rejections_total 3\n")
    );
}

#[test]
fn the_view_resolves_via_for_the_named_source_only() {
    let s = state();
    let view = |w: &str| s.current().view_for(&ProxyIdentity::new(w, "default"));
    let pp = view("productpage");
    assert_eq!(
        pp.registry.services[0].instances[0].address,
        "127.0.0.1:7001"
    );
    let other = view("ratings");
    assert_eq!(
        other.registry.services[0].instances[0].address,
        "127.0.0.1:9081"
    );
    assert!(other.registry.services[0].instances[0].via.is_empty());
    assert_ne!(pp.snapshot_hash, other.snapshot_hash);
    // The proxy side recompiles the same inputs and gets the same hash.
    let (set, errors) = load(&pp.sources);
    assert!(errors.is_empty());
    let snap = snapshot(
        &set,
        &pp.registry.to_registry(),
        &pp.proxy.proxy_id(),
        pp.version,
    );
    assert_eq!(hash_hex(snap.digest), pp.snapshot_hash);
}

#[test]
fn propagation_quantiles_count_proxies_connected_at_publish() {
    let mut s = state();
    let t0 = Instant::now();
    let ids: Vec<String> = (0..10).map(|i| format!("p{i}")).collect();
    for id in &ids {
        let mut p = ProxyIdentity::new("client", "default");
        p.id.clone_from(id);
        s.poll_started(&p, t0);
    }
    let Change::Published(v) = s.publish(vec![Source::new("push", vs("v2"))], t0) else {
        panic!()
    };
    // p0..p4 ACK after 10..50 ms; p5 NACKs; the rest ACK a later version at 200 ms.
    for (i, id) in ids.iter().enumerate().take(5) {
        s.ack(
            &ack(id, v, true),
            t0 + Duration::from_millis(10 * (i as u64 + 1)),
        );
    }
    s.ack(&ack("p5", v, false), t0 + Duration::from_millis(60));
    let p = &s.status(t0).propagation[0];
    assert_eq!((p.version, p.proxies, p.acked, p.nacks), (v, 10, 5, 1));
    assert_eq!(p.p50_ms, Some(50.0));
    assert_eq!(p.p90_ms, None, "only half have ACKed");
    let Change::Published(v2) = s.publish(
        vec![Source::new("push", vs("v1"))],
        t0 + Duration::from_millis(100),
    ) else {
        panic!()
    };
    for id in &ids[5..] {
        s.ack(&ack(id, v2, true), t0 + Duration::from_millis(200));
    }
    let status = s.status(t0);
    let (p, p2) = (&status.propagation[0], &status.propagation[1]);
    assert_eq!(
        (p.acked, p.p90_ms, p.p100_ms),
        (10, Some(200.0), Some(200.0))
    );
    // Half of the ten connected proxies took v2 100 ms after its publish.
    assert_eq!((p2.acked, p2.p50_ms, p2.p100_ms), (5, Some(100.0), None));
    assert_eq!(status.nacks_total, 1);
    let p5 = status.proxies.iter().find(|p| p.id == "p5").unwrap();
    assert_eq!(
        (p5.acked_version, p5.last_nack.as_ref().unwrap().version),
        (Some(v2), v)
    );
    let metrics = s.metrics(t0);
    assert!(
        metrics.contains(&format!(
            "meshrig_control_propagation_seconds{{version=\"{v}\",quantile=\"0.5\"}} 0.050000\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshrig_control_nacks_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshrig_control_config_version 3\n"),
        "{metrics}"
    );
}

#[test]
fn nobody_connected_means_no_propagation_figures() {
    let mut s = state();
    let t0 = Instant::now();
    let mut p = ProxyIdentity::new("client", "default");
    p.id = "gone".into();
    s.poll_started(&p, t0);
    s.poll_ended("gone", t0);
    let later = t0 + Duration::from_secs(41);
    assert!(matches!(
        s.publish(vec![Source::new("x", vs("v2"))], later),
        Change::Published(2)
    ));
    let status = s.status(later);
    assert_eq!(status.propagation[0].proxies, 0);
    assert_eq!(status.propagation[0].p100_ms, None);
    assert!(!status.proxies[0].connected);
}
