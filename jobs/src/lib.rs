//! The worker side of RTMAS: the job kinds and the runtime that takes task
//! tries off the queue, runs them and records their state, log and result.
//!
//! # Layout
//!
//! - [`anomaly`]: the `anomaly_scan` kind, which raises and resolves alerts
//!   from the log metrics.
//! - [`logs`]: log records and reading Kafka messages (JSON, logfmt, plain
//!   text) into them, with a reason for those that cannot be read.
//! - [`notify`]: the `alert_notify` kind, which sends alerts' starts and
//!   ends by email and to Slack.
//! - [`report`]: the `daily_report` kind, a day of the logs by email.
//! - [`registry`]: the job kinds a worker knows, by name; later kinds plug
//!   in here.
//! - [`batch`]: claims and endings of tries, batched into shared statements.
//! - [`command`]: the `command` kind, running a program in its own process
//!   group.
//! - [`storage`]: the object store (S3 or a local folder) the log pipeline
//!   writes to, chosen by one URL.
//! - [`tasklog`]: buffered writing of a try's log lines to the store.
//! - [`wakeups`]: when a worker asks the queue for jobs.
//! - [`worker`]: the worker runtime over apalis, with a concurrency limit
//!   and a graceful stop.

pub mod anomaly;
pub mod batch;
pub mod command;
pub mod logs;
pub mod notify;
pub mod registry;
pub mod report;
pub mod storage;
pub mod tasklog;
pub mod wakeups;
pub mod worker;

pub use registry::{JobContext, JobError, JobKind, Registry};
pub use worker::{WorkerConfig, run_worker};
