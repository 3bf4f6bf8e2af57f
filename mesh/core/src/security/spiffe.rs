//! SPIFFE IDs: `spiffe://<trust-domain>/<path>`, parsed and validated.
//!
//! The rules are the SPIFFE ID specification's (SPIFFE-ID.md, sections 2.1–2.3), the
//! same ones go-spiffe's `spiffeid.FromString` enforces:
//!
//! * the scheme is exactly `spiffe` (lowercase), followed by `://`;
//! * the trust domain is non-empty, at most 255 bytes, and only uses lowercase ASCII
//!   letters, digits, `.`, `-` and `_` — so no port (`:`), no userinfo (`@`), no
//!   uppercase;
//! * the path is empty (the trust domain's own ID) or a sequence of `/segment`s, each
//!   non-empty, not `.` or `..`, using ASCII letters, digits, `.`, `-` and `_` — so no
//!   trailing slash, no percent-encoding, no query (`?`) or fragment (`#`);
//! * the whole ID is at most 2048 bytes.
//!
//! Istio's workload identities use the path `/ns/<namespace>/sa/<service-account>`;
//! [`SpiffeId::workload`] builds one and [`SpiffeId::namespace`] /
//! [`SpiffeId::service_account`] read it back. Istio *policies* write principals
//! without the scheme (`cluster.local/ns/default/sa/sleep`): that form is
//! [`SpiffeId::istio_principal`].

use std::fmt;
use std::str::FromStr;

/// The URI scheme and separator every SPIFFE ID starts with.
pub const SCHEME_PREFIX: &str = "spiffe://";
/// The longest SPIFFE ID accepted, in bytes (SPIFFE-ID.md §2.3).
pub const MAX_ID_BYTES: usize = 2048;
/// The longest trust domain accepted, in bytes (SPIFFE-ID.md §2.1).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// Why a string is not a valid SPIFFE ID. Positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("empty SPIFFE ID")]
    Empty,
    #[error("SPIFFE ID is {len} bytes; the limit is {MAX_ID_BYTES}")]
    TooLong { len: usize },
    #[error("SPIFFE ID must start with `spiffe://` (lowercase scheme)")]
    WrongScheme,
    #[error("SPIFFE ID has an empty trust domain; expected `spiffe://<trust-domain>/...`")]
    MissingTrustDomain,
    #[error("trust domain is {len} bytes; the limit is {MAX_TRUST_DOMAIN_BYTES}")]
    TrustDomainTooLong { len: usize },
    #[error("trust domain must not carry a port (`:` at byte {at})")]
    Port { at: usize },
    #[error("trust domain must not carry userinfo (`@` at byte {at})")]
    Userinfo { at: usize },
    #[error(
        "trust domain may only use lowercase letters, digits, `.`, `-`, `_`; found {found:?} at byte {at}"
    )]
    TrustDomainChar { found: char, at: usize },
    #[error("SPIFFE ID must not carry a query (`?` at byte {at})")]
    Query { at: usize },
    #[error("SPIFFE ID must not carry a fragment (`#` at byte {at})")]
    Fragment { at: usize },
    #[error("path segment at byte {at} is empty (`//` or a trailing `/`)")]
    EmptySegment { at: usize },
    #[error("path segment at byte {at} is `.` or `..`, which SPIFFE forbids")]
    DotSegment { at: usize },
    #[error("path may only use letters, digits, `.`, `-`, `_`, `/`; found {found:?} at byte {at}")]
    PathChar { found: char, at: usize },
    #[error("{part} {value:?} must be one non-empty path segment (no `/`)")]
    NotOneSegment { part: &'static str, value: String },
}

/// A validated SPIFFE ID. Compare, order and hash it like its string form.
///
/// Serializes as its string form (`"spiffe://cluster.local/ns/default/sa/sleep"`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpiffeId {
    /// The full ID, `spiffe://td/path`.
    text: String,
    /// Byte length of the trust domain (it starts right after the scheme prefix).
    trust_domain_len: usize,
}

