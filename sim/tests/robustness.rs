//! Bad or odd input never crashes anything: scenario text mutated at random either
//! fails validation with findings, or loads and runs to the end.

use proptest::prelude::*;

/// The library scenarios the mutations start from.
const BASES: [&str; 3] = [
    include_str!("../../scenarios/outlier-failover.yaml"),
    include_str!("../../scenarios/retry-storm.yaml"),
    include_str!("../../tests/data/scenarios/rich.yaml"),
];

/// Values a mutation may put in place of a scalar.
const VALUES: [&str; 16] = [
    "0",
    "-1",
    "1e309",
    "18446744073709551616",
    "0s",
    "1ns",
    "100%",
    "101%",
    "nan",
    "''",
    "[]",
    "{}",
    "~",
    "x",
    "0/s",
    "99999999h",
];

/// Replaces the value after the `n`-th `key: ` occurrence (or a whole line) with
/// `value`.
fn mutate(text: &str, n: usize, value: &str, drop_line: bool) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let i = n % lines.len();
    let mut out = String::new();
    for (k, line) in lines.iter().enumerate() {
        if k == i {
            if drop_line {
                continue;
            }
            match line.split_once(": ") {
                Some((key, _)) => out.push_str(&format!("{key}: {value}")),
                None => out.push_str(value),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn mutated_scenarios_fail_cleanly_or_run(
        base in 0usize..BASES.len(),
        line in 0usize..400,
        value in 0usize..VALUES.len(),
        drop_line in any::<bool>(),
    ) {
        let text = mutate(BASES[base], line, VALUES[value], drop_line);
        let read = &mut |p: &str| {
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(p),
            )
            .map_err(|e| e.to_string())
        };
        match scenario::load("mutated.yaml", &text, read) {
            Err(findings) => prop_assert!(findings.iter().any(|f| f.is_error())),
            Ok(loaded) => {
                let mut opts = sim::SimOptions::new("mutated.yaml");
                opts.duration_ns = Some(2_000_000_000);
                // Must not panic; a build error is a clean refusal.
                if let Ok(r) = sim::run(&loaded, &opts, &mut |_| {}) {
                    prop_assert_eq!(
                        r.totals.success_total + r.totals.errors_total,
                        r.totals.requests_total
                    );
                }
            }
        }
    }
}
