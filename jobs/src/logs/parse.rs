//! Reading one Kafka message as a log record: JSON objects, logfmt lines
//! and plain text, with the field spellings common loggers use.
//!
//! Most JSON lines are flat objects naming each field once; [`flat_json`]
//! reads those without building a `serde_json::Value`, and every other JSON
//! line goes the general way, through a `Value` and a map of its flattened
//! fields. Both give the same record for the lines the first reads.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::Value;

use super::{Format, Level, LogRecord, Quarantined, TimeSource};

mod flat_json;

/// Limits on what a message may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message accepted, in bytes, e.g. 1 MiB.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
        }
    }
}

/// What Kafka says about a message besides its payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// The message key; names the service of lines that do not.
    pub key: Option<&'a [u8]>,
    /// The message's timestamp; the time of lines that carry none.
    pub kafka_timestamp: Option<DateTime<Utc>>,
}

const TIME_FIELDS: &[&str] = &["timestamp", "ts", "@timestamp", "time", "datetime", "date"];
const LEVEL_FIELDS: &[&str] = &["level", "severity", "lvl", "loglevel", "log.level"];
const MESSAGE_FIELDS: &[&str] = &["message", "msg", "log", "text", "event"];
const MESSAGE_NAMES: &str = "message, msg, log, text, event";
const SERVICE_FIELDS: &[&str] = &["service", "service.name", "app", "application", "component"];
const HOST_FIELDS: &[&str] = &["host", "hostname", "host.name"];
const LATENCY_FIELDS: &[&str] = &[
    "latency_ms",
    "duration_ms",
    "elapsed_ms",
    "response_time_ms",
    "latency",
];
const STATUS_FIELDS: &[&str] = &["status", "status_code", "http_status", "http.status_code"];
const TRACE_FIELDS: &[&str] = &["trace_id", "traceId", "trace.id"];
const EVENT_FIELDS: &[&str] = &["event_id", "eventId"];

