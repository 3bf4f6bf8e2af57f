//! Istio's value matching for authorization: string patterns, paths, IP blocks.
//!
//! String patterns follow Istio's `StringMatcherWithPrefix`
//! (`pilot/pkg/security/authz/matcher`): a pattern is
//!
//! * `*` — any **non-empty** value (Envoy regex `.+`; an absent value never matches),
//! * `prefix*` — the value starts with `prefix` (`prefix` itself matches),
//! * `*suffix` — the value ends with `suffix`,
//! * anything else — exact equality.
//!
//! Only a leading or trailing `*` is special; `a*b` is the literal string `a*b`.
//! Hosts compare ASCII-case-insensitively (the API says "the match is
//! case-insensitive"); everything else is case-sensitive.
//!
//! Paths additionally accept Istio's URI templates (`/foo/{*}/bar`, `/foo/{**}`):
//! `{*}` is exactly one non-empty path segment and `{**}` zero or more segments
//! (Envoy's `uri_template` matcher). The query string (`?...`) is never part of the
//! matched path, as in Envoy's `url_path` matcher.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Istio's string pattern match (see the module docs): exact, `prefix*`, `*suffix`, `*`.
pub fn istio_match(pattern: &str, value: &str) -> bool {
    if pattern == "*" {
        !value.is_empty()
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        value.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        value.starts_with(prefix)
    } else {
        value == pattern
    }
}

/// [`istio_match`], ignoring ASCII case: the host (`:authority`) comparison.
pub fn istio_match_ignore_case(pattern: &str, value: &str) -> bool {
    istio_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// Whether `pattern` uses URI-template operators (`{*}` or `{**}`).
pub fn is_path_template(pattern: &str) -> bool {
    pattern.contains("{*}") || pattern.contains("{**}")
}

/// Istio's path match: a URI template or an [`istio_match`] pattern, against the path
/// without its query string.
pub fn path_match(pattern: &str, path: &str) -> bool {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    if is_path_template(pattern) {
        let pattern: Vec<&str> = pattern.split('/').collect();
        let path: Vec<&str> = path.split('/').collect();
        template_match(&pattern, &path)
    } else {
        istio_match(pattern, path)
    }
}

/// Segment-wise template match with backtracking for `{**}`. Both slices come from
/// `split('/')`, so a leading `/` is an empty first segment on both sides.
fn template_match(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"{**}", rest)) => (0..=path.len()).any(|skip| template_match(rest, &path[skip..])),
        Some((&"{*}", rest)) => match path.split_first() {
            Some((segment, path_rest)) => !segment.is_empty() && template_match(rest, path_rest),
            None => false,
        },
        Some((literal, rest)) => match path.split_first() {
            Some((segment, path_rest)) => segment == literal && template_match(rest, path_rest),
            None => false,
        },
    }
}

/// Why a string is not an IP block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is neither an IP address nor a CIDR block (`10.0.0.0/8`, `2001:db8::/32`)")]
pub struct IpBlockError {
    pub value: String,
}

/// An `ipBlocks` / `source.ip` value: a single address (`1.2.3.4`, a /32 or /128) or
/// a CIDR block (`5.6.0.0/16`). Serializes as written in its canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpBlock(pub IpNet);

impl IpBlock {
    /// Whether `ip` is inside the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for IpBlock {
    type Err = IpBlockError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || IpBlockError {
            value: text.to_owned(),
        };
        if text.contains('/') {
            // Like Istio's `AddrStrToCidrRange`, host bits may be set (`10.1.2.3/8`):
            // the block is the enclosing network.
            text.parse::<IpNet>()
                .map(|net| IpBlock(net.trunc()))
                .map_err(|_| err())
        } else {
            text.parse::<IpAddr>()
                .map(|ip| IpBlock(IpNet::from(ip)))
                .map_err(|_| err())
        }
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.prefix_len() == self.0.max_prefix_len() {
            write!(f, "{}", self.0.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl serde::Serialize for IpBlock {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_patterns_follow_istio() {
        let cases = [
            ("*", "anything", true),
            ("*", "", false),
            ("principal", "principal", true),
            ("principal", "principal2", false),
            ("principal-prefix-*", "principal-prefix-x", true),
            ("principal-prefix-*", "principal-prefix-", true),
            ("principal-prefix-*", "x-principal-prefix-", false),
            ("*-suffix-principal", "a-suffix-principal", true),
            ("*-suffix-principal", "-suffix-principal", true),
            ("*-suffix-principal", "a-suffix-principal-b", false),
            ("a*b", "a*b", true),
            ("a*b", "axb", false),
            ("GET", "get", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(
                istio_match(pattern, value),
                want,
                "{pattern:?} vs {value:?}"
            );
        }
    }

    #[test]
    fn hosts_ignore_case() {
        assert!(istio_match_ignore_case("Exact.com", "exact.COM"));
        assert!(istio_match_ignore_case("*.suffix.com", "A.Suffix.Com"));
        assert!(istio_match_ignore_case("prefix.*", "PREFIX.io"));
        assert!(!istio_match_ignore_case("exact.com", "exact.com.evil"));
    }

    #[test]
    fn paths_strip_query_and_support_templates() {
        assert!(path_match("/ip", "/ip?x=1"));
        assert!(!path_match("/ip", "/ipx"));
        assert!(path_match("/prefix/*", "/prefix/a/b"));
        assert!(path_match("*/suffix", "/a/suffix"));
        assert!(path_match("/path/template/{*}", "/path/template/x"));
        assert!(!path_match("/path/template/{*}", "/path/template/x/y"));
        assert!(!path_match("/path/template/{*}", "/path/template/"));
        assert!(path_match("/{**}/path/template", "/a/b/path/template"));
        assert!(path_match("/{**}/path/template", "/path/template"));
        assert!(path_match("/api/{**}", "/api/a/b/c"));
        assert!(!path_match("/api/{**}", "/other/a"));
    }

    #[test]
    fn ip_blocks_parse_single_addresses_and_cidrs() {
        let single: IpBlock = "1.2.3.4".parse().unwrap();
        assert!(single.contains("1.2.3.4".parse().unwrap()));
        assert!(!single.contains("1.2.3.5".parse().unwrap()));
        assert_eq!(single.to_string(), "1.2.3.4");
        let block: IpBlock = "5.6.7.8/16".parse().unwrap();
        assert_eq!(block.to_string(), "5.6.0.0/16");
        assert!(block.contains("5.6.200.1".parse().unwrap()));
        assert!(!block.contains("5.7.0.1".parse().unwrap()));
        let v6: IpBlock = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8::1".parse().unwrap()));
        assert!(!v6.contains("1.2.3.4".parse().unwrap()));
        assert!("1.2.3".parse::<IpBlock>().is_err());
        assert!("1.2.3.4/33".parse::<IpBlock>().is_err());
        assert_eq!(
            serde_json::to_string(&block).unwrap(),
            "\"5.6.0.0/16\"".to_owned()
        );
    }
}
