//! Log records as the pipeline keeps them, and how messages from Kafka
//! become records.
//!
//! A message on the log topic may be a JSON object (with the usual field
//! spellings), a logfmt line, or a plain text line; [`parse`] reads all
//! three. Anything else (invalid UTF-8, an empty or oversized message, JSON
//! that is not an object or lacks a message) is refused with a
//! [`Quarantined`] reason: the consumer keeps such messages, with their
//! reason and place in the topic, rather than dropping them. The record
//! schema is documented in `docs/logs.md`.
//!
//! [`simulate`] makes realistic logs with labelled anomalies, which
//! [`produce`] sends to Kafka for `rtmas produce`. [`staging`] names the
//! batches a consume stages in the object store by their offsets.

pub mod compact;
pub mod consume;
mod parse;
pub mod produce;
mod rfc3339;
pub mod simulate;
pub mod staging;
pub mod template;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use parse::{Limits, Source, parse};

/// Where the pipeline's kinds find Kafka and the object store.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// `bootstrap.servers`, e.g. `kafka-1:9092,kafka-2:9092`.
    pub kafka_brokers: String,
    /// The object store URL, e.g. `s3://bucket/rtmas` or `file:///var/lib/rtmas`.
    pub store_url: String,
}

/// How severe a log record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// A failure.
    Error,
    /// A failure that stops the program (`fatal`, `critical`, `panic`, …).
    Fatal,
    /// A level the producer named but that is none of the above; the name
    /// is kept in the record's `level_name`.
    Unknown,
}

impl Level {
    /// Reads a level name the way common loggers spell it, in any case:
    /// `warn`/`warning`, `err`/`error`, `crit`/`critical`/`fatal`, syslog
    /// names, and single letters such as `E` and `W`. `None` for anything
    /// else.
    pub fn from_name(name: &str) -> Option<Level> {
        // Lower-cased on the stack: this runs for most records, and no name
        // below is longer than the buffer.
        let name = name.trim().as_bytes();
        let mut buffer = [0u8; 16];
        let lower = buffer.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        let level = match std::str::from_utf8(lower).ok()? {
            "trace" | "trc" | "t" | "verbose" => Level::Trace,
            "debug" | "dbg" | "d" => Level::Debug,
            "info" | "inf" | "i" | "information" | "notice" | "informational" => Level::Info,
            "warn" | "warning" | "wrn" | "w" => Level::Warn,
            "error" | "err" | "e" | "eror" => Level::Error,
            "fatal" | "critical" | "crit" | "panic" | "emerg" | "emergency" | "alert" | "f"
            | "c" => Level::Fatal,
            _ => return None,
        };
        Some(level)
    }

    /// The level's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
            Level::Unknown => "unknown",
        }
    }

    /// Whether the record counts as an error for error rates.
    pub fn is_error(self) -> bool {
        matches!(self, Level::Error | Level::Fatal)
    }
}

/// Which form a message had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A JSON object.
    Json,
    /// `key=value` pairs.
    Logfmt,
    /// A line of text.
    Plain,
}

/// Where a record's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeSource {
    /// A field or the start of the line.
    Message,
    /// The Kafka message's timestamp, for lines that carry none.
    Kafka,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    /// When it happened, in UTC.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub timestamp: DateTime<Utc>,
    /// Where the timestamp came from.
    pub time_source: TimeSource,
    /// The service that wrote it, e.g. `checkout`; from `service`, `app`,
    /// `application`, `component`, else the Kafka key, else `unknown`.
    pub service: String,
    /// The host, when the record says.
    pub host: Option<String>,
    /// Its severity; [`Level::Info`] when the record names none.
    pub level: Level,
    /// The level as the producer wrote it, when it is not a known one.
    pub level_name: Option<String>,
    /// The message text.
    pub message: String,
    /// Request latency in milliseconds, when the record has one.
    pub latency_ms: Option<f64>,
    /// HTTP status, when the record has one.
    pub status: Option<u16>,
    /// Trace id, when the record has one.
    pub trace_id: Option<String>,
    /// The producer's unique id for the record, when it has one.
    pub event_id: Option<String>,
    /// The message's form.
    pub format: Format,
    /// Every other field of a JSON or logfmt message, as text.
    pub attributes: BTreeMap<String, String>,
}

/// Why a message could not become a record. It is kept in quarantine with
/// this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Quarantined {
    /// Nothing in it.
    #[error("empty message")]
    Empty,
    /// Larger than the configured limit.
    #[error("message is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not UTF-8 text.
    #[error("message is not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 {
        /// Where the first invalid byte is.
        offset: usize,
    },
    /// Starts like JSON but does not parse.
    #[error("invalid JSON at line {line}, column {column}: {reason}")]
    BadJson {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// serde_json's reason.
        reason: String,
    },
    /// JSON that is an array, a number or a string rather than an object.
    #[error("JSON message is {0}, not an object")]
    NotAnObject(&'static str),
    /// A JSON or logfmt record without any message field.
    #[error("no message field (looked for {0})")]
    NoMessage(&'static str),
    /// A field that must hold a value of some kind holds another.
    #[error("field `{field}` {problem}")]
    BadField {
        /// The field.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A logfmt line that breaks off inside a quoted value.
    #[error("logfmt line has an unterminated quote at byte {0}")]
    UnterminatedQuote(usize),
}
