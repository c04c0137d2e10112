//! Configuration: `rtmas.toml`, overridden by environment variables, then by
//! command-line flags. Every key is documented in `docs/configuration.md`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use rtmas_jobs::Registry;
use rtmas_jobs::logs::PipelineSettings;
use rtmas_jobs::notify::{EmailSettings, EmailTransport, NotifySettings};
use serde::{Deserialize, Deserializer, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `postgres://user@host/db` or `sqlite:path/to/rtmas.db`.
    pub database_url: Option<String>,
    /// The folder of DAG files.
    pub dags_dir: PathBuf,
    /// `text` (human-readable) or `json`.
    pub log_format: LogFormat,
    /// Kafka brokers of the log topic, e.g. `kafka-1:9092,kafka-2:9092`.
    pub kafka_brokers: String,
    /// Where the log pipeline keeps staged batches and Parquet files:
    /// `s3://bucket/prefix` or `file:///path`; `data/` under the working
    /// folder when unset.
    pub store_url: Option<String>,
    /// Scheduler settings.
    pub scheduler: SchedulerSection,
    /// Worker settings.
    pub worker: WorkerSection,
    /// Web server settings.
    pub web: WebSection,
    /// Where alert notifications go.
    pub notify: NotifySection,
}

/// `[notify]` settings: the channels the `alert_notify` kind sends alerts'
/// starts and ends to. Email is on when `email_to` names anyone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    /// The SMTP server: `smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, or `smtp://host:25` (unencrypted).
    pub smtp_url: Option<String>,
    /// A folder alert emails are written to as `.eml` files instead, when
    /// no `smtp_url` is set.
    pub email_outbox: Option<PathBuf>,
    /// The sender of alert emails.
    pub email_from: String,
    /// The recipients of alert emails.
    pub email_to: Vec<String>,
    /// A Slack incoming-webhook URL.
    pub slack_webhook_url: Option<String>,
}

impl Default for NotifySection {
    fn default() -> Self {
        NotifySection {
            smtp_url: None,
            email_outbox: None,
            email_from: "RTMAS <rtmas@localhost>".to_owned(),
            email_to: Vec::new(),
            slack_webhook_url: None,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[scheduler]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSection {
    /// How often the DAG folder is read again.
    #[serde(with = "human_duration")]
    pub dag_sync_interval: Duration,
    /// Longest sleep between passes when nothing wakes the scheduler.
    #[serde(with = "human_duration")]
    pub poll_interval: Duration,
    /// Silence after which a worker counts as dead and its running tries
    /// are failed (and retried when tries are left).
    #[serde(with = "human_duration")]
    pub worker_timeout: Duration,
}

/// `[web]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSection {
    /// Address the UI and API listen on, e.g. `0.0.0.0:8080`.
    pub listen: String,
    /// Mark session cookies `Secure`; set it when the UI is served over
    /// HTTPS (directly or behind a proxy).
    pub secure_cookies: bool,
    /// How long a sign-in lasts, e.g. `12h`.
    #[serde(with = "human_duration")]
    pub session_ttl: Duration,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            listen: "127.0.0.1:8080".to_owned(),
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// `[worker]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Tries run at once by one worker process.
    pub concurrency: usize,
    /// Time running tries get to finish after SIGTERM.
    #[serde(with = "human_duration")]
    pub grace_period: Duration,
    /// How often the queue is polled when no event announces a job.
    #[serde(with = "human_duration")]
    pub poll_interval: Duration,
    /// How often the worker tells the scheduler it is alive.
    #[serde(with = "human_duration")]
    pub heartbeat_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: None,
            dags_dir: PathBuf::from("dags"),
            log_format: LogFormat::Text,
            kafka_brokers: "127.0.0.1:9092".to_owned(),
            store_url: None,
            scheduler: SchedulerSection::default(),
            worker: WorkerSection::default(),
            web: WebSection::default(),
            notify: NotifySection::default(),
        }
    }
}

