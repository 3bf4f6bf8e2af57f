//! Matching one rule against one request, with an explanation of why.
//!
//! HTTP-only fields on a TCP request follow Istio's RBAC generator
//! (`pilot/pkg/security/authz/model/model.go`, `checkError`): in an ALLOW policy the
//! whole rule is dropped (it can never match — "a smaller allow policy"); in DENY,
//! AUDIT and CUSTOM policies the HTTP-only fields are dropped and the rest of the rule
//! still applies ("a wider deny policy"). [`http_only_fields`] finds them; the
//! evaluator decides which of the two applies.

use std::fmt::Display;

use super::policy::{Condition, ConditionKey, Operation, Rule, Source};
use super::request::RequestAttributes;
use crate::security::pattern::{IpBlock, istio_match, istio_match_ignore_case, path_match};

/// Every HTTP-only field a rule uses, as `from[0].request_principals`-style paths.
pub fn http_only_fields(rule: &Rule) -> Vec<String> {
    let mut fields = Vec::new();
    let mut note = |at: String, name: &str, used: bool| {
        if used {
            fields.push(format!("{at}.{name}"));
        }
    };
    for (i, s) in rule.from.iter().enumerate() {
        let at = format!("from[{i}]");
        note(
            at.clone(),
            "request_principals",
            !s.request_principals.is_empty(),
        );
        note(
            at,
            "not_request_principals",
            !s.not_request_principals.is_empty(),
        );
    }
    for (i, o) in rule.to.iter().enumerate() {
        let at = format!("to[{i}]");
        note(at.clone(), "hosts", !o.hosts.is_empty());
        note(at.clone(), "not_hosts", !o.not_hosts.is_empty());
        note(at.clone(), "methods", !o.methods.is_empty());
        note(at.clone(), "not_methods", !o.not_methods.is_empty());
        note(at.clone(), "paths", !o.paths.is_empty());
        note(at, "not_paths", !o.not_paths.is_empty());
    }
    for (i, c) in rule.when.iter().enumerate() {
        note(
            format!("when[{i}]"),
            &c.key.to_string(),
            c.key.is_http_only(),
        );
    }
    fields
}

/// Whether `rule` matches `request`: `Ok(conditions that held)` or `Err(the first
/// one that did not)`. With `ignore_http_only`, HTTP-only fields are skipped.
pub fn match_rule(
    rule: &Rule,
    request: &RequestAttributes,
    policy_namespace: &str,
    ignore_http_only: bool,
) -> Result<Vec<String>, String> {
    let mut m = Matcher {
        request,
        policy_namespace,
        ignore_http_only,
        held: Vec::new(),
    };
    if !rule.from.is_empty() {
        m.any("from", &rule.from, Matcher::source)?;
    }
    if !rule.to.is_empty() {
        m.any("to", &rule.to, Matcher::operation)?;
    }
    for (i, condition) in rule.when.iter().enumerate() {
        m.condition(i, condition)?;
    }
    Ok(m.held)
}

struct Matcher<'a> {
    request: &'a RequestAttributes,
    policy_namespace: &'a str,
    ignore_http_only: bool,
    held: Vec<String>,
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "<absent>".to_owned(), |v| format!("{v:?}"))
}

