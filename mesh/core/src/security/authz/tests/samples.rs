//! Istio's documented authorization samples (/work/shared/testdata/istio/docs-authz-*.yaml),
//! each normalized by hand and checked against the behaviour the Istio docs describe.

use super::*;

fn is_allowed(d: &AuthzDecision) -> bool {
    d.verdict.after_external_check(true) == Access::Allow
}

/// docs-authz-allow-nothing.yaml: `spec: {}` in `default` — ALLOW with no rules.
#[test]
fn sample_allow_nothing_denies_everything_in_its_namespace() {
    let p = policy("allow-nothing", "default", &[], Action::Allow, vec![]);
    let any = RequestAttributes::http("GET", "/", "x", 80).with_peer(&peer("default", "sleep"));
    let d = evaluate(
        std::slice::from_ref(&p),
        &any,
        &labels(&[("app", "x")]),
        "default",
        DEFAULT_ROOT_NAMESPACE,
    );
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.trace.reason, AuthzReason::NoAllowMatched);
    let d = evaluate(
        &[p],
        &any,
        &labels(&[("app", "x")]),
        "other",
        DEFAULT_ROOT_NAMESPACE,
    );
    assert_eq!(d.verdict, Verdict::Allow, "other namespaces unaffected");
}

/// docs-authz-allow-path-ip.yaml: httpbin in foo allows only `/ip`.
#[test]
fn sample_allow_path_ip() {
    let p = policy(
        "allow-path-ip",
        "foo",
        &[("app", "httpbin")],
        Action::Allow,
        vec![rule_to(Operation {
            paths: strings(&["/ip"]),
            ..Operation::default()
        })],
    );
    let req = |path| RequestAttributes::http("GET", path, "httpbin.foo:8000", 8000);
    assert!(is_allowed(&eval(std::slice::from_ref(&p), &req("/ip"))));
    assert!(!is_allowed(&eval(
        std::slice::from_ref(&p),
        &req("/headers")
    )));
    let sleep = evaluate(
        &[p],
        &req("/headers"),
        &labels(&[("app", "sleep")]),
        "foo",
        DEFAULT_ROOT_NAMESPACE,
    );
    assert!(is_allowed(&sleep), "the selector limits it to httpbin");
}

fn deny_get() -> AuthorizationPolicy {
    policy(
        "deny-method-get",
        "foo",
        &[("app", "httpbin")],
        Action::Deny,
        vec![rule_to(methods(&["GET"]))],
    )
}

/// docs-authz-deny-method-get.yaml: GET is denied, POST is not.
#[test]
fn sample_deny_method_get() {
    let p = deny_get();
    let d = eval(
        std::slice::from_ref(&p),
        &RequestAttributes::http("GET", "/get", "h", 8000),
    );
    assert!(!is_allowed(&d));
    assert_eq!(d.trace.decided_by.unwrap().policy.name, "deny-method-get");
    assert!(is_allowed(&eval(
        &[p],
        &RequestAttributes::http("POST", "/post", "h", 8000)
    )));
}

/// docs-authz-deny-method-get-when-notvalues.yaml: GET is denied unless
/// `x-token: admin`.
#[test]
fn sample_deny_method_get_unless_admin_token() {
    let mut p = deny_get();
    p.rules[0].when = vec![
        Condition::new(
            "request.headers[x-token]".parse().unwrap(),
            vec![],
            strings(&["admin"]),
        )
        .unwrap(),
    ];
    let get = RequestAttributes::http("GET", "/get", "h", 8000);
    assert!(
        !is_allowed(&eval(std::slice::from_ref(&p), &get)),
        "no token"
    );
    let guest = get.clone().with_header("x-token", "guest");
    assert!(!is_allowed(&eval(std::slice::from_ref(&p), &guest)));
    let admin = get.with_header("x-token", "admin");
    assert!(is_allowed(&eval(std::slice::from_ref(&p), &admin)));
    let post = RequestAttributes::http("POST", "/post", "h", 8000);
    assert!(is_allowed(&eval(&[p], &post)));
}

/// docs-authz-http-productpage-viewer.yaml: productpage allows GET from anyone.
#[test]
fn sample_productpage_viewer() {
    let p = policy(
        "productpage-viewer",
        "default",
        &[("app", "productpage")],
        Action::Allow,
        vec![rule_to(methods(&["GET"]))],
    );
    let wl = labels(&[("app", "productpage")]);
    let run = |m| {
        evaluate(
            std::slice::from_ref(&p),
            &RequestAttributes::http(m, "/productpage", "h", 9080),
            &wl,
            "default",
            DEFAULT_ROOT_NAMESPACE,
        )
    };
    assert!(is_allowed(&run("GET")));
    assert!(!is_allowed(&run("POST")));
}

/// docs-authz-http-details-viewer.yaml: details allows GET from the productpage
/// service account only.
#[test]
fn sample_details_viewer() {
    let p = policy(
        "details-viewer",
        "default",
        &[("app", "details")],
        Action::Allow,
        vec![Rule {
            from: vec![Source {
                principals: strings(&["cluster.local/ns/default/sa/bookinfo-productpage"]),
                ..Source::default()
            }],
            to: vec![methods(&["GET"])],
            ..Rule::default()
        }],
    );
    let wl = labels(&[("app", "details")]);
    let run = |m, sa| {
        let req = RequestAttributes::http(m, "/details/0", "details:9080", 9080)
            .with_peer(&peer("default", sa));
        evaluate(
            std::slice::from_ref(&p),
            &req,
            &wl,
            "default",
            DEFAULT_ROOT_NAMESPACE,
        )
    };
    let d = run("GET", "bookinfo-productpage");
    assert!(is_allowed(&d));
    assert_eq!(
        d.trace.decided_by.unwrap().because.len(),
        2,
        "principal and method"
    );
    assert!(!is_allowed(&run("GET", "bookinfo-reviews")));
    assert!(!is_allowed(&run("POST", "bookinfo-productpage")));
}

