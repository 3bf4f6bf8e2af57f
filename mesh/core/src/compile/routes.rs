//! VirtualServices → [`RouteTable`].
//!
//! Hosts (of the VirtualService and of every destination) are expanded to FQDNs in the
//! VirtualService's namespace, regexes are compiled anchored, single destinations get
//! weight 100, and the defaults Istio applies are made explicit: a route without
//! `retries` gets Istio's implicit two retries; `retries` without `retryOn` gets
//! Istio's default `retryOn`; a mirror without a percentage mirrors 100%.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::model::common::{
    Destination as ConfigDestination, Headers, StringMatch as ConfigMatch,
};
use crate::config::model::virtual_service::{
    HttpMatchRequest, HttpRoute as ConfigRoute, HttpRouteDestination,
};
use crate::config::{ConfigSet, Resource, VirtualService, fqdn};
use crate::route::{
    Destination, Fault, HeaderOps, HttpMatch, HttpRoute, Mirror, Redirect, Rewrite, RouteAction,
    RouteRetries, RouteTable, StringMatch, ValueMatch, VirtualServiceRoutes, WeightedDestination,
};

/// Compiles every VirtualService of `set`, in the set's order (which is the order the
/// files and documents were given: the earlier definition of a host wins, as Istio's
/// oldest-wins rule).
pub fn route_table(set: &ConfigSet) -> RouteTable {
    RouteTable::new(set.virtual_services().iter().map(compile_vs).collect())
}

/// One VirtualService.
pub fn compile_vs(res: &Resource<VirtualService>) -> VirtualServiceRoutes {
    let ns = res.metadata.namespace.as_str();
    let vs = &res.spec;
    VirtualServiceRoutes {
        name: res.metadata.name.clone(),
        namespace: ns.to_owned(),
        hosts: vs
            .hosts
            .iter()
            .map(|h| fqdn(h, ns).to_ascii_lowercase())
            .collect(),
        gateways: vs.gateways.clone(),
        http: vs
            .http
            .iter()
            .enumerate()
            .map(|(i, r)| compile_route(res, i, r))
            .collect(),
        origin: Some(Arc::from(format!(
            "{}:{}",
            res.origin.file, res.origin.line
        ))),
    }
}

fn compile_route(res: &Resource<VirtualService>, index: usize, r: &ConfigRoute) -> HttpRoute {
    let ns = res.metadata.namespace.as_str();
    let action = if let Some(redirect) = &r.redirect {
        RouteAction::Redirect(Redirect {
            uri: redirect.uri.clone(),
            authority: redirect.authority.clone(),
            scheme: redirect.scheme.clone(),
            port: redirect.port.and_then(|p| u16::try_from(p).ok()),
            status: redirect
                .redirect_code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
        })
    } else if let Some(direct) = &r.direct_response {
        RouteAction::DirectResponse {
            status: direct
                .status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(200),
            body: direct
                .body
                .as_ref()
                .and_then(|b| b.string.clone().or_else(|| b.bytes.clone())),
        }
    } else {
        let single = r.route.len() == 1;
        RouteAction::Forward(
            r.route
                .iter()
                .filter_map(|d| weighted(d, ns, single))
                .collect::<Vec<_>>()
                .into(),
        )
    };
    let retries = r.retries.as_ref().map(|rt| {
        let default = RouteRetries::istio_default();
        RouteRetries {
            attempts: rt
                .attempts
                .map_or(default.attempts, |a| u32::try_from(a).unwrap_or(0)),
            per_try_timeout: rt.per_try_timeout,
            retry_on: rt.retry_on.as_deref().map_or(default.retry_on, Arc::from),
            istio_default: false,
        }
    });
    let fault = r.fault.as_ref().map(|f| Fault {
        delay: f.delay.as_ref().and_then(|d| {
            let pct = d
                .percentage
                .map(|p| p.0)
                .or(d.percent.map(|p| f64::from(p.0)))
                .unwrap_or(100.0);
            d.fixed_delay.or(d.exponential_delay).map(|dur| (dur, pct))
        }),
        abort: f.abort.as_ref().and_then(|a| {
            let pct = a
                .percentage
                .map(|p| p.0)
                .or(a.percent.map(|p| f64::from(p.0)))
                .unwrap_or(100.0);
            a.http_status
                .and_then(|s| u16::try_from(s).ok())
                .map(|s| (s, pct))
        }),
    });
    let mut mirrors = Vec::new();
    if let Some(m) = &r.mirror {
        let pct = r
            .mirror_percentage
            .map(|p| p.0)
            .or(r.mirror_percent.map(|p| f64::from(p.0)))
            .unwrap_or(100.0);
        mirrors.push(Mirror {
            destination: destination(m, ns),
            percentage: pct,
        });
    }
    for m in &r.mirrors {
        if let Some(d) = &m.destination {
            mirrors.push(Mirror {
                destination: destination(d, ns),
                percentage: m.percentage.map_or(100.0, |p| p.0),
            });
        }
    }
    HttpRoute {
        name: r.name.clone(),
        matches: r.r#match.iter().map(compile_match).collect(),
        action,
        rewrite: r.rewrite.as_ref().map(|rw| Rewrite {
            uri: rw.uri.clone(),
            authority: rw.authority.clone(),
        }),
        timeout: r.timeout,
        retries,
        fault,
        mirrors,
        headers: Arc::new(header_ops(r.headers.as_ref())),
        origin: Some(Arc::from(res.locate(&format!("spec.http[{index}]")))),
    }
}

