//! `rtmas produce`: sends simulated log records to a Kafka topic at a set
//! pace, keyed by service, and writes the anomalies it injects to a ground
//! truth file.
//!
//! Every record is acknowledged by the broker before the producer reports
//! it sent; a record the broker refuses stops the run with the error rather
//! than being skipped.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tracing::info;

use super::simulate::{Anomaly, Simulator, plan_anomalies};

/// How many records may wait for the broker's acknowledgement at once.
const IN_FLIGHT: usize = 50_000;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceConfig {
    /// Brokers, e.g. `127.0.0.1:9092`.
    pub brokers: String,
    /// The topic, e.g. `logs`.
    pub topic: String,
    /// Stop after this many records.
    pub count: Option<u64>,
    /// Stop after this long (when no count is given).
    pub duration: Option<Duration>,
    /// Records per second.
    pub rate: f64,
    /// Seed of the simulation: the same seed gives the same records.
    pub seed: u64,
    /// Where to write the injected anomalies, one JSON object per line.
    pub anomalies: Option<PathBuf>,
    /// When the topic does not exist, create it with this many partitions
    /// (and replication 1); without it, a missing topic is an error.
    pub create_partitions: Option<i32>,
}

/// What a run sent.
#[derive(Debug, Clone)]
pub struct ProduceReport {
    /// Records acknowledged by the broker.
    pub sent: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The anomalies injected.
    pub anomalies: Vec<Anomaly>,
}

impl ProduceReport {
    /// Records per second achieved.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why producing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// Neither a count nor a duration, a rate that is not positive, or a
    /// topic that does not exist.
    #[error("{0}")]
    Settings(String),
    /// The Kafka client could not be made, or the broker refused a record.
    #[error("kafka error: {0}")]
    Kafka(#[from] KafkaError),
    /// The ground truth file could not be written.
    #[error("cannot write the anomalies file {path}: {source}")]
    Anomalies {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Sends simulated records until the count or duration is reached, calling
/// `progress(sent, elapsed)` about once a second.
///
/// Fails when the settings are incomplete, the anomalies file cannot be
/// written, or the broker refuses a record (for example because the topic
/// does not exist).
pub async fn produce(
    config: &ProduceConfig,
    mut progress: impl FnMut(u64, Duration),
) -> Result<ProduceReport, ProduceError> {
    if !(config.rate.is_finite() && config.rate > 0.0) {
        return Err(ProduceError::Settings(format!(
            "the rate must be a positive number of records per second, not {}",
            config.rate
        )));
    }
    let span = match (config.count, config.duration) {
        (Some(count), _) => Duration::from_secs_f64(count as f64 / config.rate),
        (None, Some(duration)) => duration,
        (None, None) => {
            return Err(ProduceError::Settings(
                "give --count or --duration".to_owned(),
            ));
        }
    };

    let start = Utc::now();
    let span_delta = TimeDelta::from_std(span).unwrap_or(TimeDelta::days(365));
    let anomalies = plan_anomalies(config.seed, start, span_delta);
    if let Some(path) = &config.anomalies {
        write_anomalies(path, &anomalies).map_err(|source| ProduceError::Anomalies {
            path: path.clone(),
            source,
        })?;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("batch.size", "4194304")
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000")
        .create()?;
    if let Some(partitions) = config.create_partitions {
        create_topic(&config.brokers, &config.topic, partitions).await?;
    }
    check_topic(&producer, config).await?;
    info!(topic = %config.topic, brokers = %config.brokers, rate = config.rate, "producing");

    let began = Instant::now();
    let deadline = config.duration.map(|d| began + d);
    let mut records = Simulator::new(config.seed, start, config.rate, anomalies.clone());
    let mut pending = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut queued = 0u64;
    let mut last_report = began;
    loop {
        if config.count.is_some_and(|count| queued >= count)
            || deadline.is_some_and(|at| Instant::now() >= at)
        {
            break;
        }
        // Pace: record n goes out n / rate seconds after the start.
        let due = began + Duration::from_secs_f64(queued as f64 / config.rate);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        let Some(record) = records.next() else { break };
        let payload = serde_json::to_vec(&record).expect("a simulated record always serialises");
        let mut record = FutureRecord::to(&config.topic)
            .key(record.service.as_bytes())
            .payload(&payload);
        // The client's queue is bounded: when it is full, wait for the broker
        // to take some and try again.
        let delivery = loop {
            match producer.send_result(record) {
                Ok(delivery) => break delivery,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    if pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    } else {
                        settle(&mut pending, &mut sent).await?;
                    }
                }
                Err((err, _)) => return Err(err.into()),
            }
        };
        pending.push(delivery);
        queued += 1;
        while pending.len() >= IN_FLIGHT {
            settle(&mut pending, &mut sent).await?;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(sent, began.elapsed());
        }
    }
    while !pending.is_empty() {
        settle(&mut pending, &mut sent).await?;
    }
    let report = ProduceReport {
        sent,
        elapsed: began.elapsed(),
        anomalies,
    };
    progress(report.sent, report.elapsed);
    Ok(report)
}

/// Creates `topic` with `partitions` partitions (replication 1) on
/// `brokers` unless it exists.
///
/// Fails when the brokers cannot be reached or refuse the topic.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) -> Result<(), ProduceError> {
    if partitions < 1 {
        return Err(ProduceError::Settings(format!(
            "a topic needs at least 1 partition, not {partitions}"
        )));
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ProduceError::Settings(format!(
                    "cannot create topic `{name}` on {brokers}: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Fails at once, rather than after the delivery timeout, when the topic is
/// not on the brokers.
async fn check_topic(
    producer: &FutureProducer,
    config: &ProduceConfig,
) -> Result<(), ProduceError> {
    let client = producer.clone();
    let topic = config.topic.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
    })
    .await
    .map_err(|err| ProduceError::Settings(format!("cannot read the topic's metadata: {err}")))??;
    let found = metadata
        .topics()
        .iter()
        .any(|t| t.name() == config.topic && t.error().is_none() && !t.partitions().is_empty());
    if found {
        Ok(())
    } else {
        Err(ProduceError::Settings(format!(
            "topic `{}` does not exist on {}",
            config.topic, config.brokers
        )))
    }
}

/// Waits for one acknowledgement; fails on a refused record.
async fn settle(
    pending: &mut FuturesUnordered<DeliveryFuture>,
    sent: &mut u64,
) -> Result<(), ProduceError> {
    if let Some(result) = pending.next().await {
        // A dropped delivery means the client went away before answering.
        let delivered = result.map_err(|_| ProduceError::Kafka(KafkaError::Canceled))?;
        delivered.map_err(|(err, _)| ProduceError::Kafka(err))?;
        *sent += 1;
    }
    Ok(())
}

fn write_anomalies(path: &std::path::Path, anomalies: &[Anomaly]) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for anomaly in anomalies {
        serde_json::to_writer(&mut file, anomaly)?;
        file.write_all(b"\n")?;
    }
    file.flush()
}
