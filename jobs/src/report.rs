//! The `daily_report` kind: a day of the logs in one email, for the
//! recipients of `[notify]`: records and errors by service, a typical p95
//! latency and the busiest minute of each, and the alerts that fired in
//! the day. The email has a plain-text part and an HTML one, rendered
//! from the handlebars templates `templates/report/daily.txt.hbs` and
//! `daily.html.hbs` (HTML-escaped; the text part is not).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use handlebars::Handlebars;
use rtmas_scheduler::store::{AlertRow, MetricRow, Store};
use serde::{Deserialize, Serialize};

use crate::notify::{Body, Mailer, NotifySettings};
use crate::registry::{JobContext, JobError, JobKind};

const TEXT: &str = include_str!("../../templates/report/daily.txt.hbs");
const HTML: &str = include_str!("../../templates/report/daily.html.hbs");

fn default_max_alerts() -> usize {
    200
}

/// Params of a `daily_report` task, e.g.
/// `{from: "{{data_interval_start}}", to: "{{data_interval_end}}"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    /// Start of the day (RFC 3339).
    from: String,
    /// End of the day (excluded).
    to: String,
    /// Most alerts listed; the rest are counted.
    #[serde(default = "default_max_alerts")]
    max_alerts: usize,
}

fn time(name: &str, text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| format!("`{name}` `{text}` is not an RFC 3339 time: {err}"))
}

/// What the templates render.
#[derive(Debug, Serialize)]
pub struct Report {
    day: String,
    from: String,
    to: String,
    totals: Totals,
    services: Vec<ServiceLine>,
    alerts: Vec<AlertLine>,
    alerts_left_out: usize,
    /// Every alert of the day, listed or not.
    alert_total: usize,
    alert_counts: BTreeMap<&'static str, usize>,
    generated_at: String,
}

#[derive(Debug, Serialize)]
struct Totals {
    records: String,
    errors: String,
    error_rate: String,
}

#[derive(Debug, Serialize)]
struct ServiceLine {
    service: String,
    records: String,
    errors: String,
    error_rate: String,
    p95: String,
    busiest_minute: String,
    busiest_records: String,
}

#[derive(Debug, Serialize)]
struct AlertLine {
    severity: String,
    summary: String,
    fingerprint: String,
    first_seen: String,
    resolved_at: Option<String>,
}

/// `1234567` as `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn rate(errors: i64, total: i64) -> String {
    if total == 0 {
        "0.0%".to_owned()
    } else {
        format!("{:.2}%", errors as f64 * 100.0 / total as f64)
    }
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl Report {
    /// The report of `[from, to)` from its minute metrics and the alerts
    /// that fired in it (at most `max_alerts` listed, oldest first).
    pub fn build(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        metrics: &[MetricRow],
        alerts: &[AlertRow],
        max_alerts: usize,
        now: DateTime<Utc>,
    ) -> Report {
        let mut by_service: BTreeMap<&str, Vec<&MetricRow>> = BTreeMap::new();
        for row in metrics {
            by_service.entry(&row.service).or_default().push(row);
        }
        let (mut records, mut errors) = (0, 0);
        let services = by_service
            .into_iter()
            .map(|(service, rows)| {
                let total: i64 = rows.iter().map(|r| r.total).sum();
                let errs: i64 = rows.iter().map(|r| r.error_count + r.fatal_count).sum();
                records += total;
                errors += errs;
                let mut p95s: Vec<f64> = rows.iter().filter_map(|r| r.latency_p95).collect();
                p95s.sort_by(f64::total_cmp);
                let busiest = rows
                    .iter()
                    .max_by_key(|r| (r.total, std::cmp::Reverse(r.minute)))
                    .expect("a service has rows");
                ServiceLine {
                    service: service.to_owned(),
                    records: thousands(total),
                    errors: thousands(errs),
                    error_rate: rate(errs, total),
                    p95: p95s
                        .get(p95s.len() / 2)
                        .map_or_else(|| "n/a".to_owned(), |p| format!("{p:.0} ms")),
                    busiest_minute: busiest.minute.format("%H:%M").to_string(),
                    busiest_records: thousands(busiest.total),
                }
            })
            .collect();
        let mut alert_counts = BTreeMap::from([("critical", 0), ("warning", 0)]);
        for alert in alerts {
            if let Some(n) = alert_counts.get_mut(alert.severity.as_str()) {
                *n += 1;
            }
        }
        Report {
            day: from.format("%Y-%m-%d").to_string(),
            from: clock(from),
            to: clock(to),
            totals: Totals {
                records: thousands(records),
                errors: thousands(errors),
                error_rate: rate(errors, records),
            },
            services,
            alerts: alerts
                .iter()
                .take(max_alerts)
                .map(|a| AlertLine {
                    severity: a.severity.clone(),
                    summary: a.summary.clone(),
                    fingerprint: a.fingerprint.clone(),
                    first_seen: clock(a.first_seen),
                    resolved_at: a.resolved_at.map(clock),
                })
                .collect(),
            alerts_left_out: alerts.len().saturating_sub(max_alerts),
            alert_total: alerts.len(),
            alert_counts,
            generated_at: clock(now),
        }
    }

    /// The email subject.
    pub fn subject(&self) -> String {
        format!(
            "[RTMAS] Daily report {}: {} records, {} errors, {} alerts",
            self.day, self.totals.records, self.totals.error_rate, self.alert_total
        )
    }

    /// The plain-text and HTML parts.
    pub fn render(&self) -> Result<(String, String), String> {
        let mut text = Handlebars::new();
        text.set_strict_mode(true);
        text.register_escape_fn(handlebars::no_escape);
        let mut html = Handlebars::new();
        html.set_strict_mode(true);
        let fail = |err: handlebars::RenderError| format!("cannot render the report: {err}");
        let text = text.render_template(TEXT, self).map_err(fail)?;
        let html = html.render_template(HTML, self).map_err(fail)?;
        Ok((text, html))
    }
}

