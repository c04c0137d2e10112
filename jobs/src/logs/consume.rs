//! The `kafka_consume` kind: one bounded micro-batch from a topic, parsed,
//! staged durably in the object store, then recorded.
//!
//! A try reads from each partition assigned to it in its consumer group,
//! starting where the metadata store says that partition's last durable
//! batch ended, until the partitions are caught up or a bound is reached
//! (records, bytes, wait). One thread polls the consumer, another parses
//! and stages. A partition's messages become batches of consecutive
//! offsets, each closed at a size bound or when reading ends. Each batch is
//! written as one staged object (named by topic, partition and offset
//! range), and only then recorded with its quarantined messages and its
//! metrics in one transaction that moves the partition's progress from the
//! batch's first offset to past its last (compare and set); batches are
//! written and recorded in offset order while reading goes on. Kafka's own
//! committed offsets are written afterwards for lag monitoring but never
//! trusted: they can only lag.
//!
//! So a crash at any point neither loses nor duplicates a line: before a
//! batch's record, the next try reads its offsets again (an object written
//! but never recorded is ignored and later deleted); after it, the next try
//! starts past them. A rebalance that hands a partition to another member
//! mid-batch leaves two consumers with the same offsets; only a batch that
//! starts at the recorded progress is recorded, and the other member drops
//! its own.
//!
//! Each try joins the group with a consumer of its own and leaves it when
//! done. A consumer kept between tries would only poll during tries, and a
//! group of such members stalls every rebalance until the next try of each:
//! partitions would sit unassigned. Joining costs a fraction of a second
//! (0.2 s in `rtmas bench ingest`), small next to the batch.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::future::BoxFuture;
use object_store::{ObjectStoreExt, PutPayload};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use rtmas_scheduler::store::{MinuteMetrics, NewBatch, QuarantinedMessage, Store, TemplateSeen};
use serde::Deserialize;
use tokio::sync::mpsc::Sender;

use super::staging::{StagedBatch, StagedLine};
use super::template::template_of;
use super::{Level, Limits, PipelineSettings, Source, parse};
use crate::registry::{JobContext, JobError, JobKind};
use crate::storage;

fn default_topic() -> String {
    "logs".to_owned()
}
fn default_group() -> String {
    "rtmas-pipeline".to_owned()
}
fn default_max_records() -> usize {
    200_000
}
fn default_max_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_max_wait() -> String {
    "2s".to_owned()
}
fn default_join_timeout() -> String {
    "30s".to_owned()
}
fn default_max_message_bytes() -> usize {
    Limits::default().max_bytes
}
fn default_max_object_bytes() -> usize {
    32 * 1024 * 1024
}

/// Params of a `kafka_consume` task.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumeParams {
    #[serde(default = "default_topic")]
    topic: String,
    #[serde(default = "default_group")]
    group: String,
    /// Most records in one try, over all partitions.
    #[serde(default = "default_max_records")]
    max_records: usize,
    /// Most message bytes in one try.
    #[serde(default = "default_max_bytes")]
    max_bytes: usize,
    /// Longest a try reads once it has partitions.
    #[serde(default = "default_max_wait")]
    max_wait: String,
    /// Longest a new consumer waits to be given partitions.
    #[serde(default = "default_join_timeout")]
    join_timeout: String,
    /// Larger messages are quarantined.
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    /// A partition's staged object is closed, written and recorded once it
    /// holds this many bytes (staged lines and quarantined messages), and
    /// the try goes on with the next.
    #[serde(default = "default_max_object_bytes")]
    max_object_bytes: usize,
}

struct Bounds {
    max_records: usize,
    max_bytes: usize,
    max_object_bytes: usize,
    max_wait: Duration,
    join_timeout: Duration,
    limits: Limits,
}

impl ConsumeParams {
    fn bounds(&self) -> Result<Bounds, String> {
        let duration = |name: &str, text: &str| {
            humantime::parse_duration(text).map_err(|err| format!("`{name}`: {err}"))
        };
        if self.max_records == 0 || self.max_bytes == 0 || self.max_object_bytes == 0 {
            return Err(
                "`max_records`, `max_bytes` and `max_object_bytes` must be at least 1".to_owned(),
            );
        }
        Ok(Bounds {
            max_records: self.max_records,
            max_bytes: self.max_bytes,
            max_object_bytes: self.max_object_bytes,
            max_wait: duration("max_wait", &self.max_wait)?,
            join_timeout: duration("join_timeout", &self.join_timeout)?,
            limits: Limits {
                max_bytes: self.max_message_bytes,
            },
        })
    }
}

/// The `kafka_consume` job kind.
pub struct KafkaConsume {
    settings: PipelineSettings,
}

impl KafkaConsume {
    /// The kind, consuming from the brokers and staging to the store of
    /// `settings`.
    pub fn new(settings: PipelineSettings) -> KafkaConsume {
        KafkaConsume { settings }
    }
}

