//! The `compact` kind: turns staged batches into hourly Parquet files.
//!
//! A try compacts every hour that is over by its `until` time (the run's
//! `data_interval_end`): hours of the interval, and records that arrived
//! late for hours compacted before. It plans first, in the metadata store:
//! each pending hour of each staged batch goes to exactly one file, named
//! when planned (`logs/date=YYYY-MM-DD/hour=HH/{topic}-p{partition}-{seq}.parquet`;
//! late data for an hour makes its next `seq`). Then it writes each planned
//! file from its batches, sorted by time and offset, compressed with zstd,
//! and records it as written. Only then does it delete the staged objects
//! whose every hour is written.
//!
//! Writing a planned file again gives the same bytes under the same name,
//! so a try that dies anywhere is finished by the next, and re-running an
//! interval changes nothing: no record is lost or written twice.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::TryStreamExt;
use futures::future::BoxFuture;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use rtmas_scheduler::store::{OutputRow, Store};
use serde::Deserialize;

use super::PipelineSettings;
use super::staging::{STAGED, StagedBatch, StagedLine};
use crate::registry::{JobContext, JobError, JobKind};
use crate::storage::{self, Storage};

/// Rows per row group: large enough for good compression and fast scans,
/// small enough that a reader can skip by time within an hour.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

fn default_topic() -> String {
    "logs".to_owned()
}

/// Params of a `compact` task, e.g.
/// `{topic: logs, until: "{{data_interval_end}}"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompactParams {
    #[serde(default = "default_topic")]
    topic: String,
    /// Hours that end by then are compacted.
    until: String,
}

impl CompactParams {
    fn until(&self) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(&self.until)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|err| format!("`until` `{}` is not an RFC 3339 time: {err}", self.until))
    }
}

/// The `compact` job kind.
pub struct Compact {
    settings: PipelineSettings,
}

impl Compact {
    /// The kind, on the object store of `settings`.
    pub fn new(settings: PipelineSettings) -> Compact {
        Compact { settings }
    }
}

impl JobKind for Compact {
    fn name(&self) -> &'static str {
        "compact"
    }

    fn check_params(&self, params: &serde_json::Value) -> Vec<String> {
        match serde_json::from_value::<CompactParams>(params.clone()) {
            // `until` is usually a template, readable only once rendered.
            Ok(_) => Vec::new(),
            Err(err) => vec![format!("`compact` params: {err}")],
        }
    }

    fn run(
        &self,
        ctx: JobContext,
    ) -> BoxFuture<'static, Result<Option<serde_json::Value>, JobError>> {
        let settings = self.settings.clone();
        Box::pin(async move {
            let note = ctx.log.notes();
            compact_once(&ctx.store, &settings, ctx.params, &note)
                .await
                .map(Some)
        })
    }
}

fn failed(what: impl std::fmt::Display) -> JobError {
    JobError::Failed(what.to_string())
}

/// The hour a record belongs to: its timestamp, truncated.
pub fn hour_of(ts: DateTime<Utc>) -> Result<DateTime<Utc>, JobError> {
    ts.duration_trunc(TimeDelta::hours(1))
        .map_err(|err| failed(format!("record time {ts}: {err}")))
}

/// Compacts what is due, as a `compact` try does with `params`; `note`
/// gets the lines for the try's log. Returns the try's result.
///
/// Fails when the object store or the metadata store fails; files written
/// and recorded before stay so, and the next try finishes the rest.
pub async fn compact_once(
    store: &Store,
    settings: &PipelineSettings,
    params: serde_json::Value,
    note: &(dyn Fn(String) + Sync),
) -> Result<serde_json::Value, JobError> {
    let params: CompactParams =
        serde_json::from_value(params).map_err(|err| JobError::Params(err.to_string()))?;
    let until = params.until().map_err(JobError::Params)?;
    let before = hour_of(until)?;
    let storage = storage::open(&settings.store_url).map_err(failed)?;
    let topic = params.topic.as_str();

    let plans = store
        .plan_compaction(topic, before, Utc::now())
        .await
        .map_err(|err| failed(format!("cannot plan the compaction: {err}")))?;
    let mut files = Vec::new();
    let mut rows_written = 0_i64;
    for plan in &plans {
        let (rows, bytes) = write_output(store, &storage, plan).await?;
        store
            .output_written(plan.id, rows, bytes, Utc::now())
            .await
            .map_err(|err| failed(format!("cannot record {}: {err}", plan.object)))?;
        note(format!(
            "wrote {} ({rows} rows, {bytes} bytes)",
            plan.object
        ));
        rows_written += rows;
        files.push(serde_json::json!({"object": plan.object, "rows": rows, "bytes": bytes}));
    }

    let removed = remove_compacted(store, &storage, topic).await?;
    let orphans = remove_orphans(store, &storage, topic).await?;
    if removed > 0 || orphans > 0 {
        note(format!(
            "deleted {removed} compacted staged objects and {orphans} never recorded"
        ));
    }
    if plans.is_empty() {
        note(format!("nothing to compact before {before}"));
    }
    Ok(serde_json::json!({
        "topic": topic,
        "before": before,
        "files": files,
        "rows": rows_written,
        "staged_removed": removed,
        "orphans_removed": orphans,
    }))
}