fn weighted(d: &HttpRouteDestination, ns: &str, single: bool) -> Option<WeightedDestination> {
    let dest = d.destination.as_ref()?;
    Some(WeightedDestination {
        destination: destination(dest, ns),
        weight: match d.weight {
            Some(w) => w.0,
            None if single => 100,
            None => 0,
        },
        headers: header_ops(d.headers.as_ref()),
    })
}

fn destination(d: &ConfigDestination, ns: &str) -> Destination {
    Destination {
        host: fqdn(&d.host, ns).to_ascii_lowercase(),
        subset: d.subset.clone(),
        port: d
            .port
            .as_ref()
            .and_then(|p| p.number)
            .and_then(|n| u16::try_from(n).ok()),
    }
}

fn header_ops(h: Option<&Headers>) -> HeaderOps {
    let mut ops = HeaderOps::default();
    let Some(h) = h else {
        return ops;
    };
    if let Some(req) = &h.request {
        ops.request_set = req.set.clone();
        ops.request_add = req.add.clone();
        ops.request_remove = req.remove.clone();
    }
    if let Some(resp) = &h.response {
        ops.response_set = resp.set.clone();
        ops.response_add = resp.add.clone();
        ops.response_remove = resp.remove.clone();
    }
    ops
}

fn compile_match(m: &HttpMatchRequest) -> HttpMatch {
    let value_map = |map: &BTreeMap<String, ConfigMatch>, lower: bool| {
        map.iter()
            .filter_map(|(k, v)| {
                let key = if lower {
                    k.to_ascii_lowercase()
                } else {
                    k.clone()
                };
                Some((key, value_match(v)?))
            })
            .collect::<BTreeMap<_, _>>()
    };
    HttpMatch {
        name: m.name.clone(),
        uri: m.uri.as_ref().and_then(string_match),
        ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
        scheme: m.scheme.as_ref().and_then(string_match),
        method: m.method.as_ref().and_then(string_match),
        authority: m.authority.as_ref().and_then(string_match),
        headers: value_map(&m.headers, true),
        without_headers: value_map(&m.without_headers, true),
        query_params: value_map(&m.query_params, false),
        port: m.port.and_then(|p| u16::try_from(p).ok()),
        source_labels: m.source_labels.clone(),
        source_namespace: m.source_namespace.clone(),
        gateways: m.gateways.clone(),
    }
}

/// `None` for `{}` (any value) or a regex that does not compile (validation has
/// already reported it).
fn string_match(m: &ConfigMatch) -> Option<StringMatch> {
    match m {
        ConfigMatch::Exact(s) => Some(StringMatch::Exact(s.clone())),
        ConfigMatch::Prefix(s) => Some(StringMatch::Prefix(s.clone())),
        ConfigMatch::Regex(r) => StringMatch::regex(r.as_str()).ok(),
        ConfigMatch::Any => None,
    }
}