impl JobKind for KafkaConsume {
    fn name(&self) -> &'static str {
        "kafka_consume"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<ConsumeParams>(params.clone()) {
            Ok(p) => p.bounds().err().into_iter().collect(),
            Err(err) => vec![format!("`kafka_consume` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        let settings = self.settings.clone();
        Box::pin(async move {
            let note = ctx.log.notes();
            consume_once(&ctx.store, &settings, ctx.params, &note)
                .await
                .map(Some)
        })
    }
}

/// What one try read from one partition, or a part of it: a staged object
/// to be.
#[derive(Default)]
struct PartitionBatch {
    partition: i32,
    /// The first offset the batch covers.
    first_offset: i64,
    last_offset: i64,
    staged: Vec<u8>,
    records: i32,
    hours: BTreeMap<DateTime<Utc>, i32>,
    quarantined: Vec<QuarantinedMessage>,
    /// By minute, then service: a record's service finds its entry without
    /// a copy of its name.
    metrics: BTreeMap<DateTime<Utc>, BTreeMap<String, MinuteMetrics>>,
    /// Bytes of the quarantined messages' payloads.
    quarantined_bytes: usize,
    /// The message templates of its error and fatal records, by service
    /// and template.
    templates: BTreeMap<(String, String), TemplateSeen>,
}

impl PartitionBatch {
    /// An empty batch of `partition` from `first_offset` on.
    fn starting(partition: i32, first_offset: i64) -> PartitionBatch {
        PartitionBatch {
            partition,
            first_offset,
            last_offset: first_offset - 1,
            ..PartitionBatch::default()
        }
    }

    /// The bytes it holds.
    fn size(&self) -> usize {
        self.staged.len() + self.quarantined_bytes
    }

    /// Closes the batch where it is, leaving an empty one that goes on from
    /// the offset after its last.
    fn cut(&mut self) -> PartitionBatch {
        let next = PartitionBatch::starting(self.partition, self.last_offset + 1);
        std::mem::replace(self, next)
    }

    /// Adds one message: parsed and staged, or quarantined with why.
    fn take(
        &mut self,
        partition: i32,
        offset: i64,
        payload: &[u8],
        source: &Source<'_>,
        limits: &Limits,
    ) -> Result<(), JobError> {
        self.last_offset = offset;
        match parse(payload, source, limits) {
            Ok(record) => self.add(&StagedLine {
                partition,
                offset,
                kafka_timestamp: source.kafka_timestamp,
                record,
            }),
            Err(reason) => {
                self.quarantined_bytes += payload.len();
                self.quarantined.push(QuarantinedMessage {
                    offset,
                    reason: reason.to_string(),
                    payload: payload.to_vec(),
                    kafka_timestamp: source.kafka_timestamp,
                });
                Ok(())
            }
        }
    }

    fn add(&mut self, line: &StagedLine) -> Result<(), JobError> {
        let ts = line.record.timestamp;
        let minute = ts
            .duration_trunc(TimeDelta::minutes(1))
            .map_err(|err| JobError::Failed(format!("record time {ts}: {err}")))?;
        let hour = ts
            .duration_trunc(TimeDelta::hours(1))
            .map_err(|err| JobError::Failed(format!("record time {ts}: {err}")))?;
        *self.hours.entry(hour).or_default() += 1;
        let service = &line.record.service;
        let services = self.metrics.entry(minute).or_default();
        if !services.contains_key(service) {
            services.insert(service.clone(), MinuteMetrics::new(minute, service.clone()));
        }
        let metrics = services
            .get_mut(service)
            .expect("the service's metrics were added above");
        metrics.levels[level_index(line.record.level)] += 1;
        if line.record.level.is_error() {
            let record = &line.record;
            let template = template_of(&record.message);
            let seen = self
                .templates
                .entry((service.clone(), template))
                .or_insert_with_key(|(service, template)| TemplateSeen {
                    service: service.clone(),
                    template: template.clone(),
                    example: record.message.chars().take(1000).collect(),
                    first_seen: ts,
                    last_seen: ts,
                    records: 0,
                });
            seen.first_seen = seen.first_seen.min(ts);
            seen.last_seen = seen.last_seen.max(ts);
            seen.records += 1;
        }
        if let Some(latency) = line.record.latency_ms
            && latency.is_finite()
            && latency >= 0.0
        {
            metrics.latency.add(latency);
        }
        serde_json::to_writer(&mut self.staged, line)
            .map_err(|err| JobError::Failed(format!("cannot stage a record: {err}")))?;
        self.staged.push(b'\n');
        self.records += 1;
        Ok(())
    }
}

/// What a try does with each message once read, without Kafka: parses
/// it, stages it and adds it to the metrics (or quarantines it). Returns
/// the staged bytes. For measuring the work apart from the broker.
pub fn stage_messages(messages: &[Vec<u8>]) -> Result<usize, JobError> {
    let mut batch = PartitionBatch::default();
    let limits = Limits::default();
    for (offset, payload) in messages.iter().enumerate() {
        batch.take(0, offset as i64, payload, &Source::default(), &limits)?;
    }
    Ok(batch.staged.len())
}

/// The column of a level in [`MinuteMetrics::levels`].
fn level_index(level: Level) -> usize {
    match level {
        Level::Trace => 0,
        Level::Debug => 1,
        Level::Info => 2,
        Level::Warn => 3,
        Level::Error => 4,
        Level::Fatal => 5,
        Level::Unknown => 6,
    }
}

/// How long a partition that must start at an offset may send nothing
/// before it is read again from earlier.
const SILENCE: Duration = Duration::from_millis(1500);

/// How far before a batch's first offset reading starts again the second
/// time the broker skipped it; the third time, reading starts at the
/// partition's start.
const FIRST_STEP_BACK: i64 = 10_000;

/// Whether the records read from a partition are known to start where its
/// batch must start.
struct Anchor {
    /// The broker has served the batch's first offset, or one before it.
    confirmed: bool,
    /// How far before the first offset to read again if not.
    back: i64,
    /// Whether reading started again from earlier.
    stepped: bool,
}

/// What a step back did.
enum Step {
    /// Reading starts again from earlier; the note says why.
    Seeked(String),
    /// Read from the partition's start already: what was skipped is not
    /// in the topic.
    Gap,
}

impl Anchor {
    fn new() -> Anchor {
        Anchor {
            confirmed: false,
            back: 1,
            stepped: false,
        }
    }

    /// Reads the partition again from before `start`: one offset back,
    /// then [`FIRST_STEP_BACK`], then from the partition's start. Some
    /// brokers, asked for an offset inside a stored record batch, skip to
    /// the next batch (or, in the last batch, to the end).
    fn step_back(
        &mut self,
        consumer: &LogConsumer,
        topic: &str,
        partition: i32,
        start: i64,
        answered: &str,
    ) -> Result<Step, JobError> {
        let low = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(5))
            .map(|(low, _)| low)
            .unwrap_or(0);
        if low >= start || self.back == i64::MAX {
            self.back = i64::MAX;
            return Ok(Step::Gap);
        }
        let from = (start - self.back).max(low);
        self.back = if from == low {
            i64::MAX
        } else if self.back < FIRST_STEP_BACK {
            FIRST_STEP_BACK
        } else {
            start - low
        };
        self.stepped = true;
        seek(consumer, topic, partition, from)?;
        Ok(Step::Seeked(format!(
            "partition {partition}: asked for offset {start}, the broker {answered}; \
             reading again from {from}"
        )))
    }
}

/// What a try read, by partition.
struct Polled {
    consumer: LogConsumer,
    /// What the try's log should say about how partitions were read.
    notes: Vec<String>,
    /// The partitions the group gave the try.
    assigned: BTreeSet<i32>,
    /// How long the group took to give them, and how long reading took.
    join_time: Duration,
    read_time: Duration,
    messages: usize,
    message_bytes: usize,
}

/// The consumer's context: librdkafka's own errors go to the log, except
/// end-of-partition, which is how a try knows it is caught up.
struct PipelineContext;

impl ClientContext for PipelineContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end {
            tracing::warn!(error = %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for PipelineContext {}

type LogConsumer = BaseConsumer<PipelineContext>;

fn new_consumer(brokers: &str, group: &str, topic: &str) -> Result<LogConsumer, JobError> {
    let consumer: LogConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", "10000")
        // Kafka answers a fetch at once when it has records, and waits this
        // long only when it has none (caught up, the end of a try). Some
        // brokers (Tansu) hold every answer for half of this wait or more,
        // records or not, and send at most 5 MiB per answer: at the
        // default 500 ms, reading is bound by the waits.
        .set("fetch.wait.max.ms", "10")
        // Fetching runs ahead of parsing until the client's queue is full,
        // then pauses this long; at the default second the parser runs dry
        // and waits for most of it.
        .set("fetch.queue.backoff.ms", "10")
        .create_with_context(PipelineContext)
        .map_err(|err| JobError::Failed(format!("cannot create a Kafka consumer: {err}")))?;
    consumer
        .subscribe(&[topic])
        .map_err(|err| JobError::Failed(format!("cannot subscribe to `{topic}`: {err}")))?;
    Ok(consumer)
}

fn kafka_time(message: &impl Message) -> Option<DateTime<Utc>> {
    message
        .timestamp()
        .to_millis()
        .and_then(DateTime::from_timestamp_millis)
}

/// Reads one bounded batch (blocking: run it off the async threads). One
/// thread polls the consumer while another parses and stages what it read;
/// each partition's batch goes to `staged` once it reaches its size bound,
/// and the rest when reading ends.
fn read_batch(
    consumer: LogConsumer,
    topic: &str,
    bounds: &Bounds,
    durable: &BTreeMap<i32, i64>,
    staged: Sender<PartitionBatch>,
) -> Result<Polled, JobError> {
    std::thread::scope(|scope| {
        let parser = Parser::start(scope, durable, bounds, staged)?;
        poll_batch(consumer, topic, bounds, durable, parser)
    })
}

/// Messages as read, copied out of the consumer into one buffer, on their
/// way to the parsing thread.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    messages: Vec<Packed>,
}

/// One message of a [`Chunk`]: its key and payload are ranges of the
/// chunk's bytes.
struct Packed {
    partition: i32,
    offset: i64,
    kafka_timestamp: Option<DateTime<Utc>>,
    key: Option<Range<usize>>,
    payload: Range<usize>,
}

impl Chunk {
    /// Messages per chunk, and bytes after which a chunk is full sooner.
    const MESSAGES: usize = 4096;
    const BYTES: usize = 4 << 20;

