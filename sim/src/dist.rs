//! Duration distributions: service times, link latencies, think times — sampled in ns.
//!
//! Every random duration in the simulator is a [`Dist`] sampled with the caller's seeded
//! generator, so the same seed gives the same durations. Samples are whole nanoseconds,
//! never negative: a continuous draw is rounded to the nearest ns and clamped at 0.
//!
//! The normal deviate is drawn by hand (Box–Muller, one deviate per call) rather than
//! through `rand_distr`, to keep the dependency set small and the sample sequence under
//! our control: a `rand_distr` upgrade cannot silently change simulated results.
//! [`Dist::mean_ns`] is analytic for every variant, which is what the theory tests and
//! the cost-model sanity checks compare sampled means against.

use rand::Rng;

/// `Φ⁻¹(0.99)`: the standard normal's 99th percentile.
pub const Z_P99: f64 = 2.326_347_874_040_840_8;

/// A distribution of durations in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always `ns`.
    Fixed(u64),
    /// Uniform over whole nanoseconds in `[min_ns, max_ns]`, both ends included
    /// (reversed bounds are swapped).
    Uniform { min_ns: u64, max_ns: u64 },
    /// Normal with mean `mean_ns` and standard deviation `stdev_ns`, **clamped** at 0
    /// (a negative draw becomes 0; cheaper and bounded, unlike resampling). When the
    /// mean is a few deviations above 0 the clamp never matters; [`Dist::mean_ns`]
    /// accounts for it either way.
    Normal { mean_ns: f64, stdev_ns: f64 },
    /// Log-normal: `ln(sample_ns)` is normal with mean `mu` and deviation `sigma`.
    /// The median is `e^mu` ns. Build it from percentiles with
    /// [`Dist::lognormal_from_p50_p99`].
    LogNormal { mu: f64, sigma: f64 },
    /// Exponential with mean `mean_ns` (memoryless inter-arrival and service times).
    Exponential { mean_ns: f64 },
    /// An empirical distribution given by points `(q, ns)` of its quantile function,
    /// `q` in `[0, 1]` and both coordinates nondecreasing; samples interpolate linearly
    /// between points. Below the first point's `q` the value is the first point's `ns`
    /// (as if a point `(0, first ns)` came first); above the last point's `q` it is the
    /// last point's `ns`. Build it with [`Dist::empirical`], which checks the points.
    Empirical(Vec<(f64, u64)>),
    /// A mixture: with `probability` a sample comes from `tail`, otherwise from `base`
    /// (the tail *replaces* the base draw; it is not added to it).
    WithTail {
        base: Box<Dist>,
        probability: f64,
        tail: Box<Dist>,
    },
}

/// A distribution whose parameters make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistError {
    #[error("empirical distribution has no points (give at least one (q, ns) point)")]
    EmptyEmpirical,
    #[error(
        "empirical point {index} has q = {q}: quantiles must be numbers in [0, 1], in nondecreasing order"
    )]
    BadQuantile { index: usize, q: f64 },
    #[error(
        "empirical point {index} has {ns} ns, less than the point before: values must be nondecreasing"
    )]
    DecreasingValue { index: usize, ns: u64 },
    #[error("{what} is {value}: it must be a finite number >= 0")]
    Negative { what: &'static str, value: f64 },
    #[error("tail probability is {0}: it must be in [0, 1]")]
    BadProbability(f64),
}

// === impl Dist: constructors ===

impl Dist {
    /// Always `ns`.
    pub fn fixed(ns: u64) -> Dist {
        Dist::Fixed(ns)
    }

    /// Uniform over `[min_ns, max_ns]`.
    pub fn uniform(min_ns: u64, max_ns: u64) -> Dist {
        Dist::Uniform { min_ns, max_ns }
    }

    /// Normal, clamped at 0.
    pub fn normal(mean_ns: u64, stdev_ns: u64) -> Dist {
        Dist::Normal {
            mean_ns: mean_ns as f64,
            stdev_ns: stdev_ns as f64,
        }
    }

    /// The log-normal whose median is `p50_ns` and 99th percentile is `p99_ns`:
    /// `mu = ln(p50)`, `sigma = ln(p99 / p50) / Φ⁻¹(0.99)`.
    ///
    /// A `p50_ns` of 0 is taken as 1 ns; a `p99_ns` below `p50_ns` gives `sigma = 0`
    /// (always the median).
    pub fn lognormal_from_p50_p99(p50_ns: u64, p99_ns: u64) -> Dist {
        let p50 = p50_ns.max(1) as f64;
        let p99 = (p99_ns as f64).max(p50);
        Dist::LogNormal {
            mu: p50.ln(),
            sigma: (p99 / p50).ln() / Z_P99,
        }
    }

