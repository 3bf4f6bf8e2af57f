//! Every source, operation and condition field, and its `not_` form.

use super::*;

// === sources ===

fn allow_from(source: Source) -> AuthorizationPolicy {
    policy("p", "foo", &[], Action::Allow, vec![rule_from(source)])
}

#[test]
fn principals_and_not_principals() {
    let sleep = get();
    let plaintext = RequestAttributes::http("GET", "/", "h", 80);
    let src = |p: &[&str], np: &[&str]| Source {
        principals: strings(p),
        not_principals: strings(np),
        ..Source::default()
    };
    let cases = [
        (src(&["cluster.local/ns/foo/sa/sleep"], &[]), &sleep, true),
        (src(&["cluster.local/ns/foo/sa/other"], &[]), &sleep, false),
        (src(&["cluster.local/ns/foo/*"], &[]), &sleep, true),
        (src(&["*/sa/sleep"], &[]), &sleep, true),
        (src(&["*"], &[]), &sleep, true),
        (src(&["*"], &[]), &plaintext, false),
        (src(&[], &["*"]), &plaintext, true),
        (src(&[], &["*"]), &sleep, false),
        (
            src(&["*"], &["cluster.local/ns/foo/sa/sleep"]),
            &sleep,
            false,
        ),
        (src(&[], &["cluster.local/ns/bar/*"]), &sleep, true),
    ];
    for (i, (source, request, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            allowed(&eval(&[allow_from(source)], request)),
            want,
            "case {i}"
        );
    }
    // A `spiffe://` prefix on the request's principal is tolerated.
    let mut prefixed = RequestAttributes::http("GET", "/", "h", 80);
    prefixed.source_principal = Some("spiffe://cluster.local/ns/foo/sa/sleep".into());
    let p = allow_from(src(&["cluster.local/ns/foo/sa/sleep"], &[]));
    assert!(allowed(&eval(&[p], &prefixed)));
}

#[test]
fn namespaces_service_accounts_and_their_not_forms() {
    let req = RequestAttributes::http("GET", "/", "h", 80).with_peer(&peer("bar", "client"));
    let ns = |n: &[&str], nn: &[&str]| Source {
        namespaces: strings(n),
        not_namespaces: strings(nn),
        ..Source::default()
    };
    let sa = |s: &[&str], ns: &[&str]| Source {
        service_accounts: strings(s),
        not_service_accounts: strings(ns),
        ..Source::default()
    };
    let cases = [
        (ns(&["bar"], &[]), true),
        (ns(&["ba*"], &[]), true),
        (ns(&["foo"], &[]), false),
        (ns(&[], &["bar"]), false),
        (ns(&[], &["foo"]), true),
        (sa(&["bar/client"], &[]), true),
        (sa(&["client"], &[]), false), // bare name = the policy's namespace (foo)
        (sa(&[], &["bar/client"]), false),
        (sa(&[], &["foo/client"]), true),
    ];
    for (i, (source, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            allowed(&eval(&[allow_from(source)], &req)),
            want,
            "case {i}"
        );
    }
}

#[test]
fn ip_blocks_remote_ip_blocks_and_not_forms() {
    let mut req = get().with_source_ip("10.0.0.7".parse().unwrap());
    let ip = |b: &[&str], nb: &[&str]| Source {
        ip_blocks: b.iter().map(|v| v.parse().unwrap()).collect(),
        not_ip_blocks: nb.iter().map(|v| v.parse().unwrap()).collect(),
        ..Source::default()
    };
    let remote = |b: &[&str], nb: &[&str]| Source {
        remote_ip_blocks: b.iter().map(|v| v.parse().unwrap()).collect(),
        not_remote_ip_blocks: nb.iter().map(|v| v.parse().unwrap()).collect(),
        ..Source::default()
    };
    let cases = [
        (ip(&["10.0.0.0/24"], &[]), true),
        (ip(&["10.0.0.7"], &[]), true),
        (ip(&["10.0.1.0/24"], &[]), false),
        (ip(&[], &["10.0.0.7"]), false),
        (ip(&["10.0.0.0/8"], &["10.0.0.0/24"]), false),
        (remote(&["10.0.0.7"], &[]), true), // falls back to source_ip
        (remote(&[], &["10.0.0.0/8"]), false),
    ];
    for (i, (source, want)) in cases.clone().into_iter().enumerate() {
        assert_eq!(
            allowed(&eval(&[allow_from(source)], &req)),
            want,
            "case {i}"
        );
    }
    req.remote_ip = Some("192.168.1.1".parse().unwrap());
    assert!(!allowed(&eval(
        &[allow_from(remote(&["10.0.0.7"], &[]))],
        &req
    )));
    assert!(allowed(&eval(
        &[allow_from(remote(&["192.168.0.0/16"], &[]))],
        &req
    )));
}

