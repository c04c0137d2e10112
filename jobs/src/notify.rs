//! The `alert_notify` kind: sends each alert's start and end to the
//! configured channels, email (SMTP, or an outbox folder) and Slack (an
//! incoming webhook).
//!
//! Raising and resolving an alert write its event in the same transaction
//! (see the store's `alert_event`). A try takes the events not yet done,
//! oldest first, sends each to every channel that does not have it yet,
//! and notes which do. An event is done once every channel has it; a
//! channel that fails is tried again by the next try, up to
//! `max_attempts` rounds, after which the event is given up with its last
//! error kept. So a crash, or a channel that is down for a while, loses
//! no event and sends none twice to a channel that took it (unless the
//! crash falls between a channel taking it and the note of that).

use std::path::PathBuf;

use chrono::Utc;
use futures::future::BoxFuture;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rtmas_scheduler::store::{AlertEvent, Store};
use serde::Deserialize;

use crate::registry::{JobContext, JobError, JobKind};

/// Where alert notifications go; a channel left out is not used.
#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// Email, when set.
    pub email: Option<EmailSettings>,
    /// A Slack incoming-webhook URL, when set.
    pub slack_webhook: Option<String>,
}

/// How alert emails are sent.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Through which transport.
    pub transport: EmailTransport,
    /// The sender, e.g. `RTMAS <rtmas@example.com>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// An email transport.
#[derive(Debug, Clone)]
pub enum EmailTransport {
    /// An SMTP server by URL: `smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, or `smtp://host:25` (unencrypted).
    Smtp(String),
    /// A folder each message is written to as a `.eml` file (for trying
    /// RTMAS out without a mail server).
    Outbox(PathBuf),
}

fn default_max_attempts() -> i32 {
    20
}
fn default_batch() -> i64 {
    100
}

/// Params of an `alert_notify` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyParams {
    /// Rounds of sending an event may fail before it is given up.
    #[serde(default = "default_max_attempts")]
    max_attempts: i32,
    /// Most events one try takes.
    #[serde(default = "default_batch")]
    batch: i64,
}

/// Sends emails to the recipients of [`EmailSettings`].
pub struct Mailer {
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: Transport,
}

/// An email's content.
pub enum Body {
    /// Plain text.
    Text(String),
    /// Plain text with an HTML alternative.
    TextAndHtml(String, String),
}

impl Mailer {
    /// A mailer for `settings`; fails with what is wrong with them.
    pub fn open(settings: &EmailSettings) -> Result<Mailer, String> {
        let mailbox = |text: &str, what: &str| {
            text.parse::<Mailbox>()
                .map_err(|err| format!("email {what} `{text}`: {err}"))
        };
        let from = mailbox(&settings.from, "sender")?;
        let to = settings
            .to
            .iter()
            .map(|t| mailbox(t, "recipient"))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("email has no recipients".to_owned());
        }
        let transport = match &settings.transport {
            EmailTransport::Smtp(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|err| format!("SMTP URL: {err}"))?
                    .build(),
            ),
            EmailTransport::Outbox(dir) => {
                std::fs::create_dir_all(dir).map_err(|err| {
                    format!("cannot make the email outbox {}: {err}", dir.display())
                })?;
                Transport::Outbox(AsyncFileTransport::new(dir))
            }
        };
        Ok(Mailer {
            from,
            to,
            transport,
        })
    }

    /// Sends one email to every recipient; fails with why.
    pub async fn send(&self, subject: &str, body: Body) -> Result<(), String> {
        let mut message = Message::builder().from(self.from.clone()).subject(subject);
        for recipient in &self.to {
            message = message.to(recipient.clone());
        }
        let message = match body {
            Body::Text(text) => message.header(ContentType::TEXT_PLAIN).body(text),
            Body::TextAndHtml(text, html) => {
                message.multipart(MultiPart::alternative_plain_html(text, html))
            }
        }
        .map_err(|err| format!("cannot build the email: {err}"))?;
        match &self.transport {
            Transport::Smtp(smtp) => smtp
                .send(message)
                .await
                .map(|_| ())
                .map_err(|err| format!("SMTP: {err}")),
            Transport::Outbox(outbox) => outbox
                .send(message)
                .await
                .map(|_| ())
                .map_err(|err| format!("cannot write to the outbox: {err}")),
        }
    }
}

/// A channel ready to send.
enum Channel {
    Email(Box<Mailer>),
    Slack {
        client: reqwest::Client,
        url: String,
    },
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

impl Channel {
    fn name(&self) -> &'static str {
        match self {
            Channel::Email(_) => "email",
            Channel::Slack { .. } => "slack",
        }
    }

    /// The channels of `settings`; fails with what is wrong with them.
    fn open(settings: &NotifySettings) -> Result<Vec<Channel>, String> {
        let mut channels = Vec::new();
        if let Some(email) = &settings.email {
            channels.push(Channel::Email(Box::new(Mailer::open(email)?)));
        }
        if let Some(url) = &settings.slack_webhook {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|err| format!("cannot make an HTTP client: {err}"))?;
            channels.push(Channel::Slack {
                client,
                url: url.clone(),
            });
        }
        Ok(channels)
    }

    /// Sends `event`; fails with why.
    async fn send(&self, event: &AlertEvent) -> Result<(), String> {
        match self {
            Channel::Email(mailer) => mailer.send(&subject(event), Body::Text(body(event))).await,
            Channel::Slack { client, url } => {
                let response = client
                    .post(url)
                    .json(&serde_json::json!({ "text": slack_text(event) }))
                    .send()
                    .await
                    // The URL is the webhook's secret: kept out of logs.
                    .map_err(|err| format!("Slack webhook: {}", err.without_url()))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    let text = response.text().await.unwrap_or_default();
                    Err(format!(
                        "Slack webhook answered {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))
                }
            }
        }
    }
}

