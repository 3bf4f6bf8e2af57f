//! The versioned CPU cost table: what each kind of work costs a simulated node.
//!
//! mesh-core describes the work each decision did as a [`Cost`] (a kind and a byte
//! count); [`CostTable::charge`] turns it into nanoseconds of CPU, which the world
//! submits to the node's [`CpuQueue`](crate::cpu::CpuQueue). The table is flat YAML
//! (`sim/calibration/default.yaml` documents every key, its unit and where the default
//! comes from) so a calibration run can write a fitted one with the same keys.

use mesh_core::cost::{Cost, CostKind, TlsRole};
use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// The text of the default table.
pub const DEFAULT_TABLE_YAML: &str = include_str!("../calibration/default.yaml");

/// CPU costs in ns of one core's time (`_ns`) or ns per byte (`_per_byte_ns`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CostTable {
    /// Where the table came from (a file name, or `default`); not part of the YAML.
    pub name: String,
    /// The table's version, bumped whenever a number changes.
    pub version: u32,
    /// Proxying one request through one sidecar.
    pub proxy_request_ns: u64,
    /// Per byte proxied.
    pub proxy_per_byte_ns: f64,
    /// Matching one request against the route table.
    pub route_match_ns: u64,
    /// Per byte of matched headers.
    pub route_per_byte_ns: f64,
    /// One load-balancer pick.
    pub lb_pick_ns: u64,
    /// One retry decision.
    pub retry_decision_ns: u64,
    /// One outlier-detection update.
    pub outlier_update_ns: u64,
    /// One authorization check.
    pub authz_check_ns: u64,
    /// One connection-pool admission.
    pub pool_admission_ns: u64,
    /// One TLS handshake, client side.
    pub tls_handshake_client_ns: u64,
    /// One TLS handshake, server side.
    pub tls_handshake_server_ns: u64,
    /// TLS record encryption or decryption, per byte.
    pub tls_record_per_byte_ns: f64,
    /// Setting up one TCP connection, per side.
    pub tcp_connect_ns: u64,
    /// The CA signing one CSR.
    pub ca_sign_ns: u64,
    /// The app handling request and response bytes, per byte.
    pub app_per_byte_ns: f64,
}

/// A cost table that could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostTableError {
    #[error("cost table {name}: invalid YAML at line {line}: {message}")]
    Syntax {
        name: String,
        line: usize,
        message: String,
    },
    #[error("cost table {name}: expected one mapping of cost keys to numbers, found {found}")]
    NotAMapping { name: String, found: String },
    #[error("cost table {name}: {}", join(.problems))]
    Invalid {
        name: String,
        problems: Vec<CostProblem>,
    },
}

/// One thing wrong with a cost table; [`CostTable::parse`] reports all of them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostProblem {
    #[error("line {line}: unknown key `{key}` (known keys: {})", known_keys())]
    UnknownKey { key: String, line: usize },
    #[error("missing key `{key}` ({unit})")]
    Missing {
        key: &'static str,
        unit: &'static str,
    },
    #[error("line {line}: `{key}` is {found}; expected {unit}")]
    BadValue {
        key: &'static str,
        line: usize,
        found: String,
        unit: &'static str,
    },
}

fn join(problems: &[CostProblem]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Version,
    Ns,
    PerByteNs,
}

impl Unit {
    fn describe(self) -> &'static str {
        match self {
            Unit::Version => "a whole number >= 1",
            Unit::Ns => "a whole number of nanoseconds >= 0",
            Unit::PerByteNs => "a number of nanoseconds per byte >= 0",
        }
    }
}

/// Every key of the YAML form, in document order.
const KEYS: &[(&str, Unit)] = &[
    ("version", Unit::Version),
    ("proxy_request_ns", Unit::Ns),
    ("proxy_per_byte_ns", Unit::PerByteNs),
    ("route_match_ns", Unit::Ns),
    ("route_per_byte_ns", Unit::PerByteNs),
    ("lb_pick_ns", Unit::Ns),
    ("retry_decision_ns", Unit::Ns),
    ("outlier_update_ns", Unit::Ns),
    ("authz_check_ns", Unit::Ns),
    ("pool_admission_ns", Unit::Ns),
    ("tls_handshake_client_ns", Unit::Ns),
    ("tls_handshake_server_ns", Unit::Ns),
    ("tls_record_per_byte_ns", Unit::PerByteNs),
    ("tcp_connect_ns", Unit::Ns),
    ("ca_sign_ns", Unit::Ns),
    ("app_per_byte_ns", Unit::PerByteNs),
];

