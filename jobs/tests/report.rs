//! `daily_report`: a day of minute metrics and alerts, rendered from its
//! templates and sent to a real SMTP server (aiosmtpd) as text and HTML,
//! with what came from logs escaped in the HTML.

#[path = "../../tests/support/smtp.rs"]
mod smtp;
mod support;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rtmas_jobs::notify::{EmailSettings, EmailTransport, NotifySettings};
use rtmas_jobs::report::report_once;
use rtmas_scheduler::store::{MinuteMetrics, NewAlert, Store};
use rtmas_scheduler::testing::{postgres_store, sqlite_store};
use smtp::SmtpServer;
use support::metrics::record_metrics;

fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

/// Minute metrics: `checkout` 100 records a minute with 2 errors, all day;
/// `<script>x</script>` (a service name from a log line) 10 a minute for an
/// hour, with a busier minute at 06:30.
async fn fill(store: &Store) {
    for (offset, minute) in (0..24 * 60_i64).enumerate() {
        let at = day() + TimeDelta::minutes(minute);
        let mut metrics = Vec::new();
        let mut checkout = MinuteMetrics::new(at, "checkout".to_owned());
        checkout.levels[2] = 98;
        checkout.levels[4] = 2;
        for _ in 0..100 {
            checkout.latency.add(50.0 + (minute % 7) as f64);
        }
        metrics.push(checkout);
        if (6 * 60..7 * 60).contains(&minute) {
            let mut odd = MinuteMetrics::new(at, "<script>x</script>".to_owned());
            odd.levels[2] = if minute == 6 * 60 + 30 { 40 } else { 10 };
            metrics.push(odd);
        }
        record_metrics(store, offset as i64, metrics, Vec::new()).await;
    }
    let alert = |service: &str, summary: &str| NewAlert {
        fingerprint: format!("error_rate_spike:{service}"),
        kind: "error_rate_spike".to_owned(),
        service: service.to_owned(),
        severity: "critical".to_owned(),
        summary: summary.to_owned(),
        details: serde_json::json!({}),
    };
    let at = |h, m| day() + TimeDelta::hours(h) + TimeDelta::minutes(m);
    store
        .raise_alert(
            &alert(
                "checkout",
                "checkout: error rate 9.0% over 5 min (usually 2.0%)",
            ),
            at(3, 10),
        )
        .await
        .unwrap();
    store
        .resolve_alert("error_rate_spike:checkout", at(3, 40))
        .await
        .unwrap();
    store
        .raise_alert(
            &alert("<script>x</script>", "<img src=x onerror=alert(1)> fired"),
            at(23, 0),
        )
        .await
        .unwrap();
    // Over before the day: not in its report.
    store
        .raise_alert(
            &alert("old", "old: error rate"),
            day() - TimeDelta::hours(5),
        )
        .await
        .unwrap();
    store
        .resolve_alert("error_rate_spike:old", day() - TimeDelta::hours(4))
        .await
        .unwrap();
}

fn params() -> serde_json::Value {
    serde_json::json!({
        "from": day().to_rfc3339(),
        "to": (day() + TimeDelta::days(1)).to_rfc3339(),
    })
}

/// A raw message's parts by content type, decoded from quoted-printable.
fn parts(raw: &str) -> Vec<(String, String)> {
    let raw = raw.replace("\r\n", "\n");
    let boundary = raw
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart boundary")
        .to_owned();
    raw.split(&format!("--{boundary}"))
        .filter_map(|part| {
            let (head, body) = part.split_once("\n\n")?;
            let kind = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))?
                .split(';')
                .next()?
                .to_owned();
            let body = if head.contains("quoted-printable") {
                quoted_printable(body)
            } else {
                body.to_owned()
            };
            Some((kind, body))
        })
        .collect()
}

fn quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let mut out = Vec::new();
    let bytes = joined.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8")
}

async fn report_reaches_the_recipients(store: Store) {
    fill(&store).await;
    let server = SmtpServer::start();
    let settings = NotifySettings {
        email: Some(EmailSettings {
            transport: EmailTransport::Smtp(server.url.clone()),
            from: "RTMAS <rtmas@example.com>".to_owned(),
            to: vec!["team@example.com".to_owned()],
        }),
        slack_webhook: None,
    };
    let result = report_once(&store, &settings, params(), &|_| {})
        .await
        .expect("report");
    let subject = "[RTMAS] Daily report 2026-03-01: 144,630 records, 1.99% errors, 2 alerts";
    assert_eq!(result["subject"], subject);
    assert_eq!(result["services"], 2);

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    let raw = &messages[0];
    let (head, _) = raw
        .replace("\r\n", "\n")
        .split_once("\n\n")
        .map(|(h, b)| (h.replace("\n ", " "), b.to_owned()))
        .expect("headers");
    assert!(head.contains(&format!("Subject: {subject}")), "{head}");
    let parts = parts(raw);
    let text = &parts
        .iter()
        .find(|(k, _)| k == "text/plain")
        .expect("a text part")
        .1;
    let html = &parts
        .iter()
        .find(|(k, _)| k == "text/html")
        .expect("an HTML part")
        .1;

    for expected in [
        "RTMAS daily report for 2026-03-01",
        "Records:    144,630",
        "Errors:     2,880 (1.99%)",
        "Alerts:     2 (2 critical, 0 warning)",
        "- checkout: 144,000 records, 2,880 errors (2.00%), typical p95 ",
        "- <script>x</script>: 630 records, 0 errors (0.00%), typical p95 n/a, busiest minute 06:30 (40 records)",
        "- [critical] checkout: error rate 9.0% over 5 min (usually 2.0%)",
        "error_rate_spike:checkout, first seen 2026-03-01 03:10 UTC, resolved 2026-03-01 03:40 UTC",
        "still firing",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
    assert!(
        !text.contains("old: error rate"),
        "an alert over before the day"
    );
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
    assert!(
        html.contains("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt; fired"),
        "{html}"
    );
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("<td style=\"text-align: right; padding: 2px 8px;\">144,000</td>"));
}

#[tokio::test]
async fn the_report_reaches_the_recipients_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    report_reaches_the_recipients(sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn the_report_reaches_the_recipients_on_postgres() {
    report_reaches_the_recipients(postgres_store("report").await).await;
}

#[tokio::test]
async fn a_report_needs_email_and_a_day() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    let err = report_once(&store, &NotifySettings::default(), params(), &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("set `notify.email_to`"), "{err}");

    let outbox = NotifySettings {
        email: Some(EmailSettings {
            transport: EmailTransport::Outbox(dir.path().join("outbox")),
            from: "RTMAS <rtmas@localhost>".to_owned(),
            to: vec!["admin@localhost".to_owned()],
        }),
        slack_webhook: None,
    };
    let backwards =
        serde_json::json!({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"});
    let err = report_once(&store, &outbox, backwards, &|_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must come after `from`"), "{err}");

    // An empty day still makes a report.
    let result = report_once(&store, &outbox, params(), &|_| {})
        .await
        .expect("report");
    assert_eq!(
        result["subject"],
        "[RTMAS] Daily report 2026-03-01: 0 records, 0.0% errors, 0 alerts"
    );
    let files = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}
