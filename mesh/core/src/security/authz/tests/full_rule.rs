//! authz-builder-allow-full-rule.yaml (Istio's RBAC builder test input), normalized by
//! hand.

use super::*;

fn is_allowed(d: &AuthzDecision) -> bool {
    d.verdict.after_external_check(true) == Access::Allow
}

/// authz-builder-allow-full-rule.yaml (Istio's RBAC builder test input), normalized.
/// Rule 0 allows by service account; rule 1 uses every field, including
/// `principals: ["*", ...]` together with `notPrincipals: ["*", ...]`, so it can
/// never match.
fn full_rule_policy() -> AuthorizationPolicy {
    let ips = |v: &[&str]| v.iter().map(|s| s.parse().unwrap()).collect::<Vec<_>>();
    let when = |key: &str, values: &[&str], not_values: &[&str]| {
        Condition::new(key.parse().unwrap(), strings(values), strings(not_values)).unwrap()
    };
    let rule0 = rule_from(Source {
        service_accounts: strings(&["my-ns/my-sa", "sa-only"]),
        not_service_accounts: strings(&["my-ns/my-sa-not", "sa-not-only"]),
        ..Source::default()
    });
    let rule1 = Rule {
        from: vec![Source {
            principals: strings(&["principal", "principal-prefix-*", "*-suffix-principal", "*"]),
            request_principals: strings(&[
                "requestPrincipals",
                "requestPrincipals-prefix-*",
                "*-suffix-requestPrincipals",
                "*",
            ]),
            namespaces: strings(&["ns", "ns-prefix-*", "*-ns-suffix", "*"]),
            ip_blocks: ips(&["1.2.3.4", "5.6.0.0/16"]),
            remote_ip_blocks: ips(&["1.2.3.4", "5.6.0.0/16"]),
            not_principals: strings(&[
                "not-principal",
                "not-principal-prefix-*",
                "*-not-suffix-principal",
                "*",
            ]),
            not_request_principals: strings(&[
                "not-requestPrincipals",
                "not-requestPrincipals-prefix-*",
                "*-not-suffix-requestPrincipals",
                "*",
            ]),
            not_namespaces: strings(&["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"]),
            not_ip_blocks: ips(&["9.0.0.1", "9.2.0.0/16"]),
            not_remote_ip_blocks: ips(&["9.0.0.1", "9.2.0.0/16"]),
            ..Source::default()
        }],
        to: vec![Operation {
            methods: strings(&["method", "method-prefix-*", "*-suffix-method", "*"]),
            hosts: strings(&["exact.com", "*.suffix.com", "prefix.*", "*"]),
            ports: vec![80, 90],
            paths: strings(&[
                "/exact",
                "/prefix/*",
                "*/suffix",
                "*",
                "/path/template/{*}",
                "/{**}/path/template",
            ]),
            not_methods: strings(&[
                "not-method",
                "not-method-prefix-*",
                "*-not-suffix-method",
                "*",
            ]),
            not_hosts: strings(&["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"]),
            not_ports: vec![8000, 9000],
            not_paths: strings(&[
                "/not-exact",
                "/not-prefix/*",
                "*/not-suffix",
                "*",
                "/not-path/template/{*}",
                "/{**}/not-path/template",
            ]),
        }],
        when: vec![
            when(
                "request.headers[X-header]",
                &["header", "header-prefix-*", "*-suffix-header", "*"],
                &[
                    "not-header",
                    "not-header-prefix-*",
                    "*-not-suffix-header",
                    "*",
                ],
            ),
            when(
                "source.ip",
                &["10.10.10.10", "192.168.10.0/24"],
                &["90.10.10.10", "90.168.10.0/24"],
            ),
            when(
                "remote.ip",
                &["10.10.10.10", "192.168.10.0/24"],
                &["90.10.10.10", "90.168.10.0/24"],
            ),
            when(
                "source.namespace",
                &["ns", "ns-prefix-*", "*-ns-suffix", "*"],
                &["not-ns", "not-ns-prefix-*", "*-not-ns-suffix", "*"],
            ),
            when(
                "source.principal",
                &["principal", "principal-prefix-*", "*-suffix-principal", "*"],
                &[
                    "not-principal",
                    "not-principal-prefix-*",
                    "*-not-suffix-principal",
                    "*",
                ],
            ),
            when(
                "request.auth.principal",
                &[
                    "requestPrincipals",
                    "requestPrincipals-prefix-*",
                    "*-suffix-requestPrincipals",
                    "*",
                    "https://example.com/*",
                ],
                &[
                    "not-requestPrincipals",
                    "not-requestPrincipals-prefix-*",
                    "*-not-suffix-requestPrincipals",
                    "*",
                ],
            ),
            when(
                "request.auth.audiences",
                &["audiences", "audiences-prefix-*", "*-suffix-audiences", "*"],
                &[
                    "not-audiences",
                    "not-audiences-prefix-*",
                    "*-not-suffix-audiences",
                    "*",
                ],
            ),
            when(
                "request.auth.presenter",
                &["presenter", "presenter-prefix-*", "*-suffix-presenter", "*"],
                &[
                    "not-presenter",
                    "not-presenter-prefix-*",
                    "*-not-suffix-presenter",
                    "*",
                ],
            ),
            when(
                "request.auth.claims[iss]",
                &["iss", "iss-prefix-*", "*-suffix-iss", "*"],
                &["not-iss", "not-iss-prefix-*", "*-not-suffix-iss", "*"],
            ),
            when(
                "request.auth.claims[nested1][nested2]",
                &["nested", "nested-prefix-*", "*-suffix-nested", "*"],
                &[
                    "not-nested",
                    "not-nested-prefix-*",
                    "*-not-suffix-nested",
                    "*",
                ],
            ),
            when(
                "destination.ip",
                &["10.10.10.10", "192.168.10.0/24"],
                &["90.10.10.10", "90.168.10.0/24"],
            ),
            when("destination.port", &["91", "92"], &["9001", "9002"]),
            when(
                "connection.sni",
                &["exact.com", "*.suffix.com", "prefix.*", "*"],
                &["not-exact.com", "*.not-suffix.com", "not-prefix.*", "*"],
            ),
        ],
    };
    // `experimental.envoy.filters.a.b[c]` is the one key left out: unsupported.
    assert!(matches!(
        "experimental.envoy.filters.a.b[c]".parse::<ConditionKey>(),
        Err(AuthzError::UnsupportedConditionKey { .. })
    ));
    policy(
        "httpbin-1",
        "foo",
        &[("app", "httpbin"), ("version", "v1")],
        Action::Allow,
        vec![rule0, rule1],
    )
}