/// Builds and sends the report, as a `daily_report` try does with
/// `params`; `note` gets the lines for the try's log.
///
/// Fails when no email is configured, the store fails, or the email
/// cannot be sent (the next try sends it again).
pub async fn report_once(
    store: &Store,
    settings: &NotifySettings,
    params: serde_json::Value,
    note: &(dyn Fn(String) + Sync),
) -> Result<serde_json::Value, JobError> {
    let params: ReportParams =
        serde_json::from_value(params).map_err(|err| JobError::Params(err.to_string()))?;
    let from = time("from", &params.from).map_err(JobError::Params)?;
    let to = time("to", &params.to).map_err(JobError::Params)?;
    if to <= from {
        return Err(JobError::Params(format!(
            "`to` ({to}) must come after `from` ({from})"
        )));
    }
    let email = settings.email.as_ref().ok_or_else(|| {
        JobError::Failed(
            "the daily report goes by email: set `notify.email_to` and `notify.smtp_url` (or \
             `notify.email_outbox`)"
                .to_owned(),
        )
    })?;
    let mailer = Mailer::open(email).map_err(JobError::Failed)?;
    let metrics = store
        .log_metrics(from, to, None)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read log metrics: {err}")))?;
    // One more than listed tells whether some were left out.
    let limit = i64::try_from(params.max_alerts).unwrap_or(i64::MAX - 1) + 1;
    let alerts = store
        .alerts_between(from, to, limit)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read alerts: {err}")))?;
    let report = Report::build(from, to, &metrics, &alerts, params.max_alerts, Utc::now());
    let (text, html) = report.render().map_err(JobError::Failed)?;
    let subject = report.subject();
    mailer
        .send(&subject, Body::TextAndHtml(text, html))
        .await
        .map_err(JobError::Failed)?;
    note(format!("sent: {subject}"));
    Ok(serde_json::json!({
        "subject": subject,
        "services": report.services.len(),
        "alerts": report.alerts.len(),
        "recipients": email.to,
    }))
}

/// The `daily_report` job kind.
pub struct DailyReport {
    settings: NotifySettings,
}

impl DailyReport {
    /// The kind, mailing through the email settings of `settings`.
    pub fn new(settings: NotifySettings) -> DailyReport {
        DailyReport { settings }
    }
}

impl JobKind for DailyReport {
    fn name(&self) -> &'static str {
        "daily_report"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<ReportParams>(params.clone()) {
            // `from` and `to` are usually templates, readable once rendered.
            Ok(_) => Vec::new(),
            Err(err) => vec![format!("`daily_report` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        let settings = self.settings.clone();
        Box::pin(async move {
            let note = ctx.log.notes();
            report_once(&ctx.store, &settings, ctx.params, &note)
                .await
                .map(Some)
        })
    }
}