/// Reads the lines of a staged object.
pub async fn read_staged(storage: &Storage, name: &str) -> Result<Vec<StagedLine>, JobError> {
    let bytes = storage
        .store
        .get(&storage.path(name))
        .await
        .map_err(|err| failed(format!("cannot read staged {name}: {err}")))?
        .bytes()
        .await
        .map_err(|err| failed(format!("cannot read staged {name}: {err}")))?;
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line)
                .map_err(|err| failed(format!("staged {name} line {}: {err}", i + 1)))
        })
        .collect()
}

/// Writes one planned file; returns its rows and bytes.
async fn write_output(
    store: &Store,
    storage: &Storage,
    plan: &OutputRow,
) -> Result<(i64, i64), JobError> {
    let batches = store
        .output_batches(plan.id)
        .await
        .map_err(|err| failed(format!("cannot read the plan of {}: {err}", plan.object)))?;
    let mut lines = Vec::new();
    for batch in &batches {
        let Some(object) = &batch.object else {
            continue;
        };
        for line in read_staged(storage, object).await? {
            if hour_of(line.record.timestamp)? == plan.hour {
                lines.push(line);
            }
        }
    }
    let expected = store
        .output_expected_rows(plan.id)
        .await
        .map_err(|err| failed(format!("cannot read the plan of {}: {err}", plan.object)))?;
    if lines.len() as i64 != expected {
        return Err(failed(format!(
            "{} should hold {expected} records but its staged batches hold {}",
            plan.object,
            lines.len()
        )));
    }
    lines.sort_by_key(|l| (l.record.timestamp, l.partition, l.offset));
    let rows = lines.len() as i64;
    let bytes = write_parquet(storage, &plan.object, &plan.topic, &lines).await?;
    Ok((rows, bytes))
}

/// The schema of compacted files. Times are microseconds since the epoch,
/// in UTC, which every common engine reads.
pub fn schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("timestamp", time.clone(), false),
        Field::new("time_source", DataType::Utf8, false),
        Field::new("service", DataType::Utf8, false),
        Field::new("host", DataType::Utf8, true),
        Field::new("level", DataType::Utf8, false),
        Field::new("level_name", DataType::Utf8, true),
        Field::new("message", DataType::Utf8, false),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("status", DataType::Int32, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, true),
        Field::new("format", DataType::Utf8, false),
        Field::new("attributes", DataType::Utf8, true),
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", time, true),
    ]))
}

fn text<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The lines as one Arrow batch of [`schema`].
pub fn to_record_batch(topic: &str, lines: &[StagedLine]) -> Result<RecordBatch, JobError> {
    let micros = |t: DateTime<Utc>| t.timestamp_micros();
    let strings = |f: &dyn Fn(&StagedLine) -> Option<String>| -> ArrayRef {
        Arc::new(lines.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                lines.iter().map(|l| micros(l.record.timestamp)),
            )
            .with_timezone("UTC"),
        ),
        strings(&|l| Some(text(&l.record.time_source))),
        strings(&|l| Some(l.record.service.clone())),
        strings(&|l| l.record.host.clone()),
        strings(&|l| Some(l.record.level.as_str().to_owned())),
        strings(&|l| l.record.level_name.clone()),
        strings(&|l| Some(l.record.message.clone())),
        Arc::new(
            lines
                .iter()
                .map(|l| l.record.latency_ms)
                .collect::<Float64Array>(),
        ),
        Arc::new(
            lines
                .iter()
                .map(|l| l.record.status.map(i32::from))
                .collect::<Int32Array>(),
        ),
        strings(&|l| l.record.trace_id.clone()),
        strings(&|l| l.record.event_id.clone()),
        strings(&|l| Some(text(&l.record.format))),
        strings(&|l| {
            (!l.record.attributes.is_empty())
                .then(|| serde_json::to_string(&l.record.attributes).unwrap_or_default())
        }),
        strings(&|_| Some(topic.to_owned())),
        Arc::new(Int32Array::from_iter_values(
            lines.iter().map(|l| l.partition),
        )),
        Arc::new(Int64Array::from_iter_values(lines.iter().map(|l| l.offset))),
        Arc::new(
            lines
                .iter()
                .map(|l| l.kafka_timestamp.map(micros))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|err| failed(format!("record batch: {err}")))
}

