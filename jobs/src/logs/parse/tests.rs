use chrono::{DateTime, TimeZone, Utc};

use super::{Limits, Source, parse};
use crate::logs::{Format, Level, LogRecord, Quarantined, TimeSource};

fn kafka_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 6, 7, 8, 9)
        .single()
        .expect("valid time")
}

fn source() -> Source<'static> {
    Source {
        key: Some(b"from-key"),
        kafka_timestamp: Some(kafka_time()),
    }
}

fn ok(payload: &str) -> LogRecord {
    parse(payload.as_bytes(), &source(), &Limits::default())
        .unwrap_or_else(|err| panic!("{payload:?} should parse: {err}"))
}

fn refused(payload: &[u8]) -> Quarantined {
    match parse(payload, &source(), &Limits::default()) {
        Ok(record) => panic!("{payload:?} should be quarantined, got {record:?}"),
        Err(reason) => reason,
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .to_utc()
}

#[test]
fn json_reads_the_usual_field_names() {
    let r = ok(
        r#"{"timestamp":"2026-01-02T03:04:05.250Z","service":"checkout","host":"web-1",
        "level":"ERROR","message":"payment failed","latency_ms":812.5,"status":502,
        "trace_id":"abc123","event_id":"e-1","user":"u42","retry":true}"#,
    );
    assert_eq!(r.format, Format::Json);
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05.250Z"));
    assert_eq!(r.time_source, TimeSource::Message);
    assert_eq!(r.service, "checkout");
    assert_eq!(r.host.as_deref(), Some("web-1"));
    assert_eq!(r.level, Level::Error);
    assert_eq!(r.message, "payment failed");
    assert_eq!(r.latency_ms, Some(812.5));
    assert_eq!(r.status, Some(502));
    assert_eq!(r.trace_id.as_deref(), Some("abc123"));
    assert_eq!(r.event_id.as_deref(), Some("e-1"));
    assert_eq!(r.attributes["user"], "u42");
    assert_eq!(r.attributes["retry"], "true");
}

