//! Evaluation order (CUSTOM, DENY, ALLOW, AUDIT), applicability, TCP handling, trace
//! serialization.

use super::*;
use crate::security::PolicyRef;

// === evaluation order ===

#[test]
fn no_policies_allows() {
    let d = eval(&[], &get());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.trace.reason, AuthzReason::NoAllowPolicies);
    assert!(d.trace.evaluated.is_empty());
}

#[test]
fn allow_policy_matching_allows_and_names_rule() {
    let p = policy(
        "get-only",
        "foo",
        &[],
        Action::Allow,
        vec![rule_to(methods(&["GET"]))],
    );
    let d = eval(std::slice::from_ref(&p), &get());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.trace.reason, AuthzReason::AllowMatched);
    let m = d.trace.decided_by.unwrap();
    assert_eq!(m.policy, PolicyRef::of("foo", "get-only"));
    assert_eq!(m.rule_index, 0);
    assert_eq!(
        m.because,
        vec![r#"to[0].methods: "GET" matched "GET""#.to_owned()]
    );
}

#[test]
fn allow_policies_present_but_none_matching_denies() {
    let p = policy(
        "get-only",
        "foo",
        &[],
        Action::Allow,
        vec![rule_to(methods(&["GET"]))],
    );
    let d = eval(&[p], &post());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.trace.reason, AuthzReason::NoAllowMatched);
    assert_eq!(d.trace.decided_by, None);
    match &d.trace.evaluated[0].rules[0].outcome {
        RuleOutcome::NotMatched { because } => {
            assert_eq!(because, r#"to[0].methods: "POST" matched none of ["GET"]"#)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn deny_beats_allow() {
    let allow_all = policy(
        "allow-all",
        "foo",
        &[],
        Action::Allow,
        vec![Rule::default()],
    );
    let deny_get = policy(
        "deny-get",
        "foo",
        &[],
        Action::Deny,
        vec![rule_to(methods(&["GET"]))],
    );
    let policies = [allow_all, deny_get];
    let d = eval(&policies, &get());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.trace.reason, AuthzReason::DenyMatched);
    assert_eq!(d.trace.decided_by.unwrap().policy.name, "deny-get");
    // DENY is evaluated (and reported) before ALLOW whatever the input order.
    assert_eq!(d.trace.evaluated[0].action, Action::Deny);
    let d = eval(&policies, &post());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.trace.reason, AuthzReason::AllowMatched);
}

#[test]
fn deny_not_matching_without_allow_policies_allows() {
    let deny_get = policy(
        "deny-get",
        "foo",
        &[],
        Action::Deny,
        vec![rule_to(methods(&["GET"]))],
    );
    let d = eval(&[deny_get], &post());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.trace.reason, AuthzReason::NoAllowPolicies);
}

#[test]
fn custom_comes_first_and_carries_the_local_verdict() {
    let mut custom = policy(
        "ext",
        "foo",
        &[],
        Action::Custom,
        vec![rule_to(methods(&["GET"]))],
    );
    custom.provider = Some("my-authz".into());
    let deny_post = policy(
        "deny-post",
        "foo",
        &[],
        Action::Deny,
        vec![rule_to(methods(&["POST"]))],
    );
    let allow_get = policy(
        "allow-get",
        "foo",
        &[],
        Action::Allow,
        vec![rule_to(methods(&["GET"]))],
    );

    let d = eval(&[custom.clone(), allow_get.clone()], &get());
    let want = Verdict::Custom {
        provider: "my-authz".into(),
        on_external_allow: Access::Allow,
    };
    assert_eq!(d.verdict, want);
    assert_eq!(d.trace.custom.as_ref().unwrap().policy.name, "ext");
    assert_eq!(d.verdict.after_external_check(true), Access::Allow);
    assert_eq!(d.verdict.after_external_check(false), Access::Deny);

    // CUSTOM matched, local policies deny: denied whatever the authorizer says.
    let mut custom_all = custom.clone();
    custom_all.rules = vec![Rule::default()];
    let d = eval(&[custom_all, deny_post.clone()], &post());
    assert_eq!(d.verdict.after_external_check(true), Access::Deny);
    assert_eq!(d.trace.reason, AuthzReason::DenyMatched);

    // CUSTOM not matching: local verdict only.
    let d = eval(&[custom, deny_post], &post());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.trace.custom, None);
}

#[test]
fn audit_never_changes_the_verdict_but_is_recorded() {
    let audit = policy(
        "audit-get",
        "foo",
        &[],
        Action::Audit,
        vec![rule_to(methods(&["GET"]))],
    );
    let d = eval(std::slice::from_ref(&audit), &get());
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.trace.reason, AuthzReason::NoAllowPolicies);
    assert_eq!(d.trace.audit.len(), 1);
    assert_eq!(d.trace.audit[0].policy.name, "audit-get");
    let allow_post = policy(
        "allow-post",
        "foo",
        &[],
        Action::Allow,
        vec![rule_to(methods(&["POST"]))],
    );
    let d = eval(&[audit, allow_post], &get());
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.trace.audit.len(), 1);
}

