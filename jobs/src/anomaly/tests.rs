use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rtmas_scheduler::store::{MetricRow, TemplateSeen};

use super::{Condition, ScanParams, Span, judge};

fn until() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn params(extra: serde_json::Value) -> ScanParams {
    let mut value = serde_json::json!({"until": until().to_rfc3339()});
    value
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(value).expect("params")
}

/// One minute of `service`: `total` records, `errors` of them errors, a
/// latency p95 of `p95` ms.
fn row(minute: DateTime<Utc>, service: &str, total: i64, errors: i64, p95: f64) -> MetricRow {
    MetricRow {
        minute,
        service: service.to_owned(),
        total,
        trace_count: 0,
        debug_count: 0,
        info_count: total - errors,
        warn_count: 0,
        error_count: errors,
        fatal_count: 0,
        unknown_count: 0,
        latency_count: total,
        latency_p50: Some(p95 / 3.0),
        latency_p95: Some(p95),
        latency_p99: Some(p95 * 1.5),
    }
}

/// A steady hour of baseline for `service` (100 records a minute, 1 %
/// errors, p95 120 ms), then the window's minutes as `window` makes them.
fn rows(
    span: &Span,
    service: &str,
    window: impl Fn(DateTime<Utc>) -> Option<MetricRow>,
) -> Vec<MetricRow> {
    let mut rows = Vec::new();
    let mut minute = span.baseline_start;
    while minute < span.window_start {
        rows.push(row(minute, service, 100, 1, 120.0));
        minute += TimeDelta::minutes(1);
    }
    while minute < span.window_end {
        rows.extend(window(minute));
        minute += TimeDelta::minutes(1);
    }
    rows
}

fn state_of(verdicts: &[super::Verdict], condition: Condition) -> (&'static str, Option<&str>) {
    let v = verdicts
        .iter()
        .find(|v| v.condition == condition)
        .expect("a verdict per condition");
    (v.state, v.severity)
}

#[test]
fn the_span_ends_a_delay_before_until() {
    let span = params(serde_json::json!({"window": "10m", "delay": "30s", "baseline": "2h"}))
        .span()
        .unwrap();
    let end = until() - TimeDelta::seconds(30);
    assert_eq!(span.window_end, end);
    assert_eq!(span.window_start, end - TimeDelta::minutes(10));
    assert_eq!(span.baseline_start, end - TimeDelta::minutes(130));
}

#[test]
fn bad_params_say_which_and_why() {
    for (extra, expected) in [
        (
            serde_json::json!({"window": "90s"}),
            "`window` `90s` must be whole minutes",
        ),
        (serde_json::json!({"baseline": "soon"}), "`baseline` `soon`"),
        (
            serde_json::json!({"error_rate": {"factor": 0}}),
            "`error_rate.factor` must be",
        ),
        (
            serde_json::json!({"volume": {"ratio": 1.5}}),
            "`volume.ratio` must be between",
        ),
    ] {
        let err = params(extra.clone()).span().unwrap_err();
        assert!(err.contains(expected), "{extra}: {err}");
    }
    let err = params(serde_json::json!({"until": "yesterday"}))
        .span()
        .unwrap_err();
    assert!(
        err.contains("`until` `yesterday` is not an RFC 3339 time"),
        "{err}"
    );
    let unknown = serde_json::from_value::<ScanParams>(
        serde_json::json!({"until": "x", "error_rate": {"factr": 2}}),
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("factr"), "{unknown}");
}

#[test]
fn a_steady_service_is_clear_on_every_condition() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    let verdicts = judge(
        &rows(&span, "checkout", |m| {
            Some(row(m, "checkout", 90, 2, 130.0))
        }),
        &[],
        &span,
        &p,
    );
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|v| v.state == "clear"), "{verdicts:#?}");
}

#[test]
fn an_error_burst_fires_critical_and_names_its_rates() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    let verdicts = judge(
        &rows(&span, "checkout", |m| {
            Some(row(m, "checkout", 100, 50, 120.0))
        }),
        &[],
        &span,
        &p,
    );
    assert_eq!(
        state_of(&verdicts, Condition::ErrorRateSpike),
        ("firing", Some("critical"))
    );
    let v = &verdicts[0];
    assert_eq!(v.fingerprint(), "error_rate_spike:checkout");
    assert_eq!(
        v.summary,
        "checkout: error rate 50.0% over 5 min (usually 1.0%)"
    );
    assert_eq!(state_of(&verdicts, Condition::VolumeDrop).0, "clear");
    // A smaller rise above the threshold is a warning.
    let verdicts = judge(
        &rows(&span, "checkout", |m| {
            Some(row(m, "checkout", 100, 6, 120.0))
        }),
        &[],
        &span,
        &p,
    );
    assert_eq!(
        state_of(&verdicts, Condition::ErrorRateSpike),
        ("firing", Some("warning"))
    );
}

