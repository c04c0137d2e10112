use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};

use super::{Anomaly, AnomalyKind, NEW_ERROR_MESSAGE, SimRecord, Simulator, plan_anomalies};
use crate::logs::{Format, Level, Limits, Source, TimeSource, parse};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T00:00:00Z")
        .expect("RFC 3339")
        .to_utc()
}

/// An hour of records at 50 per second, with the seed's plan of anomalies.
fn hour(seed: u64) -> (Vec<SimRecord>, Vec<Anomaly>) {
    let plan = plan_anomalies(seed, start(), TimeDelta::hours(1));
    let end = start() + TimeDelta::hours(1);
    let records = Simulator::new(seed, start(), 50.0, plan.clone())
        .take_while(|r| r.timestamp < end)
        .collect();
    (records, plan)
}

fn within<'a>(records: &'a [SimRecord], a: &'a Anomaly) -> impl Iterator<Item = &'a SimRecord> {
    records
        .iter()
        .filter(move |r| r.service == a.service && a.start <= r.timestamp && r.timestamp < a.end)
}

fn plan_of(plan: &[Anomaly], kind: AnomalyKind) -> &Anomaly {
    plan.iter()
        .find(|a| a.kind == kind)
        .expect("one anomaly of each kind")
}

#[test]
fn the_same_seed_gives_the_same_records() {
    let a: Vec<_> = Simulator::new(7, start(), 100.0, vec![])
        .take(500)
        .collect();
    let b: Vec<_> = Simulator::new(7, start(), 100.0, vec![])
        .take(500)
        .collect();
    let c: Vec<_> = Simulator::new(8, start(), 100.0, vec![])
        .take(500)
        .collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn event_ids_are_unique_and_times_only_move_forward() {
    let records: Vec<_> = Simulator::new(1, start(), 200.0, vec![])
        .take(20_000)
        .collect();
    let ids: HashSet<_> = records.iter().map(|r| &r.event_id).collect();
    assert_eq!(ids.len(), records.len());
    assert!(records.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let services: HashSet<_> = records.iter().map(|r| r.service.as_str()).collect();
    assert_eq!(services.len(), 5);
}

#[test]
fn volume_rises_by_day_and_falls_by_night() {
    // A whole simulated day at one record per second.
    let end = start() + TimeDelta::days(1);
    let mut per_hour: HashMap<u32, usize> = HashMap::new();
    for r in Simulator::new(3, start(), 1.0, vec![]).take_while(|r| r.timestamp < end) {
        *per_hour
            .entry(chrono::Timelike::hour(&r.timestamp))
            .or_default() += 1;
    }
    let afternoon = per_hour[&15] as f64;
    let night = per_hour[&3] as f64;
    assert!(afternoon > night * 1.8, "15h: {afternoon}, 3h: {night}");
}

#[test]
fn anomalies_show_in_their_window_only() {
    let (records, plan) = hour(11);
    assert_eq!(plan.len(), 4);

    let burst = plan_of(&plan, AnomalyKind::ErrorBurst);
    let during: Vec<_> = within(&records, burst).collect();
    let errors = during.iter().filter(|r| r.level == "error").count();
    assert!(
        errors * 3 > during.len(),
        "burst: {errors} errors of {}",
        during.len()
    );

    let silence = plan_of(&plan, AnomalyKind::Silence);
    assert_eq!(
        within(&records, silence).count(),
        0,
        "a silent service writes nothing"
    );
    assert!(records.iter().any(|r| r.service == silence.service));

    let spike = plan_of(&plan, AnomalyKind::LatencySpike);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let in_spike = median(within(&records, spike).map(|r| r.latency_ms).collect());
    let usual = median(
        records
            .iter()
            .filter(|r| r.service == spike.service && r.timestamp >= spike.end)
            .map(|r| r.latency_ms)
            .collect(),
    );
    assert!(
        in_spike > usual * 4.0,
        "spike {in_spike} ms, usual {usual} ms"
    );

    let new = plan_of(&plan, AnomalyKind::NewError);
    let novel: Vec<_> = records
        .iter()
        .filter(|r| r.message == NEW_ERROR_MESSAGE)
        .collect();
    assert!(novel.len() >= 5, "the new error shows: {}", novel.len());
    assert!(novel.iter().all(|r| r.service == new.service));
    assert!(
        novel
            .iter()
            .all(|r| new.start <= r.timestamp && r.timestamp < new.end)
    );
}

#[test]
fn simulated_records_parse_back_as_json_with_their_fields() {
    let records: Vec<_> = Simulator::new(5, start(), 100.0, vec![])
        .take(200)
        .collect();
    for record in &records {
        let json = serde_json::to_vec(record).expect("serialises");
        let source = Source {
            key: Some(record.service.as_bytes()),
            kafka_timestamp: None,
        };
        let parsed = parse(&json, &source, &Limits::default()).expect("parses");
        assert_eq!(parsed.format, Format::Json);
        assert_eq!(parsed.time_source, TimeSource::Message);
        assert_eq!(parsed.timestamp, record.timestamp);
        assert_eq!(parsed.event_id.as_deref(), Some(record.event_id.as_str()));
        assert_eq!(parsed.service, record.service);
        assert_eq!(parsed.host.as_deref(), Some(record.host.as_str()));
        assert_eq!(Some(parsed.level), Level::from_name(&record.level));
        assert_eq!(parsed.latency_ms, Some(record.latency_ms));
        assert_eq!(parsed.status, Some(record.status));
        assert_eq!(parsed.trace_id.as_deref(), Some(record.trace_id.as_str()));
    }
}
