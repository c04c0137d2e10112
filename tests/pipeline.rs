//! The log pipeline end to end, over a real Kafka-protocol broker (Tansu)
//! and a real S3 server (moto): `rtmas produce` writes lines with unique
//! ids to a topic of three partitions, `kafka_consume` tries stage them,
//! `compact` tries turn them into Parquet, and the files, read back (by
//! RTMAS and by pyarrow), hold every line exactly once with its fields.
//! Workers killed with SIGKILL during consume and compaction change
//! nothing; malformed messages end in quarantine with their reason.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use arrow_array::{
    Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use nix::sys::signal::Signal;
use rand::{RngExt, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use rtmas_jobs::logs::compact::read_compacted;
use rtmas_jobs::storage::{Storage, open_with};
use rtmas_scheduler::state::RunState;
use rtmas_scheduler::store::MetricRow;
use support::kafka::Broker;
use support::s3::S3Server;
use support::{OutputText, PATIENCE, System, poll_until, wait_until};

const BUCKET: &str = "rtmas-pipeline";
const STORE_URL: &str = "s3://rtmas-pipeline/rtmas";

/// Consumes in small batches, so a run of lines takes many tries, and each
/// try writes several staged objects of a partition when
/// `max_object_bytes` is small.
fn consume_dag(
    every: &str,
    max_records: usize,
    max_message_bytes: usize,
    max_object_bytes: usize,
) -> String {
    format!(
        "dag_id: consume\nschedule: {{every: {every}}}\nstart_date: 2024-01-01T00:00:00Z\n\
         max_active_runs: 1\ndefault_args: {{retries: 5, retry_delay: 0s}}\ntasks:\n\
         \x20 - id: consume\n    kind: kafka_consume\n    params: {{topic: logs, group: test, \
         max_records: {max_records}, max_wait: 1s, max_message_bytes: {max_message_bytes}, \
         max_object_bytes: {max_object_bytes}}}\n"
    )
}

/// Compacts every hour there is, when triggered.
const COMPACT_DAG: &str = "dag_id: compact\nparams: {until: \"2100-01-01T00:00:00Z\"}\n\
     default_args: {retries: 5, retry_delay: 0s}\ntasks:\n\
     \x20 - id: compact\n    kind: compact\n    params: {topic: logs, until: \"{{params.until}}\"}\n";

struct Pipeline {
    broker: Broker,
    s3: S3Server,
    system: System,
}

impl Pipeline {
    async fn start(label: &str, workers: &[(&str, u32)]) -> Pipeline {
        let broker = Broker::start().await;
        broker.create_topic("logs", 3).await;
        let s3 = S3Server::start(BUCKET);
        let mut env = s3.env();
        env.push(("RTMAS_KAFKA_BROKERS".to_owned(), broker.address.clone()));
        env.push(("RTMAS_STORE_URL".to_owned(), STORE_URL.to_owned()));
        let system = System::postgres_with_env(label, workers, env).await;
        Pipeline { broker, s3, system }
    }

    fn storage(&self) -> Storage {
        open_with(STORE_URL, &self.s3.options()).expect("open the S3 store")
    }

    async fn produce(&self, count: usize, seed: u64) {
        let out = self
            .system
            .command(&["produce", "--topic", "logs", "--rate", "50000"])
            .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
            .output()
            .await
            .expect("run rtmas produce");
        assert!(out.status.success(), "produce: {}", out.stderr_text());
    }

    /// How many offsets of the topic are durably consumed.
    async fn consumed(&self) -> i64 {
        let offsets = self
            .system
            .store
            .consume_offsets("logs")
            .await
            .expect("offsets");
        offsets.values().sum()
    }

    async fn wait_consumed(&self, count: usize) {
        wait_until(&format!("{count} offsets consumed"), || async {
            self.consumed().await == count as i64
        })
        .await;
    }

    /// Every per-minute metric recorded.
    async fn metrics(&self) -> Vec<MetricRow> {
        let until = chrono::Utc::now() + chrono::TimeDelta::days(1);
        self.system
            .store
            .log_metrics(chrono::DateTime::UNIX_EPOCH, until, None)
            .await
            .expect("metrics")
    }

    /// Triggers a compaction and waits for it to succeed.
    async fn compact(&self) {
        let out = self.system.trigger_wait("compact").await;
        assert!(out.status.success(), "compaction: {}", out.stderr_text());
        let run = self.system.last_run("compact").await;
        assert_eq!(run.state, RunState::Success);
    }
}

/// The messages of the topic as the broker has them, by partition and
/// offset.
fn read_topic(address: &str, count: usize) -> BTreeMap<(i32, i64), Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", address)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset("logs", p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while out.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.insert(
                (m.partition(), m.offset()),
                m.payload().unwrap_or_default().to_vec(),
            );
        }
    }
    assert_eq!(out.len(), count, "the topic holds what was produced");
    out
}

