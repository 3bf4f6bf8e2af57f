//! The parsed form of an assertion: function, target, window, comparison, value.

/// What an assertion measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Func {
    P50,
    P90,
    P99,
    P999,
    Max,
    Mean,
    SuccessRate,
    ErrorRate,
    Rps,
    Requests,
    Errors,
    Retries,
    RetryAmplification,
    Share,
    Ejections,
    CertExpiries,
    Events,
}

impl Func {
    /// Every function with its spelling.
    pub const ALL: [(&'static str, Func); 17] = [
        ("p50", Func::P50),
        ("p90", Func::P90),
        ("p99", Func::P99),
        ("p999", Func::P999),
        ("max", Func::Max),
        ("mean", Func::Mean),
        ("success_rate", Func::SuccessRate),
        ("error_rate", Func::ErrorRate),
        ("rps", Func::Rps),
        ("requests", Func::Requests),
        ("errors", Func::Errors),
        ("retries", Func::Retries),
        ("retry_amplification", Func::RetryAmplification),
        ("share", Func::Share),
        ("ejections", Func::Ejections),
        ("cert_expiries", Func::CertExpiries),
        ("events", Func::Events),
    ];

    /// The spelling.
    pub fn name(self) -> &'static str {
        Func::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map_or("?", |(n, _)| n)
    }

    /// Latency functions (value in a time unit).
    pub fn is_latency(self) -> bool {
        matches!(
            self,
            Func::P50 | Func::P90 | Func::P99 | Func::P999 | Func::Max | Func::Mean
        )
    }

    /// Functions of one target's traffic statistics.
    pub fn is_traffic(self) -> bool {
        self.is_latency()
            || matches!(
                self,
                Func::SuccessRate
                    | Func::ErrorRate
                    | Func::Rps
                    | Func::Requests
                    | Func::Errors
                    | Func::Retries
                    | Func::RetryAmplification
            )
    }

    pub(crate) fn kind(self) -> ValueKind {
        match self {
            f if f.is_latency() => ValueKind::Time,
            Func::SuccessRate | Func::ErrorRate | Func::Share => ValueKind::Ratio,
            Func::Rps => ValueKind::Rate,
            Func::RetryAmplification => ValueKind::Number,
            _ => ValueKind::Count,
        }
    }
}

/// The family of a function's value (decides which units it accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Time,
    Ratio,
    Rate,
    Number,
    Count,
}

/// What the function is applied to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Nothing between the parentheses: every instance (`ejections()`).
    All,
    /// `client`: every request the load generators sent (the result's totals).
    Client,
    Service(String),
    Version {
        service: String,
        version: String,
    },
    /// `caller->callee`; the caller may be `client`.
    Edge {
        caller: String,
        callee: String,
    },
    /// The event kind of `events(kind)`.
    EventKind(String),
}

impl Target {
    /// The key the result uses for this target (`client`, `reviews`, `reviews:v2`,
    /// `client->frontend`), as in `ScenarioResult::{services, versions, edges,
    /// windows}`.
    pub fn key(&self) -> String {
        match self {
            Target::All => String::new(),
            Target::Client => "client".to_owned(),
            Target::Service(s) | Target::EventKind(s) => s.clone(),
            Target::Version { service, version } => format!("{service}:{version}"),
            Target::Edge { caller, callee } => format!("{caller}->{callee}"),
        }
    }
}

/// `[from..to]`: statistics over that part of the run only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Cmp {
    /// The spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }

    /// Whether `actual cmp wanted [± tolerance]` holds. `==` without a tolerance
    /// allows a relative rounding error of 1e-9.
    pub fn holds(self, actual: f64, wanted: f64, tolerance: Option<f64>) -> bool {
        let tol = tolerance.unwrap_or(1e-9 * wanted.abs().max(1.0));
        match self {
            Cmp::Lt => actual < wanted,
            Cmp::Le => actual <= wanted,
            Cmp::Gt => actual > wanted,
            Cmp::Ge => actual >= wanted,
            Cmp::Eq => (actual - wanted).abs() <= tol,
            Cmp::Ne => (actual - wanted).abs() > tol,
        }
    }
}

/// How a value was written; results are reported in the same unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Nanos,
    Micros,
    Millis,
    Seconds,
    /// `99.9%` (stored as the fraction 0.999).
    Percent,
    /// `0.999`.
    Fraction,
    /// Requests per second.
    PerSecond,
    /// A plain number.
    Number,
}

impl Unit {
    /// A canonical value (ns, fraction, number) in this unit.
    pub fn from_canonical(self, v: f64) -> f64 {
        match self {
            Unit::Nanos | Unit::Fraction | Unit::PerSecond | Unit::Number => v,
            Unit::Micros => v / 1e3,
            Unit::Millis => v / 1e6,
            Unit::Seconds => v / 1e9,
            Unit::Percent => v * 100.0,
        }
    }

    /// The suffix written after a value in this unit.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Nanos => "ns",
            Unit::Micros => "us",
            Unit::Millis => "ms",
            Unit::Seconds => "s",
            Unit::Percent => "%",
            Unit::PerSecond => "/s",
            Unit::Fraction | Unit::Number => "",
        }
    }

    /// A canonical value rendered in this unit: `63.2ms`, `99.95%`, `12`.
    pub fn format(self, v: f64) -> String {
        let x = self.from_canonical(v);
        let mut text = format!("{x:.3}");
        if text.contains('.') {
            text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
        }
        format!("{text}{}", self.suffix())
    }
}

/// A parsed assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct AssertExpr {
    pub func: Func,
    pub target: Target,
    pub window: Option<Window>,
    pub cmp: Cmp,
    /// In the canonical unit: nanoseconds, a fraction, or a number.
    pub value: f64,
    /// `± tolerance`, canonical unit; only with `==` and `!=`.
    pub tolerance: Option<f64>,
    /// How `value` was written.
    pub unit: Unit,
    /// The metric as written (`p99(frontend)[40s..60s]`), for messages.
    pub metric: String,
}