    fn push(
        &mut self,
        partition: i32,
        offset: i64,
        kafka_timestamp: Option<DateTime<Utc>>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        let mut append = |data: &[u8]| {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(data);
            start..self.bytes.len()
        };
        let key = key.map(&mut append);
        let payload = append(payload);
        self.messages.push(Packed {
            partition,
            offset,
            kafka_timestamp,
            key,
            payload,
        });
    }

    fn is_full(&self) -> bool {
        self.messages.len() >= Chunk::MESSAGES || self.bytes.len() >= Chunk::BYTES
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.messages.clear();
    }
}

/// The parsing thread of a read: takes chunks of messages, parses and
/// stages them by partition, hands the emptied chunks back for reuse, and
/// sends each partition's batch on once it is large enough, and every
/// batch when reading ends.
struct Parser<'scope> {
    full: SyncSender<Chunk>,
    empty: Receiver<Chunk>,
    thread: ScopedJoinHandle<'scope, Result<(), JobError>>,
}

impl<'scope> Parser<'scope> {
    /// Chunks on their way to the parser; with the one it parses and the one
    /// being filled, at most this many plus two are held at once.
    const QUEUED: usize = 4;

    fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        durable: &'env BTreeMap<i32, i64>,
        bounds: &'env Bounds,
        staged: Sender<PartitionBatch>,
    ) -> Result<Parser<'scope>, JobError> {
        let (full, chunks) = mpsc::sync_channel::<Chunk>(Parser::QUEUED);
        let (give_back, empty) = mpsc::sync_channel::<Chunk>(Parser::QUEUED + 2);
        let send = move |batch: PartitionBatch| {
            staged
                .blocking_send(batch)
                .map_err(|_| JobError::Failed("the staged batches' writer stopped".to_owned()))
        };
        let parse = move || {
            let mut partitions: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
            for mut chunk in chunks {
                for m in &chunk.messages {
                    let batch = partitions.entry(m.partition).or_insert_with(|| {
                        let first = durable.get(&m.partition).copied().unwrap_or(m.offset);
                        PartitionBatch::starting(m.partition, first)
                    });
                    let source = Source {
                        key: m.key.clone().map(|key| &chunk.bytes[key]),
                        kafka_timestamp: m.kafka_timestamp,
                    };
                    let payload = &chunk.bytes[m.payload.clone()];
                    batch.take(m.partition, m.offset, payload, &source, &bounds.limits)?;
                    if batch.size() >= bounds.max_object_bytes {
                        send(batch.cut())?;
                    }
                }
                chunk.clear();
                // The reader may have stopped taking chunks back; this one
                // is then dropped.
                let _ = give_back.try_send(chunk);
            }
            for batch in partitions.into_values() {
                // A batch cut at the last message read holds nothing.
                if batch.last_offset >= batch.first_offset {
                    send(batch)?;
                }
            }
            Ok(())
        };
        let thread = std::thread::Builder::new()
            .name("rtmas-parse".to_owned())
            .spawn_scoped(scope, parse)
            .map_err(|err| JobError::Failed(format!("cannot start the parsing thread: {err}")))?;
        Ok(Parser {
            full,
            empty,
            thread,
        })
    }

    /// Sends `chunk` to be parsed (when it holds anything) and leaves an
    /// empty one in its place. False when the parser has stopped.
    fn hand_over(&self, chunk: &mut Chunk) -> bool {
        if chunk.messages.is_empty() {
            return true;
        }
        let next = self.empty.try_recv().unwrap_or_default();
        self.full.send(std::mem::replace(chunk, next)).is_ok()
    }

    /// Waits for the parser to finish what it was given and send its last
    /// batches.
    fn finish(self) -> Result<(), JobError> {
        drop(self.full);
        self.thread
            .join()
            .map_err(|_| JobError::Failed("the parsing thread panicked".to_owned()))?
    }
}