/// The writer settings of every compacted file: zstd, row groups of
/// [`ROW_GROUP_ROWS`], sorted by time. Fixed, so the same records always
/// give the same bytes.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a zstd level"),
        ))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(format!("rtmas {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes the lines, in order, as a Parquet file at `name`; returns its
/// size.
pub async fn write_parquet(
    storage: &Storage,
    name: &str,
    topic: &str,
    lines: &[StagedLine],
) -> Result<i64, JobError> {
    let path = storage.path(name);
    let sink = BufWriter::new(storage.store.clone(), path.clone());
    let mut writer = AsyncArrowWriter::try_new(sink, schema(), Some(properties()))
        .map_err(|err| failed(format!("cannot start {name}: {err}")))?;
    for chunk in lines.chunks(ROW_GROUP_ROWS) {
        let batch = to_record_batch(topic, chunk)?;
        writer
            .write(&batch)
            .await
            .map_err(|err| failed(format!("cannot write {name}: {err}")))?;
    }
    writer
        .close()
        .await
        .map_err(|err| failed(format!("cannot finish {name}: {err}")))?;
    let meta = storage
        .store
        .head(&path)
        .await
        .map_err(|err| failed(format!("cannot check {name}: {err}")))?;
    Ok(meta.size as i64)
}

/// Deletes the staged objects whose every hour is in a written file.
async fn remove_compacted(
    store: &Store,
    storage: &Storage,
    topic: &str,
) -> Result<usize, JobError> {
    let batches = store
        .removable_batches(topic)
        .await
        .map_err(|err| failed(format!("cannot list compacted batches: {err}")))?;
    for batch in &batches {
        if let Some(object) = &batch.object {
            delete(storage, object).await?;
        }
        store
            .batch_removed(batch.id, Utc::now())
            .await
            .map_err(|err| failed(format!("cannot record a removed batch: {err}")))?;
    }
    Ok(batches.len())
}

/// Deletes staged objects no batch record names, left by consumes that
/// died (or lost a race) before recording them. Only those the partition's
/// progress has passed are deleted: one at the progress may be about to be
/// recorded.
async fn remove_orphans(store: &Store, storage: &Storage, topic: &str) -> Result<usize, JobError> {
    let next = store
        .consume_offsets(topic)
        .await
        .map_err(|err| failed(format!("cannot read consume progress: {err}")))?;
    let present: HashSet<String> = store
        .present_batches(topic)
        .await
        .map_err(|err| failed(format!("cannot list staged batches: {err}")))?
        .into_iter()
        .filter_map(|b| b.object)
        .collect();
    let listed = list_staged(storage, topic).await?;
    let mut deleted = 0;
    for batch in listed {
        let name = batch.name();
        let passed = next
            .get(&batch.partition)
            .is_some_and(|n| batch.first_offset < *n);
        if passed && !present.contains(&name) {
            delete(storage, &name).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

async fn list_staged(storage: &Storage, topic: &str) -> Result<Vec<StagedBatch>, JobError> {
    super::staging::staged_batches(storage, topic)
        .await
        .map_err(|err| failed(format!("cannot list {STAGED}/topic={topic}: {err}")))
}

async fn delete(storage: &Storage, name: &str) -> Result<(), JobError> {
    match storage.store.delete(&storage.path(name)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(failed(format!("cannot delete {name}: {err}"))),
    }
}

/// The rows of compacted files under `logs/`, read back: for checks and
/// tests. Returns every file's path with its record batches.
pub async fn read_compacted(
    storage: &Storage,
) -> Result<BTreeMap<String, Vec<RecordBatch>>, JobError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let files: Vec<_> = storage
        .store
        .list(Some(&storage.path("logs")))
        .try_collect()
        .await
        .map_err(|err| failed(format!("cannot list logs/: {err}")))?;
    let mut out = BTreeMap::new();
    for meta in files {
        let bytes = storage
            .store
            .get(&meta.location)
            .await
            .map_err(failed)?
            .bytes()
            .await
            .map_err(failed)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .map_err(failed)?
            .build()
            .map_err(failed)?;
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(failed)?;
        out.insert(meta.location.to_string(), batches);
    }
    Ok(out)
}
