//! `alert_notify` against a real SMTP server (aiosmtpd) and a Slack webhook
//! stand-in: every alert start and end reaches every channel once, a
//! failing channel is tried again without sending twice to the others, and
//! an event is given up after its attempts.

#[path = "../../tests/support/smtp.rs"]
mod smtp;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use rtmas_jobs::notify::{EmailSettings, EmailTransport, NotifySettings, notify_once};
use rtmas_scheduler::store::{NewAlert, Store};
use rtmas_scheduler::testing::{postgres_store, sqlite_store};
use smtp::SmtpServer;

/// A Slack incoming webhook stand-in: keeps what it is sent, or answers 500
/// while told to fail.
#[derive(Clone, Default)]
struct Slack {
    got: Arc<Mutex<Vec<serde_json::Value>>>,
    fail: Arc<AtomicBool>,
}

impl Slack {
    async fn start() -> (Slack, String) {
        let slack = Slack::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(slack.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (slack, url)
    }

    fn texts(&self) -> Vec<String> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().expect("a text").to_owned())
            .collect()
    }
}

async fn hook(State(slack): State<Slack>, Json(body): Json<serde_json::Value>) -> StatusCode {
    if slack.fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    slack.got.lock().unwrap().push(body);
    StatusCode::OK
}

fn alert(service: &str) -> NewAlert {
    NewAlert {
        fingerprint: format!("error_rate_spike:{service}"),
        kind: "error_rate_spike".to_owned(),
        service: service.to_owned(),
        severity: "critical".to_owned(),
        summary: format!("{service}: error rate 48.0% over 5 min (usually 1.0%) <b>&"),
        details: serde_json::json!({"window_rate": 0.48}),
    }
}

fn quiet(_: String) {}

/// A raw message's headers, unfolded, and its body.
fn headers_and_body(raw: &str) -> (String, String) {
    let (head, body) = raw
        .split_once("\n\n")
        .or_else(|| raw.split_once("\r\n\r\n"))
        .expect("headers");
    (
        head.replace("\r\n", "\n").replace("\n ", " "),
        body.to_owned(),
    )
}

fn email_settings(server: &SmtpServer) -> EmailSettings {
    EmailSettings {
        transport: EmailTransport::Smtp(server.url.clone()),
        from: "RTMAS <rtmas@example.com>".to_owned(),
        to: vec![
            "oncall@example.com".to_owned(),
            "Team <team@example.com>".to_owned(),
        ],
    }
}

async fn each_start_and_end_reaches_every_channel_once(store: Store) {
    let server = SmtpServer::start();
    let (slack, url) = Slack::start().await;
    let settings = NotifySettings {
        email: Some(email_settings(&server)),
        slack_webhook: Some(url),
    };
    let t = |m| Utc.with_ymd_and_hms(2026, 3, 1, 12, m, 0).unwrap();
    store.raise_alert(&alert("checkout"), t(0)).await.unwrap();
    // Raising a firing alert again is no new start.
    store.raise_alert(&alert("checkout"), t(1)).await.unwrap();
    assert!(
        store
            .resolve_alert("error_rate_spike:checkout", t(2))
            .await
            .unwrap()
    );

    let result = notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .expect("notify");
    assert_eq!(result["events"], 2);
    assert_eq!(result["sent"], 4, "{result}");
    assert_eq!(result["failed"], 0);

    let mut subjects = Vec::new();
    for raw in server.messages() {
        let (head, body) = headers_and_body(&raw);
        let subject = head
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .expect("a subject")
            .to_owned();
        assert!(
            head.contains("oncall@example.com") && head.contains("team@example.com"),
            "{head}"
        );
        assert!(head.contains("From: RTMAS <rtmas@example.com>"), "{head}");
        assert!(
            body.contains("alert:       error_rate_spike:checkout"),
            "{body}"
        );
        assert!(body.contains("\"window_rate\": 0.48"), "{body}");
        subjects.push(subject);
    }
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "[RTMAS] FIRING critical: checkout: error rate 48.0% over 5 min (usually 1.0%) <b>&",
            "[RTMAS] RESOLVED: checkout: error rate 48.0% over 5 min (usually 1.0%) <b>&",
        ]
    );
    let mut texts = slack.texts();
    texts.sort();
    assert_eq!(
        texts,
        [
            "*FIRING critical* checkout: error rate 48.0% over 5 min (usually 1.0%) &lt;b&gt;&amp; \
             (`error_rate_spike:checkout`)",
            "*RESOLVED* checkout: error rate 48.0% over 5 min (usually 1.0%) &lt;b&gt;&amp; \
             (`error_rate_spike:checkout`)",
        ]
    );

    // Nothing is sent twice.
    let again = notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .expect("notify");
    assert_eq!(again["events"], 0);
    assert_eq!(server.messages().len(), 2);
    assert_eq!(slack.texts().len(), 2);
}

