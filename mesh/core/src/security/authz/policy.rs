//! The normalized AuthorizationPolicy model: what the config layer converts Istio's
//! resources into, and what [`evaluate`](super::evaluate) reads.
//!
//! Field semantics are Istio's (`security.istio.io/v1` AuthorizationPolicy):
//! values inside one field are ORed; the fields of one `Source`/`Operation` are ANDed;
//! a field and its `not_` form are ANDed (some value must match, no not-value may);
//! the `from` entries are ORed, so are the `to` entries; `from`, `to` and every `when`
//! condition are ANDed; the rules of a policy are ORed. An empty `from`/`to`/`when`
//! matches anything; an empty rule (`{}`) matches every request; a policy with **no**
//! rules matches nothing (Istio's "allow-nothing").

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::security::pattern::IpBlock;

/// What a policy does when one of its rules matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Allow matching requests; with any ALLOW policy present, everything else is denied.
    Allow,
    /// Deny matching requests; checked before ALLOW.
    Deny,
    /// Record matching requests; never changes the verdict.
    Audit,
    /// Delegate matching requests to an external authorizer (`provider`); checked first.
    Custom,
}

/// One AuthorizationPolicy, normalized.
///
/// `selector` empty means the policy applies to every workload in its scope: its
/// namespace, or the whole mesh when it lives in the root namespace. `provider` names
/// the extension provider of a CUSTOM policy and is `None` for the other actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizationPolicy {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub rules: Vec<Rule>,
}

/// A rule: who (`from`), what (`to`) and extra conditions (`when`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Rule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Source>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Operation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// The request's source. String fields take Istio patterns (`exact`, `prefix*`,
/// `*suffix`, `*`). Principals are written without the scheme
/// (`cluster.local/ns/default/sa/sleep`); request principals are `<iss>/<sub>`;
/// service accounts are `<namespace>/<name>` or a bare `<name>` meaning the
/// policy's own namespace (no wildcards).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// HTTP only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// HTTP only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// The direct peer's address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<IpBlock>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<IpBlock>,
    /// The original client's address (X-Forwarded-For / PROXY protocol).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<IpBlock>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<IpBlock>,
}

/// The request's operation. `hosts`, `methods` and `paths` are HTTP only and take
/// Istio patterns (hosts case-insensitively; paths also URI templates `{*}`/`{**}`);
/// ports are the destination (workload) port, parsed from Istio's strings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Operation {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A `when` condition. Build it with [`Condition::new`], which checks that IP and
/// port values parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub key: ConditionKey,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

/// The supported `when` keys. Parse Istio's spelling with `FromStr`; `Display` gives
/// it back (it is also the serialized form).
///
/// Not supported (parsing fails with [`AuthzError::UnsupportedConditionKey`]):
/// `experimental.envoy.filters.*` (Envoy dynamic metadata) and
/// `request.experimental.inline.headers[...]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionKey {
    /// `request.headers[<name>]` — HTTP only; the name matches case-insensitively.
    RequestHeader(String),
    /// `source.ip` — the direct peer address; values are IPs or CIDRs.
    SourceIp,
    /// `remote.ip` — the original client address; values are IPs or CIDRs.
    RemoteIp,
    /// `source.namespace`.
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `source.serviceAccount` — `<ns>/<name>` or `<name>`.
    SourceServiceAccount,
    /// `request.auth.principal` — HTTP only, `<iss>/<sub>`.
    RequestAuthPrincipal,
    /// `request.auth.audiences` — HTTP only; the JWT `aud` claim.
    RequestAuthAudiences,
    /// `request.auth.presenter` — HTTP only; the JWT `azp` claim.
    RequestAuthPresenter,
    /// `request.auth.claims[a][b]...` — HTTP only; the (nested) claim path.
    RequestAuthClaim(Vec<String>),
    /// `destination.ip`; values are IPs or CIDRs.
    DestinationIp,
    /// `destination.port`; values are port numbers.
    DestinationPort,
    /// `connection.sni`.
    ConnectionSni,
}

/// Problems in a normalized policy or a condition key/value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("unknown `when` key {key:?}; expected e.g. `request.headers[x-token]`, `source.ip`")]
    UnknownConditionKey { key: String },
    #[error("`when` key {key:?} is not supported by meshrig: {why}")]
    UnsupportedConditionKey { key: String, why: &'static str },
    #[error("`when` key {key} has an invalid value {value:?}: {why}")]
    InvalidConditionValue {
        key: String,
        value: String,
        why: &'static str,
    },
    #[error("policy {policy}: action CUSTOM needs a provider name")]
    CustomWithoutProvider { policy: String },
    #[error("policy {policy}: a provider is only meaningful with action CUSTOM")]
    ProviderWithoutCustom { policy: String },
    #[error("policy {policy}: {} problem(s): {}", .problems.len(), join(.problems))]
    Invalid {
        policy: String,
        problems: Vec<AuthzError>,
    },
}

