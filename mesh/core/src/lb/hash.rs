//! The hash meshrig uses for consistent hashing, and hash keys from requests.
//!
//! FNV-1a (64-bit) followed by the SplitMix64 finalizer, so similar keys
//! (`10.0.0.1_0`, `10.0.0.1_1`) spread over the whole 64-bit space. Deterministic across
//! platforms and runs, dependency-free. Envoy uses xxHash64, so which endpoint a given
//! key lands on differs from Envoy; the distribution and stability properties do not.

use std::net::IpAddr;

use super::policy::HashPolicy;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit hash of `bytes` under `seed` (different seeds give independent hashes).
pub fn hash64(bytes: &[u8], seed: u64) -> u64 {
    let mut h = FNV_OFFSET ^ seed.wrapping_mul(FNV_PRIME);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// The SplitMix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What of the request a pick may look at: the inputs of consistent hashing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestKeys<'a> {
    /// Request headers, `(name, value)`; names compare case-insensitively.
    pub headers: &'a [(&'a str, &'a str)],
    /// The request path with its query (`/items?id=7`).
    pub path: &'a str,
    /// The downstream peer address.
    pub source_ip: Option<IpAddr>,
}

impl RequestKeys<'_> {
    /// The hash key `policy` selects from this request, if present.
    pub fn key(&self, policy: &HashPolicy) -> Option<String> {
        match policy {
            HashPolicy::Header { name } => self.header(name).map(str::to_owned),
            HashPolicy::Cookie { name } => self
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("cookie"))
                .flat_map(|(_, v)| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_owned()),
            HashPolicy::SourceIp => self.source_ip.map(|ip| ip.to_string()),
            HashPolicy::QueryParameter { name } => self
                .path
                .split_once('?')
                .map(|(_, q)| q)
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_owned()),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_seeded() {
        // Pinned: a change here changes every consistent-hash assignment.
        assert_eq!(hash64(b"", 0), mix(FNV_OFFSET));
        assert_eq!(hash64(b"alice", 0), hash64(b"alice", 0));
        assert_ne!(hash64(b"alice", 0), hash64(b"alice", 1));
        // Avalanche: neighbouring keys differ in about half their bits.
        let diff = (hash64(b"10.0.0.1_0", 0) ^ hash64(b"10.0.0.1_1", 0)).count_ones();
        assert!((16..=48).contains(&diff), "{diff} bits differ");
    }

    #[test]
    fn keys_from_headers_cookies_ip_and_query() {
        let headers = [("X-User", "alice"), ("cookie", "a=1; session=s3cr3t; b=2")];
        let keys = RequestKeys {
            headers: &headers,
            path: "/p?x=1&user=bob&flag",
            source_ip: Some("10.1.2.3".parse().unwrap()),
        };
        let h = |name: &str| HashPolicy::Header { name: name.into() };
        assert_eq!(keys.key(&h("x-user")).as_deref(), Some("alice"));
        assert_eq!(keys.key(&h("x-missing")), None);
        let c = HashPolicy::Cookie {
            name: "session".into(),
        };
        assert_eq!(keys.key(&c).as_deref(), Some("s3cr3t"));
        assert_eq!(keys.key(&HashPolicy::SourceIp).as_deref(), Some("10.1.2.3"));
        let q = |name: &str| HashPolicy::QueryParameter { name: name.into() };
        assert_eq!(keys.key(&q("user")).as_deref(), Some("bob"));
        assert_eq!(keys.key(&q("flag")).as_deref(), Some(""));
        assert_eq!(keys.key(&q("nope")), None);
    }
}
