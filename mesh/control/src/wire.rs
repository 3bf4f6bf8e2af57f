//! The wire format between the control plane and its proxies (see the crate docs for
//! the protocol): the proxy's identity as query parameters, the config response, the
//! ACK/NACK body.

use std::collections::BTreeMap;

use mesh_core::compile::ProxyId;
use serde::{Deserialize, Serialize};

use crate::registry::RegistryFile;

/// Longest query string or ACK body the server reads.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Most labels a proxy identity may carry.
pub const MAX_LABELS: usize = 64;

/// One configuration source: a display name (file path, or the name it was
/// published under) and its YAML text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// The `(name, text)` pairs [`mesh_core::config::ConfigSet::load`] takes.
    pub fn pairs(sources: &[Source]) -> Vec<(String, String)> {
        sources
            .iter()
            .map(|s| (s.name.clone(), s.text.clone()))
            .collect()
    }
}

/// Who a proxy is: what it is compiled for, and the `id` it ACKs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyIdentity {
    /// Unique per proxy process (replicas of one workload differ here).
    pub id: String,
    pub workload: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
}

impl ProxyIdentity {
    /// A proxy of `workload` in `namespace`, service account `default`, id
    /// `workload.namespace`.
    pub fn new(workload: impl Into<String>, namespace: impl Into<String>) -> Self {
        let (workload, namespace) = (workload.into(), namespace.into());
        ProxyIdentity {
            id: format!("{workload}.{namespace}"),
            workload,
            namespace,
            labels: BTreeMap::new(),
            service_account: "default".to_owned(),
        }
    }

    /// mesh-core's view of the proxy.
    pub fn proxy_id(&self) -> ProxyId {
        let mut p = ProxyId::new(&self.workload, &self.namespace);
        p.labels.clone_from(&self.labels);
        p.service_account.clone_from(&self.service_account);
        p
    }

    /// The query string of `GET /v1/config` (without `?`), asking for a version newer
    /// than `version`.
    pub fn query(&self, version: u64) -> String {
        let mut q = format!(
            "id={}&workload={}&namespace={}&service_account={}",
            encode(&self.id),
            encode(&self.workload),
            encode(&self.namespace),
            encode(&self.service_account)
        );
        for (k, v) in &self.labels {
            q.push_str(&format!("&label={}", encode(&format!("{k}={v}"))));
        }
        q.push_str(&format!("&version={version}"));
        q
    }

    /// Parses a `GET /v1/config` query: the identity and the version the proxy has.
    /// `workload` is required; `namespace` defaults to `default`, `service_account`
    /// to `default`, `id` to `workload.namespace`, `version` to 0.
    pub fn from_query(query: &str) -> Result<(ProxyIdentity, u64), String> {
        let mut p = ProxyIdentity::default();
        let (mut id, mut version) = (None, 0);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = decode(v).ok_or_else(|| format!("{k}: bad percent-encoding"))?;
            match k {
                "id" => id = Some(v),
                "workload" => p.workload = v,
                "namespace" => p.namespace = v,
                "service_account" => p.service_account = v,
                "label" => {
                    let (lk, lv) = v
                        .split_once('=')
                        .ok_or_else(|| format!("label '{v}' is not k=v"))?;
                    if p.labels.len() >= MAX_LABELS {
                        return Err(format!("more than {MAX_LABELS} labels"));
                    }
                    p.labels.insert(lk.to_owned(), lv.to_owned());
                }
                "version" => {
                    version = v
                        .parse()
                        .map_err(|_| format!("version '{v}' is not a whole number"))?;
                }
                other => {
                    return Err(format!(
                        "unknown parameter '{other}' (expected id, workload, namespace, service_account, label, version)"
                    ));
                }
            }
        }
        if p.workload.is_empty() {
            return Err("workload is required (e.g. ?workload=productpage)".to_owned());
        }
        if p.namespace.is_empty() {
            p.namespace = "default".to_owned();
        }
        if p.service_account.is_empty() {
            p.service_account = "default".to_owned();
        }
        p.id = id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("{}.{}", p.workload, p.namespace));
        Ok((p, version))
    }
}

/// The body of a `200` answer to `GET /v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigResponse {
    /// The global configuration version.
    pub version: u64,
    /// The identity the snapshot was compiled for, as the server understood it.
    pub proxy: ProxyIdentity,
    /// The snapshot's content digest ([`mesh_core::compile::Snapshot::digest`]),
    /// 16 lower-case hex digits. The proxy recompiles and must get the same.
    pub snapshot_hash: String,
    /// The Istio YAML of the whole configuration set, in load order.
    pub sources: Vec<Source>,
    /// The registry as this proxy sees it (`via` addresses already resolved).
    pub registry: RegistryFile,
}

/// The body of `POST /v1/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The proxy's `id`.
    pub proxy: String,
    pub version: u64,
    /// `true`: applied (ACK). `false`: rejected (NACK), see `error`.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The digest as it travels: 16 lower-case hex digits.
pub fn hash_hex(digest: u64) -> String {
    format!("{digest:016x}")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (space); `None` on a bad escape or non-UTF-8.
pub fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_through_the_query() {
        let mut p = ProxyIdentity::new("product page", "bookinfo");
        p.id = "pp/1".to_owned();
        p.labels.insert("app".into(), "product=page".into());
        p.labels.insert("version".into(), "v1".into());
        let (back, version) = ProxyIdentity::from_query(&p.query(42)).unwrap();
        assert_eq!(back, p);
        assert_eq!(version, 42);
    }

    #[test]
    fn query_defaults_and_errors() {
        let (p, v) = ProxyIdentity::from_query("workload=a").unwrap();
        assert_eq!(
            (p.id.as_str(), p.namespace.as_str(), v),
            ("a.default", "default", 0)
        );
        for (q, says) in [
            ("namespace=x", "workload is required"),
            ("workload=a&version=x", "version"),
            ("workload=a&label=nokv", "label"),
            ("workload=a&bogus=1", "unknown parameter 'bogus'"),
            ("workload=%zz", "percent"),
        ] {
            let err = ProxyIdentity::from_query(q).unwrap_err();
            assert!(err.contains(says), "{q}: {err}");
        }
    }
}