/// Polls the consumer for one bounded batch, handing what it reads to
/// `parser`.
fn poll_batch(
    consumer: LogConsumer,
    topic: &str,
    bounds: &Bounds,
    durable: &BTreeMap<i32, i64>,
    parser: Parser<'_>,
) -> Result<Polled, JobError> {
    let started = Instant::now();
    let mut chunk = Chunk::default();
    let mut polled = Polled {
        consumer,
        notes: Vec::new(),
        assigned: BTreeSet::new(),
        join_time: Duration::ZERO,
        read_time: Duration::ZERO,
        messages: 0,
        message_bytes: 0,
    };
    // The partitions assigned to the consumer, and those it has read to
    // the end of since. The end is the broker's end-of-partition event,
    // not a watermark asked for at the start: some brokers report
    // watermarks that lag what they serve.
    let mut assigned: BTreeSet<i32> = BTreeSet::new();
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    let mut checked = Instant::now() - Duration::from_secs(1);
    let mut reading_since: Option<Instant> = None;
    let mut anchors: BTreeMap<i32, Anchor> = BTreeMap::new();
    // When each assigned partition last sent a record or its end.
    let mut heard: BTreeMap<i32, Instant> = BTreeMap::new();
    loop {
        if polled.messages >= bounds.max_records || polled.message_bytes >= bounds.max_bytes {
            break;
        }
        if checked.elapsed() >= Duration::from_millis(200) {
            checked = Instant::now();
            track_assignment(&polled.consumer, topic, durable, &mut assigned)?;
            polled.assigned.extend(assigned.iter().copied());
            for partition in &assigned {
                heard.entry(*partition).or_insert_with(Instant::now);
            }
            // A partition that must start at an offset and has sent nothing
            // for a while (no record, no end): some brokers go quiet when
            // asked for an offset inside their last record batch.
            for partition in &assigned {
                let Some(&start) = durable.get(partition) else {
                    continue;
                };
                let anchor = anchors.entry(*partition).or_insert_with(Anchor::new);
                if anchor.confirmed || heard.get(partition).is_none_or(|t| t.elapsed() < SILENCE) {
                    continue;
                }
                heard.insert(*partition, Instant::now());
                match anchor.step_back(
                    &polled.consumer,
                    topic,
                    *partition,
                    start,
                    "sent nothing",
                )? {
                    Step::Seeked(note) => polled.notes.push(note),
                    Step::Gap => {
                        anchor.confirmed = true;
                        at_end.insert(*partition);
                    }
                }
            }
        }
        // The wait for records starts once the group has given partitions.
        if reading_since.is_none() && !assigned.is_empty() {
            reading_since = Some(Instant::now());
            polled.join_time = started.elapsed();
        }
        let caught_up = !assigned.is_empty() && assigned.is_subset(&at_end);
        // A partition being read again from earlier gets its records before
        // the try ends, within the join timeout.
        let anchoring = anchors.values().any(|a| !a.confirmed);
        let read_long_enough = reading_since.is_some_and(|at| {
            at.elapsed() >= bounds.max_wait && (!anchoring || at.elapsed() >= bounds.join_timeout)
        });
        let never_assigned = reading_since.is_none() && started.elapsed() >= bounds.join_timeout;
        if caught_up || read_long_enough || never_assigned {
            break;
        }
        let message = match polled.consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                heard.insert(partition, Instant::now());
                if let Some(&start) = durable.get(&partition) {
                    let anchor = anchors.entry(partition).or_insert_with(Anchor::new);
                    if !anchor.confirmed {
                        // Nothing served from `start` on: caught up, or
                        // skipped (some brokers report their end, or a
                        // watermark, below records they hold). Reading
                        // from just before `start` tells which.
                        let answered = "reported the end of the partition";
                        match anchor.step_back(
                            &polled.consumer,
                            topic,
                            partition,
                            start,
                            answered,
                        )? {
                            Step::Seeked(note) => {
                                polled.notes.push(note);
                                continue;
                            }
                            Step::Gap => anchor.confirmed = true,
                        }
                    }
                }
                at_end.insert(partition);
                continue;
            }
            Some(Err(err)) => {
                return Err(JobError::Failed(format!(
                    "cannot read from `{topic}`: {err}"
                )));
            }
            Some(Ok(message)) => message,
        };
        let partition = message.partition();
        let offset = message.offset();
        heard.insert(partition, Instant::now());
        // A record means the partition's end is still ahead.
        at_end.remove(&partition);
        if let Some(&start) = durable.get(&partition) {
            let anchor = anchors.entry(partition).or_insert_with(Anchor::new);
            if offset < start {
                // Recorded already (Kafka's committed offset lags the
                // store's); the broker's stream covers `start` from here.
                if !anchor.confirmed && anchor.stepped {
                    // Read again from earlier: the wait starts over.
                    reading_since = Some(Instant::now());
                }
                anchor.confirmed = true;
                continue;
            }
            if offset > start && !anchor.confirmed {
                // The first record is past where the batch must start.
                let answered = format!("answered from {offset}");
                match anchor.step_back(&polled.consumer, topic, partition, start, &answered)? {
                    Step::Seeked(note) => {
                        polled.notes.push(note);
                        continue;
                    }
                    Step::Gap => polled.notes.push(format!(
                        "partition {partition}: offsets {start}..{offset} are not in the \
                         topic (removed by retention, or not records)"
                    )),
                }
            }
            anchor.confirmed = true;
        }
        let payload = message.payload().unwrap_or_default();
        polled.messages += 1;
        polled.message_bytes += payload.len();
        chunk.push(
            partition,
            offset,
            kafka_time(&message),
            message.key(),
            payload,
        );
        if chunk.is_full() && !parser.hand_over(&mut chunk) {
            // The parser stopped on an error, which joining it returns.
            break;
        }
    }
    parser.hand_over(&mut chunk);
    parser.finish()?;
    polled.read_time = started.elapsed().saturating_sub(polled.join_time);
    Ok(polled)
}

