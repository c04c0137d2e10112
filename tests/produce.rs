//! `rtmas produce` against a real Kafka-protocol broker (Tansu): every
//! record arrives once, spread over the topic's partitions, readable as a
//! log record, each service's records in one partition, and the ground
//! truth file lists the injected anomalies.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rtmas_jobs::logs::simulate::{Anomaly, AnomalyKind};
use rtmas_jobs::logs::{Format, Limits, Source, parse};
use support::kafka::Broker;
use support::{OutputText, rtmas};

const RECORDS: usize = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_sends_each_record_once_with_its_ground_truth() {
    let broker = Broker::start().await;
    broker.create_topic("logs", 3).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let truth = dir.path().join("anomalies.jsonl");

    let out = rtmas()
        .args([
            "produce", "--topic", "logs", "--rate", "20000", "--seed", "42",
        ])
        .args(["--count", &RECORDS.to_string()])
        .arg("--anomalies")
        .arg(&truth)
        .env("RTMAS_KAFKA_BROKERS", &broker.address)
        .output()
        .await
        .expect("run rtmas produce");
    assert!(
        out.status.success(),
        "produce failed: {}",
        out.stderr_text()
    );
    assert!(
        out.stdout_text()
            .contains(&format!("sent {RECORDS} records")),
        "{}",
        out.stdout_text()
    );

    let anomalies: Vec<Anomaly> = std::fs::read_to_string(&truth)
        .expect("ground truth written")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one anomaly per line"))
        .collect();
    let kinds: HashSet<AnomalyKind> = anomalies.iter().map(|a| a.kind).collect();
    assert_eq!(kinds.len(), 4, "{anomalies:?}");

    // Read the topic back from the start of each partition.
    let address = broker.address.clone();
    let read = tokio::task::spawn_blocking(move || read_all(&address, "logs", 3, RECORDS))
        .await
        .expect("reader");
    let mut ids = HashSet::new();
    let mut partitions_of: HashMap<Vec<u8>, HashSet<i32>> = HashMap::new();
    for (partition, key, payload) in &read {
        partitions_of
            .entry(key.clone())
            .or_default()
            .insert(*partition);
        let source = Source {
            key: Some(key),
            kafka_timestamp: None,
        };
        let record = parse(payload, &source, &Limits::default()).expect("a log record");
        assert_eq!(record.format, Format::Json);
        assert_eq!(
            record.service.as_bytes(),
            key.as_slice(),
            "keyed by service"
        );
        ids.insert(record.event_id.expect("every record has an event id"));
    }
    assert_eq!(read.len(), RECORDS, "every record arrived, none twice");
    assert_eq!(ids.len(), RECORDS, "event ids are unique");
    assert_eq!(partitions_of.len(), 5, "five services");
    assert!(
        partitions_of.values().all(|p| p.len() == 1),
        "a service's records stay in one partition, in order: {partitions_of:?}"
    );
    let used: HashSet<_> = partitions_of.values().flatten().collect();
    assert!(used.len() > 1, "services spread over the partitions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_to_a_missing_topic_fails_loudly() {
    let broker = Broker::start().await;
    let out = rtmas()
        .args(["produce", "--topic", "nowhere", "--count", "10"])
        .env("RTMAS_KAFKA_BROKERS", &broker.address)
        .output()
        .await
        .expect("run rtmas produce");
    assert!(
        !out.status.success(),
        "producing to a missing topic must fail"
    );
    assert!(
        out.stderr_text().contains("failed to produce"),
        "{}",
        out.stderr_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_creates_a_missing_topic_when_given_partitions() {
    let broker = Broker::start().await;
    for run in 0..2 {
        // The second run finds the topic there and uses it.
        let out = rtmas()
            .args([
                "produce",
                "--topic",
                "fresh",
                "--partitions",
                "3",
                "--count",
                "200",
            ])
            .env("RTMAS_KAFKA_BROKERS", &broker.address)
            .output()
            .await
            .expect("run rtmas produce");
        assert!(out.status.success(), "run {run}: {}", out.stderr_text());
    }
    let messages = read_all(&broker.address, "fresh", 3, 400);
    assert_eq!(messages.len(), 400);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some("fresh"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(metadata.topics()[0].partitions().len(), 3);
    let partitions: HashSet<i32> = messages.iter().map(|m| m.0).collect();
    assert!(partitions.len() > 1 && partitions.iter().all(|p| (0..3).contains(p)));

    let out = rtmas()
        .args([
            "produce",
            "--topic",
            "other",
            "--partitions",
            "0",
            "--count",
            "1",
        ])
        .env("RTMAS_KAFKA_BROKERS", &broker.address)
        .output()
        .await
        .expect("run rtmas produce");
    assert!(!out.status.success());
    assert!(
        out.stderr_text().contains("at least 1 partition"),
        "{}",
        out.stderr_text()
    );
}

/// Every message of `topic`, as (partition, key, payload), reading until
/// `want` have arrived or 60 s have passed.
fn read_all(
    brokers: &str,
    topic: &str,
    partitions: i32,
    want: usize,
) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "rtmas-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign partition");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut messages = Vec::new();
    while messages.len() < want && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a message, not an error");
            messages.push((
                message.partition(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Anything past `want` would be a duplicate: give it a moment to show.
    let settle = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < settle {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            messages.push((
                message.partition(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    messages
}