/// Reads one message as a log record.
///
/// Fails with the reason the message is quarantined: empty, too large, not
/// UTF-8, broken JSON or JSON that is not an object, no message field, or a
/// field (time, level, latency, status) whose value cannot be read.
pub fn parse(
    payload: &[u8],
    source: &Source<'_>,
    limits: &Limits,
) -> Result<LogRecord, Quarantined> {
    if payload.len() > limits.max_bytes {
        return Err(Quarantined::TooLarge {
            size: payload.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|err| Quarantined::NotUtf8 {
        offset: err.valid_up_to(),
    })?;
    let line = text.trim();
    if line.is_empty() {
        return Err(Quarantined::Empty);
    }

    if line.starts_with('{') {
        return match flat_json::parse(line, source) {
            Some(record) => Ok(record),
            None => json(line, source),
        };
    }
    if line.starts_with('[')
        && let Ok(Value::Array(_)) = serde_json::from_str::<Value>(line)
    {
        return Err(Quarantined::NotAnObject("an array"));
    }
    if let Some(pairs) = logfmt(line)? {
        let fields: BTreeMap<String, Value> = pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        // Prose with a few `key=value` words in it is a plain line.
        if MESSAGE_FIELDS.iter().any(|name| fields.contains_key(*name)) {
            return from_fields(fields, Format::Logfmt, source);
        }
    }
    plain(line, source)
}

/// A JSON line, the general way: any object, nested or not, whatever its
/// values.
fn json(line: &str, source: &Source<'_>) -> Result<LogRecord, Quarantined> {
    let value: Value = serde_json::from_str(line).map_err(|err| Quarantined::BadJson {
        line: err.line(),
        column: err.column(),
        reason: err.to_string(),
    })?;
    let Value::Object(object) = value else {
        return Err(Quarantined::NotAnObject("not an object"));
    };
    let mut fields = BTreeMap::new();
    flatten("", object, &mut fields);
    from_fields(fields, Format::Json, source)
}

/// Nested JSON objects become dotted names: `{"service": {"name": "a"}}`
/// gives `service.name`.
fn flatten(
    prefix: &str,
    object: serde_json::Map<String, Value>,
    out: &mut BTreeMap<String, Value>,
) {
    for (name, value) in object {
        let name = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            Value::Object(inner) if !inner.is_empty() => flatten(&name, inner, out),
            value => {
                out.insert(name, value);
            }
        }
    }
}

fn take(fields: &mut BTreeMap<String, Value>, names: &[&str]) -> Option<(String, Value)> {
    names
        .iter()
        .find_map(|name| fields.remove_entry(*name))
        .filter(|(_, value)| !value.is_null())
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bad(field: &str, problem: impl Into<String>) -> Quarantined {
    Quarantined::BadField {
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn from_fields(
    mut fields: BTreeMap<String, Value>,
    format: Format,
    source: &Source<'_>,
) -> Result<LogRecord, Quarantined> {
    let message = match take(&mut fields, MESSAGE_FIELDS) {
        Some((_, value)) => text_of(&value),
        None => return Err(Quarantined::NoMessage(MESSAGE_NAMES)),
    };
    let (timestamp, time_source) = match take(&mut fields, TIME_FIELDS) {
        Some((name, value)) => (time_value(&name, &value)?, TimeSource::Message),
        None => kafka_time(source)?,
    };
    let (level, level_name) = match take(&mut fields, LEVEL_FIELDS) {
        Some((name, value)) => level_value(&name, &value)?,
        None => (Level::Info, None),
    };
    let latency_ms = match take(&mut fields, LATENCY_FIELDS) {
        Some((name, value)) => Some(number(&name, &value)?),
        None => None,
    };
    let status = match take(&mut fields, STATUS_FIELDS) {
        Some((name, value)) => Some(http_status(&name, &value)?),
        None => None,
    };
    let service = take(&mut fields, SERVICE_FIELDS)
        .map(|(_, v)| text_of(&v))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| key_service(source));
    Ok(LogRecord {
        timestamp,
        time_source,
        service,
        host: take(&mut fields, HOST_FIELDS).map(|(_, v)| text_of(&v)),
        level,
        level_name,
        message,
        latency_ms,
        status,
        trace_id: take(&mut fields, TRACE_FIELDS).map(|(_, v)| text_of(&v)),
        event_id: take(&mut fields, EVENT_FIELDS).map(|(_, v)| text_of(&v)),
        format,
        attributes: fields
            .into_iter()
            .map(|(name, value)| (name, text_of(&value)))
            .collect(),
    })
}

fn kafka_time(source: &Source<'_>) -> Result<(DateTime<Utc>, TimeSource), Quarantined> {
    source
        .kafka_timestamp
        .map(|at| (at, TimeSource::Kafka))
        .ok_or_else(|| {
            bad(
                "timestamp",
                "is missing and the message has no Kafka timestamp",
            )
        })
}

fn key_service(source: &Source<'_>) -> String {
    source
        .key
        .and_then(|key| std::str::from_utf8(key).ok())
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .unwrap_or("unknown")
        .to_owned()
}

/// A time field: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or a Unix
/// time in seconds, milliseconds, microseconds or nanoseconds (told apart
/// by size).
fn time_value(field: &str, value: &Value) -> Result<DateTime<Utc>, Quarantined> {
    let parsed = match value {
        Value::Number(n) => time_number(n),
        Value::String(s) => time_text(s),
        _ => None,
    };
    parsed.ok_or_else(|| bad(field, format!("`{}` is not a time", text_of(value))))
}

/// A time field's number: a Unix time.
fn time_number(n: &serde_json::Number) -> Option<DateTime<Utc>> {
    match n.as_i64() {
        Some(whole) => unix_time_whole(whole),
        None => n.as_f64().and_then(unix_time),
    }
}

/// A time field's text: a date and time, or a Unix time written out.
fn time_text(s: &str) -> Option<DateTime<Utc>> {
    parse_time(s).or_else(|| s.trim().parse::<f64>().ok().and_then(unix_time))
}

/// A whole Unix time, exactly: seconds, milliseconds, microseconds or
/// nanoseconds, told apart by size.
fn unix_time_whole(n: i64) -> Option<DateTime<Utc>> {
    let nanos = match n {
        i64::MIN..0 => return None,
        0..100_000_000_000 => n.checked_mul(1_000_000_000)?,
        100_000_000_000..100_000_000_000_000 => n.checked_mul(1_000_000)?,
        100_000_000_000_000..100_000_000_000_000_000 => n.checked_mul(1_000)?,
        _ => n,
    };
    Some(Utc.timestamp_nanos(nanos))
}

/// A fractional Unix time, as [`unix_time_whole`].
fn unix_time(n: f64) -> Option<DateTime<Utc>> {
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let nanos = if n >= 1e17 {
        n
    } else if n >= 1e14 {
        n * 1e3
    } else if n >= 1e11 {
        n * 1e6
    } else {
        n * 1e9
    };
    (nanos < i64::MAX as f64).then(|| Utc.timestamp_nanos(nanos as i64))
}

/// RFC 3339, or a date and time with a space or `T` and optional fraction
/// (`,` as Python writes it, or `.`), taken as UTC.
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.to_utc());
    }
    let normalised = text.replacen(',', ".", 1);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&normalised, format).ok())
        .map(|at| at.and_utc())
}

/// A level field: a name, or a number as pino (10 … 60) or syslog (0 … 7)
/// write them.
fn level_value(field: &str, value: &Value) -> Result<(Level, Option<String>), Quarantined> {
    match value {
        Value::Number(n) => level_number(n)
            .map(|level| (level, None))
            .ok_or_else(|| bad(field, format!("`{n}` is not a level"))),
        other => Ok(level_name(text_of(other).into())),
    }
}

