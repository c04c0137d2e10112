//! The `anomaly_scan` kind: compares each service's last few minutes of
//! log metrics with the hour before and raises or resolves alerts.
//!
//! A try reads the per-minute metrics that `kafka_consume` records
//! (records by level, latency percentiles) for a **window** (5 minutes by
//! default) that ends a **delay** (1 minute) before its `until` time, so
//! records still on their way through the pipeline are not mistaken for a
//! drop, and for the **baseline** (an hour) before the window. For every
//! service seen in either it judges three conditions:
//!
//! - `error_rate_spike`: the window's share of error and fatal records is
//!   at least `min_rate` and `factor` times the baseline's median minute;
//! - `volume_drop`: the window holds fewer than `ratio` of the records the
//!   baseline's median minute predicts (none at all is critical: the
//!   service went silent);
//! - `latency_outlier`: the median of the window's per-minute p95 latency
//!   is at least `factor` times the baseline's;
//! - `new_log_template`: an error message whose template (see
//!   `logs::template`) was first seen in the window, of a service that had
//!   records in the baseline.
//!
//! Each condition needs enough records to be judged (`min_records`,
//! `min_expected`); when there are too few, its alert is left as it is.
//! A condition that holds raises its alert (fingerprint `kind:service`,
//! and `:template` for new messages; raising a firing alert again updates
//! it); one judged clear resolves it, and a new message's once the window
//! has passed its first record.
//! Alert times are data times: the end of the window scanned.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::BoxFuture;
use rtmas_scheduler::store::{AlertFilter, MetricRow, NewAlert, Store, TemplateSeen};
use serde::{Deserialize, Serialize};

use crate::registry::{JobContext, JobError, JobKind};

/// Params of an `anomaly_scan` task, e.g.
/// `{until: "{{data_interval_end}}", window: 5m}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanParams {
    /// The scan looks at the `window` that ends `delay` before this time
    /// (RFC 3339).
    pub until: String,
    /// The stretch judged.
    #[serde(default = "default_window")]
    pub window: String,
    /// How far before `until` the window ends.
    #[serde(default = "default_delay")]
    pub delay: String,
    /// The stretch before the window it is compared with.
    #[serde(default = "default_baseline")]
    pub baseline: String,
    /// When an error rate is a spike.
    #[serde(default)]
    pub error_rate: ErrorRateRule,
    /// When a volume is a drop.
    #[serde(default)]
    pub volume: VolumeRule,
    /// When a latency is an outlier.
    #[serde(default)]
    pub latency: LatencyRule,
    /// When a new error message is reported.
    #[serde(default)]
    pub new_template: TemplateRule,
}

/// A new kind of error message: a template first seen in the window, of a
/// service that had records in the baseline, in at least `min_records`
/// records so far.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateRule {
    /// Records a new template needs before it is reported.
    pub min_records: i64,
}

impl Default for TemplateRule {
    fn default() -> Self {
        TemplateRule { min_records: 1 }
    }
}

fn default_window() -> String {
    "5m".to_owned()
}
fn default_delay() -> String {
    "1m".to_owned()
}
fn default_baseline() -> String {
    "1h".to_owned()
}

/// An error-rate spike: the window's rate is at least `min_rate` and
/// `factor` times the baseline's, over at least `min_records` records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateRule {
    /// How many times the baseline's rate.
    pub factor: f64,
    /// The least rate that counts, e.g. 0.05 for 5 %.
    pub min_rate: f64,
    /// Records the window needs to be judged.
    pub min_records: i64,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            factor: 3.0,
            min_rate: 0.05,
            min_records: 50,
        }
    }
}

/// A volume drop: the window holds less than `ratio` of the records
/// expected, when at least `min_expected` are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeRule {
    /// The share of the expected records below which it is a drop.
    pub ratio: f64,
    /// Expected records the window needs to be judged.
    pub min_expected: f64,
}

impl Default for VolumeRule {
    fn default() -> Self {
        VolumeRule {
            ratio: 0.3,
            min_expected: 50.0,
        }
    }
}

/// A latency outlier: the window's p95 is at least `factor` times the
/// baseline's, over at least `min_records` records with a latency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyRule {
    /// How many times the baseline's p95.
    pub factor: f64,
    /// Records with a latency the window needs to be judged.
    pub min_records: i64,
}

impl Default for LatencyRule {
    fn default() -> Self {
        LatencyRule {
            factor: 3.0,
            min_records: 30,
        }
    }
}

/// The stretches a scan reads, from its params.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Start of the baseline.
    pub baseline_start: DateTime<Utc>,
    /// Start of the window: the end of the baseline.
    pub window_start: DateTime<Utc>,
    /// End of the window (excluded).
    pub window_end: DateTime<Utc>,
}

