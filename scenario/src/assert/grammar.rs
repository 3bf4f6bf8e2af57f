//! The assertion grammar:
//!
//! ```text
//! assertion := metric cmp value [ ('±' | '+-') value ]
//! metric    := func '(' [ target ] ')' [ window ]
//! window    := '[' duration '..' duration ']'
//! target    := service | service ':' version | caller '->' callee | 'client'
//! cmp       := '<' | '<=' | '>' | '>=' | '==' | '!='
//! ```
//!
//! Values are stored in a canonical unit (nanoseconds for latency, a fraction for
//! rates and shares, plain numbers otherwise); [`Unit`] remembers how the value was
//! written so results are reported the same way.

use results::units::parse_go_duration_ns;

use super::expr::ValueKind;
pub use super::expr::{AssertExpr, Cmp, Func, Target, Unit, Window};

/// Why an assertion does not parse: a 1-based character column and a message that
/// says what would be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct AssertError {
    pub column: usize,
    pub message: String,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

type Res<T> = Result<T, AssertError>;

impl Lexer {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Res<T> {
        Err(AssertError {
            column: at + 1,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        let matches = self.chars.len() >= self.pos + n
            && self.chars[self.pos..self.pos + n]
                .iter()
                .copied()
                .eq(s.chars());
        if matches {
            self.pos += n;
        }
        matches
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> (usize, String) {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        (start, self.chars[start..self.pos].iter().collect())
    }
}

/// Parses one assertion.
pub fn parse_assertion(text: &str) -> Result<AssertExpr, AssertError> {
    let mut lx = Lexer {
        chars: text.chars().collect(),
        pos: 0,
    };
    lx.skip_ws();
    let metric_start = lx.pos;
    let (at, fname) = lx.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
    let names: Vec<&str> = Func::ALL.iter().map(|(n, _)| *n).collect();
    if fname.is_empty() {
        return lx.err(
            at,
            format!(
                "expected a function such as p99(frontend) (one of {})",
                names.join(", ")
            ),
        );
    }
    let Some(func) = Func::ALL.iter().find(|(n, _)| *n == fname).map(|(_, f)| *f) else {
        return lx.err(
            at,
            format!(
                "unknown function `{fname}` (expected one of {})",
                names.join(", ")
            ),
        );
    };
    lx.skip_ws();
    if !lx.eat("(") {
        return lx.err(
            lx.pos,
            format!("expected `(` after `{fname}` (e.g. {fname}(frontend))"),
        );
    }
    let (target_at, raw) = lx.take_while(|c| c != ')');
    if !lx.eat(")") {
        return lx.err(lx.pos, "missing `)`");
    }
    let target = target(&lx, func, target_at, raw.trim())?;
    lx.skip_ws();
    let window = if lx.eat("[") {
        Some(window(&mut lx, func)?)
    } else {
        None
    };
    let metric: String = lx.chars[metric_start..lx.pos]
        .iter()
        .collect::<String>()
        .trim()
        .to_owned();
    lx.skip_ws();
    let cmp_at = lx.pos;
    let cmp = [
        ("<=", Cmp::Le),
        (">=", Cmp::Ge),
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("<", Cmp::Lt),
        (">", Cmp::Gt),
    ]
    .into_iter()
    .find(|(s, _)| lx.eat(s))
    .map(|(_, c)| c);
    let Some(cmp) = cmp else {
        let hint = if lx.peek() == Some('=') {
            " (write == for equality)"
        } else {
            ""
        };
        return lx.err(
            cmp_at,
            format!("expected a comparison: <, <=, >, >=, == or !={hint}"),
        );
    };
    lx.skip_ws();
    let (wanted, unit) = value(&mut lx, func)?;
    lx.skip_ws();
    let tol_at = lx.pos;
    let tolerance = if lx.eat("±") || lx.eat("+-") {
        if !matches!(cmp, Cmp::Eq | Cmp::Ne) {
            return lx.err(tol_at, "a tolerance (±) goes with == or != only");
        }
        lx.skip_ws();
        let (tol, _) = value(&mut lx, func)?;
        Some(tol)
    } else {
        None
    };
    lx.skip_ws();
    if lx.pos < lx.chars.len() {
        let rest: String = lx.chars[lx.pos..].iter().collect();
        return lx.err(lx.pos, format!("unexpected `{rest}` after the value"));
    }
    Ok(AssertExpr {
        func,
        target,
        window,
        cmp,
        value: wanted,
        tolerance,
        unit,
        metric,
    })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn target(lx: &Lexer, func: Func, at: usize, raw: &str) -> Res<Target> {
    let name = func.name();
    let bad = |what: &str| lx.err::<Target>(at, format!("invalid target `{raw}` ({what})"));
    if func == Func::Events {
        return if is_name(raw) {
            Ok(Target::EventKind(raw.to_owned()))
        } else {
            lx.err(
                at,
                "events needs an event kind, e.g. events(ejection) or events(cert_expired)",
            )
        };
    }
    let t = if raw.is_empty() {
        if func.is_traffic() {
            Target::Client
        } else {
            Target::All
        }
    } else if raw == "client" {
        Target::Client
    } else if let Some((caller, callee)) = raw.split_once("->") {
        let (caller, callee) = (caller.trim(), callee.trim());
        if !is_name(caller) || !is_name(callee) {
            return bad("write caller->callee, e.g. frontend->reviews or client->frontend");
        }
        Target::Edge {
            caller: caller.to_owned(),
            callee: callee.to_owned(),
        }
    } else if let Some((service, version)) = raw.split_once(':') {
        let (service, version) = (service.trim(), version.trim());
        if !is_name(service) || !is_name(version) {
            return bad("write service:version, e.g. reviews:v2");
        }
        Target::Version {
            service: service.to_owned(),
            version: version.to_owned(),
        }
    } else if is_name(raw) {
        Target::Service(raw.to_owned())
    } else {
        return bad("a service, service:version, caller->callee or client");
    };
    match (func, &t) {
        (Func::Share, Target::Version { .. }) => Ok(t),
        (Func::Share, _) => lx.err(at, "share needs service:version, e.g. share(reviews:v3)"),
        (
            Func::Ejections | Func::CertExpiries,
            Target::All | Target::Service(_) | Target::Version { .. },
        ) => Ok(t),
        (Func::Ejections | Func::CertExpiries, _) => lx.err(
            at,
            format!("{name} counts instances: give a service, service:version or nothing"),
        ),
        _ => Ok(t),
    }
}

fn window(lx: &mut Lexer, func: Func) -> Res<Window> {
    let open = lx.pos - 1;
    if matches!(func, Func::Ejections | Func::CertExpiries) {
        let hint = if func == Func::Ejections {
            "events(ejection)"
        } else {
            "events(cert_expired)"
        };
        return lx.err(
            open,
            format!(
                "{} takes no window (count events in a window with {hint}[a..b])",
                func.name()
            ),
        );
    }
    let bound = |lx: &mut Lexer, end: &str| -> Res<u64> {
        lx.skip_ws();
        let at = lx.pos;
        while let Some(c) = lx.peek() {
            let range = c == '.' && lx.chars.get(lx.pos + 1) == Some(&'.');
            if c.is_whitespace() || c == ']' || range {
                break;
            }
            lx.pos += 1;
        }
        let text: String = lx.chars[at..lx.pos].iter().collect();
        let ns = match parse_go_duration_ns(&text) {
            Ok(ns) => u64::try_from(ns).ok(),
            Err(_) => None,
        };
        let Some(ns) = ns else {
            return lx.err(
                at,
                format!("invalid window bound `{text}` (a duration such as 40s, e.g. [40s..60s])"),
            );
        };
        lx.skip_ws();
        if !lx.eat(end) {
            return lx.err(
                lx.pos,
                format!("expected `{end}` in the window (e.g. [40s..60s])"),
            );
        }
        Ok(ns)
    };
    let from_ns = bound(lx, "..")?;
    let to_ns = bound(lx, "]")?;
    if from_ns >= to_ns {
        return lx.err(
            open,
            "empty window: the start must be before the end (e.g. [40s..60s])",
        );
    }
    Ok(Window { from_ns, to_ns })
}

fn value(lx: &mut Lexer, func: Func) -> Res<(f64, Unit)> {
    let (at, text) = lx.take_while(|c| !c.is_whitespace() && c != '±' && c != '+');
    if text.is_empty() {
        return lx.err(at, "missing value after the comparison");
    }
    let num = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite());
    match func.kind() {
        ValueKind::Time => {
            let ns = parse_go_duration_ns(&text)
                .ok()
                .and_then(|n| u64::try_from(n).ok());
            let unit = if text.ends_with("ns") {
                Unit::Nanos
            } else if text.ends_with("us") || text.ends_with("µs") {
                Unit::Micros
            } else if text.ends_with("ms") {
                Unit::Millis
            } else {
                Unit::Seconds
            };
            match ns {
                Some(ns) if text != "0" => Ok((ns as f64, unit)),
                _ => lx.err(
                    at,
                    format!(
                        "`{text}` is not a latency ({} needs a time unit: e.g. 50ms, 250us, 1.5s)",
                        func.name()
                    ),
                ),
            }
        }
        ValueKind::Ratio => {
            if let Some(p) = text.strip_suffix('%') {
                match num(p) {
                    Some(v) if (0.0..=100.0).contains(&v) => Ok((v / 100.0, Unit::Percent)),
                    _ => lx.err(at, format!("`{text}` is not a percentage in 0%..100%")),
                }
            } else {
                match num(&text) {
                    Some(v) if (0.0..=1.0).contains(&v) => Ok((v, Unit::Fraction)),
                    Some(v) => lx.err(at, format!("{v} is above 1 (write {v}% for a percentage, or a fraction such as 0.999)")),
                    None => lx.err(at, format!("`{text}` is not a percentage or fraction (e.g. 99.9% or 0.999)")),
                }
            }
        }
        ValueKind::Rate => {
            let (n, unit) = match text.strip_suffix("/s") {
                Some(n) => (n, Unit::PerSecond),
                None => (text.as_str(), Unit::Number),
            };
            match num(n) {
                Some(v) if v >= 0.0 => Ok((v, unit)),
                _ => lx.err(
                    at,
                    format!("`{text}` is not a rate (requests per second, e.g. 950 or 950/s)"),
                ),
            }
        }
        ValueKind::Number => match num(&text) {
            Some(v) if v >= 0.0 => Ok((v, Unit::Number)),
            _ => lx.err(at, format!("`{text}` is not a number (e.g. 1.2)")),
        },
        ValueKind::Count => match num(&text) {
            Some(v) if v >= 0.0 => Ok((v, Unit::Number)),
            _ => lx.err(
                at,
                format!("`{text}` is not a count (a number such as 0 or 10)"),
            ),
        },
    }
}
