//! Bootstrap tokens: how a workload proves who it is to the CA before it has a
//! certificate.
//!
//! Each token is bound to one namespace/service account. A workload sends its token as
//! `Authorization: Bearer <token>`; the CA signs a CSR only for the identity its token
//! is bound to. (In Kubernetes this is a projected service-account token checked by
//! the API server; here the binding is configuration.)
//!
//! The tokens file is JSON, a list of bindings (unknown fields are an error, so a typo
//! fails):
//!
//! ```json
//! [
//!   { "token": "3f9c…", "namespace": "default", "serviceAccount": "reviews" },
//!   { "token": "a71e…", "namespace": "default", "serviceAccount": "ratings" }
//! ]
//! ```
//!
//! On the command line, `--token TOKEN=ns/sa` adds one binding.

use std::collections::HashMap;

use serde::Deserialize;

use crate::check_segment;

/// Longest token accepted, in bytes (a limit on what is hashed and compared).
pub const MAX_TOKEN_LEN: usize = 512;

/// The identity a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub namespace: String,
    pub service_account: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// A tokens file or flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Every problem found in a tokens file, one per line.
    #[error("{source_name}: {}", problems.join("; "))]
    File {
        source_name: String,
        problems: Vec<String>,
    },
    /// A `TOKEN=ns/sa` flag value that is not one.
    #[error("'{value}': {reason} (expected TOKEN=namespace/serviceaccount)")]
    Flag { value: String, reason: String },
    /// One token bound to two identities.
    #[error("token '{}…' is bound twice, to {first} and to {second}", &.token[..4.min(.token.len())])]
    Duplicate {
        token: String,
        first: Identity,
        second: Identity,
    },
}

/// Why a request was not authenticated (an HTTP 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("no bootstrap token: send 'Authorization: Bearer <token>'")]
    Missing,
    #[error("the Authorization header is not 'Bearer <token>'")]
    NotBearer,
    #[error("unknown bootstrap token: it is bound to no namespace/service account here")]
    Unknown,
}