#[test]
fn sample_builder_full_rule() {
    let p = full_rule_policy();
    assert_eq!(p.validate(), Ok(()));
    let wl = labels(&[("app", "httpbin"), ("version", "v1")]);
    let run = |req: &RequestAttributes| {
        evaluate(
            std::slice::from_ref(&p),
            req,
            &wl,
            "foo",
            DEFAULT_ROOT_NAMESPACE,
        )
    };
    let http =
        |ns, sa| RequestAttributes::http("GET", "/exact", "exact.com", 80).with_peer(&peer(ns, sa));

    let d = run(&http("my-ns", "my-sa"));
    assert!(is_allowed(&d));
    assert_eq!(d.trace.decided_by.unwrap().rule_index, 0);
    assert!(
        is_allowed(&run(&http("foo", "sa-only"))),
        "bare SA name = policy namespace"
    );
    assert!(!is_allowed(&run(&http("bar", "sa-only"))));
    assert!(!is_allowed(&run(&http("my-ns", "my-sa-not"))));

    // Rule 1 never matches: `principals: *` needs a principal, `notPrincipals: *`
    // forbids one.
    let d = run(&http("ns", "principal"));
    assert!(!is_allowed(&d));
    match &d.trace.evaluated[0].rules[1].outcome {
        RuleOutcome::NotMatched { because } => {
            assert!(because.starts_with("from[0].not_principals"), "{because}")
        }
        other => panic!("{other:?}"),
    }
    // On TCP rule 1 is dropped outright (HTTP-only fields in an ALLOW rule).
    let tcp = RequestAttributes::tcp(80).with_peer(&peer("ns", "principal"));
    let d = run(&tcp);
    assert!(!is_allowed(&d));
    assert!(matches!(
        d.trace.evaluated[0].rules[1].outcome,
        RuleOutcome::SkippedHttpOnlyOnTcp { .. }
    ));
    assert!(is_allowed(&run(
        &RequestAttributes::tcp(80).with_peer(&peer("my-ns", "my-sa"))
    )));
}
