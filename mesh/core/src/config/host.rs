//! Host names as Istio resolves them.
//!
//! A short name in a resource is relative to the resource's namespace: `reviews` in
//! namespace `default` is `reviews.default.svc.cluster.local`. Anything with a dot
//! (an FQDN, `reviews.prod`, `*.example.com`), the wildcard `*` and IP addresses are
//! taken as written. This is Istio's `ResolveShortnameToFQDN` with the
//! `cluster.local` domain.

/// The cluster DNS domain meshrig assumes.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `host` as Istio resolves it for a resource in `namespace`.
pub fn fqdn(host: &str, namespace: &str) -> String {
    if host.is_empty()
        || host == "*"
        || host.contains('.')
        || host.parse::<std::net::IpAddr>().is_ok()
    {
        return host.to_owned();
    }
    format!("{host}.{namespace}.svc.{CLUSTER_DOMAIN}")
}

/// True if the host pattern `pattern` (`*`, `*.example.com`, or a plain name) covers
/// `host`. Both are FQDNs.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern == host {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => suffix.starts_with('.') && host.ends_with(suffix),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_in_the_namespace() {
        assert_eq!(
            fqdn("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(fqdn("reviews", "prod"), "reviews.prod.svc.cluster.local");
    }

    #[test]
    fn qualified_wildcard_and_ip_hosts_are_untouched() {
        for host in [
            "reviews.prod.svc.cluster.local",
            "reviews.prod",
            "*.example.com",
            "*",
            "10.0.0.1",
            "::1",
            "",
        ] {
            assert_eq!(fqdn(host, "default"), host);
        }
    }

    #[test]
    fn wildcards_cover_subdomains() {
        assert!(host_matches("*", "a.b"));
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("a.example.com", "b.example.com"));
    }
}