/// The token → identity bindings.
#[derive(Clone, Default)]
pub struct Tokens {
    by_token: HashMap<String, Identity>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        f.debug_struct("Tokens")
            .field("bindings", &self.by_token.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Binding {
    token: String,
    namespace: String,
    service_account: String,
}

// === impl Tokens ===

impl Tokens {
    /// No bindings: every signing request is refused.
    pub fn new() -> Tokens {
        Tokens::default()
    }

    /// Parses a tokens file (JSON, see the module docs); `source_name` (the path)
    /// prefixes every problem, and all problems are reported together.
    pub fn from_json(text: &str, source_name: &str) -> Result<Tokens, TokenError> {
        let file_error = |problems| TokenError::File {
            source_name: source_name.to_owned(),
            problems,
        };
        let bindings: Vec<Binding> = serde_json::from_str(text).map_err(|e| {
            file_error(vec![format!(
                "{e} (expected a JSON list of {{\"token\", \"namespace\", \"serviceAccount\"}})"
            )])
        })?;
        let mut tokens = Tokens::new();
        let mut problems = Vec::new();
        for (i, b) in bindings.into_iter().enumerate() {
            if let Err(reason) = tokens.insert(&b.token, &b.namespace, &b.service_account) {
                problems.push(format!("[{i}]: {reason}"));
            }
        }
        if problems.is_empty() {
            Ok(tokens)
        } else {
            Err(file_error(problems))
        }
    }

    /// Parses a `TOKEN=ns/sa` flag value.
    pub fn parse_flag(value: &str) -> Result<(String, Identity), TokenError> {
        let bad = |reason: &str| TokenError::Flag {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (token, id) = value.rsplit_once('=').ok_or_else(|| bad("no '='"))?;
        let (ns, sa) = id.split_once('/').ok_or_else(|| bad("no '/' after '='"))?;
        check_token(token).map_err(|r| bad(&r))?;
        check_segment("namespace", ns).map_err(|e| bad(&e.to_string()))?;
        check_segment("service account", sa).map_err(|e| bad(&e.to_string()))?;
        Ok((
            token.to_owned(),
            Identity {
                namespace: ns.to_owned(),
                service_account: sa.to_owned(),
            },
        ))
    }

    /// Binds `token` to `ns`/`sa`. Binding the same token again to the same identity is
    /// a no-op; to another identity, an error.
    pub fn insert(&mut self, token: &str, ns: &str, sa: &str) -> Result<(), String> {
        check_token(token)?;
        check_segment("namespace", ns).map_err(|e| e.to_string())?;
        check_segment("service account", sa).map_err(|e| e.to_string())?;
        let identity = Identity {
            namespace: ns.to_owned(),
            service_account: sa.to_owned(),
        };
        match self.by_token.get(token) {
            Some(first) if *first != identity => Err(TokenError::Duplicate {
                token: token.to_owned(),
                first: first.clone(),
                second: identity,
            }
            .to_string()),
            _ => {
                self.by_token.insert(token.to_owned(), identity);
                Ok(())
            }
        }
    }

    /// How many tokens are bound.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Whether no token is bound.
    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// The identity of an `Authorization` header's bearer token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<&Identity, Unauthenticated> {
        let token = bearer(authorization)?;
        self.by_token.get(token).ok_or(Unauthenticated::Unknown)
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(authorization: Option<&str>) -> Result<&str, Unauthenticated> {
    let value = authorization.ok_or(Unauthenticated::Missing)?;
    let (scheme, token) = value
        .trim()
        .split_once(' ')
        .ok_or(Unauthenticated::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Unauthenticated::NotBearer);
    }
    Ok(token.trim())
}

/// Whether `authorization` carries exactly `expected`, compared in time that does not
/// depend on where they differ.
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    let Ok(token) = bearer(authorization) else {
        return false;
    };
    token.len() == expected.len()
        && token
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A new random token: 32 bytes from the operating system, hex.
pub fn generate_token() -> String {
    use rand::TryRngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the token is empty".to_owned());
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the token must be printable ASCII without spaces".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_binds_tokens_and_every_problem_is_reported() {
        let tokens = Tokens::from_json(
            r#"[{"token":"t-reviews","namespace":"default","serviceAccount":"reviews"},
                {"token":"t-ratings","namespace":"default","serviceAccount":"ratings"}]"#,
            "tokens.json",
        )
        .unwrap();
        assert_eq!(tokens.len(), 2);
        let id = tokens.authenticate(Some("Bearer t-reviews")).unwrap();
        assert_eq!(id.to_string(), "default/reviews");
        assert_eq!(
            tokens
                .authenticate(Some("bearer  t-ratings "))
                .unwrap()
                .service_account,
            "ratings"
        );

        let err = Tokens::from_json(
            r#"[{"token":"","namespace":"default","serviceAccount":"a"},
                {"token":"x","namespace":"a/b","serviceAccount":"a"},
                {"token":"y","namespace":"n","serviceAccount":"a"},
                {"token":"y","namespace":"n","serviceAccount":"b"}]"#,
            "tokens.json",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("tokens.json: [0]: the token is empty"),
            "{err}"
        );
        assert!(err.contains("[1]: namespace 'a/b'"), "{err}");
        assert!(err.contains("[3]: token 'y…' is bound twice"), "{err}");

        let err = Tokens::from_json(
            r#"[{"token":"t","namespace":"n","serviceaccount":"a"}]"#,
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `serviceaccount`"), "{err}");
    }

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        let (token, id) = Tokens::parse_flag("abc=default/reviews").unwrap();
        assert_eq!(token, "abc");
        assert_eq!(id.namespace, "default");
        assert_eq!(id.service_account, "reviews");
        for (value, says) in [
            ("abc", "no '='"),
            ("abc=default", "no '/'"),
            ("=default/reviews", "empty"),
            ("abc=default/re views", "service account"),
        ] {
            let err = Tokens::parse_flag(value).unwrap_err().to_string();
            assert!(err.contains(says), "{value}: {err}");
            assert!(err.contains("TOKEN=namespace/serviceaccount"), "{err}");
        }
    }

    #[test]
    fn authentication_failures_are_told_apart() {
        let mut tokens = Tokens::new();
        tokens.insert("good", "default", "reviews").unwrap();
        assert_eq!(tokens.authenticate(None), Err(Unauthenticated::Missing));
        assert_eq!(
            tokens.authenticate(Some("Basic Zm9vOmJhcg==")),
            Err(Unauthenticated::NotBearer)
        );
        assert_eq!(
            tokens.authenticate(Some("Bearer bad")),
            Err(Unauthenticated::Unknown)
        );
        assert!(
            Unauthenticated::Unknown
                .to_string()
                .contains("unknown bootstrap token")
        );
        assert!(bearer_matches(Some("Bearer good"), "good"));
        assert!(!bearer_matches(Some("Bearer goof"), "good"));
        assert!(!bearer_matches(Some("Bearer goo"), "good"));
        assert!(!bearer_matches(None, "good"));
        let a = generate_token();
        assert_eq!(a.len(), 64);
        assert_ne!(a, generate_token());
        assert!(
            !format!("{tokens:?}").contains("good"),
            "Debug hides tokens"
        );
    }
}