// === impl SpiffeId ===

impl SpiffeId {
    /// Istio's workload identity: `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
    ///
    /// Fails if any part would make the ID invalid (an uppercase trust domain, a
    /// namespace with `/`, an empty service account, ...).
    pub fn workload(
        trust_domain: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        for (part, value) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if value.is_empty() || value.contains('/') {
                return Err(SpiffeIdError::NotOneSegment {
                    part,
                    value: value.to_owned(),
                });
            }
        }
        format!("{SCHEME_PREFIX}{trust_domain}/ns/{namespace}/sa/{service_account}").parse()
    }

    /// The trust domain (`cluster.local`).
    pub fn trust_domain(&self) -> &str {
        &self.text[SCHEME_PREFIX.len()..SCHEME_PREFIX.len() + self.trust_domain_len]
    }

    /// The path, with its leading `/`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.text[SCHEME_PREFIX.len() + self.trust_domain_len..]
    }

    /// The namespace of an Istio workload ID (`/ns/<ns>/sa/<sa>`), else `None`.
    pub fn namespace(&self) -> Option<&str> {
        self.istio_parts().map(|(ns, _)| ns)
    }

    /// The service account of an Istio workload ID (`/ns/<ns>/sa/<sa>`), else `None`.
    pub fn service_account(&self) -> Option<&str> {
        self.istio_parts().map(|(_, sa)| sa)
    }

    /// The ID without its scheme, as Istio AuthorizationPolicy principals are written:
    /// `cluster.local/ns/default/sa/sleep`.
    pub fn istio_principal(&self) -> &str {
        &self.text[SCHEME_PREFIX.len()..]
    }

    /// The full ID as a string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn istio_parts(&self) -> Option<(&str, &str)> {
        let mut segments = self.path().strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if text.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong { len: text.len() });
        }
        let rest = text
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        let base = SCHEME_PREFIX.len();
        let td_len = rest.find('/').unwrap_or(rest.len());
        let (trust_domain, path) = rest.split_at(td_len);
        if trust_domain.is_empty() {
            return Err(SpiffeIdError::MissingTrustDomain);
        }
        for (i, c) in trust_domain.char_indices() {
            let at = base + i;
            match c {
                'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
                ':' => return Err(SpiffeIdError::Port { at }),
                '@' => return Err(SpiffeIdError::Userinfo { at }),
                '?' => return Err(SpiffeIdError::Query { at }),
                '#' => return Err(SpiffeIdError::Fragment { at }),
                found => return Err(SpiffeIdError::TrustDomainChar { found, at }),
            }
        }
        if trust_domain.len() > MAX_TRUST_DOMAIN_BYTES {
            return Err(SpiffeIdError::TrustDomainTooLong {
                len: trust_domain.len(),
            });
        }
        validate_path(path, base + td_len)?;
        Ok(SpiffeId {
            text: text.to_owned(),
            trust_domain_len: td_len,
        })
    }
}