/// One compacted row, by the columns the checks look at.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    event_id: String,
    service: String,
    host: Option<String>,
    level: String,
    message: String,
    latency_ms: Option<f64>,
    status: Option<i32>,
    trace_id: Option<String>,
    timestamp_us: i64,
    partition: i32,
    offset: i64,
}

/// A column of a compacted batch, of the type the schema promises.
fn column<T: Array + Clone + 'static>(batch: &RecordBatch, name: &str) -> T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column {name} has another type"))
        .clone()
}

async fn compacted_rows(storage: &Storage) -> Vec<Row> {
    let files = read_compacted(storage).await.expect("read compacted files");
    assert!(!files.is_empty(), "compaction wrote files");
    let mut rows = Vec::new();
    for (path, batches) in files {
        assert!(
            path.contains("/logs/date=") && path.contains("/hour=") && path.ends_with(".parquet"),
            "{path}"
        );
        for batch in batches {
            let text = |name: &str| column::<StringArray>(&batch, name);
            let (ids, services, hosts, levels, messages, traces, topics) = (
                text("event_id"),
                text("service"),
                text("host"),
                text("level"),
                text("message"),
                text("trace_id"),
                text("kafka_topic"),
            );
            let latency = column::<Float64Array>(&batch, "latency_ms");
            let status = column::<Int32Array>(&batch, "status");
            let partition = column::<Int32Array>(&batch, "kafka_partition");
            let offset = column::<Int64Array>(&batch, "kafka_offset");
            let ts = column::<TimestampMicrosecondArray>(&batch, "timestamp");
            for i in 0..batch.num_rows() {
                assert_eq!(topics.value(i), "logs");
                let opt = |a: &StringArray| (!a.is_null(i)).then(|| a.value(i).to_owned());
                rows.push(Row {
                    event_id: ids.value(i).to_owned(),
                    service: services.value(i).to_owned(),
                    host: opt(&hosts),
                    level: levels.value(i).to_owned(),
                    message: messages.value(i).to_owned(),
                    latency_ms: (!latency.is_null(i)).then(|| latency.value(i)),
                    status: (!status.is_null(i)).then(|| status.value(i)),
                    trace_id: opt(&traces),
                    timestamp_us: ts.value(i),
                    partition: partition.value(i),
                    offset: offset.value(i),
                });
            }
        }
    }
    rows
}

/// Checks that the compacted rows are exactly the produced messages: one
/// row per message, every field as it was sent, and its lineage.
fn assert_exactly_once(rows: &[Row], topic: &BTreeMap<(i32, i64), Vec<u8>>) {
    assert_eq!(rows.len(), topic.len(), "one row per produced line");
    let ids: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids.len(), topic.len(), "every id once");
    for row in rows {
        let sent: serde_json::Value = serde_json::from_slice(
            topic
                .get(&(row.partition, row.offset))
                .expect("the row's lineage names a produced message"),
        )
        .expect("produced JSON");
        assert_eq!(sent["event_id"], row.event_id.as_str());
        assert_eq!(sent["service"], row.service.as_str());
        assert_eq!(sent["host"].as_str(), row.host.as_deref());
        assert_eq!(sent["level"], row.level.as_str());
        assert_eq!(sent["message"], row.message.as_str());
        assert_eq!(sent["latency_ms"].as_f64(), row.latency_ms);
        assert_eq!(sent["status"].as_i64(), row.status.map(i64::from));
        assert_eq!(sent["trace_id"].as_str(), row.trace_id.as_deref());
        let at = chrono::DateTime::parse_from_rfc3339(sent["timestamp"].as_str().expect("ts"))
            .expect("RFC 3339");
        assert_eq!(at.timestamp_micros(), row.timestamp_us);
    }
}

/// Reads every compacted file with pyarrow, a standard Parquet reader.
async fn read_with_pyarrow(pipeline: &Pipeline) -> serde_json::Value {
    let script = r#"
import io, json, os, sys, boto3, pyarrow.parquet as pq
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=sys.argv[2], Prefix="rtmas/logs/")["Contents"]]
rows, ids, types, codecs = 0, set(), set(), set()
for key in keys:
    body = s3.get_object(Bucket=sys.argv[2], Key=key)["Body"].read()
    meta = pq.ParquetFile(io.BytesIO(body)).metadata
    codecs.update(meta.row_group(i).column(0).compression for i in range(meta.num_row_groups))
    table = pq.read_table(io.BytesIO(body))
    rows += table.num_rows
    ids.update(table.column("event_id").to_pylist())
    types.add(str(table.schema.field("timestamp").type))
