//! The usual JSON line, read without building a `serde_json::Value`: a flat
//! object (strings, numbers, booleans and nulls, no nested objects or
//! arrays) that names each of the known fields once, in any of its
//! spellings. Strings without escapes are borrowed from the line.
//!
//! Anything else, and any line that would be quarantined, is left to the
//! general path, which reads the lines taken here to the same record.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Number, Value};

use super::{
    Format, Level, LogRecord, Source, TimeSource, is_millis, key_service, level_name, level_number,
    millis_text, status_code, time_number, time_text,
};

/// Reads `line` (which starts with `{`) as a flat JSON object; `None` when
/// it is not one, or when the general path would read it otherwise
/// (nesting, a field given twice or in two spellings, a value that is
/// refused).
pub(super) fn parse(line: &str, source: &Source<'_>) -> Option<LogRecord> {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let fields = deserializer.deserialize_map(FieldsVisitor).ok()?;
    deserializer.end().ok()?;
    fields.into_record(source)
}

/// The known fields, each read from one of its spellings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Message,
    Time,
    Level,
    Latency,
    Status,
    Service,
    Host,
    Trace,
    Event,
}

/// Which known field a name spells. The names are those of the lists in
/// the parent module (a test holds them together).
fn known(name: &str) -> Option<Known> {
    let known = match name {
        "message" | "msg" | "log" | "text" | "event" => Known::Message,
        "timestamp" | "ts" | "@timestamp" | "time" | "datetime" | "date" => Known::Time,
        "level" | "severity" | "lvl" | "loglevel" | "log.level" => Known::Level,
        "latency_ms" | "duration_ms" | "elapsed_ms" | "response_time_ms" | "latency" => {
            Known::Latency
        }
        "status" | "status_code" | "http_status" | "http.status_code" => Known::Status,
        "service" | "service.name" | "app" | "application" | "component" => Known::Service,
        "host" | "hostname" | "host.name" => Known::Host,
        "trace_id" | "traceId" | "trace.id" => Known::Trace,
        "event_id" | "eventId" => Known::Event,
        _ => return None,
    };
    Some(known)
}

/// A value of a flat object.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(Number),
    Bool(bool),
    Null,
}

impl<'a> Scalar<'a> {
    /// The value as text, as the general path writes it.
    fn into_text(self) -> String {
        match self {
            Scalar::Str(s) => s.into_owned(),
            Scalar::Num(n) => Value::Number(n).to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Null => "null".to_owned(),
        }
    }
}

/// A known field's value: a null is no value.
fn given(value: Option<Scalar<'_>>) -> Option<Scalar<'_>> {
    value.filter(|v| !matches!(v, Scalar::Null))
}

#[derive(Default)]
struct Fields<'a> {
    message: Option<Scalar<'a>>,
    time: Option<Scalar<'a>>,
    level: Option<Scalar<'a>>,
    latency: Option<Scalar<'a>>,
    status: Option<Scalar<'a>>,
    service: Option<Scalar<'a>>,
    host: Option<Scalar<'a>>,
    trace: Option<Scalar<'a>>,
    event: Option<Scalar<'a>>,
    attributes: BTreeMap<String, String>,
}