fn list<V: Display>(values: &[V]) -> String {
    let items: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// Whether a principal (`td/ns/<ns>/.../sa/<sa>`) carries the service account `spec`
/// (`<ns>/<sa>` or `<sa>` in `default_ns`), as Istio's
/// `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` regex does.
fn service_account_matches(spec: &str, default_ns: &str, principal: &str) -> bool {
    let (ns, sa) = spec.split_once('/').unwrap_or((default_ns, spec));
    let segments: Vec<&str> = principal.split('/').skip(1).collect();
    let Some(ns_at) = segments.windows(2).position(|w| w == ["ns", ns]) else {
        return false;
    };
    segments[ns_at + 2..].windows(2).any(|w| w == ["sa", sa])
}

fn ip_in(block: &IpBlock, ip: Option<std::net::IpAddr>) -> bool {
    ip.is_some_and(|ip| block.contains(ip))
}

// === impl Matcher ===

impl Matcher<'_> {
    /// One field with its `not_` form. `matches` tests one value against the request.
    #[allow(clippy::too_many_arguments)]
    fn field<V: Display>(
        &mut self,
        at: &str,
        name: &str,
        http_only: bool,
        values: &[V],
        not_values: &[V],
        actual: &str,
        matches: impl Fn(&V) -> bool,
    ) -> Result<(), String> {
        if (values.is_empty() && not_values.is_empty()) || (http_only && self.ignore_http_only) {
            return Ok(());
        }
        if !values.is_empty() {
            match values.iter().find(|v| matches(v)) {
                Some(v) => self
                    .held
                    .push(format!("{at}.{name}: {actual} matched \"{v}\"")),
                None => {
                    return Err(format!(
                        "{at}.{name}: {actual} matched none of {}",
                        list(values)
                    ));
                }
            }
        }
        if !not_values.is_empty() {
            if let Some(v) = not_values.iter().find(|v| matches(v)) {
                return Err(format!(
                    "{at}.not_{name}: {actual} matched excluded \"{v}\""
                ));
            }
            self.held.push(format!(
                "{at}.not_{name}: {actual} matched none of {}",
                list(not_values)
            ));
        }
        Ok(())
    }

    /// ORs over `from` or `to` entries; keeps the explanation of the first that held.
    fn any<T>(
        &mut self,
        what: &str,
        entries: &[T],
        check: fn(&mut Self, &str, &T) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut failures = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let mark = self.held.len();
            match check(self, &format!("{what}[{i}]"), entry) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    self.held.truncate(mark);
                    failures.push(why);
                }
            }
        }
        Err(failures.join("; "))
    }

    fn source(&mut self, at: &str, s: &Source) -> Result<(), String> {
        let req = self.request;
        let principal = req.principal();
        let p = shown(principal);
        let pm = |pat: &String| principal.is_some_and(|v| istio_match(pat, v));
        self.field(
            at,
            "principals",
            false,
            &s.principals,
            &s.not_principals,
            &p,
            pm,
        )?;
        let rp = req.request_principal.as_deref();
        let rpm = |pat: &String| rp.is_some_and(|v| istio_match(pat, v));
        let (rps, nrps) = (&s.request_principals, &s.not_request_principals);
        self.field(at, "request_principals", true, rps, nrps, &shown(rp), rpm)?;
        let ns = req.source_namespace.as_deref();
        let nsm = |pat: &String| ns.is_some_and(|v| istio_match(pat, v));
        self.field(
            at,
            "namespaces",
            false,
            &s.namespaces,
            &s.not_namespaces,
            &shown(ns),
            nsm,
        )?;
        let policy_ns = self.policy_namespace;
        let sam =
            |spec: &String| principal.is_some_and(|v| service_account_matches(spec, policy_ns, v));
        let (sas, nsas) = (&s.service_accounts, &s.not_service_accounts);
        self.field(at, "service_accounts", false, sas, nsas, &p, sam)?;
        let ip = req.source_ip;
        let ipm = |b: &IpBlock| ip_in(b, ip);
        let ip_shown = shown(ip.map(|i| i.to_string()).as_deref());
        self.field(
            at,
            "ip_blocks",
            false,
            &s.ip_blocks,
            &s.not_ip_blocks,
            &ip_shown,
            ipm,
        )?;
        let remote = req.remote();
        let rm = |b: &IpBlock| ip_in(b, remote);
        let remote_shown = shown(remote.map(|i| i.to_string()).as_deref());
        let (rbs, nrbs) = (&s.remote_ip_blocks, &s.not_remote_ip_blocks);
        self.field(at, "remote_ip_blocks", false, rbs, nrbs, &remote_shown, rm)
    }

    fn operation(&mut self, at: &str, o: &Operation) -> Result<(), String> {
        let req = self.request;
        let host = req.host.as_deref();
        let hm = |pat: &String| host.is_some_and(|v| istio_match_ignore_case(pat, v));
        self.field(at, "hosts", true, &o.hosts, &o.not_hosts, &shown(host), hm)?;
        let port = req.port;
        self.field(
            at,
            "ports",
            false,
            &o.ports,
            &o.not_ports,
            &port.to_string(),
            |p| *p == port,
        )?;
        let method = req.method.as_deref();
        let mm = |pat: &String| method.is_some_and(|v| istio_match(pat, v));
        self.field(
            at,
            "methods",
            true,
            &o.methods,
            &o.not_methods,
            &shown(method),
            mm,
        )?;
        let path = req.path.as_deref();
        let pm = |pat: &String| path.is_some_and(|v| path_match(pat, v));
        self.field(at, "paths", true, &o.paths, &o.not_paths, &shown(path), pm)
    }

    fn condition(&mut self, i: usize, c: &Condition) -> Result<(), String> {
        let req = self.request;
        let at = format!("when[{i}]");
        let key = c.key.to_string();
        let http_only = c.key.is_http_only();
        let (values, not_values) = (&c.values, &c.not_values);
        let policy_ns = self.policy_namespace;
        let pattern_on = |value: Option<&str>| {
            let owned = value.map(str::to_owned);
            move |pat: &String| owned.as_deref().is_some_and(|v| istio_match(pat, v))
        };
        let ip_on = |ip: Option<std::net::IpAddr>| {
            move |v: &String| v.parse::<IpBlock>().is_ok_and(|b| ip_in(&b, ip))
        };
        let claim_on = |name: String| {
            let claim = req.claims.get(&name).cloned().unwrap_or_default();
            move |pat: &String| claim.iter().any(|v| istio_match(pat, v))
        };
        let claim_shown = |name: &str| match req.claims.get(name) {
            Some(v) => list(v),
            None => "<absent>".to_owned(),
        };
        let ip_shown = |ip: Option<std::net::IpAddr>| shown(ip.map(|i| i.to_string()).as_deref());
        let mut field = |actual: String, m: &dyn Fn(&String) -> bool| {
            self.field(&at, &key, http_only, values, not_values, &actual, m)
        };
        match &c.key {
            ConditionKey::RequestHeader(name) => {
                let value = req.header(name);
                // Istio's header matcher turns `*` into a presence check.
                let m = |pat: &String| value.is_some_and(|v| pat == "*" || istio_match(pat, v));
                field(shown(value), &m)
            }
            ConditionKey::SourceIp => field(ip_shown(req.source_ip), &ip_on(req.source_ip)),
            ConditionKey::RemoteIp => field(ip_shown(req.remote()), &ip_on(req.remote())),
            ConditionKey::DestinationIp => {
                field(ip_shown(req.destination_ip), &ip_on(req.destination_ip))
            }
            ConditionKey::SourceNamespace => {
                let ns = req.source_namespace.as_deref();
                field(shown(ns), &pattern_on(ns))
            }
            ConditionKey::SourcePrincipal => {
                field(shown(req.principal()), &pattern_on(req.principal()))
            }
            ConditionKey::SourceServiceAccount => {
                let principal = req.principal();
                let m = |spec: &String| {
                    principal.is_some_and(|v| service_account_matches(spec, policy_ns, v))
                };
                field(shown(principal), &m)
            }
            ConditionKey::RequestAuthPrincipal => {
                let rp = req.request_principal.as_deref();
                field(shown(rp), &pattern_on(rp))
            }
            ConditionKey::RequestAuthAudiences => {
                field(claim_shown("aud"), &claim_on("aud".to_owned()))
            }
            ConditionKey::RequestAuthPresenter => {
                field(claim_shown("azp"), &claim_on("azp".to_owned()))
            }
            ConditionKey::RequestAuthClaim(path) => {
                let name = path.join(".");
                field(claim_shown(&name), &claim_on(name.clone()))
            }
            ConditionKey::DestinationPort => {
                let port = req.port;
                let m = |v: &String| v.parse::<u16>() == Ok(port);
                field(port.to_string(), &m)
            }
            ConditionKey::ConnectionSni => {
                let sni = req.sni.as_deref();
                field(shown(sni), &pattern_on(sni))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_spec_follows_istio_regex() {
        let p = "cluster.local/ns/foo/sa/bar";
        assert!(service_account_matches("foo/bar", "x", p));
        assert!(service_account_matches("bar", "foo", p));
        assert!(!service_account_matches("bar", "other", p));
        assert!(!service_account_matches("foo/ba", "x", p));
        assert!(!service_account_matches("foo/bar-x", "x", p));
        assert!(service_account_matches(
            "foo/bar",
            "x",
            "td/ns/foo/extra/sa/bar/more"
        ));
        assert!(!service_account_matches("foo/bar", "x", "td/sa/bar/ns/foo"));
    }
}