/// Checks `path` (empty, or `/seg/seg...`) starting at byte `base` of the whole ID.
fn validate_path(path: &str, base: usize) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    // Query and fragment first: they explain a `?`/`#` better than "bad character".
    if let Some(i) = path.find('?') {
        return Err(SpiffeIdError::Query { at: base + i });
    }
    if let Some(i) = path.find('#') {
        return Err(SpiffeIdError::Fragment { at: base + i });
    }
    // `path` starts with '/', so the first split item is the empty string before it.
    let mut offset = base;
    for segment in path.split('/').skip(1) {
        let at = offset + 1;
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment { at });
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment { at });
        }
        for (i, c) in segment.char_indices() {
            if !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')) {
                return Err(SpiffeIdError::PathChar {
                    found: c,
                    at: at + i,
                });
            }
        }
        offset = at + segment.len();
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for SpiffeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for SpiffeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_workload_id_and_exposes_parts() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/sleep"
            .parse()
            .unwrap();
        assert_eq!(id.trust_domain(), "cluster.local");
        assert_eq!(id.path(), "/ns/default/sa/sleep");
        assert_eq!(id.namespace(), Some("default"));
        assert_eq!(id.service_account(), Some("sleep"));
        assert_eq!(id.istio_principal(), "cluster.local/ns/default/sa/sleep");
        assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/sleep");
        assert_eq!(
            SpiffeId::workload("cluster.local", "default", "sleep").unwrap(),
            id
        );
    }

    #[test]
    fn non_istio_paths_have_no_namespace() {
        for text in [
            "spiffe://example.org",
            "spiffe://example.org/workload",
            "spiffe://example.org/ns/a/sa/b/extra",
            "spiffe://example.org/sa/b/ns/a",
        ] {
            let id: SpiffeId = text.parse().unwrap();
            assert_eq!(id.namespace(), None, "{text}");
            assert_eq!(id.service_account(), None, "{text}");
        }
        assert_eq!(
            "spiffe://example.org".parse::<SpiffeId>().unwrap().path(),
            ""
        );
    }

    #[test]
    fn accepts_table() {
        for text in [
            "spiffe://cluster.local/ns/default/sa/sleep",
            "spiffe://example.org",
            "spiffe://td-1_a.b/Path.With-Upper_Case/x",
            "spiffe://9/a/...b/c..",
        ] {
            assert!(text.parse::<SpiffeId>().is_ok(), "{text} should parse");
        }
    }

    #[test]
    fn rejects_table() {
        use SpiffeIdError::*;
        let long_path = format!("spiffe://td/{}", "a".repeat(MAX_ID_BYTES));
        let long_td = format!("spiffe://{}", "a".repeat(256));
        let cases: Vec<(&str, SpiffeIdError)> = vec![
            ("", Empty),
            ("http://cluster.local/ns/a/sa/b", WrongScheme),
            ("SPIFFE://cluster.local/ns/a/sa/b", WrongScheme),
            ("spiffe:/cluster.local", WrongScheme),
            ("spiffe://", MissingTrustDomain),
            ("spiffe:///ns/a", MissingTrustDomain),
            (
                "spiffe://Cluster.local/ns/a",
                TrustDomainChar { found: 'C', at: 9 },
            ),
            ("spiffe://td:8443/ns/a", Port { at: 11 }),
            ("spiffe://user@td/ns/a", Userinfo { at: 13 }),
            ("spiffe://td/ns/a?x=1", Query { at: 16 }),
            ("spiffe://td/ns/a#frag", Fragment { at: 16 }),
            ("spiffe://td?x", Query { at: 11 }),
            ("spiffe://td/ns//sa", EmptySegment { at: 15 }),
            ("spiffe://td/ns/a/", EmptySegment { at: 17 }),
            ("spiffe://td/", EmptySegment { at: 12 }),
            ("spiffe://td/./a", DotSegment { at: 12 }),
            ("spiffe://td/a/..", DotSegment { at: 14 }),
            ("spiffe://td/a%20b", PathChar { found: '%', at: 13 }),
            ("spiffe://td/a b", PathChar { found: ' ', at: 13 }),
            (
                &long_path,
                TooLong {
                    len: long_path.len(),
                },
            ),
            (&long_td, TrustDomainTooLong { len: 256 }),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<SpiffeId>(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn workload_constructor_validates_parts() {
        assert!(SpiffeId::workload("Cluster.local", "a", "b").is_err());
        assert!(matches!(
            SpiffeId::workload("td", "a/b", "c"),
            Err(SpiffeIdError::NotOneSegment {
                part: "namespace",
                ..
            })
        ));
        assert!(SpiffeId::workload("td", "ns", "").is_err());
        assert!(SpiffeId::workload("td", "..", "sa").is_err());
    }

    #[test]
    fn serializes_as_string_and_round_trips() {
        let id = SpiffeId::workload("cluster.local", "foo", "bar").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://cluster.local/ns/foo/sa/bar\"");
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://X\"").is_err());
    }
}