impl Default for SchedulerSection {
    fn default() -> Self {
        SchedulerSection {
            dag_sync_interval: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            worker_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        WorkerSection {
            concurrency: 8,
            grace_period: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(2),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (or `rtmas.toml` when present), then the
    /// environment: `DATABASE_URL` and `RTMAS_*` (sections with a double
    /// underscore, e.g. `RTMAS_WORKER__CONCURRENCY=4`).
    ///
    /// Fails on an unreadable file, an unknown key or a value of the wrong
    /// type, naming the key and where it came from.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "config file {} does not exist",
                    path.display()
                );
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("rtmas.toml")),
        }
        figment = figment
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            // `RTMAS_TEST_*` belongs to the test suite, not to the system.
            .merge(
                Env::prefixed("RTMAS_")
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            );
        figment.extract().context("failed to load configuration")
    }

    /// Where the pipeline's job kinds find Kafka and the object store.
    ///
    /// Fails when no store URL is set and the working folder is unknown.
    pub fn pipeline(&self) -> anyhow::Result<PipelineSettings> {
        let store_url = match &self.store_url {
            Some(url) => url.clone(),
            None => {
                let cwd = std::env::current_dir().context("cannot read the working folder")?;
                url::Url::from_directory_path(cwd.join("data"))
                    .map_err(|()| anyhow::anyhow!("the working folder is not an absolute path"))?
                    .to_string()
            }
        };
        Ok(PipelineSettings {
            kafka_brokers: self.kafka_brokers.clone(),
            store_url,
        })
    }

    /// Where the `alert_notify` kind sends alerts.
    ///
    /// Fails when email has recipients but neither a server nor an outbox.
    pub fn notify(&self) -> anyhow::Result<NotifySettings> {
        let n = &self.notify;
        let email = if n.email_to.is_empty() {
            None
        } else {
            let transport = match (&n.smtp_url, &n.email_outbox) {
                (Some(url), _) => EmailTransport::Smtp(url.clone()),
                (None, Some(dir)) => EmailTransport::Outbox(dir.clone()),
                (None, None) => anyhow::bail!(
                    "`notify.email_to` is set but neither `notify.smtp_url` nor \
                     `notify.email_outbox` says how to send"
                ),
            };
            Some(EmailSettings {
                transport,
                from: n.email_from.clone(),
                to: n.email_to.clone(),
            })
        };
        Ok(NotifySettings {
            email,
            slack_webhook: n.slack_webhook_url.clone(),
        })
    }

    /// The job kinds of a worker (and, for checking DAGs, the scheduler).
    pub fn registry(&self) -> anyhow::Result<Registry> {
        Ok(Registry::standard(&self.pipeline()?, &self.notify()?))
    }

    /// The web server's settings.
    pub fn web_config(&self) -> rtmas_web::WebConfig {
        rtmas_web::WebConfig {
            secure_cookies: self.web.secure_cookies,
            session_ttl: self.web.session_ttl,
        }
    }

    /// The database URL, or an error that says how to set one.
    pub fn database_url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().context(
            "no database configured: set DATABASE_URL, `database_url` in rtmas.toml, or \
             --database-url (postgres://… or sqlite:…)",
        )
    }
}

mod human_duration {
    use super::*;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|err| serde::de::Error::custom(format!("invalid duration `{text}`: {err}")))
    }
}

#[cfg(test)]
// figment's `Jail` fixes the closures' error type; its size is not ours to pick.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_apply_without_file_or_environment() {
        Jail::expect_with(|_jail| {
            let config = Config::load(None).expect("defaults load");
            assert_eq!(config.dags_dir, PathBuf::from("dags"));
            assert_eq!(config.worker.concurrency, 8);
            assert!(config.database_url().is_err());
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "rtmas.toml",
                "database_url = \"sqlite:a.db\"\n[worker]\nconcurrency = 3\ngrace_period = \"1m\"\n",
            )?;
            jail.set_env("RTMAS_WORKER__CONCURRENCY", "5");
            jail.set_env("DATABASE_URL", "postgres://db/rtmas");
            jail.set_env("RTMAS_TEST_DATABASE_URL", "postgres://test");
            let config = Config::load(None).expect("config loads");
            assert_eq!(config.worker.concurrency, 5);
            assert_eq!(config.worker.grace_period, Duration::from_secs(60));
            assert_eq!(config.database_url().unwrap(), "postgres://db/rtmas");
            Ok(())
        });
    }

    #[test]
    fn notify_channels_come_from_the_section_and_email_needs_a_way_to_send() {
        Jail::expect_with(|jail| {
            let none = Config::load(None)
                .expect("defaults")
                .notify()
                .expect("notify");
            assert!(none.email.is_none() && none.slack_webhook.is_none());

            jail.create_file(
                "rtmas.toml",
                "[notify]\nemail_to = [\"oncall@example.com\"]\n",
            )?;
            let err = format!("{:#}", Config::load(None).unwrap().notify().unwrap_err());
            assert!(err.contains("`notify.smtp_url`"), "{err}");

            jail.set_env("RTMAS_NOTIFY__SMTP_URL", "smtp://relay:25");
            jail.set_env("RTMAS_NOTIFY__SLACK_WEBHOOK_URL", "http://hooks/x");
            let notify = Config::load(None).unwrap().notify().expect("notify");
            let email = notify.email.expect("email");
            assert!(
                matches!(email.transport, EmailTransport::Smtp(ref u) if u == "smtp://relay:25")
            );
            assert_eq!(email.to, ["oncall@example.com"]);
            assert_eq!(notify.slack_webhook.as_deref(), Some("http://hooks/x"));
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_named() {
        Jail::expect_with(|jail| {
            jail.create_file("rtmas.toml", "[worker]\nconcurency = 3\n")?;
            let err = format!("{:#}", Config::load(None).unwrap_err());
            assert!(err.contains("concurency"), "{err}");

            jail.create_file("rtmas.toml", "[scheduler]\npoll_interval = \"soon\"\n")?;
            let err = format!("{:#}", Config::load(None).unwrap_err());
            assert!(err.contains("invalid duration `soon`"), "{err}");
            assert!(err.contains("poll_interval"), "{err}");
            Ok(())
        });
    }
}