#[test]
fn request_principals_and_not_form() {
    let mut req = get();
    let rp = |v: &[&str], nv: &[&str]| Source {
        request_principals: strings(v),
        not_request_principals: strings(nv),
        ..Source::default()
    };
    assert!(
        !allowed(&eval(&[allow_from(rp(&["*"], &[]))], &req)),
        "no JWT"
    );
    assert!(
        allowed(&eval(&[allow_from(rp(&[], &["*"]))], &req)),
        "no JWT, not form"
    );
    req.request_principal = Some("https://issuer.example/alice".into());
    for (source, want) in [
        (rp(&["*"], &[]), true),
        (rp(&["https://issuer.example/*"], &[]), true),
        (rp(&["*/alice"], &[]), true),
        (rp(&["https://issuer.example/bob"], &[]), false),
        (rp(&[], &["*/alice"]), false),
    ] {
        assert_eq!(
            allowed(&eval(&[allow_from(source.clone())], &req)),
            want,
            "{source:?}"
        );
    }
}

#[test]
fn multiple_sources_are_ored_and_fields_anded() {
    let both = Source {
        principals: strings(&["cluster.local/ns/foo/sa/sleep"]),
        namespaces: strings(&["bar"]),
        ..Source::default()
    };
    assert!(
        !allowed(&eval(&[allow_from(both.clone())], &get())),
        "AND within a source"
    );
    let p = policy(
        "p",
        "foo",
        &[],
        Action::Allow,
        vec![Rule {
            from: vec![
                both,
                Source {
                    namespaces: strings(&["foo"]),
                    ..Source::default()
                },
            ],
            ..Rule::default()
        }],
    );
    let d = eval(&[p], &get());
    assert!(allowed(&d), "OR across sources");
    assert_eq!(
        d.trace.decided_by.unwrap().because,
        vec![r#"from[1].namespaces: "foo" matched "foo""#.to_owned()]
    );
}

// === operations and conditions ===

#[test]
fn operations_and_their_not_forms() {
    let req = RequestAttributes::http("GET", "/api/v1/users?x=1", "API.example.com", 8080);
    let cases = [
        (
            Operation {
                hosts: strings(&["api.example.com"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                hosts: strings(&["*.example.com"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                not_hosts: strings(&["api.*"]),
                ..Default::default()
            },
            false,
        ),
        (
            Operation {
                ports: vec![8080],
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                ports: vec![80],
                ..Default::default()
            },
            false,
        ),
        (
            Operation {
                not_ports: vec![8080],
                ..Default::default()
            },
            false,
        ),
        (
            Operation {
                methods: strings(&["GET", "HEAD"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                not_methods: strings(&["GET"]),
                ..Default::default()
            },
            false,
        ),
        (
            Operation {
                paths: strings(&["/api/*"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                paths: strings(&["/api/v1/users"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                paths: strings(&["/api/{*}/users"]),
                ..Default::default()
            },
            true,
        ),
        (
            Operation {
                not_paths: strings(&["*/users"]),
                ..Default::default()
            },
            false,
        ),
        (
            Operation {
                methods: strings(&["GET"]),
                not_paths: strings(&["/admin/*"]),
                ..Default::default()
            },
            true,
        ),
    ];
    for (i, (op, want)) in cases.into_iter().enumerate() {
        let p = policy("p", "foo", &[], Action::Allow, vec![rule_to(op)]);
        assert_eq!(allowed(&eval(&[p], &req)), want, "case {i}");
    }
}

fn allow_when(key: &str, values: &[&str], not_values: &[&str]) -> AuthorizationPolicy {
    let condition = Condition::new(key.parse().unwrap(), strings(values), strings(not_values));
    let rule = Rule {
        when: vec![condition.unwrap()],
        ..Rule::default()
    };
    policy("p", "foo", &[], Action::Allow, vec![rule])
}

#[test]
fn when_conditions_for_the_common_keys() {
    let mut req = get()
        .with_source_ip("10.1.2.3".parse().unwrap())
        .with_header("X-Token", "admin-1");
    req.destination_ip = Some("10.9.9.9".parse().unwrap());
    req.sni = Some("outbound_.8000_._.httpbin.foo.svc.cluster.local".into());
    req.request_principal = Some("iss.example/alice".into());
    req.claims.insert("groups".into(), strings(&["dev", "ops"]));
    req.claims.insert("aud".into(), strings(&["api"]));
    req.claims.insert("azp".into(), strings(&["web"]));
    req.claims
        .insert("nested1.nested2".into(), strings(&["deep"]));
    let cases = [
        ("request.headers[x-token]", &["admin-*"][..], &[][..], true),
        ("request.headers[x-token]", &["*"], &[], true),
        ("request.headers[x-other]", &["*"], &[], false),
        ("request.headers[x-token]", &[], &["admin-1"], false),
        ("source.ip", &["10.1.0.0/16"], &[], true),
        ("source.ip", &[], &["10.1.2.3"], false),
        ("remote.ip", &["10.1.2.3"], &[], true),
        ("source.namespace", &["foo"], &[], true),
        ("source.namespace", &[], &["f*"], false),
        (
            "source.principal",
            &["cluster.local/ns/foo/sa/sleep"],
            &[],
            true,
        ),
        ("source.serviceAccount", &["foo/sleep"], &[], true),
        ("request.auth.principal", &["iss.example/*"], &[], true),
        ("request.auth.claims[groups]", &["ops"], &[], true),
        ("request.auth.claims[groups]", &["admin"], &[], false),
        ("request.auth.claims[groups]", &[], &["dev"], false),
        (
            "request.auth.claims[nested1][nested2]",
            &["deep"],
            &[],
            true,
        ),
        ("request.auth.claims[missing]", &[], &["x"], true),
        ("request.auth.audiences", &["api"], &[], true),
        ("request.auth.presenter", &["web"], &[], true),
        ("destination.ip", &["10.9.9.0/24"], &[], true),
        ("destination.port", &["8000"], &[], true),
        ("destination.port", &[], &["8000"], false),
        ("connection.sni", &["*.svc.cluster.local"], &[], true),
    ];
    for (key, values, not_values, want) in cases {
        let p = allow_when(key, values, not_values);
        assert_eq!(
            allowed(&eval(&[p], &req)),
            want,
            "{key} {values:?} {not_values:?}"
        );
    }
}

#[test]
fn condition_keys_parse_display_and_reject() {
    for key in [
        "request.headers[X-header]",
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "request.auth.claims[iss]",
        "request.auth.claims[nested1][nested2]",
        "destination.ip",
        "destination.port",
        "connection.sni",
    ] {
        let parsed: ConditionKey = key.parse().unwrap();
        assert_eq!(parsed.to_string(), key);
    }
    for key in [
        "request.headers",
        "request.headers[]",
        "request.headers[a][b]",
        "source.port",
        "request.auth.claims",
    ] {
        assert!(
            matches!(
                key.parse::<ConditionKey>(),
                Err(AuthzError::UnknownConditionKey { .. })
            ),
            "{key}"
        );
    }
    assert!(matches!(
        "experimental.envoy.filters.a.b[c]".parse::<ConditionKey>(),
        Err(AuthzError::UnsupportedConditionKey { .. })
    ));
    let bad = Condition::new(ConditionKey::SourceIp, strings(&["10.0.0.0/33"]), vec![]);
    assert!(matches!(bad, Err(AuthzError::InvalidConditionValue { .. })));
    let bad = Condition::new(ConditionKey::DestinationPort, vec![], strings(&["http"]));
    assert!(matches!(bad, Err(AuthzError::InvalidConditionValue { .. })));
}

#[test]
fn validate_reports_every_problem() {
    let mut p = policy("p", "foo", &[], Action::Custom, vec![]);
    p.rules = vec![Rule {
        when: vec![Condition {
            key: ConditionKey::SourceIp,
            values: strings(&["nope"]),
            not_values: vec![],
        }],
        ..Rule::default()
    }];
    match p.validate() {
        Err(AuthzError::Invalid { problems, .. }) => assert_eq!(problems.len(), 2),
        other => panic!("{other:?}"),
    }
    p.provider = Some("ext".into());
    p.rules.clear();
    assert_eq!(p.validate(), Ok(()));
    let mut allow = policy("a", "foo", &[], Action::Allow, vec![]);
    allow.provider = Some("ext".into());
    assert!(allow.validate().is_err());
}