print(json.dumps({"files": len(keys), "rows": rows, "ids": len(ids),
                  "timestamp_types": sorted(types), "codecs": sorted(codecs)}))
# pyarrow's thread pools can abort the interpreter's teardown; the answer
# is out, so leave without it.
sys.stdout.flush()
os._exit(0)
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &pipeline.s3.endpoint, BUCKET])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run python3 (scripts/test installs pyarrow)");
    assert!(out.status.success(), "pyarrow: {}", out.stderr_text());
    serde_json::from_slice(&out.stdout).expect("pyarrow's summary")
}

async fn assert_no_staged_objects_left(pipeline: &Pipeline) {
    let left = pipeline
        .system
        .store
        .present_batches("logs")
        .await
        .expect("batches");
    assert!(
        left.is_empty(),
        "staged objects left after compaction: {left:?}"
    );
    let listed = rtmas_jobs::logs::staging::staged_batches(&pipeline.storage(), "logs")
        .await
        .expect("list staged");
    assert!(listed.is_empty(), "staged objects in the store: {listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_lines_end_in_parquet_exactly_once() {
    const LINES: usize = 12_000;
    let pipeline = Pipeline::start("pipeline", &[("w1", 2), ("w2", 2)]).await;
    pipeline.produce(LINES, 7).await;
    let system = &pipeline.system;
    const OBJECT_BYTES: usize = 100_000;
    system.write_dag(
        "consume.yaml",
        &consume_dag("1s", 5_000, 1024 * 1024, OBJECT_BYTES),
    );
    system.write_dag("compact.yaml", COMPACT_DAG);
    pipeline.wait_consumed(LINES).await;
    // A try of 5,000 lines stages about 650 kB per partition: objects of
    // the bound, not one per partition and try.
    let batches = system.store.present_batches("logs").await.expect("batches");
    let largest = batches.iter().map(|b| b.bytes).max().unwrap_or(0);
    assert!(
        batches.len() >= 40 && largest >= OBJECT_BYTES as i64 && largest < 2 * OBJECT_BYTES as i64,
        "{} staged objects, the largest {largest} bytes",
        batches.len()
    );
    pipeline.compact().await;

    let topic = read_topic(&pipeline.broker.address, LINES);
    let rows = compacted_rows(&pipeline.storage()).await;
    assert_exactly_once(&rows, &topic);
    let outputs = system.store.written_outputs("logs").await.expect("outputs");
    assert_eq!(
        outputs
            .iter()
            .map(|o| o.row_count.unwrap_or(0))
            .sum::<i64>(),
        LINES as i64
    );
    assert_no_staged_objects_left(&pipeline).await;

    let read = read_with_pyarrow(&pipeline).await;
    assert_eq!(read["rows"], LINES);
    assert_eq!(read["ids"], LINES);
    assert_eq!(
        read["timestamp_types"],
        serde_json::json!(["timestamp[us, tz=UTC]"])
    );
    assert_eq!(read["codecs"], serde_json::json!(["ZSTD"]));

    // Re-running the compaction changes nothing.
    let before = outputs.clone();
    pipeline.compact().await;
    assert_eq!(
        system.store.written_outputs("logs").await.expect("outputs"),
        before
    );
    assert_eq!(compacted_rows(&pipeline.storage()).await.len(), LINES);

    // Per-minute metrics count every line once.
    let metrics = pipeline.metrics().await;
    assert_eq!(metrics.iter().map(|m| m.total).sum::<i64>(), LINES as i64);
    // Every error line's message template is kept, once.
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let templates = system
        .store
        .templates_first_seen(epoch, epoch + chrono::TimeDelta::days(365 * 200))
        .await
        .expect("templates");
    let errors: i64 = metrics.iter().map(|m| m.error_count + m.fatal_count).sum();
    assert!(errors > 0);
    assert_eq!(templates.iter().map(|t| t.records).sum::<i64>(), errors);
    assert!(
        templates
            .iter()
            .all(|t| !t.template.is_empty() && t.first_seen <= t.last_seen)
    );
    let mut by_service: HashMap<&str, i64> = HashMap::new();
    for row in &rows {
        *by_service.entry(row.service.as_str()).or_default() += 1;
    }
    for (service, count) in by_service {
        let counted: i64 = metrics
            .iter()
            .filter(|m| m.service == service)
            .map(|m| m.total)
            .sum();
        assert_eq!(counted, count, "{service}");
    }
    assert!(
        metrics
            .iter()
            .all(|m| m.latency_count == m.total && m.latency_p50 <= m.latency_p99),
        "latency percentiles for every minute"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_workers_lose_and_duplicate_nothing() {
    const LINES: usize = 12_000;
    let mut pipeline = Pipeline::start("pipeline_kill", &[("w1", 2), ("w2", 2)]).await;
    pipeline.produce(LINES, 11).await;
    pipeline.system.write_dag(
        "consume.yaml",
        &consume_dag("500ms", 700, 1024 * 1024, 40_000),
    );
    pipeline.system.write_dag("compact.yaml", COMPACT_DAG);
    pipeline.system.wait_for_dag("compact").await;

    let seed: u64 = rand::rng().random();
    println!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut alive = vec!["w1".to_owned(), "w2".to_owned()];
    for round in 0..4 {
        // Compactions run while the consume goes on, so kills hit both.
        let trigger = pipeline
            .system
            .command(&["dags", "trigger", "compact"])
            .output()
            .await
            .expect("trigger compaction");
        assert!(trigger.status.success(), "{}", trigger.stderr_text());
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2_500))).await;
        let victim = alive.remove(rng.random_range(0..alive.len()));
        pipeline.system.signal(&victim, Signal::SIGKILL);
        let replacement = format!("w{}", round + 3);
        pipeline.system.spawn_worker(&replacement, 2);
        alive.push(replacement);
    }
    pipeline.wait_consumed(LINES).await;
    // Let the compactions started above end (retried after the kills), then
    // compact whatever is left.
    assert!(
        poll_until(PATIENCE, || async {
            let runs = pipeline
                .system
                .store
                .list_runs("compact", 100)
                .await
                .expect("runs");
            runs.iter().all(|r| r.end_date.is_some())
        })
        .await,
        "compactions still running"
    );
    pipeline.compact().await;

    let topic = read_topic(&pipeline.broker.address, LINES);
    let rows = compacted_rows(&pipeline.storage()).await;
    assert_exactly_once(&rows, &topic);
    assert_no_staged_objects_left(&pipeline).await;
    let metrics = pipeline.metrics().await;
    assert_eq!(metrics.iter().map(|m| m.total).sum::<i64>(), LINES as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_messages_are_quarantined_with_their_reason() {
    let pipeline = Pipeline::start("pipeline_bad", &[("w1", 2)]).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &pipeline.broker.address)
        .create()
        .expect("producer");
    let good = |i: usize| {
        format!(
            r#"{{"ts":"2026-12-04T02:00:{:02}Z","level":"info","msg":"ok {i}","service":"api","event_id":"g{i}"}}"#,
            i % 60
        )
        .into_bytes()
    };
    let mut sent: Vec<(Vec<u8>, Option<&str>)> = (0..40).map(|i| (good(i), None)).collect();
    sent.push((b"{\"msg\": \"cut off".to_vec(), Some("invalid JSON")));
    sent.push((vec![b'x'; 3_000], Some("the limit is 2000")));
    sent.push((b"caf\xe9 \xff broken".to_vec(), Some("not valid UTF-8")));
    sent.push((b"   ".to_vec(), Some("empty message")));
    sent.push((b"[1, 2, 3]".to_vec(), Some("not an object")));
    sent.push((
        b"ts=2026-12-04T02:00:00Z level=warn msg=\"a logfmt line".to_vec(),
        Some("unterminated quote"),
    ));
    sent.push((
        b"2026-12-04 02:00:01 ERROR plain text is fine".to_vec(),
        None,
    ));
    for (i, (payload, _)) in sent.iter().enumerate() {
        let key = format!("k{}", i % 3);
        producer
            .send(
                FutureRecord::to("logs").key(&key).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("send");
    }
    pipeline
        .system
        .write_dag("consume.yaml", &consume_dag("1s", 1_000, 2_000, 32 << 20));
    pipeline.wait_consumed(sent.len()).await;

    let quarantined = pipeline
        .system
        .store
        .quarantined("logs", 100)
        .await
        .expect("quarantine");
    let expected: Vec<&str> = sent.iter().filter_map(|(_, why)| *why).collect();
    assert_eq!(quarantined.len(), expected.len(), "{quarantined:?}");
    for why in &expected {
        let found = quarantined.iter().find(|q| q.reason.contains(why));
        let found =
            found.unwrap_or_else(|| panic!("no message quarantined for `{why}`: {quarantined:?}"));
        let original = sent
            .iter()
            .find(|(_, w)| w.as_ref() == Some(why))
            .expect("sent");
        assert_eq!(found.payload, original.0, "kept whole");
        assert!(found.kafka_partition >= 0 && found.kafka_offset >= 0);
    }
    let staged: i64 = pipeline
        .system
        .store
        .present_batches("logs")
        .await
        .expect("batches")
        .iter()
        .map(|b| i64::from(b.records))
        .sum();
    assert_eq!(
        staged
            + pipeline
                .system
                .store
                .quarantined_count("logs")
                .await
                .expect("count"),
        sent.len() as i64,
        "parsed plus quarantined is what was produced"
    );
}