fn value_match(m: &ConfigMatch) -> Option<ValueMatch> {
    match m {
        ConfigMatch::Any => Some(ValueMatch::Present),
        other => string_match(other).map(ValueMatch::Is),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;
    use crate::route::{RouteOutcome, RouteRequest, decide};

    use crate::test_support::istio_sample as sample;

    fn subset_for(table: &RouteTable, user: Option<&str>) -> Option<String> {
        let headers: BTreeMap<String, String> = user
            .map(|u| [("end-user".to_owned(), u.to_owned())].into())
            .unwrap_or_default();
        let labels = BTreeMap::new();
        let req = RouteRequest {
            authority: "reviews:9080",
            method: "GET",
            path: "/reviews/0",
            scheme: "http",
            headers: &headers,
            source_labels: &labels,
            source_namespace: "default",
            gateway: "mesh",
        };
        match decide(table, &req, &mut SmallRng::seed_from_u64(1), false).outcome {
            RouteOutcome::Forward(f) => f.destination().subset.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// Istio's sample: jason goes to subset v2, everyone else to v3.
    #[test]
    fn bookinfo_jason_sample() {
        let (set, findings) = ConfigSet::load(&[
            sample("bookinfo-virtual-service-reviews-jason-v2-v3.yaml"),
            sample("bookinfo-destination-rule-all.yaml"),
        ]);
        assert!(
            findings
                .iter()
                .all(|f| f.severity != crate::config::Severity::Error),
            "{findings:?}"
        );
        let table = route_table(&set);
        assert_eq!(subset_for(&table, Some("jason")).as_deref(), Some("v2"));
        assert_eq!(subset_for(&table, Some("alice")).as_deref(), Some("v3"));
        assert_eq!(subset_for(&table, None).as_deref(), Some("v3"));
    }

    /// Istio's 80/20 sample splits by weight.
    #[test]
    fn bookinfo_80_20_sample() {
        let (set, _) = ConfigSet::load(&[sample("bookinfo-virtual-service-reviews-80-20.yaml")]);
        let table = route_table(&set);
        let headers = BTreeMap::new();
        let labels = BTreeMap::new();
        let req = RouteRequest {
            authority: "reviews",
            method: "GET",
            path: "/",
            scheme: "http",
            headers: &headers,
            source_labels: &labels,
            source_namespace: "default",
            gateway: "mesh",
        };
        let mut rng = SmallRng::seed_from_u64(3);
        let mut v1 = 0;
        for _ in 0..10_000 {
            if let RouteOutcome::Forward(f) = decide(&table, &req, &mut rng, false).outcome
                && f.destination().subset.as_deref() == Some("v1")
            {
                v1 += 1;
            }
        }
        // Binomial(10000, 0.8): σ = 40; allow 5σ.
        assert!((7800..=8200).contains(&v1), "{v1}");
    }

    /// The fault-injection samples: delay 7 s for jason (100%), abort 500 for jason.
    #[test]
    fn bookinfo_fault_samples() {
        let (set, _) =
            ConfigSet::load(&[sample("bookinfo-virtual-service-ratings-test-delay.yaml")]);
        let table = route_table(&set);
        let rule = &table.services()[0].http[0];
        let fault = rule.fault.as_ref().expect("fault");
        assert_eq!(
            fault.delay,
            Some((std::time::Duration::from_secs(7), 100.0))
        );
        let (set, _) =
            ConfigSet::load(&[sample("bookinfo-virtual-service-ratings-test-abort.yaml")]);
        let table = route_table(&set);
        let fault = table.services()[0].http[0].fault.as_ref().expect("fault");
        assert_eq!(fault.abort, Some((500, 100.0)));
    }

    /// Every HTTP route field that compiles into the decision, from one inline
    /// VirtualService: timeout, retries (with and without retryOn), rewrite, mirror with
    /// percentage, header edits, redirect, direct response, sourceLabels, queryParams,
    /// withoutHeaders, ignoreUriCase.
    #[test]
    fn every_route_field_reaches_the_decision() {
        let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: prod}
spec:
  hosts: [shop]
  http:
  - name: moved
    match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: shop.example.com, redirectCode: 308}
  - name: teapot
    match: [{uri: {prefix: /tea}, ignoreUriCase: true}]
    directResponse: {status: 418, body: {string: short and stout}}
  - name: api
    match:
    - uri: {prefix: /api}
      queryParams: {tier: {exact: gold}}
      withoutHeaders: {x-debug: {}}
      sourceLabels: {app: web}
    rewrite: {uri: /v2, authority: backend}
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: 5xx}
    mirror: {host: shadow}
    mirrorPercentage: {value: 25}
    headers:
      request: {set: {x-tier: gold}, remove: [x-internal]}
    route:
    - destination: {host: shop, subset: v1}
  - name: default
    retries: {attempts: 1}
    route:
    - destination: {host: shop}
"#;
        let (set, findings) = ConfigSet::load(&[("shop.yaml".to_owned(), yaml.to_owned())]);
        assert!(
            findings
                .iter()
                .all(|f| f.severity != crate::config::Severity::Error),
            "{findings:?}"
        );
        let table = route_table(&set);
        let decide_for = |path: &str, headers: &[(&str, &str)], labels: &[(&str, &str)]| {
            let headers: BTreeMap<String, String> = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let req = RouteRequest {
                authority: "shop",
                method: "GET",
                path,
                scheme: "http",
                headers: &headers,
                source_labels: &labels,
                source_namespace: "prod",
                gateway: "mesh",
            };
            decide(&table, &req, &mut SmallRng::seed_from_u64(5), true)
        };
        match decide_for("/old", &[], &[]).outcome {
            RouteOutcome::Redirect(r) => {
                assert_eq!(r.status, 308);
                assert_eq!(r.uri.as_deref(), Some("/new"));
                assert_eq!(r.authority.as_deref(), Some("shop.example.com"));
            }
            other => panic!("{other:?}"),
        }
        match decide_for("/TEAPOT", &[], &[]).outcome {
            RouteOutcome::DirectResponse { status, body } => {
                assert_eq!(status, 418);
                assert_eq!(body.as_deref(), Some("short and stout"));
            }
            other => panic!("{other:?}"),
        }
        let api = |path, headers: &[(&str, &str)], labels: &[(&str, &str)]| {
            decide_for(path, headers, labels)
        };
        match api("/api/items?tier=gold", &[], &[("app", "web")]).outcome {
            RouteOutcome::Forward(f) => {
                assert_eq!(f.destination().subset.as_deref(), Some("v1"));
                assert_eq!(f.rewritten_path.as_deref(), Some("/v2/items?tier=gold"));
                assert_eq!(
                    f.rewrite.as_ref().and_then(|r| r.authority.as_deref()),
                    Some("backend")
                );
                assert_eq!(f.timeout, Some(std::time::Duration::from_secs(3)));
                assert_eq!(f.retries.attempts, 4);
                assert_eq!(&*f.retries.retry_on, "5xx");
                assert_eq!(
                    f.retries.per_try_timeout,
                    Some(std::time::Duration::from_millis(500))
                );
                assert!(!f.retries.istio_default);
                assert_eq!(
                    f.headers.request_set.get("x-tier").map(String::as_str),
                    Some("gold")
                );
                assert_eq!(f.headers.request_remove, vec!["x-internal".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        // The 25% mirror: over many seeds, about a quarter of requests are mirrored.
        let rule = table.services()[0].http[2].clone();
        assert_eq!(rule.mirrors[0].percentage, 25.0);
        assert_eq!(
            rule.mirrors[0].destination.host,
            "shadow.prod.svc.cluster.local"
        );
        // Each condition of the match block, failing alone, skips the rule.
        for (path, headers, labels) in [
            ("/api/x?tier=silver", vec![], vec![("app", "web")]),
            (
                "/api/x?tier=gold",
                vec![("x-debug", "1")],
                vec![("app", "web")],
            ),
            ("/api/x?tier=gold", vec![], vec![("app", "batch")]),
        ] {
            let d = api(path, &headers, &labels);
            assert_eq!(
                d.trace.rule_name.as_deref(),
                Some("default"),
                "{path} {headers:?} {labels:?}"
            );
            match d.outcome {
                // retries without retryOn take Istio's default retryOn.
                RouteOutcome::Forward(f) => {
                    assert_eq!(f.retries.attempts, 1);
                    assert_eq!(f.retries.retry_on, RouteRetries::istio_default().retry_on);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