#[test]
fn silence_is_a_critical_drop_and_leaves_the_other_conditions_unjudged() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    let verdicts = judge(&rows(&span, "auth", |_| None), &[], &span, &p);
    assert_eq!(
        state_of(&verdicts, Condition::VolumeDrop),
        ("firing", Some("critical"))
    );
    assert_eq!(state_of(&verdicts, Condition::ErrorRateSpike).0, "unknown");
    assert_eq!(state_of(&verdicts, Condition::LatencyOutlier).0, "unknown");
    // A partial drop is a warning; a dip within the ratio is not a drop.
    let verdicts = judge(
        &rows(&span, "auth", |m| Some(row(m, "auth", 20, 0, 120.0))),
        &[],
        &span,
        &p,
    );
    assert_eq!(
        state_of(&verdicts, Condition::VolumeDrop),
        ("firing", Some("warning"))
    );
    let verdicts = judge(
        &rows(&span, "auth", |m| Some(row(m, "auth", 40, 0, 120.0))),
        &[],
        &span,
        &p,
    );
    assert_eq!(state_of(&verdicts, Condition::VolumeDrop).0, "clear");
}

#[test]
fn a_latency_spike_fires_on_most_of_the_window_not_one_minute() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    let spiked = |from: i64| {
        move |m: DateTime<Utc>| {
            let late = (m - span.window_start).num_minutes() >= from;
            Some(row(m, "search", 100, 1, if late { 960.0 } else { 120.0 }))
        }
    };
    let verdicts = judge(&rows(&span, "search", spiked(4)), &[], &span, &p);
    assert_eq!(state_of(&verdicts, Condition::LatencyOutlier).0, "clear");
    let verdicts = judge(&rows(&span, "search", spiked(2)), &[], &span, &p);
    assert_eq!(
        state_of(&verdicts, Condition::LatencyOutlier),
        ("firing", Some("critical"))
    );
}

#[test]
fn too_few_records_are_not_judged() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    // A new service: no baseline, a handful of records, all errors.
    let rows: Vec<MetricRow> = (0..5)
        .map(|i| {
            row(
                span.window_start + TimeDelta::minutes(i),
                "new",
                5,
                5,
                100.0,
            )
        })
        .collect();
    let verdicts = judge(&rows, &[], &span, &p);
    assert!(
        verdicts.iter().all(|v| v.state == "unknown"),
        "{verdicts:#?}"
    );
}

#[test]
fn an_earlier_burst_in_the_baseline_does_not_hide_the_next() {
    let p = params(serde_json::json!({}));
    let span = p.span().unwrap();
    let mut rows = rows(&span, "payments", |m| {
        Some(row(m, "payments", 100, 30, 120.0))
    });
    // Twenty minutes of the baseline were a burst of 60 % errors.
    for r in rows.iter_mut().take(20) {
        r.error_count = 60;
        r.info_count = 40;
    }
    let verdicts = judge(&rows, &[], &span, &p);
    assert_eq!(
        state_of(&verdicts, Condition::ErrorRateSpike),
        ("firing", Some("critical"))
    );
}

fn template(service: &str, first_seen: DateTime<Utc>, records: i64) -> TemplateSeen {
    TemplateSeen {
        service: service.to_owned(),
        template: "unhandled NullReference in PricingEngine.compute (build <*>".to_owned(),
        example: "unhandled NullReference in PricingEngine.compute (build 4711)".to_owned(),
        first_seen,
        last_seen: first_seen,
        records,
    }
}

#[test]
fn a_new_error_message_of_a_known_service_fires_once_it_has_its_records() {
    let p = params(serde_json::json!({"new_template": {"min_records": 3}}));
    let span = p.span().unwrap();
    let rows = rows(&span, "checkout", |m| {
        Some(row(m, "checkout", 100, 1, 120.0))
    });
    let seen = span.window_start + TimeDelta::minutes(2);
    let new = |records| {
        judge(&rows, &[template("checkout", seen, records)], &span, &p)
            .into_iter()
            .filter(|v| v.condition == Condition::NewLogTemplate)
            .collect::<Vec<_>>()
    };
    assert!(
        new(2).is_empty(),
        "twice is not yet enough with min_records 3"
    );
    let fired = new(3);
    assert_eq!(fired.len(), 1);
    assert_eq!(
        (fired[0].state, fired[0].severity),
        ("firing", Some("warning"))
    );
    assert_eq!(
        fired[0].fingerprint(),
        "new_log_template:checkout:unhandled NullReference in PricingEngine.compute (build <*>"
    );
    assert!(
        fired[0]
            .summary
            .starts_with("checkout: new kind of error message (3 so far): unhandled"),
        "{}",
        fired[0].summary
    );
    // By default one record is enough.
    let default = params(serde_json::json!({}));
    let once = judge(&rows, &[template("checkout", seen, 1)], &span, &default);
    assert!(
        once.iter()
            .any(|v| v.condition == Condition::NewLogTemplate)
    );
    // A service with no records in the baseline is new itself: all its
    // messages are new, and none is reported.
    let unknown = judge(&rows, &[template("fresh", seen, 10)], &span, &p);
    assert!(
        unknown
            .iter()
            .all(|v| v.condition != Condition::NewLogTemplate)
    );
}