fn join(problems: &[AuthzError]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// === impl AuthorizationPolicy ===

impl AuthorizationPolicy {
    /// Checks the policy and reports **every** problem at once: CUSTOM without a
    /// provider, a provider on another action, unparsable condition values.
    pub fn validate(&self) -> Result<(), AuthzError> {
        let policy = format!("{}/{}", self.namespace, self.name);
        let mut problems = Vec::new();
        match (self.action, &self.provider) {
            (Action::Custom, None) => problems.push(AuthzError::CustomWithoutProvider {
                policy: policy.clone(),
            }),
            (Action::Allow | Action::Deny | Action::Audit, Some(_)) => {
                problems.push(AuthzError::ProviderWithoutCustom {
                    policy: policy.clone(),
                })
            }
            _ => {}
        }
        for condition in self.rules.iter().flat_map(|r| &r.when) {
            if let Err(e) = condition.check_values() {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AuthzError::Invalid { policy, problems })
        }
    }
}

// === impl Condition ===

impl Condition {
    /// A condition whose values are checked for its key: IPs/CIDRs for `source.ip`,
    /// `remote.ip`, `destination.ip`; port numbers for `destination.port`.
    pub fn new(
        key: ConditionKey,
        values: Vec<String>,
        not_values: Vec<String>,
    ) -> Result<Self, AuthzError> {
        let condition = Condition {
            key,
            values,
            not_values,
        };
        condition.check_values()?;
        Ok(condition)
    }

    fn check_values(&self) -> Result<(), AuthzError> {
        let invalid = |value: &String, why| AuthzError::InvalidConditionValue {
            key: self.key.to_string(),
            value: value.clone(),
            why,
        };
        for value in self.values.iter().chain(&self.not_values) {
            match self.key {
                ConditionKey::SourceIp | ConditionKey::RemoteIp | ConditionKey::DestinationIp => {
                    value
                        .parse::<IpBlock>()
                        .map_err(|_| invalid(value, "expected an IP address or CIDR block"))?;
                }
                ConditionKey::DestinationPort => {
                    value
                        .parse::<u16>()
                        .map_err(|_| invalid(value, "expected a port number 0-65535"))?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

// === impl ConditionKey ===

impl ConditionKey {
    /// Whether Istio treats the key as HTTP only (it cannot be evaluated on TCP).
    pub fn is_http_only(&self) -> bool {
        matches!(
            self,
            ConditionKey::RequestHeader(_)
                | ConditionKey::RequestAuthPrincipal
                | ConditionKey::RequestAuthAudiences
                | ConditionKey::RequestAuthPresenter
                | ConditionKey::RequestAuthClaim(_)
        )
    }
}

/// `[a][b]...` → `["a", "b"]`; `None` if malformed or empty.
fn bracketed(mut text: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    while !text.is_empty() {
        let inner = text.strip_prefix('[')?;
        let end = inner.find(']')?;
        let name = &inner[..end];
        if name.is_empty() || name.contains('[') {
            return None;
        }
        names.push(name.to_owned());
        text = &inner[end + 1..];
    }
    (!names.is_empty()).then_some(names)
}

impl FromStr for ConditionKey {
    type Err = AuthzError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let unknown = || AuthzError::UnknownConditionKey {
            key: key.to_owned(),
        };
        Ok(match key {
            "source.ip" => ConditionKey::SourceIp,
            "remote.ip" => ConditionKey::RemoteIp,
            "source.namespace" => ConditionKey::SourceNamespace,
            "source.principal" => ConditionKey::SourcePrincipal,
            "source.serviceAccount" => ConditionKey::SourceServiceAccount,
            "request.auth.principal" => ConditionKey::RequestAuthPrincipal,
            "request.auth.audiences" => ConditionKey::RequestAuthAudiences,
            "request.auth.presenter" => ConditionKey::RequestAuthPresenter,
            "destination.ip" => ConditionKey::DestinationIp,
            "destination.port" => ConditionKey::DestinationPort,
            "connection.sni" => ConditionKey::ConnectionSni,
            _ if key.starts_with("experimental.envoy.filters.") => {
                return Err(AuthzError::UnsupportedConditionKey {
                    key: key.to_owned(),
                    why: "Envoy dynamic metadata does not exist in meshrig",
                });
            }
            _ if key.starts_with("request.experimental.inline.headers") => {
                return Err(AuthzError::UnsupportedConditionKey {
                    key: key.to_owned(),
                    why: "use request.headers[...]",
                });
            }
            _ => {
                if let Some(rest) = key.strip_prefix("request.headers") {
                    match bracketed(rest).as_deref() {
                        Some([name]) => ConditionKey::RequestHeader(name.clone()),
                        _ => return Err(unknown()),
                    }
                } else if let Some(rest) = key.strip_prefix("request.auth.claims") {
                    ConditionKey::RequestAuthClaim(bracketed(rest).ok_or_else(unknown)?)
                } else {
                    return Err(unknown());
                }
            }
        })
    }
}

impl fmt::Display for ConditionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConditionKey::RequestHeader(name) => write!(f, "request.headers[{name}]"),
            ConditionKey::SourceIp => f.write_str("source.ip"),
            ConditionKey::RemoteIp => f.write_str("remote.ip"),
            ConditionKey::SourceNamespace => f.write_str("source.namespace"),
            ConditionKey::SourcePrincipal => f.write_str("source.principal"),
            ConditionKey::SourceServiceAccount => f.write_str("source.serviceAccount"),
            ConditionKey::RequestAuthPrincipal => f.write_str("request.auth.principal"),
            ConditionKey::RequestAuthAudiences => f.write_str("request.auth.audiences"),
            ConditionKey::RequestAuthPresenter => f.write_str("request.auth.presenter"),
            ConditionKey::RequestAuthClaim(path) => {
                f.write_str("request.auth.claims")?;
                path.iter().try_for_each(|p| write!(f, "[{p}]"))
            }
            ConditionKey::DestinationIp => f.write_str("destination.ip"),
            ConditionKey::DestinationPort => f.write_str("destination.port"),
            ConditionKey::ConnectionSni => f.write_str("connection.sni"),
        }
    }
}

impl Serialize for ConditionKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