fn seek(consumer: &LogConsumer, topic: &str, partition: i32, to: i64) -> Result<(), JobError> {
    consumer
        .seek(topic, partition, Offset::Offset(to), Duration::from_secs(5))
        .map_err(|err| JobError::Failed(format!("cannot seek partition {partition}: {err}")))
}

/// Notes the partitions newly assigned to the consumer, moving each
/// forward to the store's progress when the consumer stands behind it.
fn track_assignment(
    consumer: &LogConsumer,
    topic: &str,
    durable: &BTreeMap<i32, i64>,
    assigned: &mut BTreeSet<i32>,
) -> Result<(), JobError> {
    let assignment = consumer
        .assignment()
        .map_err(|err| JobError::Failed(format!("cannot read the assignment: {err}")))?;
    let now: BTreeSet<i32> = assignment
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    let new: Vec<i32> = now.difference(assigned).copied().collect();
    if !new.is_empty() {
        let positions = consumer.position().ok();
        for partition in new {
            let position = positions
                .as_ref()
                .and_then(|p| p.find_partition(topic, partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            if let (Some(&start), Some(at)) = (durable.get(&partition), position)
                && at < start
            {
                // Skipping is what counts; the seek only saves reading.
                let _ = consumer.seek(
                    topic,
                    partition,
                    Offset::Offset(start),
                    Duration::from_secs(1),
                );
            }
        }
    }
    *assigned = now;
    Ok(())
}

/// Reads, stages and records one micro-batch, as a `kafka_consume` try
/// does with `params`; `note` gets the lines for the try's log. Returns
/// the try's result.
///
/// Staged objects are written and recorded, in offset order for each
/// partition, while reading goes on.
///
/// Fails when Kafka, the object store or the metadata store fails; what was
/// recorded before stays recorded.
pub async fn consume_once(
    store: &Store,
    settings: &PipelineSettings,
    params: serde_json::Value,
    note: &(dyn Fn(String) + Sync),
) -> Result<serde_json::Value, JobError> {
    let params: ConsumeParams =
        serde_json::from_value(params).map_err(|err| JobError::Params(err.to_string()))?;
    let bounds = params.bounds().map_err(JobError::Params)?;
    let storage =
        storage::open(&settings.store_url).map_err(|err| JobError::Failed(err.to_string()))?;
    let durable = store
        .consume_offsets(&params.topic)
        .await
        .map_err(|err| JobError::Failed(format!("cannot read consume progress: {err}")))?;

    let (brokers, group, topic) = (
        settings.kafka_brokers.clone(),
        params.group.clone(),
        params.topic.clone(),
    );
    let (staged, mut to_record) = tokio::sync::mpsc::channel::<PartitionBatch>(2);
    let reader = tokio::task::spawn_blocking(move || {
        let consumer = new_consumer(&brokers, &group, &topic)?;
        read_batch(consumer, &topic, &bounds, &durable, staged)
    });
    let mut recorder = Recorder {
        store,
        storage: &storage,
        topic: &params.topic,
        note,
        summary: Vec::new(),
        next_offsets: BTreeMap::new(),
    };
    let mut recorded = Ok(());
    while let Some(batch) = to_record.recv().await {
        recorded = recorder.record(batch).await;
        if recorded.is_err() {
            break;
        }
    }
    // The reader stops at its next batch when this fails.
    drop(to_record);
    let polled = reader
        .await
        .map_err(|err| JobError::Failed(format!("the batch reader stopped: {err}")))?;
    recorded?;
    let polled = polled?;
    let Recorder {
        summary,
        next_offsets,
        ..
    } = recorder;
    let mut commit = TopicPartitionList::new();
    for (partition, next) in next_offsets {
        let _ = commit.add_partition_offset(&params.topic, partition, Offset::Offset(next));
    }
    let consumer = polled.consumer;
    for line in &polled.notes {
        note(line.clone());
    }

    // Committing and leaving the group wait for the broker: off the async
    // threads.
    let committed = tokio::task::spawn_blocking(move || {
        let committed = if commit.count() > 0 {
            consumer.commit(&commit, CommitMode::Sync)
        } else {
            Ok(())
        };
        consumer.unsubscribe();
        drop(consumer);
        committed
    })
    .await
    .map_err(|err| JobError::Failed(format!("the consumer stopped: {err}")))?;
    if let Err(err) = committed {
        note(format!(
            "cannot commit offsets to Kafka (only lag monitoring reads them): {err}"
        ));
    }
    if summary.is_empty() {
        note("caught up: nothing new".to_owned());
    }
    Ok(serde_json::json!({
        "topic": params.topic,
        "assigned": polled.assigned,
        "join_seconds": polled.join_time.as_secs_f64(),
        "read_seconds": polled.read_time.as_secs_f64(),
        "messages": polled.messages,
        "bytes": polled.message_bytes,
        "batches": summary,
    }))
}

/// Writes and records a try's batches as they come, and keeps what the
/// try's result and Kafka's committed offsets say of them.
struct Recorder<'a> {
    store: &'a Store,
    storage: &'a storage::Storage,
    topic: &'a str,
    note: &'a (dyn Fn(String) + Sync),
    summary: Vec<serde_json::Value>,
    /// By partition, the offset after the last batch recorded.
    next_offsets: BTreeMap<i32, i64>,
}

impl Recorder<'_> {
    /// Writes the batch's staged object, then records the batch, its
    /// quarantined messages and metrics, unless another consumer recorded
    /// its offsets first.
    async fn record(&mut self, batch: PartitionBatch) -> Result<(), JobError> {
        let partition = batch.partition;
        let staged = StagedBatch {
            topic: self.topic.to_owned(),
            partition,
            first_offset: batch.first_offset,
            last_offset: batch.last_offset,
        };
        let object = (batch.records > 0).then(|| staged.name());
        let bytes = batch.staged.len() as i64;
        if let Some(name) = &object {
            self.storage
                .store
                .put(&self.storage.path(name), PutPayload::from(batch.staged))
                .await
                .map_err(|err| JobError::Failed(format!("cannot stage {name}: {err}")))?;
        }
        let quarantined = batch.quarantined.len();
        let new = NewBatch {
            topic: self.topic.to_owned(),
            partition,
            first_offset: batch.first_offset,
            last_offset: batch.last_offset,
            object,
            records: batch.records,
            bytes,
            hours: batch.hours.into_iter().collect(),
            quarantined: batch.quarantined,
            metrics: batch
                .metrics
                .into_values()
                .flat_map(BTreeMap::into_values)
                .collect(),
            templates: batch.templates.into_values().collect(),
        };
        let recorded = self
            .store
            .record_batch(&new, Utc::now())
            .await
            .map_err(|err| JobError::Failed(format!("cannot record the batch: {err}")))?;
        if recorded {
            (self.note)(format!(
                "partition {partition}: offsets {}..={} staged: {} records, {} quarantined",
                new.first_offset, new.last_offset, new.records, quarantined
            ));
            self.next_offsets.insert(partition, new.last_offset + 1);
        } else {
            (self.note)(format!(
                "partition {partition}: offsets {}..={} were recorded by another consumer; \
                 this batch is dropped",
                new.first_offset, new.last_offset
            ));
        }
        self.summary.push(serde_json::json!({
            "partition": partition,
            "first_offset": new.first_offset,
            "last_offset": new.last_offset,
            "records": new.records,
            "quarantined": quarantined,
            "recorded": recorded,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partition, offset, key and payload of a message.
    type Message = (i32, i64, Option<Vec<u8>>, Vec<u8>);

    /// Messages of three partitions, some of them quarantined, with keys
    /// and Kafka times.
    fn messages() -> Vec<Message> {
        let time = Utc::now();
        (0..10_000_i64)
            .map(|i| {
                let partition = (i % 3) as i32;
                let payload = match i % 7 {
                    0 => b"not \xff utf-8".to_vec(),
                    1 => format!("{{\"msg\": \"unclosed {i}\"").into_bytes(),
                    2 => format!("level=warn msg=\"slow {i}\" latency_ms={i}").into_bytes(),
                    3 => format!("level=error msg=\"disk {} full\"", i % 5).into_bytes(),
                    _ => format!(
                        "{{\"timestamp\":\"{}\",\"service\":\"s{}\",\"level\":\"info\",\
                         \"message\":\"line {i}\",\"latency_ms\":{}}}",
                        (time + TimeDelta::seconds(i)).to_rfc3339(),
                        i % 4,
                        i % 100
                    )
                    .into_bytes(),
                };
                let key = (i % 2 == 0).then(|| format!("key{}", i % 5).into_bytes());
                (partition, 100 + i / 3, key, payload)
            })
            .collect()
    }

    fn bounds(max_object_bytes: usize) -> Bounds {
        Bounds {
            max_records: usize::MAX,
            max_bytes: usize::MAX,
            max_object_bytes,
            max_wait: Duration::from_secs(1),
            join_timeout: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }

    /// The batches the parsing thread sends for `messages`, handed over in
    /// chunks of many sizes.
    fn through_parser(
        messages: &[Message],
        durable: &BTreeMap<i32, i64>,
        bounds: &Bounds,
        time: Option<DateTime<Utc>>,
    ) -> Vec<PartitionBatch> {
        let (staged, mut received) = tokio::sync::mpsc::channel(2);
        std::thread::scope(|scope| {
            let collector = scope.spawn(move || {
                let mut batches = Vec::new();
                while let Some(batch) = received.blocking_recv() {
                    batches.push(batch);
                }
                batches
            });
            let parser = Parser::start(scope, durable, bounds, staged).expect("start");
            let mut chunk = Chunk::default();
            for (i, (partition, offset, key, payload)) in messages.iter().enumerate() {
                chunk.push(*partition, *offset, time, key.as_deref(), payload);
                // The last chunk is left for `finish`.
                if (i % 97 == 0 || chunk.is_full()) && i + 1 < messages.len() {
                    assert!(parser.hand_over(&mut chunk), "the parser stopped");
                    assert!(chunk.messages.is_empty() && chunk.bytes.is_empty());
                }
            }
            assert!(parser.hand_over(&mut chunk));
            parser.finish().expect("parse");
            collector.join().expect("collector")
        })
    }

    /// What a batch holds besides its offsets, for comparing batches cut
    /// differently.
    #[derive(Debug, Default, PartialEq)]
    struct Contents {
        staged: Vec<u8>,
        records: i32,
        hours: BTreeMap<DateTime<Utc>, i32>,
        quarantined: Vec<(i64, String, Vec<u8>)>,
        levels: BTreeMap<(DateTime<Utc>, String), [i64; 7]>,
        latencies: BTreeMap<(DateTime<Utc>, String), usize>,
        /// By service and template: first and last seen, and records.
        templates: BTreeMap<(String, String), TemplateSpan>,
    }

    type TemplateSpan = (DateTime<Utc>, DateTime<Utc>, i64);

    impl Contents {
        fn add(&mut self, batch: &PartitionBatch) {
            self.staged.extend_from_slice(&batch.staged);
            self.records += batch.records;
            for (hour, n) in &batch.hours {
                *self.hours.entry(*hour).or_default() += n;
            }
            self.quarantined.extend(
                batch
                    .quarantined
                    .iter()
                    .map(|q| (q.offset, q.reason.clone(), q.payload.clone())),
            );
            for (minute, services) in &batch.metrics {
                for (service, m) in services {
                    let key = (*minute, service.clone());
                    let levels = self.levels.entry(key.clone()).or_default();
                    for (total, n) in levels.iter_mut().zip(m.levels) {
                        *total += n;
                    }
                    *self.latencies.entry(key).or_default() += m.latency.count();
                }
            }
            for (key, t) in &batch.templates {
                let entry =
                    self.templates
                        .entry(key.clone())
                        .or_insert((t.first_seen, t.last_seen, 0));
                entry.0 = entry.0.min(t.first_seen);
                entry.1 = entry.1.max(t.last_seen);
                entry.2 += t.records;
            }
        }
    }

    #[test]
    fn the_parsing_thread_stages_what_one_thread_would_in_objects_of_the_bound() {
        let messages = messages();
        let durable = BTreeMap::from([(1, 100)]);
        let limits = Limits::default();
        let time = Some(Utc::now());

        let mut expected: BTreeMap<i32, PartitionBatch> = BTreeMap::new();
        for (partition, offset, key, payload) in &messages {
            let batch = expected.entry(*partition).or_insert_with(|| {
                let first = durable.get(partition).copied().unwrap_or(*offset);
                PartitionBatch::starting(*partition, first)
            });
            let source = Source {
                key: key.as_deref(),
                kafka_timestamp: time,
            };
            batch
                .take(*partition, *offset, payload, &source, &limits)
                .expect("take");
        }

        for max_object_bytes in [usize::MAX, 64 * 1024, 1] {
            let got = through_parser(&messages, &durable, &bounds(max_object_bytes), time);
            let mut by_partition: BTreeMap<i32, Vec<&PartitionBatch>> = BTreeMap::new();
            for batch in &got {
                by_partition.entry(batch.partition).or_default().push(batch);
            }
            assert_eq!(by_partition.keys().collect::<Vec<_>>(), [&0, &1, &2]);
            for (partition, want) in &expected {
                let batches = &by_partition[partition];
                let what = format!("partition {partition}, bound {max_object_bytes}");
                // In offset order, each from the offset after the last.
                assert_eq!(batches[0].first_offset, want.first_offset, "{what}");
                assert_eq!(
                    batches.last().unwrap().last_offset,
                    want.last_offset,
                    "{what}"
                );
                for pair in batches.windows(2) {
                    assert_eq!(pair[1].first_offset, pair[0].last_offset + 1, "{what}");
                }
                for batch in batches {
                    assert!(batch.last_offset >= batch.first_offset, "{what}");
                    // Only the last can be short of the bound; none is over
                    // it by more than its last message.
                    assert!(
                        batch.size() < max_object_bytes.saturating_add(4096),
                        "{what}"
                    );
                }
                for batch in &batches[..batches.len() - 1] {
                    assert!(batch.size() >= max_object_bytes, "{what}");
                }
                match max_object_bytes {
                    usize::MAX => assert_eq!(batches.len(), 1, "{what}"),
                    1 => assert_eq!(
                        batches.len(),
                        messages.iter().filter(|m| m.0 == *partition).count(),
                        "{what}: a batch per message"
                    ),
                    _ => assert!(batches.len() > 3, "{what}: {} batches", batches.len()),
                }
                let mut have = Contents::default();
                for batch in batches {
                    have.add(batch);
                }
                let mut whole = Contents::default();
                whole.add(want);
                assert!(whole.records > 0 && !whole.quarantined.is_empty());
                assert!(!whole.templates.is_empty());
                assert_eq!(have, whole, "{what}");
            }
            assert_eq!(
                by_partition[&1][0].first_offset, 100,
                "from the durable offset"
            );
        }
    }
}
