//! Routing decision tests: host precedence, match conditions, actions, draws.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;

fn dest(host: &str, subset: Option<&str>, weight: u32) -> WeightedDestination {
    WeightedDestination::to(host, subset, weight)
}

fn route(matches: Vec<HttpMatch>, to: Vec<WeightedDestination>) -> HttpRoute {
    HttpRoute::forward(matches, to)
}

fn vs(name: &str, hosts: &[&str], http: Vec<HttpRoute>) -> VirtualServiceRoutes {
    VirtualServiceRoutes {
        name: name.to_owned(),
        namespace: "default".to_owned(),
        hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        gateways: vec![],
        http,
        origin: None,
    }
}

const REVIEWS: &str = "reviews.default.svc.cluster.local";

struct Req {
    authority: String,
    path: String,
    method: String,
    headers: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    gateway: String,
}

impl Req {
    fn new(authority: &str, path: &str) -> Self {
        Req {
            authority: authority.to_owned(),
            path: path.to_owned(),
            method: "GET".to_owned(),
            headers: BTreeMap::new(),
            labels: BTreeMap::new(),
            gateway: "mesh".to_owned(),
        }
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.insert(k.to_owned(), v.to_owned());
        self
    }
    fn as_request(&self) -> RouteRequest<'_> {
        RouteRequest {
            authority: &self.authority,
            method: &self.method,
            path: &self.path,
            scheme: "http",
            headers: &self.headers,
            source_labels: &self.labels,
            source_namespace: "default",
            gateway: &self.gateway,
        }
    }
}

fn run(table: &RouteTable, req: &Req) -> RouteDecision {
    decide(
        table,
        &req.as_request(),
        &mut SmallRng::seed_from_u64(1),
        true,
    )
}

fn subset_of(d: &RouteDecision) -> Option<String> {
    match &d.outcome {
        RouteOutcome::Forward(f) => f.destination().subset.clone(),
        other => panic!("expected forward, got {other:?}"),
    }
}

/// The rule from Istio's `bookinfo-virtual-service-reviews-jason-v2-v3.yaml`: requests
/// with `end-user: jason` go to v2, everyone else to v3.
fn jason_table() -> RouteTable {
    let mut jason = HttpMatch::default();
    jason.headers.insert(
        "end-user".to_owned(),
        ValueMatch::Is(StringMatch::Exact("jason".to_owned())),
    );
    RouteTable::new(vec![vs(
        "reviews",
        &[REVIEWS],
        vec![
            route(vec![jason], vec![dest(REVIEWS, Some("v2"), 100)]),
            route(vec![], vec![dest(REVIEWS, Some("v3"), 100)]),
        ],
    )])
}

#[test]
fn jason_goes_to_v2_everyone_else_to_v3() {
    let table = jason_table();
    let d = run(
        &table,
        &Req::new("reviews", "/").header("end-user", "jason"),
    );
    assert_eq!(subset_of(&d).as_deref(), Some("v2"));
    assert_eq!(d.trace.rule, Some(0));
    assert_eq!(d.trace.virtual_service.as_deref(), Some("default/reviews"));
    assert_eq!(d.trace.host_match, HostMatch::Exact);
    // The decision says what it cost: a route match over the request's metadata
    // ("reviews" + "/" + "GET" + "end-user" + "jason").
    assert_eq!(d.cost.kind, crate::cost::CostKind::RouteMatch);
    assert_eq!(d.cost.bytes, 7 + 1 + 3 + 8 + 5);
    let d = run(
        &table,
        &Req::new("reviews:9080", "/").header("end-user", "alice"),
    );
    assert_eq!(subset_of(&d).as_deref(), Some("v3"));
    assert_eq!(d.trace.rule, Some(1));
    assert_eq!(d.trace.skipped.len(), 1);
    assert!(
        d.trace.skipped[0].reasons[0].contains("end-user"),
        "{:?}",
        d.trace.skipped
    );
    let d = run(&table, &Req::new("reviews", "/"));
    assert!(d.trace.skipped[0].reasons[0].contains("absent"));
}