#[tokio::test]
async fn each_start_and_end_reaches_every_channel_once_on_postgres() {
    each_start_and_end_reaches_every_channel_once(postgres_store("notify").await).await;
}

#[tokio::test]
async fn each_start_and_end_reaches_every_channel_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    each_start_and_end_reaches_every_channel_once(sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn a_failing_channel_is_tried_again_and_the_others_are_not() {
    let store = postgres_store("notify_retry").await;
    let server = SmtpServer::start();
    let (slack, url) = Slack::start().await;
    let settings = NotifySettings {
        email: Some(email_settings(&server)),
        slack_webhook: Some(url),
    };
    let now = Utc::now();
    store.raise_alert(&alert("search"), now).await.unwrap();

    slack.fail.store(true, Ordering::SeqCst);
    let result = notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .expect("notify");
    assert_eq!(
        (result["sent"].as_i64(), result["failed"].as_i64()),
        (Some(1), Some(1))
    );
    let pending = store.pending_alert_events(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].delivered, ["email"]);
    assert_eq!(pending[0].attempts, 1);
    let error = pending[0].last_error.as_deref().unwrap();
    assert!(
        error.starts_with("slack: Slack webhook answered 500"),
        "{error}"
    );

    slack.fail.store(false, Ordering::SeqCst);
    notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .expect("notify");
    assert_eq!(server.messages().len(), 1, "the email is not sent twice");
    assert_eq!(slack.texts().len(), 1);
    assert!(store.pending_alert_events(10).await.unwrap().is_empty());

    // An event that keeps failing is given up after its attempts.
    store.raise_alert(&alert("auth"), now).await.unwrap();
    slack.fail.store(true, Ordering::SeqCst);
    for expected_pending in [1, 0] {
        let result = notify_once(
            &store,
            &settings,
            serde_json::json!({"max_attempts": 2}),
            &quiet,
        )
        .await
        .expect("notify");
        assert_eq!(result["failed"], 1);
        assert_eq!(
            store.pending_alert_events(10).await.unwrap().len(),
            expected_pending
        );
    }
    assert_eq!(
        server.messages().len(),
        2,
        "email took the second alert once"
    );
}

#[tokio::test]
async fn without_a_mail_server_emails_land_in_the_outbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    let outbox = dir.path().join("outbox");
    let settings = NotifySettings {
        email: Some(EmailSettings {
            transport: EmailTransport::Outbox(outbox.clone()),
            from: "RTMAS <rtmas@localhost>".to_owned(),
            to: vec!["admin@localhost".to_owned()],
        }),
        slack_webhook: None,
    };
    store
        .raise_alert(&alert("payments"), Utc::now())
        .await
        .unwrap();
    let result = notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .expect("notify");
    assert_eq!(result["sent"], 1);
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    let (head, _) = headers_and_body(&raw);
    assert!(
        head.contains("Subject: [RTMAS] FIRING critical: payments:"),
        "{head}"
    );

    // With no channel at all, events are marked done rather than kept.
    store
        .raise_alert(&alert("inventory"), Utc::now())
        .await
        .unwrap();
    notify_once(
        &store,
        &NotifySettings::default(),
        serde_json::json!({}),
        &quiet,
    )
    .await
    .expect("notify");
    assert!(store.pending_alert_events(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_settings_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    let settings = NotifySettings {
        email: Some(EmailSettings {
            transport: EmailTransport::Smtp("smtp://127.0.0.1:1".to_owned()),
            from: "not an address".to_owned(),
            to: vec!["a@example.com".to_owned()],
        }),
        slack_webhook: None,
    };
    let err = notify_once(&store, &settings, serde_json::json!({}), &quiet)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("email sender `not an address`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_webhook_that_cannot_be_reached_is_an_error_that_keeps_its_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    // Nothing listens on port 1.
    let settings = NotifySettings {
        email: None,
        slack_webhook: Some("http://127.0.0.1:1/services/T0/B0/SECRET".to_owned()),
    };
    store
        .raise_alert(&alert("search"), Utc::now())
        .await
        .unwrap();
    let lines = Mutex::new(Vec::new());
    let note = |line: String| lines.lock().unwrap().push(line);
    let result = notify_once(&store, &settings, serde_json::json!({}), &note)
        .await
        .expect("notify");
    assert_eq!(result["failed"], 1);
    let pending = store.pending_alert_events(10).await.unwrap();
    let error = pending[0].last_error.clone().expect("the error is kept");
    assert!(error.starts_with("slack: Slack webhook:"), "{error}");
    let logged = lines.lock().unwrap().join("\n");
    assert!(
        !error.contains("SECRET") && !logged.contains("SECRET"),
        "{error}\n{logged}"
    );
}