fn known_keys() -> String {
    let keys: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
    keys.join(", ")
}

/// A parsed value: whole numbers for `Ns`/`Version`, any number for `PerByteNs`.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

// === impl CostTable ===

impl CostTable {
    /// The built-in table, `sim/calibration/default.yaml`.
    pub fn default_table() -> CostTable {
        CostTable::parse("default", DEFAULT_TABLE_YAML)
            .expect("the built-in cost table parses (checked by a unit test)")
    }

    /// Parses a table from YAML: one flat mapping holding every key exactly once.
    /// `name` says where it came from, for messages and provenance. Every unknown,
    /// missing or bad key is reported, not just the first.
    pub fn parse(name: &str, yaml_text: &str) -> Result<CostTable, CostTableError> {
        let docs = MarkedYaml::load_from_str(yaml_text).map_err(|e| CostTableError::Syntax {
            name: name.to_owned(),
            line: e.marker().line().max(1),
            message: e.info().to_owned(),
        })?;
        let not_a_mapping = |found: &str| CostTableError::NotAMapping {
            name: name.to_owned(),
            found: found.to_owned(),
        };
        let [doc] = docs.as_slice() else {
            return Err(not_a_mapping(&format!("{} YAML documents", docs.len())));
        };
        let YamlData::Mapping(map) = &doc.data else {
            return Err(not_a_mapping("something else"));
        };

        let mut values = [None; KEYS.len()];
        let mut problems = Vec::new();
        for (k, v) in map {
            let line = k.span.start.line().max(1);
            let key_text = scalar_text(k).unwrap_or_else(|| "(not a string)".to_owned());
            let Some(i) = KEYS.iter().position(|(key, _)| *key == key_text) else {
                problems.push(CostProblem::UnknownKey {
                    key: key_text,
                    line,
                });
                continue;
            };
            let (key, unit) = KEYS[i];
            match read_value(v, unit) {
                Some(value) => values[i] = Some(value),
                None => problems.push(CostProblem::BadValue {
                    key,
                    line: v.span.start.line().max(1),
                    found: scalar_text(v).unwrap_or_else(|| "not a number".to_owned()),
                    unit: unit.describe(),
                }),
            }
        }
        for (i, (key, unit)) in KEYS.iter().enumerate() {
            let bad = problems
                .iter()
                .any(|p| matches!(p, CostProblem::BadValue { key: k, .. } if k == key));
            if values[i].is_none() && !bad {
                problems.push(CostProblem::Missing {
                    key,
                    unit: unit.describe(),
                });
            }
        }
        if !problems.is_empty() {
            return Err(CostTableError::Invalid {
                name: name.to_owned(),
                problems,
            });
        }

        let get = |key: &str| {
            let i = KEYS.iter().position(|(k, _)| *k == key);
            i.and_then(|i| values[i])
        };
        let ns = |key: &str| match get(key) {
            Some(Value::Int(n)) => n,
            _ => unreachable!("`{key}` was checked as a whole number"),
        };
        let per_byte = |key: &str| match get(key) {
            Some(Value::Float(x)) => x,
            _ => unreachable!("`{key}` was checked as a number"),
        };
        Ok(CostTable {
            name: name.to_owned(),
            version: u32::try_from(ns("version")).unwrap_or(u32::MAX),
            proxy_request_ns: ns("proxy_request_ns"),
            proxy_per_byte_ns: per_byte("proxy_per_byte_ns"),
            route_match_ns: ns("route_match_ns"),
            route_per_byte_ns: per_byte("route_per_byte_ns"),
            lb_pick_ns: ns("lb_pick_ns"),
            retry_decision_ns: ns("retry_decision_ns"),
            outlier_update_ns: ns("outlier_update_ns"),
            authz_check_ns: ns("authz_check_ns"),
            pool_admission_ns: ns("pool_admission_ns"),
            tls_handshake_client_ns: ns("tls_handshake_client_ns"),
            tls_handshake_server_ns: ns("tls_handshake_server_ns"),
            tls_record_per_byte_ns: per_byte("tls_record_per_byte_ns"),
            tcp_connect_ns: ns("tcp_connect_ns"),
            ca_sign_ns: ns("ca_sign_ns"),
            app_per_byte_ns: per_byte("app_per_byte_ns"),
        })
    }