    /// Exponential with mean `mean_ns`.
    pub fn exponential(mean_ns: u64) -> Dist {
        Dist::Exponential {
            mean_ns: mean_ns as f64,
        }
    }

    /// An empirical distribution from quantile points `(q, ns)`; see [`Dist::Empirical`].
    pub fn empirical(points: Vec<(f64, u64)>) -> Result<Dist, DistError> {
        let d = Dist::Empirical(points);
        d.validate()?;
        Ok(d)
    }

    /// `tail` with `probability`, otherwise `base`.
    pub fn with_tail(base: Dist, probability: f64, tail: Dist) -> Dist {
        Dist::WithTail {
            base: Box::new(base),
            probability,
            tail: Box::new(tail),
        }
    }

    /// Checks the parameters (a variant built by hand may hold nonsense; sampling never
    /// panics on it, but the results would mean nothing).
    pub fn validate(&self) -> Result<(), DistError> {
        let non_negative = |what, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(DistError::Negative { what, value })
            }
        };
        match self {
            Dist::Fixed(_) | Dist::Uniform { .. } => Ok(()),
            Dist::Normal { mean_ns, stdev_ns } => {
                non_negative("normal mean_ns", *mean_ns)?;
                non_negative("normal stdev_ns", *stdev_ns)
            }
            Dist::LogNormal { mu, sigma } => {
                if !mu.is_finite() {
                    return Err(DistError::Negative {
                        what: "log-normal mu",
                        value: *mu,
                    });
                }
                non_negative("log-normal sigma", *sigma)
            }
            Dist::Exponential { mean_ns } => non_negative("exponential mean_ns", *mean_ns),
            Dist::Empirical(points) => validate_empirical(points),
            Dist::WithTail {
                base,
                probability,
                tail,
            } => {
                if !(0.0..=1.0).contains(probability) {
                    return Err(DistError::BadProbability(*probability));
                }
                base.validate()?;
                tail.validate()
            }
        }
    }
}

fn validate_empirical(points: &[(f64, u64)]) -> Result<(), DistError> {
    if points.is_empty() {
        return Err(DistError::EmptyEmpirical);
    }
    let mut prev = (0.0, 0);
    for (index, &(q, ns)) in points.iter().enumerate() {
        if !(0.0..=1.0).contains(&q) || q < prev.0 {
            return Err(DistError::BadQuantile { index, q });
        }
        if ns < prev.1 {
            return Err(DistError::DecreasingValue { index, ns });
        }
        prev = (q, ns);
    }
    Ok(())
}

// === impl Dist: sampling and moments ===

impl Dist {
    /// One sample, in ns.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        match self {
            Dist::Fixed(ns) => *ns,
            Dist::Uniform { min_ns, max_ns } => {
                let (lo, hi) = (*min_ns.min(max_ns), *min_ns.max(max_ns));
                rng.random_range(lo..=hi)
            }
            Dist::Normal { mean_ns, stdev_ns } => to_ns(mean_ns + stdev_ns * standard_normal(rng)),
            Dist::LogNormal { mu, sigma } => to_ns((mu + sigma * standard_normal(rng)).exp()),
            Dist::Exponential { mean_ns } => {
                // 1 - U is in (0, 1], so the log is finite.
                let u: f64 = 1.0 - rng.random::<f64>();
                to_ns(-mean_ns * u.ln())
            }
            Dist::Empirical(points) => to_ns(empirical_quantile(points, rng.random::<f64>())),
            Dist::WithTail {
                base,
                probability,
                tail,
            } => {
                if rng.random::<f64>() < *probability {
                    tail.sample(rng)
                } else {
                    base.sample(rng)
                }
            }
        }
    }

    /// The mean in ns, in closed form (before rounding samples to whole ns).
    pub fn mean_ns(&self) -> f64 {
        match self {
            Dist::Fixed(ns) => *ns as f64,
            Dist::Uniform { min_ns, max_ns } => (*min_ns as f64 + *max_ns as f64) / 2.0,
            Dist::Normal { mean_ns, stdev_ns } => {
                if *stdev_ns <= 0.0 {
                    return mean_ns.max(0.0);
                }
                // E[max(X, 0)] for X ~ N(m, s²) = m Φ(m/s) + s φ(m/s).
                let z = mean_ns / stdev_ns;
                mean_ns * normal_cdf(z) + stdev_ns * normal_pdf(z)
            }
            Dist::LogNormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Dist::Exponential { mean_ns } => *mean_ns,
            Dist::Empirical(points) => empirical_mean(points),
            Dist::WithTail {
                base,
                probability,
                tail,
            } => {
                let p = probability.clamp(0.0, 1.0);
                (1.0 - p) * base.mean_ns() + p * tail.mean_ns()
            }
        }
    }
}