#[test]
fn json_reads_other_spellings_nesting_and_unix_times() {
    let r = ok(
        r#"{"@timestamp":1767323045250,"severity":"warning","msg":"slow",
        "app":"search","ctx":{"region":"eu"}}"#,
    );
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05.250Z"));
    assert_eq!((r.level, r.service.as_str()), (Level::Warn, "search"));
    assert_eq!(r.attributes["ctx.region"], "eu");

    let r = ok(r#"{"ts":1767323045,"lvl":50,"log":"boom","service":{"name":"api"}}"#);
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05Z"));
    assert_eq!(
        (r.level, r.service.as_str()),
        (Level::Error, "api"),
        "pino level 50"
    );

    let r = ok(r#"{"time":"2026-01-02 03:04:05,5","level":"notice-ish","message":"m"}"#);
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05.5Z"));
    assert_eq!(r.level, Level::Unknown);
    assert_eq!(r.level_name.as_deref(), Some("notice-ish"));
}

#[test]
fn json_without_a_time_or_service_takes_them_from_kafka() {
    let r = ok(r#"{"message":"hello"}"#);
    assert_eq!(
        (r.timestamp, r.time_source),
        (kafka_time(), TimeSource::Kafka)
    );
    assert_eq!(r.service, "from-key");
    assert_eq!(r.level, Level::Info);
    let no_key = Source {
        key: None,
        kafka_timestamp: Some(kafka_time()),
    };
    let r = parse(br#"{"message":"hello"}"#, &no_key, &Limits::default()).expect("parses");
    assert_eq!(r.service, "unknown");
}

#[test]
fn logfmt_pairs_with_quotes_and_escapes() {
    let r = ok(
        r#"ts=2026-01-02T03:04:05Z level=warn service=auth msg="token \"expired\" for u1" latency_ms=12 cached"#,
    );
    assert_eq!(r.format, Format::Logfmt);
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05Z"));
    assert_eq!((r.level, r.service.as_str()), (Level::Warn, "auth"));
    assert_eq!(r.message, r#"token "expired" for u1"#);
    assert_eq!(r.latency_ms, Some(12.0));
    assert_eq!(r.attributes["cached"], "true");
}

#[test]
fn plain_lines_take_time_and_level_from_their_start() {
    let r = ok("2026-01-02 03:04:05,123 ERROR [db] connection refused");
    assert_eq!(r.format, Format::Plain);
    assert_eq!(r.timestamp, at("2026-01-02T03:04:05.123Z"));
    assert_eq!(r.level, Level::Error);
    assert_eq!(
        r.message,
        "2026-01-02 03:04:05,123 ERROR [db] connection refused"
    );
    assert_eq!(r.service, "from-key");

    let r = ok("[2026-01-02T03:04:05+01:00] WARNING: disk 91% full");
    assert_eq!(r.timestamp, at("2026-01-02T02:04:05Z"));
    assert_eq!(r.level, Level::Warn);

    let r = ok("user=bob logged in from a new device");
    assert_eq!(r.format, Format::Plain, "one pair and prose is not logfmt");
    let r = ok("user=bob role=admin logged in");
    assert_eq!(r.format, Format::Plain, "pairs without a message are prose");
    assert_eq!(r.message, "user=bob role=admin logged in");
    assert_eq!(
        (r.timestamp, r.time_source),
        (kafka_time(), TimeSource::Kafka)
    );
    assert_eq!(r.level, Level::Info);
}

#[test]
fn unreadable_messages_are_quarantined_with_their_reason() {
    assert_eq!(refused(b""), Quarantined::Empty);
    assert_eq!(refused(b" \n\t "), Quarantined::Empty);
    assert_eq!(refused(b"ok\xff\xfe"), Quarantined::NotUtf8 { offset: 2 });
    let big = vec![b'a'; 2048];
    let limits = Limits { max_bytes: 1024 };
    assert_eq!(
        parse(&big, &source(), &limits).expect_err("too large"),
        Quarantined::TooLarge {
            size: 2048,
            limit: 1024
        }
    );
    assert!(matches!(
        refused(b"{\"message\": \"cut"),
        Quarantined::BadJson { line: 1, .. }
    ));
    assert_eq!(refused(b"[1, 2]"), Quarantined::NotAnObject("an array"));
    assert!(matches!(
        refused(br#"{"level":"info"}"#),
        Quarantined::NoMessage(_)
    ));
    let reason = refused(br#"{"message":"m","ts":"yesterday"}"#).to_string();
    assert_eq!(reason, "field `ts` `yesterday` is not a time");
    let reason = refused(br#"{"message":"m","status":"teapot"}"#).to_string();
    assert!(reason.contains("not an HTTP status"), "{reason}");
    assert!(matches!(
        refused(br#"level=info msg="no end"#),
        Quarantined::UnterminatedQuote(15)
    ));
    let no_time = Source {
        key: None,
        kafka_timestamp: None,
    };
    assert!(parse(b"just text", &no_time, &Limits::default()).is_err());
}

#[test]
fn odd_bytes_never_panic() {
    let samples: [&[u8]; 4] = [
        br#"{"ts":1767323045,"level":"info","msg":"a","status":200,"latency_ms":"5ms"}"#,
        br#"ts=2026-01-02T03:04:05Z level=info msg="a b" k=v"#,
        b"2026-01-02 03:04:05 INFO plain line",
        "{\"message\":\"caf\u{e9}\",\"x\":{\"y\":[1,{\"z\":null}]}}".as_bytes(),
    ];
    // A fixed xorshift stream: every run tries the same inputs.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for sample in samples {
        for _ in 0..2000 {
            let mut bytes = sample.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % bytes.len();
                match next() % 3 {
                    0 => bytes[i] = next() as u8,
                    1 => {
                        bytes.remove(i);
                    }
                    _ => bytes.insert(i, b"\"{}=[]\\ \n\xff"[(next() % 10) as usize]),
                }
                if bytes.is_empty() {
                    break;
                }
            }
            // Either outcome is fine; neither may panic.
            let _ = parse(&bytes, &source(), &Limits::default());
        }
    }
}