/// docs-authz-jwt-require-jwt-claims.yaml: httpbin requires a JWT from
/// testing@secure.istio.io whose `groups` claim contains `group1`.
#[test]
fn sample_require_jwt_claims() {
    let p = policy(
        "require-jwt",
        "foo",
        &[("app", "httpbin")],
        Action::Allow,
        vec![Rule {
            from: vec![Source {
                request_principals: strings(&["testing@secure.istio.io/testing@secure.istio.io"]),
                ..Source::default()
            }],
            when: vec![
                Condition::new(
                    "request.auth.claims[groups]".parse().unwrap(),
                    strings(&["group1"]),
                    vec![],
                )
                .unwrap(),
            ],
            ..Rule::default()
        }],
    );
    let base = RequestAttributes::http("GET", "/headers", "httpbin.foo:8000", 8000);
    assert!(
        !is_allowed(&eval(std::slice::from_ref(&p), &base)),
        "no JWT"
    );
    let mut jwt = base;
    jwt.request_principal = Some("testing@secure.istio.io/testing@secure.istio.io".into());
    jwt.claims
        .insert("groups".into(), strings(&["group1", "group2"]));
    assert!(is_allowed(&eval(std::slice::from_ref(&p), &jwt)));
    jwt.claims.insert("groups".into(), strings(&["group2"]));
    assert!(!is_allowed(&eval(&[p], &jwt)));
}

/// docs-authz-custom-ext-authz.yaml: `/headers` on httpbin goes to the external
/// authorizer `sample-ext-authz-grpc`; other paths do not.
#[test]
fn sample_custom_ext_authz() {
    let mut p = policy(
        "ext-authz",
        "foo",
        &[("app", "httpbin")],
        Action::Custom,
        vec![rule_to(Operation {
            paths: strings(&["/headers"]),
            ..Operation::default()
        })],
    );
    p.provider = Some("sample-ext-authz-grpc".into());
    assert_eq!(p.validate(), Ok(()));
    let d = eval(
        std::slice::from_ref(&p),
        &RequestAttributes::http("GET", "/headers", "h", 8000),
    );
    assert_eq!(
        d.verdict,
        Verdict::Custom {
            provider: "sample-ext-authz-grpc".into(),
            on_external_allow: Access::Allow,
        }
    );
    assert_eq!(d.verdict.after_external_check(false), Access::Deny);
    let d = eval(&[p], &RequestAttributes::http("GET", "/ip", "h", 8000));
    assert_eq!(d.verdict, Verdict::Allow);
}

fn tcp_policy(action: Action, op: Operation) -> AuthorizationPolicy {
    policy(
        "tcp-policy",
        "foo",
        &[("app", "tcp-echo")],
        action,
        vec![rule_to(op)],
    )
}

fn tcp_allowed(p: &AuthorizationPolicy, port: u16) -> bool {
    let req = RequestAttributes::tcp(port).with_peer(&peer("foo", "sleep"));
    let d = evaluate(
        std::slice::from_ref(p),
        &req,
        &labels(&[("app", "tcp-echo")]),
        "foo",
        DEFAULT_ROOT_NAMESPACE,
    );
    is_allowed(&d)
}

/// docs-authz-tcp-allow-ports.yaml: 9000 and 9001 allowed, 9002 (not in the
/// Service, pass-through chain) denied.
#[test]
fn sample_tcp_allow_ports() {
    let p = tcp_policy(
        Action::Allow,
        Operation {
            ports: vec![9000, 9001],
            ..Operation::default()
        },
    );
    assert!(tcp_allowed(&p, 9000));
    assert!(tcp_allowed(&p, 9001));
    assert!(!tcp_allowed(&p, 9002));
}

/// docs-authz-tcp-allow-http-only-field.yaml: ALLOW with `methods` + `ports: 9000`
/// — the rule is invalid for TCP and ignored, so 9000 and 9001 are both denied.
#[test]
fn sample_tcp_allow_with_http_only_field_denies_all() {
    let p = tcp_policy(
        Action::Allow,
        Operation {
            methods: strings(&["GET"]),
            ports: vec![9000],
            ..Operation::default()
        },
    );
    assert!(!tcp_allowed(&p, 9000));
    assert!(!tcp_allowed(&p, 9001));
    // The same policy still works for HTTP.
    let http = RequestAttributes::http("GET", "/", "h", 9000);
    let d = evaluate(
        &[p],
        &http,
        &labels(&[("app", "tcp-echo")]),
        "foo",
        DEFAULT_ROOT_NAMESPACE,
    );
    assert!(is_allowed(&d));
}

/// docs-authz-tcp-deny-http-only-field.yaml: DENY with only `methods` — the HTTP
/// field is dropped, the rule matches every TCP connection: 9000 and 9001 denied.
/// Then the docs' follow-up, DENY `methods` + `ports: 9000`: only 9000 denied.
#[test]
fn sample_tcp_deny_with_http_only_field() {
    let p = tcp_policy(Action::Deny, methods(&["GET"]));
    assert!(!tcp_allowed(&p, 9000));
    assert!(!tcp_allowed(&p, 9001));
    let p = tcp_policy(
        Action::Deny,
        Operation {
            methods: strings(&["GET"]),
            ports: vec![9000],
            ..Operation::default()
        },
    );
    assert!(!tcp_allowed(&p, 9000));
    assert!(tcp_allowed(&p, 9001));
}
