//! Unit tests of query-parameter parsing and drawing (a separate file so `params.rs`
//! stays readable).

use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

const LIMITS: Limits = Limits {
    max_delay: Duration::from_millis(1500),
    max_size: 10 << 20,
};

fn parse(query: &str) -> Result<EchoParams, ParamError> {
    EchoParams::parse(query, &LIMITS)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

#[test]
fn single_values_apply_to_every_request() {
    let p = parse("delay=10ms&status=503&size=1KiB&close=true").unwrap();
    assert_eq!(p.delay, Some(Choice::Always(ms(10))));
    assert_eq!(p.status, Some(Choice::Always(status(503))));
    assert_eq!(p.size, Some(Choice::Always(1024)));
    assert_eq!(p.close_ppm, 1_000_000);
    assert!(p.headers.is_empty());

    let mut rng = SmallRng::seed_from_u64(1);
    let draw = p.draw(&mut rng, &LIMITS);
    assert_eq!(
        draw,
        Draw {
            status: status(503),
            delay: ms(10),
            delay_capped: false,
            size: Some(1024),
            close: true,
        }
    );
}

#[test]
fn no_parameters_draw_the_defaults() {
    let p = parse("").unwrap();
    assert_eq!(p, EchoParams::default());
    let draw = p.draw(&mut SmallRng::seed_from_u64(1), &LIMITS);
    assert_eq!(draw.status, StatusCode::OK);
    assert_eq!(draw.delay, Duration::ZERO);
    assert_eq!(draw.size, None);
    assert!(!draw.close && !draw.delay_capped);
}

#[test]
fn weighted_lists_keep_cumulative_parts_per_million() {
    let p = parse("delay=10ms:50,200ms:5&status=503:20,429:0.5&size=100:12.25").unwrap();
    assert_eq!(
        p.delay,
        Some(Choice::Weighted(vec![
            (ms(10), 500_000),
            (ms(200), 550_000)
        ]))
    );
    assert_eq!(
        p.status,
        Some(Choice::Weighted(vec![
            (status(503), 200_000),
            (status(429), 205_000)
        ]))
    );
    assert_eq!(p.size, Some(Choice::Weighted(vec![(100, 122_500)])));
}

#[test]
fn percentages_may_add_up_to_exactly_100_but_not_more() {
    let p = parse("status=500:33.3333,502:33.3333,503:33.3334").unwrap();
    let Some(Choice::Weighted(entries)) = p.status else {
        panic!("expected a weighted list")
    };
    assert_eq!(entries.last().unwrap().1, 1_000_000);

    let err = parse("status=503:60,429:45").unwrap_err();
    assert_eq!(
        err,
        ParamError::PercentTotal {
            param: "status",
            value: "503:60,429:45".into(),
            total: "105".into(),
        }
    );
    assert_eq!(
        err.to_string(),
        "status: the percentages in '503:60,429:45' add up to 105%, over 100 \
         (whatever is left below 100% gets the default)"
    );
    let err = parse("delay=1ms:100,2ms:0.0001").unwrap_err();
    assert!(err.to_string().contains("100.0001%"), "{err}");
}

#[test]
fn bad_status_says_what_is_wrong_and_what_is_right() {
    let err = parse("status=5x3").unwrap_err();
    assert_eq!(
        err.to_string(),
        "status: '5x3' is not an HTTP status code (expected 200-599, or a weighted list like 503:20,429:5)"
    );
    for bad in ["abc", "99", "600", "1000", "-1", "200.5"] {
        assert_eq!(
            parse(&format!("status={bad}")),
            Err(ParamError::Status { value: bad.into() }),
            "{bad}"
        );
    }
    assert_eq!(
        parse("status=101"),
        Err(ParamError::StatusInformational {
            value: "101".into()
        })
    );
    assert_eq!(
        parse("status=503:20,4x9:5"),
        Err(ParamError::Status {
            value: "4x9".into()
        })
    );
}

#[test]
fn bad_delay_and_size_carry_the_unit_error() {
    let err = parse("delay=soon").unwrap_err();
    assert!(matches!(err, ParamError::Delay { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("delay: 'soon' is not a duration"),
        "{text}"
    );
    assert!(text.contains("10ms:50,200ms:5"), "{text}");
    assert!(matches!(parse("delay=-1s"), Err(ParamError::Delay { .. })));

    let text = parse("size=lots").unwrap_err().to_string();
    assert!(text.starts_with("size: 'lots' is not a size"), "{text}");
}

#[test]
fn bad_percentages_and_missing_percentages() {
    for bad in ["abc", "101", "1.23456", "", "-5", "1e2", "1000"] {
        let err = parse(&format!("status=503:{bad}")).unwrap_err();
        assert_eq!(
            err,
            ParamError::Percent {
                param: "status",
                entry: format!("503:{bad}"),
                percent: bad.into(),
            }
        );
    }
    let err = parse("status=503:20,429").unwrap_err();
    assert_eq!(
        err.to_string(),
        "status: '429' in '503:20,429' has no percentage (in a list every entry is \
         VALUE:PERCENT, e.g. 503:20,429:5)"
    );
    assert!(
        parse("delay=10ms:20,5ms")
            .unwrap_err()
            .to_string()
            .contains("10ms:50,200ms:5")
    );
}

#[test]
fn percent_parsing_is_exact() {
    assert_eq!(parse_percent_ppm("0"), Some(0));
    assert_eq!(parse_percent_ppm("0.5"), Some(5_000));
    assert_eq!(parse_percent_ppm(".5"), Some(5_000));
    assert_eq!(parse_percent_ppm("20"), Some(200_000));
    assert_eq!(parse_percent_ppm("20%"), Some(200_000));
    assert_eq!(parse_percent_ppm("99.9999"), Some(999_999));
    assert_eq!(parse_percent_ppm("100"), Some(1_000_000));
    assert_eq!(parse_percent_ppm("100.0001"), None);
    assert_eq!(parse_percent_ppm("."), None);
    assert_eq!(format_ppm(1_050_000), "105");
    assert_eq!(format_ppm(1_005_000), "100.5");
    assert_eq!(format_ppm(5_000), "0.5");
}

#[test]
fn delay_over_the_cap_is_capped_and_flagged() {
    let limits = Limits {
        max_delay: ms(100),
        ..LIMITS
    };
    let p = EchoParams::parse("delay=10s", &limits).unwrap();
    let draw = p.draw(&mut SmallRng::seed_from_u64(1), &limits);
    assert_eq!(draw.delay, ms(100));
    assert!(draw.delay_capped);

    let p = EchoParams::parse("delay=100ms", &limits).unwrap();
    let draw = p.draw(&mut SmallRng::seed_from_u64(1), &limits);
    assert_eq!(draw.delay, ms(100));
    assert!(!draw.delay_capped, "exactly the cap is not capped");
}

#[test]
fn size_over_the_maximum_is_refused() {
    let limits = Limits {
        max_size: 1024,
        ..LIMITS
    };
    assert!(EchoParams::parse("size=1KiB", &limits).is_ok());
    let err = EchoParams::parse("size=1025", &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "size: '1025' is 1025 bytes, over this server's maximum of 1024 bytes (meshrig echo --max-size)"
    );
    assert!(matches!(
        EchoParams::parse("size=10:50,2KiB:5", &limits),
        Err(ParamError::SizeOverMax { bytes: 2048, .. })
    ));
}

#[test]
fn headers_repeat_decode_and_refuse_framing_headers() {
    let p = parse("header=X-A:1&header=x-b%3A+two+words&header=X-A:%20spaced").unwrap();
    let headers: Vec<(&str, &str)> = p
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        headers,
        [("x-a", "1"), ("x-b", "two words"), ("x-a", "spaced")]
    );
    assert_eq!(
        parse("header=X-A"),
        Err(ParamError::HeaderFormat {
            value: "X-A".into()
        })
    );
    assert_eq!(
        parse("header=X%20A:1"),
        Err(ParamError::HeaderName { name: "X A".into() })
    );
    assert!(matches!(
        parse("header=X-A:a%0Ab"),
        Err(ParamError::HeaderValue { .. })
    ));
    for reserved in ["Content-Length", "transfer-encoding", "Connection"] {
        assert_eq!(
            parse(&format!("header={reserved}:5")),
            Err(ParamError::HeaderReserved {
                name: reserved.into()
            })
        );
    }
}

#[test]
fn close_is_true_false_or_a_percentage() {
    assert_eq!(parse("close=true").unwrap().close_ppm, 1_000_000);
    assert_eq!(parse("close=false").unwrap().close_ppm, 0);
    assert_eq!(parse("close=5").unwrap().close_ppm, 50_000);
    assert_eq!(parse("close=0.5").unwrap().close_ppm, 5_000);
    assert_eq!(
        parse("close=maybe"),
        Err(ParamError::Close {
            value: "maybe".into()
        })
    );
    assert!(parse("close=101").is_err());
}

#[test]
fn unknown_and_empty_parameters_are_ignored_and_last_value_wins() {
    let p = parse("foo=%zz&status=&cachebust=123&&status=404&status=418&%zz=1").unwrap();
    assert_eq!(p.status, Some(Choice::Always(status(418))));
    assert_eq!(p.delay, None);
}

#[test]
fn bad_encoding_in_a_known_parameter_is_refused() {
    assert_eq!(
        parse("status=50%3"),
        Err(ParamError::Encoding {
            param: "status".into(),
            value: "50%3".into()
        })
    );
    assert!(parse("header=X-A:%ff").is_err(), "not UTF-8");
    assert_eq!(
        parse("st%61tus=503").unwrap().status,
        Some(Choice::Always(status(503)))
    );
}

/// 10,000 seeded draws of `503:20,429:5` land within 5 standard deviations of the
/// requested shares (binomial: sd = sqrt(n p (1-p))): 503 → 2000 ± 200,
/// 429 → 500 ± 109, 200 → 7500 ± 217.
#[test]
fn weighted_status_draws_match_the_requested_percentages() {
    let p = parse("status=503:20,429:5").unwrap();
    let mut rng = SmallRng::seed_from_u64(42);
    let (mut s503, mut s429, mut s200) = (0u32, 0u32, 0u32);
    for _ in 0..10_000 {
        match p.draw(&mut rng, &LIMITS).status.as_u16() {
            503 => s503 += 1,
            429 => s429 += 1,
            200 => s200 += 1,
            other => panic!("drew {other}, which was never asked for"),
        }
    }
    assert!((1800..=2200).contains(&s503), "503 drawn {s503} times");
    assert!((391..=609).contains(&s429), "429 drawn {s429} times");
    assert!((7283..=7717).contains(&s200), "200 drawn {s200} times");
}

#[test]
fn same_seed_same_outcomes_and_fixed_values_use_no_randomness() {
    let p = parse("status=503:20,429:5&delay=1ms:50&size=10:30&close=10").unwrap();
    let run = |seed| {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..200)
            .map(|_| p.draw(&mut rng, &LIMITS))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));

    let fixed = parse("status=503&delay=1ms&size=10&close=true&header=X-A:1").unwrap();
    let mut rng = SmallRng::seed_from_u64(7);
    let untouched = rng.clone();
    fixed.draw(&mut rng, &LIMITS);
    assert_eq!(rng, untouched);
}

proptest! {
    /// Any list whose percentages add up to at most 100 parses, and every draw is one
    /// of the listed codes or the default.
    #[test]
    fn lists_within_100_percent_draw_only_listed_codes(
        entries in proptest::collection::vec((200u16..600, 0u32..=250_000), 1..5),
        seed: u64,
    ) {
        let total: u32 = entries.iter().map(|(_, ppm)| ppm).sum();
        let text = entries
            .iter()
            .map(|(code, ppm)| format!("{code}:{}", format_ppm(u64::from(*ppm))))
            .collect::<Vec<_>>()
            .join(",");
        let parsed = parse(&format!("status={text}"));
        if total > 1_000_000 {
            prop_assert!(
                matches!(parsed, Err(ParamError::PercentTotal { .. })),
                "expected PercentTotal error, got {:?}",
                parsed
            );
        } else {
            let p = parsed.unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            for _ in 0..100 {
                let code = p.draw(&mut rng, &LIMITS).status.as_u16();
                prop_assert!(code == 200 || entries.iter().any(|(c, _)| *c == code));
            }
        }
    }
}