impl ScanParams {
    /// The stretches to read; fails with what is wrong with the params.
    pub fn span(&self) -> Result<Span, String> {
        let until = DateTime::parse_from_rfc3339(&self.until)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| format!("`until` `{}` is not an RFC 3339 time: {err}", self.until))?;
        let window = minutes("window", &self.window)?;
        let delay = duration("delay", &self.delay)?;
        let baseline = minutes("baseline", &self.baseline)?;
        self.check_rules()?;
        let window_end = until - delay;
        let window_start = window_end - window;
        Ok(Span {
            baseline_start: window_start - baseline,
            window_start,
            window_end,
        })
    }

    /// What is wrong with the durations and rules, leaving `until` (a
    /// template until rendered) aside.
    fn check(&self) -> Result<(), String> {
        minutes("window", &self.window)?;
        duration("delay", &self.delay)?;
        minutes("baseline", &self.baseline)?;
        self.check_rules()
    }

    fn check_rules(&self) -> Result<(), String> {
        let positive = [
            ("error_rate.factor", self.error_rate.factor),
            ("volume.min_expected", self.volume.min_expected),
            ("latency.factor", self.latency.factor),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(format!("`{name}` must be a number above 0, not {value}"));
            }
        }
        for (name, value) in [
            ("error_rate.min_rate", self.error_rate.min_rate),
            ("volume.ratio", self.volume.ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("`{name}` must be between 0 and 1, not {value}"));
            }
        }
        Ok(())
    }
}

fn duration(name: &str, text: &str) -> Result<TimeDelta, String> {
    let d = humantime::parse_duration(text).map_err(|err| format!("`{name}` `{text}`: {err}"))?;
    TimeDelta::from_std(d).map_err(|err| format!("`{name}` `{text}`: {err}"))
}

/// A duration of whole minutes, at least one: metrics are per minute.
fn minutes(name: &str, text: &str) -> Result<TimeDelta, String> {
    let d = duration(name, text)?;
    if d < TimeDelta::minutes(1) || d.num_seconds() % 60 != 0 {
        return Err(format!(
            "`{name}` `{text}` must be whole minutes (metrics are kept per minute)"
        ));
    }
    Ok(d)
}

/// A condition an anomaly scan judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Errors well above the usual share.
    ErrorRateSpike,
    /// Far fewer records than usual, or none.
    VolumeDrop,
    /// Latencies well above the usual.
    LatencyOutlier,
    /// An error message of a kind never seen before.
    NewLogTemplate,
}

impl Condition {
    /// Its name in alerts and fingerprints.
    pub fn name(self) -> &'static str {
        match self {
            Condition::ErrorRateSpike => "error_rate_spike",
            Condition::VolumeDrop => "volume_drop",
            Condition::LatencyOutlier => "latency_outlier",
            Condition::NewLogTemplate => "new_log_template",
        }
    }
}

/// What a scan found of one condition of one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The service.
    pub service: String,
    /// The condition.
    pub condition: Condition,
    /// `firing`, `clear`, or `unknown` (too few records to judge).
    pub state: &'static str,
    /// `critical` or `warning` when firing.
    pub severity: Option<&'static str>,
    /// One line for people.
    pub summary: String,
    /// The figures it was judged on.
    pub details: serde_json::Value,
    /// What tells this verdict from others of its condition and service:
    /// the template of a new message.
    pub key: Option<String>,
}

impl Verdict {
    /// The fingerprint of its alert: `condition:service`, then `:key` when
    /// it has one.
    pub fn fingerprint(&self) -> String {
        match &self.key {
            Some(key) => format!("{}:{}:{key}", self.condition.name(), self.service),
            None => format!("{}:{}", self.condition.name(), self.service),
        }
    }
}

/// One service's figures over a stretch of minutes.
#[derive(Debug, Default)]
struct Figures {
    total: i64,
    errors: i64,
    /// Records per minute, for every minute of the stretch (0 when none).
    per_minute: Vec<i64>,
    /// The error rate of each minute that had records.
    minute_rates: Vec<f64>,
    /// The p95 of each minute that had latencies, and how many they were.
    p95s: Vec<f64>,
    latency_count: i64,
}

impl Figures {
    fn of(rows: &[&MetricRow], from: DateTime<Utc>, to: DateTime<Utc>) -> Figures {
        let minutes = (to - from).num_minutes().max(0) as usize;
        let mut figures = Figures {
            per_minute: vec![0; minutes],
            ..Figures::default()
        };
        for row in rows.iter().filter(|r| r.minute >= from && r.minute < to) {
            figures.total += row.total;
            figures.errors += row.error_count + row.fatal_count;
            let index = (row.minute - from).num_minutes() as usize;
            if let Some(slot) = figures.per_minute.get_mut(index) {
                *slot += row.total;
            }
            if row.total > 0 {
                figures.minute_rates.push(row.error_rate());
            }
            if let Some(p95) = row.latency_p95
                && row.latency_count > 0
            {
                figures.p95s.push(p95);
                figures.latency_count += row.latency_count;
            }
        }
        figures
    }