    /// The CPU time `cost` takes, in ns: the kind's base cost plus, for kinds with a
    /// per-byte rate (proxying, route matching), rate × bytes.
    pub fn charge(&self, cost: &Cost) -> u64 {
        let (base_ns, per_byte_ns) = match cost.kind {
            CostKind::ProxyRequest => (self.proxy_request_ns, self.proxy_per_byte_ns),
            CostKind::RouteMatch => (self.route_match_ns, self.route_per_byte_ns),
            CostKind::LbPick => (self.lb_pick_ns, 0.0),
            CostKind::RetryDecision => (self.retry_decision_ns, 0.0),
            CostKind::OutlierUpdate => (self.outlier_update_ns, 0.0),
            CostKind::AuthzCheck => (self.authz_check_ns, 0.0),
            CostKind::PoolAdmission => (self.pool_admission_ns, 0.0),
            CostKind::TlsHandshake {
                role: TlsRole::Client,
            } => (self.tls_handshake_client_ns, 0.0),
            CostKind::TlsHandshake {
                role: TlsRole::Server,
            } => (self.tls_handshake_server_ns, 0.0),
        };
        base_ns.saturating_add(per_byte(per_byte_ns, cost.bytes))
    }

    /// A proxy moving `bytes` (beyond the per-request charge), in ns.
    pub fn proxy_bytes_ns(&self, bytes: u64) -> u64 {
        per_byte(self.proxy_per_byte_ns, bytes)
    }

    /// TLS record encryption or decryption of `bytes`, in ns.
    pub fn tls_record_ns(&self, bytes: u64) -> u64 {
        per_byte(self.tls_record_per_byte_ns, bytes)
    }

    /// The app handling `bytes` of request and response, in ns.
    pub fn app_bytes_ns(&self, bytes: u64) -> u64 {
        per_byte(self.app_per_byte_ns, bytes)
    }
}

fn per_byte(rate_ns: f64, bytes: u64) -> u64 {
    (rate_ns * bytes as f64).round() as u64
}

fn read_value(node: &MarkedYaml<'_>, unit: Unit) -> Option<Value> {
    let number = match &node.data {
        YamlData::Value(Scalar::Integer(i)) => Value::Int(u64::try_from(*i).ok()?),
        YamlData::Value(Scalar::FloatingPoint(f)) => Value::Float(f.into_inner()),
        _ => return None,
    };
    match (unit, number) {
        (Unit::Version, Value::Int(0)) => None,
        (Unit::Version, Value::Int(v)) => u32::try_from(v).ok().map(|_| number),
        (Unit::Ns, Value::Int(_)) => Some(number),
        (Unit::PerByteNs, Value::Int(n)) => Some(Value::Float(n as f64)),
        (Unit::PerByteNs, Value::Float(x)) if x.is_finite() && x >= 0.0 => Some(number),
        _ => None,
    }
}

fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Value(Scalar::Null) => Some("null".to_owned()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_parses_and_is_plausible() {
        let t = CostTable::default_table();
        assert_eq!((t.name.as_str(), t.version), ("default", 1));
        // A 1 kB request through one sidecar, with its decisions, costs ~0.3 ms.
        let per_request: u64 = [
            Cost::with_bytes(CostKind::ProxyRequest, 1_024),
            Cost::with_bytes(CostKind::RouteMatch, 200),
            Cost::of(CostKind::LbPick),
            Cost::of(CostKind::AuthzCheck),
            Cost::of(CostKind::PoolAdmission),
            Cost::of(CostKind::RetryDecision),
            Cost::of(CostKind::OutlierUpdate),
        ]
        .iter()
        .map(|c| t.charge(c))
        .sum::<u64>()
            + t.tls_record_ns(1_024);
        assert!((250_000..=400_000).contains(&per_request), "{per_request}");
    }

    #[test]
    fn charges_every_kind() {
        let t = CostTable::default_table();
        let kinds = [
            (CostKind::RouteMatch, t.route_match_ns),
            (CostKind::LbPick, t.lb_pick_ns),
            (CostKind::RetryDecision, t.retry_decision_ns),
            (CostKind::OutlierUpdate, t.outlier_update_ns),
            (
                CostKind::TlsHandshake {
                    role: TlsRole::Client,
                },
                t.tls_handshake_client_ns,
            ),
            (
                CostKind::TlsHandshake {
                    role: TlsRole::Server,
                },
                t.tls_handshake_server_ns,
            ),
            (CostKind::ProxyRequest, t.proxy_request_ns),
            (CostKind::AuthzCheck, t.authz_check_ns),
            (CostKind::PoolAdmission, t.pool_admission_ns),
        ];
        for (kind, want) in kinds {
            assert_eq!(t.charge(&Cost::of(kind)), want, "{kind:?}");
        }
        let proxied = t.charge(&Cost::with_bytes(CostKind::ProxyRequest, 10_000));
        assert_eq!(proxied, t.proxy_request_ns + 5_000);
        assert_eq!(
            t.charge(&Cost::with_bytes(CostKind::LbPick, 10_000)),
            t.lb_pick_ns
        );
        assert_eq!(t.app_bytes_ns(2_000), 1_000);
    }

    fn with_line_replaced(key: &str, replacement: &str) -> String {
        DEFAULT_TABLE_YAML
            .lines()
            .map(|l| if l.starts_with(key) { replacement } else { l })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = with_line_replaced("lb_pick_ns:", "lb_pik_ns: 5");
        let text = text.replace("authz_check_ns: 5000", "authz_check_ns: -3");
        let text = text.replace("version: 1", "version: 1.5");
        let err = CostTable::parse("mine.yaml", &text).unwrap_err();
        let CostTableError::Invalid { name, problems } = &err else {
            panic!("{err}");
        };
        assert_eq!(name, "mine.yaml");
        let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        assert!(problems.contains(&CostProblem::UnknownKey {
            key: "lb_pik_ns".into(),
            line: line_of("lb_pik_ns")
        }));
        assert!(problems.contains(&CostProblem::Missing {
            key: "lb_pick_ns",
            unit: Unit::Ns.describe()
        }));
        assert!(problems.iter().any(|p| matches!(p,
            CostProblem::BadValue { key: "authz_check_ns", line, .. } if *line == line_of("authz_check_ns"))));
        assert!(
            problems
                .iter()
                .any(|p| matches!(p, CostProblem::BadValue { key: "version", .. }))
        );
        assert_eq!(problems.len(), 4, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key `lb_pik_ns`") && msg.contains("mine.yaml"),
            "{msg}"
        );
    }

    #[test]
    fn per_byte_rates_accept_integers_and_reject_strings() {
        let t = CostTable::parse(
            "t",
            &with_line_replaced("app_per_byte_ns", "app_per_byte_ns: 2"),
        )
        .expect("integer rate");
        assert_eq!(t.app_per_byte_ns, 2.0);
        let err = CostTable::parse(
            "t",
            &with_line_replaced("app_per_byte_ns", "app_per_byte_ns: fast"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`app_per_byte_ns` is fast"),
            "{err}"
        );
        let err = CostTable::parse("t", &with_line_replaced("ca_sign_ns", "ca_sign_ns: 1.5"))
            .unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(
            CostTable::parse("t", "a: [1"),
            Err(CostTableError::Syntax { .. })
        ));
        assert!(matches!(
            CostTable::parse("t", "- 1\n"),
            Err(CostTableError::NotAMapping { .. })
        ));
        assert!(matches!(
            CostTable::parse("t", ""),
            Err(CostTableError::NotAMapping { .. })
        ));
        let err = CostTable::parse("t", "version: 2\n").unwrap_err();
        assert!(
            err.to_string().contains("missing key `ca_sign_ns`"),
            "{err}"
        );
    }
}
