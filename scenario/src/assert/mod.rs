//! Assertions: `p99(frontend)[40s..60s] < 50ms`, `success_rate(reviews:v2) > 99%`,
//! `share(reviews:v3) == 10% ± 2%`.
//!
//! [`grammar`] parses the text into an [`AssertExpr`] (errors carry the column and
//! what would be right); [`eval`] evaluates assertions against a
//! [`results::scenario::ScenarioResult`]. The grammar is documented in
//! `docs/scenarios.md`.

pub mod eval;
pub mod expr;
pub mod grammar;

pub use eval::{evaluate, is_timing, windows_needed};
pub use grammar::{AssertError, AssertExpr, Cmp, Func, Target, Unit, Window, parse_assertion};

#[cfg(test)]
mod tests;