/// `FIRING` with its severity, or `RESOLVED`.
fn headline(event: &AlertEvent) -> String {
    if event.event == "resolved" {
        "RESOLVED".to_owned()
    } else {
        format!("FIRING {}", event.alert.severity)
    }
}

/// The email subject, e.g. `[RTMAS] FIRING critical: checkout: error rate …`.
pub fn subject(event: &AlertEvent) -> String {
    format!("[RTMAS] {}: {}", headline(event), event.alert.summary)
}

/// The email body: the alert's facts, then the figures it was judged on.
pub fn body(event: &AlertEvent) -> String {
    let alert = &event.alert;
    let mut text = format!(
        "{}\n\nalert:       {}\nservice:     {}\nseverity:    {}\nfirst seen:  {}\nlast seen:   {}\n",
        alert.summary,
        alert.fingerprint,
        alert.service,
        alert.severity,
        alert.first_seen.to_rfc3339(),
        alert.last_seen.to_rfc3339(),
    );
    if let Some(at) = alert.resolved_at {
        text.push_str(&format!("resolved at: {}\n", at.to_rfc3339()));
    }
    text.push_str(&format!(
        "\nfigures:\n{}\n",
        serde_json::to_string_pretty(&alert.details).unwrap_or_default()
    ));
    text
}

/// The Slack message. Slack reads `<`, `>` and `&` as markup, so they are
/// escaped as its formatting rules ask.
pub fn slack_text(event: &AlertEvent) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "*{}* {} (`{}`)",
        headline(event),
        escape(&event.alert.summary),
        escape(&event.alert.fingerprint)
    )
}

/// Sends what is pending, as an `alert_notify` try does with `params`;
/// `note` gets the lines for the try's log. Returns the try's result.
///
/// Fails when the settings are wrong or the metadata store fails; a
/// channel that fails only counts an attempt.
pub async fn notify_once(
    store: &Store,
    settings: &NotifySettings,
    params: serde_json::Value,
    note: &(dyn Fn(String) + Sync),
) -> Result<serde_json::Value, JobError> {
    let params: NotifyParams =
        serde_json::from_value(params).map_err(|err| JobError::Params(err.to_string()))?;
    let channels = Channel::open(settings).map_err(JobError::Failed)?;
    let events = store
        .pending_alert_events(params.batch.max(1))
        .await
        .map_err(|err| JobError::Failed(format!("cannot read alert events: {err}")))?;
    let (mut sent, mut failed, mut given_up) = (0, 0, 0);
    for event in &events {
        let mut delivered = event.delivered.clone();
        let mut error = None;
        for channel in &channels {
            if delivered.iter().any(|d| d == channel.name()) {
                continue;
            }
            match channel.send(event).await {
                Ok(()) => {
                    delivered.push(channel.name().to_owned());
                    sent += 1;
                }
                Err(err) => {
                    note(format!(
                        "{} {} of {}: {}",
                        channel.name(),
                        event.event,
                        event.alert.fingerprint,
                        err
                    ));
                    failed += 1;
                    error = Some(format!("{}: {err}", channel.name()));
                }
            }
        }
        let all = channels
            .iter()
            .all(|c| delivered.iter().any(|d| d == c.name()));
        let give_up = error.is_some() && event.attempts + 1 >= params.max_attempts;
        if give_up {
            given_up += 1;
            note(format!(
                "giving up on {} of {} after {} attempts",
                event.event,
                event.alert.fingerprint,
                event.attempts + 1
            ));
        }
        store
            .alert_event_sent(
                event.event_id,
                &delivered,
                error.as_deref(),
                all || give_up,
                Utc::now(),
            )
            .await
            .map_err(|err| JobError::Failed(format!("cannot record a notification: {err}")))?;
    }
    if channels.is_empty() && !events.is_empty() {
        note(format!(
            "{} alert event(s) marked done: no notification channel is configured",
            events.len()
        ));
    } else {
        note(format!(
            "{} event(s): {sent} sent, {failed} failed, {given_up} given up",
            events.len()
        ));
    }
    Ok(serde_json::json!({
        "events": events.len(),
        "channels": channels.iter().map(Channel::name).collect::<Vec<_>>(),
        "sent": sent,
        "failed": failed,
        "given_up": given_up,
    }))
}

/// The `alert_notify` job kind.
pub struct AlertNotify {
    settings: NotifySettings,
}

impl AlertNotify {
    /// The kind, sending to the channels of `settings`.
    pub fn new(settings: NotifySettings) -> AlertNotify {
        AlertNotify { settings }
    }
}

impl JobKind for AlertNotify {
    fn name(&self) -> &'static str {
        "alert_notify"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<NotifyParams>(params.clone()) {
            Ok(p) if p.max_attempts < 1 => vec!["`max_attempts` must be at least 1".to_owned()],
            Ok(_) => Vec::new(),
            Err(err) => vec![format!("`alert_notify` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        let settings = self.settings.clone();
        Box::pin(async move {
            let note = ctx.log.notes();
            notify_once(&ctx.store, &settings, ctx.params, &note)
                .await
                .map(Some)
        })
    }
}