#[test]
fn host_precedence_exact_then_most_specific_wildcard() {
    let table = RouteTable::new(vec![
        vs(
            "any",
            &["*"],
            vec![route(vec![], vec![dest("any", None, 100)])],
        ),
        vs(
            "wide",
            &["*.com"],
            vec![route(vec![], vec![dest("wide", None, 100)])],
        ),
        vs(
            "narrow",
            &["*.example.com"],
            vec![route(vec![], vec![dest("narrow", None, 100)])],
        ),
        vs(
            "exact",
            &["api.example.com"],
            vec![route(vec![], vec![dest("exact", None, 100)])],
        ),
    ]);
    let to = |authority: &str| {
        let d = run(&table, &Req::new(authority, "/"));
        match d.outcome {
            RouteOutcome::Forward(f) => {
                (f.destination().host.clone(), d.trace.host_match.to_string())
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(to("api.example.com").0, "exact");
    assert_eq!(
        to("www.example.com"),
        ("narrow".into(), "wildcard *.example.com".into())
    );
    assert_eq!(to("foo.com").0, "wide");
    assert_eq!(to("foo.org").0, "any");
}

#[test]
fn gateway_binding() {
    let mut gw = vs(
        "ingress",
        &["bookinfo.example.com"],
        vec![route(vec![], vec![dest("productpage", None, 100)])],
    );
    gw.gateways = vec!["bookinfo-gateway".to_owned()];
    let table = RouteTable::new(vec![gw]);
    // Not bound to `mesh`: a sidecar passes through.
    let d = run(&table, &Req::new("bookinfo.example.com", "/"));
    assert!(matches!(d.outcome, RouteOutcome::Passthrough { .. }));
    let mut req = Req::new("bookinfo.example.com", "/");
    req.gateway = "bookinfo-gateway".to_owned();
    assert!(matches!(
        run(&table, &req).outcome,
        RouteOutcome::Forward(_)
    ));
}

#[test]
fn no_virtual_service_is_passthrough_with_istio_default_retries() {
    let table = RouteTable::new(vec![]);
    let d = run(&table, &Req::new("ratings:9080", "/"));
    match d.outcome {
        RouteOutcome::Passthrough {
            destination,
            retries,
        } => {
            assert_eq!(destination.host, "ratings.default.svc.cluster.local");
            assert_eq!(destination.port, Some(9080));
            assert_eq!(retries.attempts, 2);
            assert!(retries.istio_default);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn claimed_host_without_a_matching_rule_is_no_route() {
    let m = HttpMatch {
        uri: Some(StringMatch::Prefix("/api".into())),
        ..HttpMatch::default()
    };
    let table = RouteTable::new(vec![vs(
        "r",
        &[REVIEWS],
        vec![route(vec![m], vec![dest(REVIEWS, None, 100)])],
    )]);
    let d = run(&table, &Req::new("reviews", "/other"));
    assert_eq!(d.outcome, RouteOutcome::NoRoute);
    assert_eq!(d.trace.skipped.len(), 1);
}

#[test]
fn every_match_condition() {
    let mk = |f: &dyn Fn(&mut HttpMatch)| {
        let mut m = HttpMatch::default();
        f(&mut m);
        RouteTable::new(vec![vs(
            "r",
            &[REVIEWS],
            vec![route(vec![m], vec![dest(REVIEWS, None, 100)])],
        )])
    };
    let hit = |t: &RouteTable, r: &Req| matches!(run(t, r).outcome, RouteOutcome::Forward(_));
    let t = mk(&|m| m.uri = Some(StringMatch::Exact("/login".into())));
    assert!(hit(&t, &Req::new("reviews", "/login?x=1")));
    assert!(!hit(&t, &Req::new("reviews", "/login/x")));
    let t = mk(&|m| {
        m.uri = Some(StringMatch::Prefix("/API".into()));
        m.ignore_uri_case = true;
    });
    assert!(hit(&t, &Req::new("reviews", "/api/v1")));
    let t = mk(&|m| m.uri = Some(StringMatch::regex("/v[0-9]+/.*").unwrap()));
    assert!(hit(&t, &Req::new("reviews", "/v2/items")));
    assert!(!hit(&t, &Req::new("reviews", "/x/v2/items")), "anchored");
    let t = mk(&|m| {
        m.headers.insert("x-canary".into(), ValueMatch::Present);
    });
    assert!(hit(&t, &Req::new("reviews", "/").header("x-canary", "")));
    assert!(!hit(&t, &Req::new("reviews", "/")));
    let t = mk(&|m| {
        m.without_headers.insert(
            "x-debug".into(),
            ValueMatch::Is(StringMatch::Exact("1".into())),
        );
    });
    assert!(hit(&t, &Req::new("reviews", "/")));
    assert!(!hit(&t, &Req::new("reviews", "/").header("x-debug", "1")));
    let t = mk(&|m| {
        m.query_params.insert(
            "tier".into(),
            ValueMatch::Is(StringMatch::Exact("gold".into())),
        );
    });
    assert!(hit(&t, &Req::new("reviews", "/?a=1&tier=gold")));
    assert!(!hit(&t, &Req::new("reviews", "/?tier=silver")));
    let t = mk(&|m| m.method = Some(StringMatch::Exact("POST".into())));
    assert!(!hit(&t, &Req::new("reviews", "/")));
    let t = mk(&|m| m.port = Some(9080));
    assert!(hit(&t, &Req::new("reviews:9080", "/")));
    assert!(!hit(&t, &Req::new("reviews:80", "/")));
    let t = mk(&|m| {
        m.source_labels.insert("app".into(), "productpage".into());
    });
    let mut r = Req::new("reviews", "/");
    assert!(!hit(&t, &r));
    r.labels.insert("app".into(), "productpage".into());
    assert!(hit(&t, &r));
}

#[test]
fn rewrite_replaces_the_matched_prefix() {
    let m = HttpMatch {
        uri: Some(StringMatch::Prefix("/ratings".into())),
        ..HttpMatch::default()
    };
    let mut r = route(vec![m], vec![dest(REVIEWS, None, 100)]);
    r.rewrite = Some(Rewrite {
        uri: Some("/v1/bookRatings".into()),
        authority: None,
    });
    let table = RouteTable::new(vec![vs("r", &[REVIEWS], vec![r])]);
    match run(&table, &Req::new("reviews", "/ratings/7?x=1")).outcome {
        RouteOutcome::Forward(f) => {
            assert_eq!(f.rewritten_path.as_deref(), Some("/v1/bookRatings/7?x=1"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn faults_apply_to_their_percentage() {
    let mut r = route(vec![], vec![dest(REVIEWS, None, 100)]);
    r.fault = Some(Fault {
        delay: Some((Duration::from_secs(7), 100.0)),
        abort: Some((500, 10.0)),
    });
    r.timeout = Some(Duration::from_millis(500));
    let table = RouteTable::new(vec![vs("r", &[REVIEWS], vec![r])]);
    let req = Req::new("reviews", "/");
    let mut rng = SmallRng::seed_from_u64(9);
    let n = 10_000;
    let mut aborted = 0u32;
    for _ in 0..n {
        match decide(&table, &req.as_request(), &mut rng, false).outcome {
            RouteOutcome::Forward(f) => {
                assert_eq!(f.delay, Some(Duration::from_secs(7)));
                assert_eq!(f.timeout, Some(Duration::from_millis(500)));
                if f.abort == Some(500) {
                    aborted += 1;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    // Binomial(10000, 0.1): σ = 30; allow 5σ.
    assert!(aborted.abs_diff(1000u32) <= 150, "{aborted}");
}

#[test]
fn short_names_expand_as_istio() {
    let e = |a: &str| expand_authority(a, "default");
    assert_eq!(e("reviews"), (REVIEWS.to_owned(), None));
    assert_eq!(e("reviews:9080"), (REVIEWS.to_owned(), Some(9080)));
    assert_eq!(e("reviews.default"), (REVIEWS.to_owned(), None));
    assert_eq!(e("reviews.default.svc"), (REVIEWS.to_owned(), None));
    assert_eq!(
        e("Reviews.Default.svc.cluster.local."),
        (REVIEWS.to_owned(), None)
    );
    assert_eq!(
        e("www.google.com:443"),
        ("www.google.com".to_owned(), Some(443))
    );
    assert_eq!(e("example.com"), ("example.com".to_owned(), None));
    assert_eq!(e("10.0.0.1:80"), ("10.0.0.1".to_owned(), Some(80)));
}

proptest! {
    /// A weighted split converges to its weights: over 20,000 requests each share is
    /// within 5σ of its weight.
    #[test]
    fn weighted_split_converges(w in 1u32..100, seed in any::<u64>()) {
        let table = RouteTable::new(vec![vs(
            "r",
            &[REVIEWS],
            vec![route(vec![], vec![dest(REVIEWS, Some("v1"), w), dest(REVIEWS, Some("v2"), 100 - w)])],
        )]);
        let req = Req::new("reviews", "/");
        let mut rng = SmallRng::seed_from_u64(seed);
        let n = 20_000u32;
        let mut v1 = 0u32;
        for _ in 0..n {
            if let RouteOutcome::Forward(f) = decide(&table, &req.as_request(), &mut rng, false).outcome
                && f.chosen == 0
            {
                v1 += 1;
            }
        }
        let p = f64::from(w) / 100.0;
        let sigma = (f64::from(n) * p * (1.0 - p)).sqrt();
        prop_assert!((f64::from(v1) - f64::from(n) * p).abs() <= 5.0 * sigma + 1.0,
            "weight {w}: {v1} of {n}");
    }

    /// The same seed gives the same decisions.
    #[test]
    fn same_seed_same_decisions(seed in any::<u64>()) {
        let mut r = route(vec![], vec![dest(REVIEWS, Some("v1"), 30), dest(REVIEWS, Some("v2"), 70)]);
        r.fault = Some(Fault { delay: None, abort: Some((503, 50.0)) });
        let table = RouteTable::new(vec![vs("r", &[REVIEWS], vec![r])]);
        let req = Req::new("reviews", "/");
        let run_all = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..200).map(|_| decide(&table, &req.as_request(), &mut rng, false)).collect::<Vec<_>>()
        };
        prop_assert_eq!(run_all(seed), run_all(seed));
    }
}

/// A forwarding decision becomes the plan both drivers run; a local answer has none.
#[test]
fn upstream_plans_come_from_forwarding_decisions_only() {
    let pass = RouteOutcome::Passthrough {
        destination: Destination {
            host: "ratings.default.svc.cluster.local".into(),
            subset: None,
            port: None,
        },
        retries: RouteRetries::istio_default(),
    };
    let plan = pass.upstream().expect("passthrough forwards");
    assert_eq!(plan.host, "ratings.default.svc.cluster.local");
    assert_eq!(plan.retry, crate::retry::RetryPolicy::istio_default());
    assert_eq!((plan.timeout, plan.delay, plan.abort), (None, None, None));
    assert!(RouteOutcome::NoRoute.upstream().is_none());
    let direct = RouteOutcome::DirectResponse {
        status: 503,
        body: None,
    };
    assert!(direct.upstream().is_none());
}