impl<'a> Fields<'a> {
    fn slot(&mut self, known: Known) -> &mut Option<Scalar<'a>> {
        match known {
            Known::Message => &mut self.message,
            Known::Time => &mut self.time,
            Known::Level => &mut self.level,
            Known::Latency => &mut self.latency,
            Known::Status => &mut self.status,
            Known::Service => &mut self.service,
            Known::Host => &mut self.host,
            Known::Trace => &mut self.trace,
            Known::Event => &mut self.event,
        }
    }

    /// The record, as the general path's `from_fields` makes it; `None`
    /// where that would quarantine the line.
    fn into_record(self, source: &Source<'_>) -> Option<LogRecord> {
        let message = given(self.message)?.into_text();
        let (timestamp, time_source) = match given(self.time) {
            Some(Scalar::Str(s)) => (time_text(&s)?, TimeSource::Message),
            Some(Scalar::Num(n)) => (time_number(&n)?, TimeSource::Message),
            Some(_) => return None,
            None => (source.kafka_timestamp?, TimeSource::Kafka),
        };
        let (level, level_name) = match given(self.level) {
            Some(Scalar::Num(n)) => (level_number(&n)?, None),
            Some(Scalar::Str(s)) => level_name(s),
            Some(other) => level_name(other.into_text().into()),
            None => (Level::Info, None),
        };
        let latency_ms = match given(self.latency) {
            Some(Scalar::Num(n)) => Some(n.as_f64().filter(|n| is_millis(*n))?),
            Some(Scalar::Str(s)) => Some(millis_text(&s).filter(|n| is_millis(*n))?),
            Some(_) => return None,
            None => None,
        };
        let status = match given(self.status) {
            Some(Scalar::Num(n)) => Some(n.as_u64().and_then(status_code)?),
            Some(Scalar::Str(s)) => Some(s.trim().parse().ok().and_then(status_code)?),
            Some(_) => return None,
            None => None,
        };
        let service = given(self.service)
            .map(Scalar::into_text)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| key_service(source));
        Some(LogRecord {
            timestamp,
            time_source,
            service,
            host: given(self.host).map(Scalar::into_text),
            level,
            level_name,
            message,
            latency_ms,
            status,
            trace_id: given(self.trace).map(Scalar::into_text),
            event_id: given(self.event).map(Scalar::into_text),
            format: Format::Json,
            attributes: self.attributes,
        })
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a flat JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        while let Some(Name(name)) = map.next_key()? {
            let value: Scalar<'de> = map.next_value()?;
            match known(&name) {
                Some(known) => {
                    let slot = fields.slot(known);
                    if slot.is_some() {
                        return Err(de::Error::custom("a known field given twice"));
                    }
                    *slot = Some(value);
                }
                None => {
                    let text = value.into_text();
                    if fields.attributes.insert(name.into_owned(), text).is_some() {
                        return Err(de::Error::custom("a field given twice"));
                    }
                }
            }
        }
        Ok(fields)
    }
}

