//! Distributions of durations (latency, service time, think time, delays).
//!
//! The model only: the drivers sample them with their own seeded RNG. Every variant
//! is checked by the parser (`min ≤ max`, `p50 ≤ p99`, probabilities in range), so a
//! driver can sample without re-checking.

/// A distribution of durations, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Dist {
    /// Always `ns`.
    Fixed { ns: u64 },
    /// Uniform over `[min_ns, max_ns]`; `min_ns ≤ max_ns`.
    Uniform { min_ns: u64, max_ns: u64 },
    /// Normal, truncated at 0 (negative draws become 0).
    Normal { mean_ns: u64, stdev_ns: u64 },
    /// Log-normal given by its median and 99th percentile; `0 < p50_ns ≤ p99_ns`.
    /// `mu = ln(p50)`, `sigma = ln(p99 / p50) / 2.3263` (z of the 99th percentile),
    /// in ln-seconds or ln-nanoseconds alike.
    LogNormal { p50_ns: u64, p99_ns: u64 },
    /// Exponential with the given mean.
    Exponential { mean_ns: u64 },
    /// A quantile table `(p, value_ns)`: `p` strictly increasing in `(0, 1]`, the
    /// last one `1.0`, values non-decreasing; interpolated linearly between points,
    /// and from `(0, first value)` below the first.
    Empirical { points: Vec<(f64, u64)> },
    /// With `probability`, draw from `tail`; otherwise from `base`.
    WithTail {
        base: Box<Dist>,
        probability: f64,
        tail: Box<Dist>,
    },
}

/// z-score of the 99th percentile of the standard normal distribution.
pub const Z_P99: f64 = 2.326_347_874_040_841;

impl Dist {
    /// `mu` and `sigma` (of ln nanoseconds) of a [`Dist::LogNormal`]; `None` for
    /// other variants.
    pub fn lognormal_params(&self) -> Option<(f64, f64)> {
        match self {
            Dist::LogNormal { p50_ns, p99_ns } => {
                let p50 = (*p50_ns).max(1) as f64;
                let p99 = (*p99_ns).max(1) as f64;
                Some((p50.ln(), (p99 / p50).ln().max(0.0) / Z_P99))
            }
            _ => None,
        }
    }

    /// The value at quantile `p` (0..=1) of an [`Dist::Empirical`] table; `None` for
    /// other variants.
    pub fn empirical_quantile(&self, p: f64) -> Option<u64> {
        let Dist::Empirical { points } = self else {
            return None;
        };
        let p = p.clamp(0.0, 1.0);
        let (mut p0, mut v0) = (0.0, points.first().map_or(0, |(_, v)| *v) as f64);
        for (pi, vi) in points {
            let vi = *vi as f64;
            if p <= *pi {
                let f = if *pi > p0 { (p - p0) / (pi - p0) } else { 1.0 };
                return Some((v0 + (vi - v0) * f).round() as u64);
            }
            (p0, v0) = (*pi, vi);
        }
        Some(v0 as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_sigma_puts_p99_where_asked() {
        let d = Dist::LogNormal {
            p50_ns: 2_000_000,
            p99_ns: 20_000_000,
        };
        let (mu, sigma) = d.lognormal_params().expect("lognormal");
        assert!(((mu + Z_P99 * sigma).exp() - 20_000_000.0).abs() < 1.0);
        assert!((mu.exp() - 2_000_000.0).abs() < 1e-6);
        assert_eq!(Dist::Fixed { ns: 1 }.lognormal_params(), None);
    }

    #[test]
    fn empirical_quantiles_interpolate() {
        let d = Dist::Empirical {
            points: vec![(0.5, 1_000), (0.99, 10_000), (1.0, 50_000)],
        };
        assert_eq!(d.empirical_quantile(0.0), Some(1_000));
        assert_eq!(d.empirical_quantile(0.5), Some(1_000));
        assert_eq!(d.empirical_quantile(1.0), Some(50_000));
        assert_eq!(d.empirical_quantile(0.995), Some(30_000));
        assert_eq!(d.empirical_quantile(0.745), Some(5_500));
    }
}
