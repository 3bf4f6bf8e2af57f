//! Property tests of the request-facing parsing the proxy owns: trace headers
//! (`traceparent`, B3, `x-request-id`) and the `Host` header (port split, shadow
//! host). cargo-fuzz is not available offline here, so these proptests are the fuzz
//! targets: arbitrary input never panics, and whatever is accepted round-trips.

use http::{HeaderMap, HeaderValue};
use mesh_proxy::mirror::shadow_authority;
use mesh_proxy::outbound::{authority_host, port_of};
use mesh_proxy::trace::{
    self, parse_b3_sampled, parse_b3_span_id, parse_b3_trace_id, parse_traceparent,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn traceparent_never_panics_and_accepted_ones_round_trip(s in ".{0,80}") {
        if let Some(p) = parse_traceparent(&s) {
            prop_assert!(p.trace_id != 0 && p.parent_id != 0 && p.version != 0xff);
            if p.version == 0 {
                prop_assert_eq!(p.to_header(), s.trim_matches([' ', '\t']));
            }
        }
    }

    #[test]
    fn well_formed_traceparents_parse(
        trace_id in 1u128..,
        parent in 1u64..,
        flags in any::<u8>(),
    ) {
        let header = format!("00-{trace_id:032x}-{parent:016x}-{flags:02x}");
        let p = parse_traceparent(&header).expect("valid");
        prop_assert_eq!((p.trace_id, p.parent_id, p.flags), (trace_id, parent, flags));
    }

    #[test]
    fn b3_parsers_never_panic(s in ".{0,40}") {
        let _ = parse_b3_trace_id(&s);
        let _ = parse_b3_span_id(&s);
        let _ = parse_b3_sampled(&s);
    }

    #[test]
    fn propagate_always_yields_a_valid_trace(
        traceparent in proptest::option::of("[ -~]{0,70}"),
        b3_trace in proptest::option::of("[0-9a-fA-Fx]{0,33}"),
        b3_span in proptest::option::of("[0-9a-f]{0,17}"),
        request_id in proptest::option::of("[ -~]{0,140}"),
        seed in any::<u64>(),
    ) {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, v: &Option<String>| {
            if let Some(v) = v
                && let Ok(v) = HeaderValue::from_str(v)
            {
                h.insert(name, v);
            }
        };
        put(trace::TRACEPARENT, &traceparent);
        put(trace::B3_TRACE_ID, &b3_trace);
        put(trace::B3_SPAN_ID, &b3_span);
        put(trace::REQUEST_ID, &request_id);
        let incoming = h
            .get(trace::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let ids = trace::propagate(&mut h, &mut SmallRng::seed_from_u64(seed));
        let out = parse_traceparent(h[trace::TRACEPARENT].to_str().unwrap())
            .expect("the proxy sends a valid traceparent");
        prop_assert_eq!(out.parent_id, ids.span_id);
        if let Some(p) = incoming {
            prop_assert_eq!(out.trace_id, p.trace_id);
            prop_assert_eq!(ids.parent_span_id, Some(p.parent_id));
        }
        prop_assert!(parse_b3_span_id(h[trace::B3_SPAN_ID].to_str().unwrap()).is_some());
        prop_assert!(trace::valid_request_id(&h[trace::REQUEST_ID]));
    }

    #[test]
    fn host_header_splitting_never_panics(s in ".{0,60}") {
        let host = authority_host(&s);
        prop_assert!(s.starts_with(host));
        if let Some(p) = port_of(&s) {
            prop_assert!(p.parse::<u16>().is_ok());
            prop_assert_eq!(format!("{host}:{p}"), s.clone());
        } else {
            prop_assert_eq!(host, s.as_str());
        }
        let shadow = shadow_authority(&s);
        prop_assert!(shadow.contains("-shadow"));
        prop_assert_eq!(port_of(&shadow).is_some(), port_of(&s).is_some());
    }
}