/// A field name, borrowed from the line when it has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(ScalarVisitor)? {
            Scalar::Str(s) => Ok(Name(s)),
            _ => Err(de::Error::custom("a field name that is not a string")),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Num(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Num(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        // As `serde_json::Value` reads it.
        Ok(Number::from_f64(v).map_or(Scalar::Null, Scalar::Num))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::super::{
        EVENT_FIELDS, HOST_FIELDS, LATENCY_FIELDS, LEVEL_FIELDS, MESSAGE_FIELDS, SERVICE_FIELDS,
        STATUS_FIELDS, TIME_FIELDS, TRACE_FIELDS, json,
    };
    use super::*;
    use crate::logs::simulate::Simulator;

    fn sources() -> [Source<'static>; 3] {
        let at = Utc
            .with_ymd_and_hms(2026, 5, 6, 7, 8, 9)
            .single()
            .expect("valid time");
        [
            Source {
                key: Some(b"from-key"),
                kafka_timestamp: Some(at),
            },
            Source {
                key: None,
                kafka_timestamp: Some(at),
            },
            Source {
                key: Some(b" "),
                kafka_timestamp: None,
            },
        ]
    }

    /// Checks that the flat path, when it reads `line`, reads it as the
    /// general path does; returns whether it read it.
    fn agrees(line: &str, source: &Source<'_>) -> bool {
        match parse(line, source) {
            Some(record) => {
                assert_eq!(json(line, source), Ok(record), "{line}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn known_names_are_those_of_the_general_path() {
        let lists = [
            (MESSAGE_FIELDS, Known::Message),
            (TIME_FIELDS, Known::Time),
            (LEVEL_FIELDS, Known::Level),
            (LATENCY_FIELDS, Known::Latency),
            (STATUS_FIELDS, Known::Status),
            (SERVICE_FIELDS, Known::Service),
            (HOST_FIELDS, Known::Host),
            (TRACE_FIELDS, Known::Trace),
            (EVENT_FIELDS, Known::Event),
        ];
        for (names, kind) in lists {
            for name in names {
                assert_eq!(known(name), Some(kind), "{name}");
            }
        }
        for other in [
            "",
            "Message",
            "messages",
            "service.id",
            "level.name",
            "trace",
        ] {
            assert_eq!(known(other), None, "{other}");
        }
    }

    #[test]
    fn simulated_lines_take_the_flat_path() {
        let start = Utc::now();
        for record in Simulator::new(7, start, 1000.0, Vec::new()).take(2000) {
            let line = serde_json::to_string(&record).expect("a simulated record serialises");
            assert!(agrees(&line, &sources()[0]), "{line}");
        }
    }

    #[test]
    fn flat_lines_read_as_the_general_path_reads_them() {
        let read = [
            r#"{"timestamp":"2026-01-02T03:04:05.250Z","service":"checkout","host":"web-1",
                "level":"ERROR","message":"payment failed","latency_ms":812.5,"status":502,
                "trace_id":"abc123","event_id":"e-1","user":"u42","retry":true}"#,
            r#"{"@timestamp":1767323045250,"severity":"warning","msg":"slow","app":"search"}"#,
            r#"{"ts":1767323045,"lvl":50,"log":"boom","service.name":"api"}"#,
            r#"{"time":"2026-01-02 03:04:05,5","level":"notice-ish","message":"m"}"#,
            r#"{"message":"hello"}"#,
            r#"{"message":"caf\u00e9 \"quoted\"\n","m\u0065ta":"x","":null}"#,
            r#"{"text":"t","latency":"12ms","http.status_code":" 404 ","level":null}"#,
            r#"{"event":"e","ts":"1767323045.5","lvl":7,"service":"","eventId":17}"#,
            r#"{"message":"m","level":true,"count":-3,"ratio":1e300,"big":18446744073709551615}"#,
            r#"{"message":"m","ts":1767323045250000,"status":"200","duration_ms":0}"#,
        ];
        let [from_key, no_key, no_kafka_time] = sources();
        for line in read {
            for source in [&from_key, &no_key] {
                assert!(agrees(line, source), "{line} should take the flat path");
            }
        }
        assert!(agrees(read[0], &no_kafka_time));
        assert!(!agrees(r#"{"message":"no time"}"#, &no_kafka_time));
        // Nesting, a field named twice or in two spellings, and values the
        // general path refuses or reads otherwise are left to it.
        let left = [
            r#"{"message":"m","ctx":{"region":"eu"}}"#,
            r#"{"message":"m","tags":["a","b"]}"#,
            r#"{"message":"m","empty":{}}"#,
            r#"{"message":"m","service":{"name":"api"}}"#,
            r#"{"message":"a","msg":"b"}"#,
            r#"{"message":"m","user":"a","user":"b"}"#,
            r#"{"message":null,"msg":"b"}"#,
            r#"{"level":"info"}"#,
            r#"{"message":"m","ts":"yesterday"}"#,
            r#"{"message":"m","ts":true}"#,
            r#"{"message":"m","status":"teapot"}"#,
            r#"{"message":"m","status":700}"#,
            r#"{"message":"m","latency_ms":-1}"#,
            r#"{"message":"m","lvl":99}"#,
            r#"{"message":"m"} trailing"#,
            r#"{"message":"cut"#,
        ];
        for line in left {
            assert_eq!(parse(line, &sources()[0]), None, "{line}");
        }
    }

    #[test]
    fn generated_lines_read_as_the_general_path_reads_them() {
        let names = [
            "message",
            "msg",
            "log",
            "text",
            "event",
            "timestamp",
            "ts",
            "@timestamp",
            "time",
            "level",
            "severity",
            "lvl",
            "log.level",
            "latency_ms",
            "latency",
            "status",
            "http.status_code",
            "service",
            "service.name",
            "app",
            "host",
            "hostname",
            "trace_id",
            "traceId",
            "event_id",
            "user",
            "retry",
            "ctx",
            "a.b",
            "",
            "m\\u0065ssage",
            "Level",
        ];
        let values = [
            r#""hello""#,
            r#""""#,
            r#""caf\u00e9""#,
            r#""a \"b\"\n""#,
            r#""2026-01-02T03:04:05.250Z""#,
            r#""2026-01-02 03:04:05,5""#,
            r#""1767323045""#,
            r#""12ms""#,
            r#"" 200 ""#,
            r#""teapot""#,
            r#""ERROR""#,
            r#""warning""#,
            r#""  info ""#,
            r#""E""#,
            "0",
            "7",
            "30",
            "50",
            "99",
            "200",
            "404",
            "1767323045",
            "1767323045250",
            "1767323045250000",
            "-1",
            "812.5",
            "1e300",
            "1.5e-3",
            "18446744073709551615",
            "true",
            "false",
            "null",
            r#"{"name":"api"}"#,
            "{}",
            "[1,2]",
            r#"{"region":{"zone":"a"}}"#,
        ];
        // A fixed xorshift stream: every run tries the same lines.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let sources = sources();
        let (mut flat, mut read) = (0, 0);
        for _ in 0..20_000 {
            let pairs: Vec<String> = (0..1 + next(6))
                .map(|_| {
                    format!(
                        r#""{}":{}"#,
                        names[next(names.len())],
                        values[next(values.len())]
                    )
                })
                .collect();
            let line = format!("{{{}}}", pairs.join(","));
            let source = &sources[next(sources.len())];
            if agrees(&line, source) {
                flat += 1;
            }
            if json(&line, source).is_ok() {
                read += 1;
            }
        }
        // Lines the general path reads but the flat path leaves are nested or
        // name a field twice.
        assert!(
            flat * 3 >= read,
            "only {flat} of {read} lines took the flat path"
        );
    }
}