/// A standard normal deviate by Box–Muller (the cosine branch only).
pub fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Rounds to whole ns, clamping at 0 (and at `u64::MAX`; NaN becomes 0).
fn to_ns(x: f64) -> u64 {
    x.round() as u64
}

/// The quantile function of an empirical distribution at `u` in `[0, 1)`.
fn empirical_quantile(points: &[(f64, u64)], u: f64) -> f64 {
    let Some(&(q0, v0)) = points.first() else {
        return 0.0;
    };
    if u <= q0 {
        return v0 as f64;
    }
    // First point with q > u; at least 1 because points[0].q < u.
    let i = points.partition_point(|&(q, _)| q <= u);
    let Some(&(qb, vb)) = points.get(i) else {
        return points[points.len() - 1].1 as f64;
    };
    let (qa, va) = points[i - 1];
    let (va, vb) = (va as f64, vb as f64);
    va + (vb - va) * (u - qa) / (qb - qa)
}

/// The integral of the quantile function over `[0, 1]`.
fn empirical_mean(points: &[(f64, u64)]) -> f64 {
    let Some(&(q0, v0)) = points.first() else {
        return 0.0;
    };
    let mut sum = q0 * v0 as f64;
    for w in points.windows(2) {
        let ((qa, va), (qb, vb)) = (w[0], w[1]);
        sum += (qb - qa) * (va as f64 + vb as f64) / 2.0;
    }
    let (ql, vl) = points[points.len() - 1];
    sum + (1.0 - ql).max(0.0) * vl as f64
}

/// The standard normal density.
fn normal_pdf(z: f64) -> f64 {
    (-z * z / 2.0).exp() / (std::f64::consts::TAU).sqrt()
}

/// The standard normal CDF via the complementary error function.
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// `erfc` by the Chebyshev fit of Numerical Recipes (`erfcc`): fractional error below
/// 1.2e-7 everywhere, plenty for an analytic mean.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