/// A level field's number, as pino (10 … 60) or syslog (0 … 7) write it.
fn level_number(n: &serde_json::Number) -> Option<Level> {
    let level = match n.as_u64()? {
        0..=2 => Level::Fatal,
        3 => Level::Error,
        4 => Level::Warn,
        5 | 6 => Level::Info,
        7 => Level::Debug,
        10..=19 => Level::Trace,
        20..=29 => Level::Debug,
        30..=39 => Level::Info,
        40..=49 => Level::Warn,
        50..=59 => Level::Error,
        60..=69 => Level::Fatal,
        _ => return None,
    };
    Some(level)
}

/// A level field's name; one that is no known level is kept.
fn level_name(name: Cow<'_, str>) -> (Level, Option<String>) {
    match Level::from_name(&name) {
        Some(level) => (level, None),
        None => (Level::Unknown, Some(name.into_owned())),
    }
}

fn number(field: &str, value: &Value) -> Result<f64, Quarantined> {
    let n = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => millis_text(s),
        _ => None,
    };
    n.filter(|n| is_millis(*n)).ok_or_else(|| {
        bad(
            field,
            format!("`{}` is not a duration in milliseconds", text_of(value)),
        )
    })
}

/// A latency written as text, with or without `ms`.
fn millis_text(s: &str) -> Option<f64> {
    s.trim().trim_end_matches("ms").trim().parse().ok()
}

fn is_millis(n: f64) -> bool {
    n.is_finite() && n >= 0.0
}

fn http_status(field: &str, value: &Value) -> Result<u16, Quarantined> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.and_then(status_code)
        .ok_or_else(|| bad(field, format!("`{}` is not an HTTP status", text_of(value))))
}

/// A number that is an HTTP status.
fn status_code(n: u64) -> Option<u16> {
    u16::try_from(n).ok().filter(|n| (100..=599).contains(n))
}

/// Splits a logfmt line into its pairs; `None` when the line is not logfmt
/// (it must start with `key=` and hold at least two `key=value` pairs).
fn logfmt(line: &str) -> Result<Option<Vec<(String, String)>>, Quarantined> {
    let starts_with_pair = line
        .split_once('=')
        .is_some_and(|(key, _)| !key.is_empty() && key.chars().all(is_key_char));
    if !starts_with_pair {
        return Ok(None);
    }
    let bytes = line.as_bytes();
    let mut pairs = Vec::new();
    let mut valued = 0;
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let key_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' {
            i += 1;
        }
        let key = &line[key_start..i];
        if key.is_empty() || !key.chars().all(is_key_char) {
            return Ok(None);
        }
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            let value = if i < bytes.len() && bytes[i] == b'"' {
                let quote = i;
                i += 1;
                let mut value = String::new();
                loop {
                    match bytes.get(i) {
                        None => return Err(Quarantined::UnterminatedQuote(quote)),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 1 < bytes.len() => {
                            let escaped = line[i + 1..].chars().next().unwrap_or('\\');
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            i += 1 + escaped.len_utf8();
                        }
                        Some(_) => {
                            let c = line[i..].chars().next().unwrap_or('\u{fffd}');
                            value.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                value
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                line[start..i].to_owned()
            };
            pairs.push((key.to_owned(), value));
            valued += 1;
        } else {
            // A bare key, as logfmt allows: a flag.
            pairs.push((key.to_owned(), "true".to_owned()));
        }
    }
    Ok((valued >= 2).then_some(pairs))
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-@/".contains(c)
}

/// A plain line: its time from its start when it has one (RFC 3339 or
/// `YYYY-MM-DD HH:MM:SS[,fff]`, maybe in brackets), else Kafka's; its level
/// from the first few words when one names a level.
fn plain(line: &str, source: &Source<'_>) -> Result<LogRecord, Quarantined> {
    let words: Vec<&str> = line.split_whitespace().take(6).collect();
    let clean = |w: &str| w.trim_matches(|c: char| "[]():|<>".contains(c)).to_owned();
    let timestamp = words
        .first()
        .and_then(|first| parse_time(&clean(first)))
        .or_else(|| match words.as_slice() {
            [date, time, ..] => parse_time(&format!("{} {}", clean(date), clean(time))),
            _ => None,
        });
    let level = words
        .iter()
        .map(|w| clean(w))
        // One letter is too often a word of the message to count.
        .filter(|w| w.len() >= 3)
        .find_map(|w| Level::from_name(&w));
    let (timestamp, time_source) = match timestamp {
        Some(at) => (at, TimeSource::Message),
        None => kafka_time(source)?,
    };
    Ok(LogRecord {
        timestamp,
        time_source,
        service: key_service(source),
        host: None,
        level: level.unwrap_or(Level::Info),
        level_name: None,
        message: line.to_owned(),
        latency_ms: None,
        status: None,
        trace_id: None,
        event_id: None,
        format: Format::Plain,
        attributes: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests;