    fn error_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.errors as f64 / self.total as f64
        }
    }

    /// The usual error rate: that of the median minute, so an earlier
    /// burst in the baseline does not raise it.
    fn usual_error_rate(&self) -> f64 {
        median(&self.minute_rates).unwrap_or(0.0)
    }
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// What a condition came to.
enum Judged {
    /// Too few records to tell.
    Unknown,
    Clear,
    Firing(&'static str),
}

impl Judged {
    /// Firing when `fires`, critical when `critical` too.
    fn of(fires: bool, critical: bool) -> Judged {
        match (fires, critical) {
            (false, _) => Judged::Clear,
            (true, true) => Judged::Firing("critical"),
            (true, false) => Judged::Firing("warning"),
        }
    }
}

/// Judges every service of `rows` (the metrics of `span`) by `params`'
/// rules, and `templates` (those first seen in the window) as new error
/// messages of the services that were there in the baseline.
pub fn judge(
    rows: &[MetricRow],
    templates: &[TemplateSeen],
    span: &Span,
    params: &ScanParams,
) -> Vec<Verdict> {
    let mut by_service: BTreeMap<&str, Vec<&MetricRow>> = BTreeMap::new();
    for row in rows {
        by_service.entry(&row.service).or_default().push(row);
    }
    let window_minutes = (span.window_end - span.window_start).num_minutes();
    let mut verdicts = Vec::new();
    let mut known = BTreeSet::new();
    for (service, rows) in by_service {
        let base = Figures::of(&rows, span.baseline_start, span.window_start);
        let now = Figures::of(&rows, span.window_start, span.window_end);
        if base.total > 0 {
            known.insert(service);
        }
        let mut push = |condition, judged, summary: String, details| {
            let (state, severity) = match judged {
                Judged::Unknown => ("unknown", None),
                Judged::Clear => ("clear", None),
                Judged::Firing(severity) => ("firing", Some(severity)),
            };
            verdicts.push(Verdict {
                service: service.to_owned(),
                condition,
                state,
                severity,
                summary: format!("{service}: {summary}"),
                details,
                key: None,
            });
        };

        // Error rate.
        let rule = &params.error_rate;
        let (rate, usual) = (now.error_rate(), base.usual_error_rate());
        let threshold = rule.min_rate.max(rule.factor * usual);
        let judged = if now.total < rule.min_records {
            Judged::Unknown
        } else {
            Judged::of(rate >= threshold, rate >= 2.0 * threshold)
        };
        push(
            Condition::ErrorRateSpike,
            judged,
            format!(
                "error rate {} over {window_minutes} min (usually {})",
                percent(rate),
                percent(usual)
            ),
            serde_json::json!({
                "window_records": now.total, "window_errors": now.errors,
                "window_rate": rate, "baseline_rate": usual, "threshold": threshold,
            }),
        );

        // Volume.
        let rule = &params.volume;
        let per_minute: Vec<f64> = base.per_minute.iter().map(|&n| n as f64).collect();
        let expected = median(&per_minute).unwrap_or(0.0) * window_minutes as f64;
        let judged = if expected < rule.min_expected {
            Judged::Unknown
        } else {
            Judged::of((now.total as f64) < rule.ratio * expected, now.total == 0)
        };
        let summary = if now.total == 0 {
            format!("no records for {window_minutes} min (about {expected:.0} expected)")
        } else {
            format!(
                "{} records over {window_minutes} min (about {expected:.0} expected)",
                now.total
            )
        };
        push(
            Condition::VolumeDrop,
            judged,
            summary,
            serde_json::json!({
                "window_records": now.total, "expected": expected, "ratio": rule.ratio,
            }),
        );

        // Latency.
        let rule = &params.latency;
        let (p95, usual) = (median(&now.p95s), median(&base.p95s));
        let (judged, summary) = match (p95, usual) {
            (Some(p95), Some(usual)) if now.latency_count >= rule.min_records => (
                Judged::of(p95 >= rule.factor * usual, p95 >= 2.0 * rule.factor * usual),
                format!("p95 latency {p95:.0} ms (usually {usual:.0} ms)"),
            ),
            _ => (Judged::Unknown, "too few latencies to judge".to_owned()),
        };
        push(
            Condition::LatencyOutlier,
            judged,
            summary,
            serde_json::json!({
                "window_p95_ms": p95, "baseline_p95_ms": usual,
                "window_latency_records": now.latency_count, "factor": rule.factor,
            }),
        );
    }

    // New error messages of known services; a new service's messages are
    // all new and say nothing yet.
    let rule = &params.new_template;
    for t in templates {
        if !known.contains(t.service.as_str()) || t.records < rule.min_records {
            continue;
        }
        verdicts.push(Verdict {
            service: t.service.clone(),
            condition: Condition::NewLogTemplate,
            state: "firing",
            severity: Some("warning"),
            summary: format!(
                "{}: new kind of error message ({} so far): {}",
                t.service, t.records, t.example
            ),
            details: serde_json::json!({
                "template": t.template, "example": t.example,
                "first_seen": t.first_seen, "records": t.records,
            }),
            key: Some(t.template.clone()),
        });
    }
    verdicts
}

/// Scans as an `anomaly_scan` try does with `params`: judges the services,
/// raises the alerts of the conditions that hold and resolves those judged
/// clear. `note` gets the lines for the try's log. Returns the try's
/// result.
///
/// Fails when the metadata store fails; alerts raised or resolved before
/// stay so.
pub async fn scan_once(
    store: &Store,
    params: serde_json::Value,
    note: &(dyn Fn(String) + Sync),
) -> Result<serde_json::Value, JobError> {
    let params: ScanParams =
        serde_json::from_value(params).map_err(|err| JobError::Params(err.to_string()))?;
    let span = params.span().map_err(JobError::Params)?;
    let rows = store
        .log_metrics(span.baseline_start, span.window_end, None)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read log metrics: {err}")))?;
    let templates = store
        .templates_first_seen(span.window_start, span.window_end)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read message templates: {err}")))?;
    let verdicts = judge(&rows, &templates, &span, &params);
    let mut raised = BTreeSet::new();
    let mut resolved = BTreeSet::new();
    for v in &verdicts {
        let fingerprint = v.fingerprint();
        match (v.state, v.severity) {
            ("firing", Some(severity)) => {
                let alert = NewAlert {
                    fingerprint: fingerprint.clone(),
                    kind: v.condition.name().to_owned(),
                    service: v.service.clone(),
                    severity: severity.to_owned(),
                    summary: v.summary.clone(),
                    details: v.details.clone(),
                };
                store
                    .raise_alert(&alert, span.window_end)
                    .await
                    .map_err(|err| {
                        JobError::Failed(format!("cannot raise {fingerprint}: {err}"))
                    })?;
                note(format!("firing ({severity}): {}", v.summary));
                raised.insert(fingerprint);
            }
            ("clear", _) => {
                let was_firing = store
                    .resolve_alert(&fingerprint, span.window_end)
                    .await
                    .map_err(|err| {
                        JobError::Failed(format!("cannot resolve {fingerprint}: {err}"))
                    })?;
                if was_firing {
                    note(format!("resolved: {}", v.summary));
                    resolved.insert(fingerprint);
                }
            }
            _ => {}
        }
    }
    // A template is new for as long as it was first seen in the window.
    let firing = store
        .list_alerts(&AlertFilter {
            state: Some("firing".to_owned()),
            limit: 10_000,
            ..AlertFilter::default()
        })
        .await
        .map_err(|err| JobError::Failed(format!("cannot list alerts: {err}")))?;
    for alert in firing {
        if alert.kind == Condition::NewLogTemplate.name() && !raised.contains(&alert.fingerprint) {
            store
                .resolve_alert(&alert.fingerprint, span.window_end)
                .await
                .map_err(|err| {
                    JobError::Failed(format!("cannot resolve {}: {err}", alert.fingerprint))
                })?;
            note(format!("resolved: {} is no longer new", alert.fingerprint));
            resolved.insert(alert.fingerprint);
        }
    }
    let services: BTreeSet<&str> = verdicts.iter().map(|v| v.service.as_str()).collect();
    note(format!(
        "scanned {} service(s), {} to {}: {} firing, {} resolved",
        services.len(),
        span.window_start.to_rfc3339(),
        span.window_end.to_rfc3339(),
        raised.len(),
        resolved.len()
    ));
    Ok(serde_json::json!({
        "window_start": span.window_start,
        "window_end": span.window_end,
        "baseline_start": span.baseline_start,
        "firing": raised,
        "resolved": resolved,
        "verdicts": verdicts,
    }))
}

/// The `anomaly_scan` job kind.
pub struct AnomalyScan;

impl JobKind for AnomalyScan {
    fn name(&self) -> &'static str {
        "anomaly_scan"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<ScanParams>(params.clone()) {
            // `until` is usually a template, readable only once rendered.
            Ok(p) => p.check().err().into_iter().collect(),
            Err(err) => vec![format!("`anomaly_scan` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        Box::pin(async move {
            let note = ctx.log.notes();
            scan_once(&ctx.store, ctx.params, &note).await.map(Some)
        })
    }
}

#[cfg(test)]
mod tests;