impl Dist {
    /// The sampler for a scenario's distribution (the real-mode application samples
    /// its service times with it too, so both drivers draw from the same shapes).
    pub fn from_scenario(d: &scenario::Dist) -> Dist {
        use scenario::Dist as S;
        match d {
            S::Fixed { ns } => Dist::fixed(*ns),
            S::Uniform { min_ns, max_ns } => Dist::uniform(*min_ns, *max_ns),
            S::Normal { mean_ns, stdev_ns } => Dist::normal(*mean_ns, *stdev_ns),
            S::LogNormal { p50_ns, p99_ns } => Dist::lognormal_from_p50_p99(*p50_ns, *p99_ns),
            S::Exponential { mean_ns } => Dist::exponential(*mean_ns),
            S::Empirical { points } => Dist::empirical(points.clone())
                .unwrap_or_else(|_| Dist::fixed(points.last().map_or(0, |p| p.1))),
            S::WithTail {
                base,
                probability,
                tail,
            } => Dist::with_tail(
                Dist::from_scenario(base),
                *probability,
                Dist::from_scenario(tail),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    const DRAWS: usize = 200_000;

    fn samples(d: &Dist, seed: u64) -> Vec<u64> {
        let mut rng = seeded(seed);
        (0..DRAWS).map(|_| d.sample(&mut rng)).collect()
    }

    fn sample_mean(d: &Dist) -> f64 {
        samples(d, 1).iter().map(|&x| x as f64).sum::<f64>() / DRAWS as f64
    }

    fn percentile(sorted: &[u64], q: f64) -> f64 {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)] as f64
    }

    fn assert_close(what: &str, got: f64, want: f64, tolerance: f64) {
        let err = (got - want).abs() / want.abs().max(1e-9);
        assert!(
            err <= tolerance,
            "{what}: got {got}, want {want} (off by {:.2}%)",
            err * 100.0
        );
    }

    fn all_variants() -> Vec<(&'static str, Dist)> {
        vec![
            ("fixed", Dist::fixed(1_500)),
            ("uniform", Dist::uniform(1_000, 9_000)),
            ("normal", Dist::normal(5_000_000, 1_000_000)),
            ("normal clamped", Dist::normal(1_000, 2_000)),
            (
                "lognormal",
                Dist::lognormal_from_p50_p99(2_000_000, 20_000_000),
            ),
            ("exponential", Dist::exponential(1_000_000)),
            (
                "empirical",
                Dist::empirical(vec![
                    (0.5, 1_000),
                    (0.9, 5_000),
                    (0.99, 20_000),
                    (1.0, 50_000),
                ])
                .expect("valid"),
            ),
            (
                "with tail",
                Dist::with_tail(Dist::exponential(1_000_000), 0.05, Dist::fixed(100_000_000)),
            ),
        ]
    }

    #[test]
    fn sample_means_match_analytic_means() {
        for (name, d) in all_variants() {
            d.validate().expect(name);
            assert_close(name, sample_mean(&d), d.mean_ns(), 0.02);
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        for (name, d) in all_variants() {
            let (a, b) = (samples(&d, 5), samples(&d, 5));
            assert_eq!(a[..1000], b[..1000], "{name}");
            if !matches!(d, Dist::Fixed(_)) {
                assert_ne!(a[..1000], samples(&d, 6)[..1000], "{name}");
            }
        }
    }

    #[test]
    fn lognormal_recovers_its_percentiles() {
        let d = Dist::lognormal_from_p50_p99(2_000_000, 20_000_000);
        let mut s = samples(&d, 11);
        s.sort_unstable();
        assert_close("p50", percentile(&s, 0.50), 2_000_000.0, 0.03);
        assert_close("p99", percentile(&s, 0.99), 20_000_000.0, 0.03);
    }

    #[test]
    fn lognormal_degenerate_inputs() {
        let d = Dist::lognormal_from_p50_p99(3_000, 1_000);
        assert_eq!(
            d,
            Dist::LogNormal {
                mu: 3_000f64.ln(),
                sigma: 0.0
            }
        );
        assert_eq!(d.sample(&mut seeded(1)), 3_000);
        assert!(Dist::lognormal_from_p50_p99(0, 10).validate().is_ok());
    }

    #[test]
    fn empirical_quantiles_interpolate() {
        let pts = vec![(0.5, 1_000), (0.9, 5_000), (1.0, 9_000)];
        assert_eq!(empirical_quantile(&pts, 0.0), 1_000.0);
        assert_eq!(empirical_quantile(&pts, 0.3), 1_000.0);
        assert_close("q(0.7)", empirical_quantile(&pts, 0.7), 3_000.0, 1e-9);
        assert_close("q(0.95)", empirical_quantile(&pts, 0.95), 7_000.0, 1e-9);
        let d = Dist::empirical(pts).expect("valid");
        let mut s = samples(&d, 3);
        s.sort_unstable();
        assert_close("p70", percentile(&s, 0.70), 3_000.0, 0.03);
        assert_close("p95", percentile(&s, 0.95), 7_000.0, 0.03);
        assert!(s[0] >= 1_000 && s[s.len() - 1] <= 9_000);
        // A last q below 1 holds the last value.
        let short = vec![(0.0, 10), (0.5, 20)];
        assert_eq!(empirical_quantile(&short, 0.75), 20.0);
        assert_eq!(empirical_mean(&short), 0.5 * 15.0 + 0.5 * 20.0);
    }

    #[test]
    fn bad_parameters_are_reported() {
        assert_eq!(Dist::empirical(vec![]), Err(DistError::EmptyEmpirical));
        assert_eq!(
            Dist::empirical(vec![(0.5, 1), (0.4, 2)]),
            Err(DistError::BadQuantile { index: 1, q: 0.4 })
        );
        assert_eq!(
            Dist::empirical(vec![(0.5, 9), (0.6, 2)]),
            Err(DistError::DecreasingValue { index: 1, ns: 2 })
        );
        assert!(Dist::empirical(vec![(1.5, 9)]).is_err());
        let bad_tail = Dist::with_tail(Dist::fixed(1), 1.5, Dist::fixed(2));
        assert_eq!(bad_tail.validate(), Err(DistError::BadProbability(1.5)));
        let bad_mean = Dist::Exponential { mean_ns: -1.0 };
        assert!(
            bad_mean
                .validate()
                .unwrap_err()
                .to_string()
                .contains(">= 0")
        );
    }

    #[test]
    fn uniform_is_inclusive_and_tolerates_reversed_bounds() {
        let mut rng = seeded(2);
        let d = Dist::uniform(5, 3);
        let s: Vec<u64> = (0..1000).map(|_| d.sample(&mut rng)).collect();
        assert!(s.contains(&3) && s.contains(&5) && s.iter().all(|x| (3..=5).contains(x)));
    }

    #[test]
    fn normal_cdf_is_accurate() {
        assert_close("Φ(0)", normal_cdf(0.0), 0.5, 1e-6);
        assert_close("Φ(z99)", normal_cdf(Z_P99), 0.99, 1e-6);
        assert_close("Φ(-1)", normal_cdf(-1.0), 0.158_655_253_931_457, 1e-6);
    }
}
