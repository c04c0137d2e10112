//! `anomaly_scan` over four simulated hours with one anomaly of each kind,
//! scanned minute by minute as its DAG would, on both store backends: each
//! anomaly raises its alert (a new error message, once its first record is
//! in the window), which resolves after, and nothing else fires.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use rtmas_jobs::anomaly::scan_once;
use rtmas_jobs::logs::simulate::{AnomalyKind, Simulator, plan_anomalies};
use rtmas_jobs::logs::template::template_of;
use rtmas_scheduler::store::{AlertFilter, AlertRow, MinuteMetrics, Store, TemplateSeen};
use rtmas_scheduler::testing::{postgres_store, sqlite_store};
use support::metrics::record_metrics;

const WINDOW_MINUTES: i64 = 5;
const DELAY_MINUTES: i64 = 1;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

/// Four hours of simulated logs, 20 lines a second, as minute metrics and
/// error message templates in `store` (recorded as consume batches would
/// record them).
async fn simulate(store: &Store, seed: u64) -> Vec<rtmas_jobs::logs::simulate::Anomaly> {
    let anomalies = plan_anomalies(seed, start() + TimeDelta::hours(1), TimeDelta::hours(3));
    let end = start() + TimeDelta::hours(4);
    let mut minutes: BTreeMap<DateTime<Utc>, BTreeMap<String, MinuteMetrics>> = BTreeMap::new();
    let mut templates: BTreeMap<DateTime<Utc>, BTreeMap<(String, String), TemplateSeen>> =
        BTreeMap::new();
    for record in
        Simulator::new(seed, start(), 20.0, anomalies.clone()).take_while(|r| r.timestamp < end)
    {
        let minute = record
            .timestamp
            .duration_trunc(TimeDelta::minutes(1))
            .unwrap();
        let metrics = minutes
            .entry(minute)
            .or_default()
            .entry(record.service.clone())
            .or_insert_with(|| MinuteMetrics::new(minute, record.service.clone()));
        let level = match record.level.as_str() {
            "error" => 4,
            "warn" => 3,
            _ => 2,
        };
        metrics.levels[level] += 1;
        metrics.latency.add(record.latency_ms);
        if level == 4 {
            let template = template_of(&record.message);
            let seen = templates
                .entry(minute)
                .or_default()
                .entry((record.service.clone(), template.clone()))
                .or_insert_with(|| TemplateSeen {
                    service: record.service.clone(),
                    template,
                    example: record.message.clone(),
                    first_seen: record.timestamp,
                    last_seen: record.timestamp,
                    records: 0,
                });
            seen.last_seen = record.timestamp;
            seen.records += 1;
        }
    }
    for (offset, (minute, services)) in minutes.into_iter().enumerate() {
        let seen = templates.remove(&minute).unwrap_or_default();
        record_metrics(
            store,
            offset as i64,
            services.into_values().collect(),
            seen.into_values().collect(),
        )
        .await;
    }
    anomalies
}

fn alert_kind(kind: AnomalyKind) -> &'static str {
    match kind {
        AnomalyKind::ErrorBurst => "error_rate_spike",
        AnomalyKind::LatencySpike => "latency_outlier",
        AnomalyKind::Silence => "volume_drop",
        AnomalyKind::NewError => "new_log_template",
    }
}

/// The alerts raised, and the severities each fingerprint fired with.
async fn scan_every_minute(store: &Store) -> (Vec<AlertRow>, BTreeMap<String, BTreeSet<String>>) {
    let mut severities: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let quiet = |_: String| {};
    let mut until =
        start() + TimeDelta::hours(1) + TimeDelta::minutes(WINDOW_MINUTES + DELAY_MINUTES);
    let end = start() + TimeDelta::hours(4) + TimeDelta::minutes(DELAY_MINUTES);
    while until <= end {
        let result = scan_once(
            store,
            serde_json::json!({"until": until.to_rfc3339(), "window": "5m", "delay": "1m"}),
            &quiet,
        )
        .await
        .expect("scan");
        let verdicts = result["verdicts"].as_array().expect("verdicts");
        let metric_verdicts = verdicts
            .iter()
            .filter(|v| v["condition"] != "new_log_template")
            .count();
        assert_eq!(metric_verdicts, 15, "5 services × 3 conditions");
        for v in verdicts.iter().filter(|v| v["state"] == "firing") {
            let fingerprint = format!(
                "{}:{}",
                v["condition"].as_str().unwrap(),
                v["service"].as_str().unwrap()
            );
            severities
                .entry(fingerprint)
                .or_default()
                .insert(v["severity"].as_str().expect("severity").to_owned());
        }
        until += TimeDelta::minutes(1);
    }
    let alerts = store
        .list_alerts(&AlertFilter {
            limit: 1000,
            ..AlertFilter::default()
        })
        .await
        .expect("alerts");
    (alerts, severities)
}

