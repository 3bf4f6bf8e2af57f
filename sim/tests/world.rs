//! The simulated mesh, run end to end from scenario text.

use results::scenario::ScenarioResult;

fn run_text(text: &str, seed: Option<u64>) -> ScenarioResult {
    let loaded = scenario::load("test.yaml", text, &mut |p| Err(format!("no file {p}")))
        .unwrap_or_else(|f| panic!("{}", f.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n")));
    let mut opts = sim::SimOptions::new("test.yaml");
    opts.seed = seed;
    sim::run(&loaded, &opts, &mut |_| {}).expect("runs")
}

const BASIC: &str = r#"
apiVersion: meshrig.dev/v1
kind: Scenario
metadata: { name: basic }
spec:
  duration: 2s
  topology:
    zones: [a]
    services:
      - name: web
        instances: [{ zone: a, count: 2 }]
        app: { serviceTime: { fixed: 1ms }, calls: [{ service: db }] }
      - name: db
        instances: [{ zone: a, count: 2 }]
  workload:
    - { target: web, rate: { constant: 100/s } }
  assertions:
    - "success_rate(web) > 99%"
"#;

#[test]
fn basic_two_tier_run() {
    let r = run_text(BASIC, None);
    let s = serde_json::to_string_pretty(&r).unwrap();
    eprintln!("{}", &s[..s.len().min(3000)]);
    assert_eq!(r.totals.requests_total, 200);
    assert_eq!(r.totals.success_total, 200);
    assert_eq!(r.services["db"].requests_total, 200);
    assert!(r.assertions.iter().all(|a| a.passed), "{:?}", r.assertions);
}
