//! Helpers shared by the simulator's integration tests.
#![allow(dead_code, reason = "each test binary uses part of this module")]

use results::scenario::ScenarioResult;

/// Loads scenario text (no `file:` references), panicking with every finding.
pub fn load(text: &str) -> scenario::Loaded {
    scenario::load("test.yaml", text, &mut |p| Err(format!("no file {p}"))).unwrap_or_else(|f| {
        panic!(
            "{}",
            f.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Runs scenario text with `options` adjusted by `tune` (seed, cost table, ...).
pub fn run_tuned(text: &str, tune: impl FnOnce(&mut sim::SimOptions)) -> ScenarioResult {
    let loaded = load(text);
    let mut opts = sim::SimOptions::new("test.yaml");
    tune(&mut opts);
    sim::run(&loaded, &opts, &mut |_| {}).expect("runs")
}

/// Runs scenario text with the scenario's seed, or `seed`.
pub fn run_text(text: &str, seed: Option<u64>) -> ScenarioResult {
    run_tuned(text, |o| o.seed = seed)
}