async fn detects_each_anomaly_and_nothing_else(store: Store, seed: u64) {
    let anomalies = simulate(&store, seed).await;
    let (alerts, severities) = scan_every_minute(&store).await;
    let lag = TimeDelta::minutes(WINDOW_MINUTES + DELAY_MINUTES);

    for anomaly in &anomalies {
        let kind = alert_kind(anomaly.kind);
        let what = format!(
            "seed {seed}: {kind} of {} from {}",
            anomaly.service, anomaly.start
        );
        let found: Vec<&AlertRow> = alerts
            .iter()
            .filter(|a| a.kind == kind && a.service == anomaly.service)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{what}: one alert, not flapping: {found:#?}"
        );
        let alert = found[0];
        let resolved = alert.resolved_at.expect("resolved once it is over");
        if anomaly.kind == AnomalyKind::NewError {
            // Raised by the first scan whose window holds the message's
            // first record, resolved once the window has passed it.
            let first = store
                .templates_first_seen(anomaly.start, anomaly.end)
                .await
                .expect("templates")
                .into_iter()
                .find(|t| t.service == anomaly.service)
                .expect("the new message's template")
                .first_seen;
            assert!(
                alert.first_seen > first
                    && alert.first_seen <= first + TimeDelta::minutes(DELAY_MINUTES),
                "{what}: first record at {first}, raised at {}",
                alert.first_seen
            );
            assert!(
                resolved > alert.first_seen && resolved <= alert.first_seen + lag,
                "{what}: resolved at {resolved}"
            );
            assert_eq!(
                alert.fingerprint,
                format!(
                    "new_log_template:{}:unhandled NullReference in PricingEngine.compute \
                     (build <*>",
                    anomaly.service
                )
            );
        } else {
            // Raised once most of a window lies inside the anomaly,
            // resolved once most of one lies after it.
            assert!(
                alert.first_seen > anomaly.start && alert.first_seen <= anomaly.start + lag,
                "{what}: raised at {}",
                alert.first_seen
            );
            assert!(
                resolved > anomaly.end && resolved <= anomaly.end + lag,
                "{what}: resolved at {resolved}"
            );
            assert_eq!(alert.fingerprint, format!("{kind}:{}", anomaly.service));
        }
        assert_eq!(alert.state, "resolved");
    }
    let expected: Vec<(String, String)> = anomalies
        .iter()
        .map(|a| (alert_kind(a.kind).to_owned(), a.service.clone()))
        .collect();
    let unexpected: Vec<&AlertRow> = alerts
        .iter()
        .filter(|a| !expected.contains(&(a.kind.clone(), a.service.clone())))
        .collect();
    assert!(
        unexpected.is_empty(),
        "seed {seed}: false alarms: {unexpected:#?}"
    );
    let silence = anomalies
        .iter()
        .find(|a| a.kind == AnomalyKind::Silence)
        .expect("a silence");
    // Critical while the whole window is silent; a warning while the
    // window only partly covers the silence.
    let fingerprint = format!("volume_drop:{}", silence.service);
    assert_eq!(
        severities[&fingerprint],
        BTreeSet::from(["critical".to_owned(), "warning".to_owned()])
    );
    let silent = store
        .list_alerts(&AlertFilter {
            service: Some(silence.service.clone()),
            limit: 10,
            ..AlertFilter::default()
        })
        .await
        .expect("alerts");
    assert!(silent.iter().any(|a| a.fingerprint == fingerprint));
}

#[tokio::test]
async fn detects_on_sqlite() {
    // Each seed puts the anomalies on other services.
    for seed in [42, 7, 2026] {
        let dir = tempfile::tempdir().expect("temp dir");
        detects_each_anomaly_and_nothing_else(sqlite_store(dir.path()).await, seed).await;
    }
}

#[tokio::test]
async fn detects_on_postgres() {
    detects_each_anomaly_and_nothing_else(postgres_store("anomaly").await, 42).await;
}