#[test]
fn empty_rule_matches_everything_and_no_rules_match_nothing() {
    let deny_all = policy("deny-all", "foo", &[], Action::Deny, vec![Rule::default()]);
    assert!(!allowed(&eval(&[deny_all], &get())));
    let deny_none = policy("deny-none", "foo", &[], Action::Deny, vec![]);
    assert!(allowed(&eval(&[deny_none], &get())));
    let allow_nothing = policy("allow-nothing", "foo", &[], Action::Allow, vec![]);
    let d = eval(&[allow_nothing], &get());
    assert!(!allowed(&d));
    assert_eq!(d.trace.reason, AuthzReason::NoAllowMatched);
    assert!(d.trace.evaluated[0].rules.is_empty());
}

// === applicability ===

#[test]
fn applicability_by_namespace_root_and_selector() {
    let deny = |name: &str, ns: &str, sel: &[(&str, &str)]| {
        policy(name, ns, sel, Action::Deny, vec![Rule::default()])
    };
    let cases = [
        (deny("same-ns", "foo", &[]), false),
        (deny("root", "istio-system", &[]), false),
        (
            deny("root-selected", "istio-system", &[("app", "httpbin")]),
            false,
        ),
        (
            deny("root-other-app", "istio-system", &[("app", "other")]),
            true,
        ),
        (deny("other-ns", "bar", &[]), true),
        (deny("selected", "foo", &[("app", "httpbin")]), false),
        (deny("other-app", "foo", &[("app", "sleep")]), true),
        (
            deny("extra-label", "foo", &[("app", "httpbin"), ("v", "1")]),
            true,
        ),
    ];
    for (p, want_allowed) in cases {
        let d = eval(std::slice::from_ref(&p), &get());
        assert_eq!(allowed(&d), want_allowed, "{}", p.name);
    }
    let root = deny("root", "istio-system", &[]);
    let d = eval(std::slice::from_ref(&root), &get());
    assert_eq!(d.trace.evaluated[0].scope, PolicyScope::Mesh);
    // A different root namespace makes istio-system an ordinary namespace.
    let d = evaluate(
        &[root],
        &get(),
        &labels(&[("app", "httpbin")]),
        "foo",
        "mesh-root",
    );
    assert!(allowed(&d));
}

// === TCP ===

#[test]
fn tcp_allow_rule_with_http_only_field_is_skipped() {
    let p = policy(
        "p",
        "foo",
        &[],
        Action::Allow,
        vec![Rule {
            from: vec![Source {
                request_principals: strings(&["*"]),
                ..Source::default()
            }],
            ..Rule::default()
        }],
    );
    let d = eval(&[p], &RequestAttributes::tcp(9000));
    assert!(!allowed(&d));
    assert_eq!(
        d.trace.evaluated[0].rules[0].outcome,
        RuleOutcome::SkippedHttpOnlyOnTcp {
            fields: strings(&["from[0].request_principals"])
        }
    );
}

#[test]
fn tcp_deny_rule_drops_http_only_fields_and_keeps_the_rest() {
    let when = Condition::new(
        "request.headers[x]".parse().unwrap(),
        strings(&["y"]),
        vec![],
    );
    let p = policy(
        "p",
        "foo",
        &[],
        Action::Deny,
        vec![Rule {
            to: vec![Operation {
                paths: strings(&["/admin"]),
                ports: vec![9000],
                ..Operation::default()
            }],
            when: vec![when.unwrap()],
            ..Rule::default()
        }],
    );
    let d = eval(std::slice::from_ref(&p), &RequestAttributes::tcp(9000));
    assert!(!allowed(&d));
    assert_eq!(
        d.trace.evaluated[0].rules[0].ignored_http_only_fields,
        strings(&["to[0].paths", "when[0].request.headers[x]"])
    );
    assert!(allowed(&eval(&[p], &RequestAttributes::tcp(9001))));
}

// === trace serialization ===

#[test]
fn trace_serializes_with_stable_snake_case_names() {
    let deny = policy(
        "deny-get",
        "foo",
        &[],
        Action::Deny,
        vec![rule_to(methods(&["GET"]))],
    );
    let d = eval(&[deny], &get());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["verdict"]["kind"], "deny");
    assert_eq!(json["trace"]["reason"], "deny_matched");
    assert_eq!(json["trace"]["decided_by"]["policy"]["name"], "deny-get");
    assert_eq!(json["trace"]["decided_by"]["action"], "deny");
    assert_eq!(json["trace"]["decided_by"]["rule_index"], 0);
    assert_eq!(json["trace"]["evaluated"][0]["scope"], "namespace");
    assert_eq!(
        json["trace"]["evaluated"][0]["rules"][0]["outcome"],
        "matched"
    );
    let custom = Verdict::Custom {
        provider: "x".into(),
        on_external_allow: Access::Allow,
    };
    let json = serde_json::to_value(&custom).unwrap();
    assert_eq!(json["kind"], "custom");
    assert_eq!(json["on_external_allow"], "allow");
}
