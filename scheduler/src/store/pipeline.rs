//! The log pipeline's records: how far each partition has been consumed
//! durably, the staged batches and the hours they hold, the Parquet files
//! compaction makes of them, quarantined messages and per-minute metrics.
//!
//! A consume writes its batch to the object store first and then records
//! it here in one transaction with its progress, its quarantined messages
//! and its metrics; the progress moves only from the batch's first offset
//! (compare and set), so a batch is recorded once or not at all.
//!
//! Compaction plans before it writes: each pending hour of each staged
//! batch is assigned to exactly one planned file, whose name is fixed when
//! it is planned. Writing a planned file again gives the same name and the
//! same contents, so a compaction that dies at any point is finished by the
//! next one without losing or repeating a record.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::{Pool, Result, StoreError, on_pool};

/// Makes transactions that name the same `$key` take turns: a
/// transaction-wide advisory lock on PostgreSQL; on SQLite, whose single
/// writer serialises them already, a write that changes nothing, so the
/// transaction holds the write lock from here on rather than failing to
/// upgrade a read later.
macro_rules! serialise_on {
    ($pool:expr, $tx:ident, $key:expr) => {
        match $pool {
            Pool::Postgres(_) => {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind($key)
                    .execute(&mut *$tx)
                    .await?;
            }
            Pool::Sqlite(_) => {
                sqlx::query("DELETE FROM consume_offset WHERE 1 = 0")
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    };
}

/// A message that could not be read as a log record.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedMessage {
    /// Its offset in the partition.
    pub offset: i64,
    /// Why it was refused, e.g. `message is not valid UTF-8 (…)`.
    pub reason: String,
    /// The message exactly as it was.
    pub payload: Vec<u8>,
    /// The Kafka timestamp, when it had one.
    pub kafka_timestamp: Option<DateTime<Utc>>,
}

/// A quarantined message as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct QuarantinedRow {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub kafka_partition: i32,
    /// The offset.
    pub kafka_offset: i64,
    /// Why.
    pub reason: String,
    /// The message.
    pub payload: Vec<u8>,
    /// Its Kafka timestamp.
    pub kafka_timestamp: Option<DateTime<Utc>>,
    /// When it was quarantined.
    pub quarantined_at: DateTime<Utc>,
}

/// The number of level columns of a metric, in the order of
/// [`MinuteMetrics::levels`].
pub const LEVELS: usize = 7;

/// One minute of one service's records.
#[derive(Clone)]
pub struct MinuteMetrics {
    /// The minute, truncated.
    pub minute: DateTime<Utc>,
    /// The service.
    pub service: String,
    /// Records by level: trace, debug, info, warn, error, fatal, unknown.
    pub levels: [i64; LEVELS],
    /// The latencies of the records that had one.
    pub latency: DDSketch,
}

impl MinuteMetrics {
    /// No records yet for `service` in `minute`.
    pub fn new(minute: DateTime<Utc>, service: String) -> MinuteMetrics {
        MinuteMetrics {
            minute,
            service,
            levels: [0; LEVELS],
            latency: new_sketch(),
        }
    }

    /// Adds the counts and latencies of `other` (of the same minute and
    /// service).
    pub fn merge(&mut self, other: &MinuteMetrics) -> Result<()> {
        for (mine, theirs) in self.levels.iter_mut().zip(other.levels) {
            *mine += theirs;
        }
        self.latency
            .merge(&other.latency)
            .map_err(|err| StoreError::Corrupt(format!("latency sketch: {err}")))
    }
}

/// An empty latency sketch, with the accuracy every stored sketch has (so
/// any two merge).
pub fn new_sketch() -> DDSketch {
    DDSketch::new(SketchConfig::defaults())
}

/// A sketch as stored: JSON, or empty text for an empty sketch (whose
/// infinite bounds JSON cannot hold).
fn sketch_to_text(sketch: &DDSketch) -> Result<String> {
    if sketch.count() == 0 {
        return Ok(String::new());
    }
    serde_json::to_string(sketch)
        .map_err(|err| StoreError::Corrupt(format!("latency sketch: {err}")))
}

/// Reads a sketch stored by [`sketch_to_text`].
fn sketch_from_text(text: &str) -> Result<DDSketch> {
    if text.is_empty() {
        return Ok(new_sketch());
    }
    serde_json::from_str(text).map_err(|err| StoreError::Corrupt(format!("latency sketch: {err}")))
}

/// A stored minute of metrics.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct MetricRow {
    /// The minute.
    pub minute: DateTime<Utc>,
    /// The service.
    pub service: String,
    /// All records.
    pub total: i64,
    /// `trace` records.
    pub trace_count: i64,
    /// `debug` records.
    pub debug_count: i64,
    /// `info` records.
    pub info_count: i64,
    /// `warn` records.
    pub warn_count: i64,
    /// `error` records.
    pub error_count: i64,
    /// `fatal` records.
    pub fatal_count: i64,
    /// Records of an unknown level.
    pub unknown_count: i64,
    /// Records with a latency.
    pub latency_count: i64,
    /// Median latency, ms.
    pub latency_p50: Option<f64>,
    /// 95th percentile latency, ms.
    pub latency_p95: Option<f64>,
    /// 99th percentile latency, ms.
    pub latency_p99: Option<f64>,
}

impl MetricRow {
    /// Errors (and fatals) over all records; 0 for an empty minute.
    pub fn error_rate(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            (self.error_count + self.fatal_count) as f64 / self.total as f64
        }
    }
}

/// A consumed batch of one partition, to record once its object is stored.
#[derive(Clone)]
pub struct NewBatch {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset it covers: where the partition's progress must
    /// stand for it to be recorded.
    pub first_offset: i64,
    /// The last offset it covers.
    pub last_offset: i64,
    /// Its staged object, absent when it holds no record.
    pub object: Option<String>,
    /// Records in the object.
    pub records: i32,
    /// Size of the object.
    pub bytes: i64,
    /// Records per hour (truncated), for compaction.
    pub hours: Vec<(DateTime<Utc>, i32)>,
    /// The messages of the range that were refused.
    pub quarantined: Vec<QuarantinedMessage>,
    /// Its records' metrics.
    pub metrics: Vec<MinuteMetrics>,
    /// The message templates of its error and fatal records.
    pub templates: Vec<TemplateSeen>,
}

/// A message template: as a batch saw it (to record), or as stored (all
/// batches together).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct TemplateSeen {
    /// The service.
    pub service: String,
    /// The message with its variable words masked.
    pub template: String,
    /// One message that had it.
    pub example: String,
    /// The earliest record time that had it.
    pub first_seen: DateTime<Utc>,
    /// The latest.
    pub last_seen: DateTime<Utc>,
    /// Records that had it.
    pub records: i64,
}

/// A staged batch as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct StagedBatchRow {
    /// Store key.
    pub id: i64,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub kafka_partition: i32,
    /// First offset covered.
    pub first_offset: i64,
    /// Last offset covered.
    pub last_offset: i64,
    /// The staged object, if any.
    pub object: Option<String>,
    /// Records in it.
    pub records: i32,
    /// Quarantined messages of its range.
    pub quarantined: i32,
    /// Its size.
    pub bytes: i64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// When its object was deleted after compaction.
    pub removed_at: Option<DateTime<Utc>>,
}

/// A Parquet file compaction planned (and maybe wrote).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct OutputRow {
    /// Store key.
    pub id: i64,
    /// The topic.
    pub topic: String,
    /// The partition its records come from.
    pub kafka_partition: i32,
    /// The hour of its records.
    pub hour: DateTime<Utc>,
    /// Its place among the files of that partition and hour (late data
    /// makes more).
    pub seq: i32,
    /// Its object name.
    pub object: String,
    /// When it was planned.
    pub planned_at: DateTime<Utc>,
    /// When it was written; absent until then.
    pub written_at: Option<DateTime<Utc>>,
    /// Rows written.
    pub row_count: Option<i64>,
    /// Its size.
    pub bytes: Option<i64>,
}

/// The name of a compacted file: under `logs/`, by date and hour, named by
/// topic, partition and sequence, e.g.
/// `logs/date=2026-12-04/hour=02/logs-p0-0000.parquet`.
pub fn output_name(topic: &str, partition: i32, hour: DateTime<Utc>, seq: i32) -> String {
    format!(
        "logs/date={}/hour={}/{topic}-p{partition}-{seq:04}.parquet",
        hour.format("%Y-%m-%d"),
        hour.format("%H")
    )
}

const BATCH_COLUMNS: &str = "id, topic, kafka_partition, first_offset, last_offset, object, \
     records, quarantined, bytes, created_at, removed_at";
const OUTPUT_COLUMNS: &str = "id, topic, kafka_partition, hour, seq, object, planned_at, \
     written_at, row_count, bytes";
const METRIC_COLUMNS: &str = "minute, service, total, trace_count, debug_count, info_count, \
     warn_count, error_count, fatal_count, unknown_count, latency_count, latency_p50, \
     latency_p95, latency_p99";

/// A metric row with its sketch, read for merging.
#[derive(sqlx::FromRow)]
struct StoredCounts {
    trace_count: i64,
    debug_count: i64,
    info_count: i64,
    warn_count: i64,
    error_count: i64,
    fatal_count: i64,
    unknown_count: i64,
    latency_sketch: String,
}

impl super::Store {
    /// Where each partition of `topic` has been consumed to: the offset its
    /// next batch starts at, by partition.
    pub async fn consume_offsets(&self, topic: &str) -> Result<BTreeMap<i32, i64>> {
        let sql = "SELECT kafka_partition, next_offset FROM consume_offset WHERE topic = $1";
        let rows: Vec<(i32, i64)> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().collect())
    }

    /// Records a consumed batch whose object is stored: moves the
    /// partition's progress past it, and adds its hours, quarantined
    /// messages and metrics, all in one transaction. Returns `false`, and
    /// records nothing, when the partition's progress is not at the batch's
    /// first offset (another consumer recorded these offsets first).
    pub async fn record_batch(&self, batch: &NewBatch, now: DateTime<Utc>) -> Result<bool> {
        let next = batch.last_offset + 1;
        let recorded = in_transaction!(&self.pool, |tx| {
            let moved = sqlx::query(
                "UPDATE consume_offset SET next_offset = $1, updated_at = $2 \
                 WHERE topic = $3 AND kafka_partition = $4 AND next_offset = $5",
            )
            .bind(next)
            .bind(now)
            .bind(&batch.topic)
            .bind(batch.partition)
            .bind(batch.first_offset)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let started = moved == 0
                && sqlx::query(
                    "INSERT INTO consume_offset (topic, kafka_partition, next_offset, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(&batch.topic)
                .bind(batch.partition)
                .bind(next)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
            if moved == 0 && !started {
                return Ok(false);
            }
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO staged_batch (topic, kafka_partition, first_offset, last_offset, \
                 object, records, quarantined, bytes, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(&batch.topic)
            .bind(batch.partition)
            .bind(batch.first_offset)
            .bind(batch.last_offset)
            .bind(&batch.object)
            .bind(batch.records)
            .bind(batch.quarantined.len() as i32)
            .bind(batch.bytes)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for (hour, records) in &batch.hours {
                sqlx::query(
                    "INSERT INTO staged_hour (batch_id, hour, records) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(hour)
                .bind(records)
                .execute(&mut *tx)
                .await?;
            }
            for q in &batch.quarantined {
                sqlx::query(
                    "INSERT INTO quarantined_message (topic, kafka_partition, kafka_offset, \
                     reason, payload, kafka_timestamp, quarantined_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                )
                .bind(&batch.topic)
                .bind(batch.partition)
                .bind(q.offset)
                .bind(&q.reason)
                .bind(&q.payload)
                .bind(q.kafka_timestamp)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // Batches of other partitions may add to the same minutes at
            // the same time: their merges take turns.
            if !batch.metrics.is_empty() {
                serialise_on!(&self.pool, tx, "rtmas_log_metric");
            }
            for metrics in &batch.metrics {
                let stored: Option<StoredCounts> = sqlx::query_as(
                    "SELECT trace_count, debug_count, info_count, warn_count, error_count, \
                     fatal_count, unknown_count, latency_sketch FROM log_metric \
                     WHERE minute = $1 AND service = $2",
                )
                .bind(metrics.minute)
                .bind(&metrics.service)
                .fetch_optional(&mut *tx)
                .await?;
                let mut merged = metrics.clone();
                if let Some(stored) = stored {
                    let sketch = sketch_from_text(&stored.latency_sketch)?;
                    merged.merge(&MinuteMetrics {
                        minute: metrics.minute,
                        service: metrics.service.clone(),
                        levels: [
                            stored.trace_count,
                            stored.debug_count,
                            stored.info_count,
                            stored.warn_count,
                            stored.error_count,
                            stored.fatal_count,
                            stored.unknown_count,
                        ],
                        latency: sketch,
                    })?;
                }
                let q = |p: f64| merged.latency.quantile(p).ok().flatten();
                let sketch = sketch_to_text(&merged.latency)?;
                let l = merged.levels;
                sqlx::query(
                    "INSERT INTO log_metric (minute, service, total, trace_count, debug_count, \
                     info_count, warn_count, error_count, fatal_count, unknown_count, \
                     latency_count, latency_p50, latency_p95, latency_p99, latency_sketch, \
                     updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
                     $14, $15, $16) \
                     ON CONFLICT (minute, service) DO UPDATE SET total = excluded.total, \
                     trace_count = excluded.trace_count, debug_count = excluded.debug_count, \
                     info_count = excluded.info_count, warn_count = excluded.warn_count, \
                     error_count = excluded.error_count, fatal_count = excluded.fatal_count, \
                     unknown_count = excluded.unknown_count, \
                     latency_count = excluded.latency_count, latency_p50 = excluded.latency_p50, \
                     latency_p95 = excluded.latency_p95, latency_p99 = excluded.latency_p99, \
                     latency_sketch = excluded.latency_sketch, updated_at = excluded.updated_at",
                )
                .bind(merged.minute)
                .bind(&merged.service)
                .bind(l.iter().sum::<i64>())
                .bind(l[0])
                .bind(l[1])
                .bind(l[2])
                .bind(l[3])
                .bind(l[4])
                .bind(l[5])
                .bind(l[6])
                .bind(merged.latency.count() as i64)
                .bind(q(0.50))
                .bind(q(0.95))
                .bind(q(0.99))
                .bind(sketch)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for t in &batch.templates {
                sqlx::query(
                    "INSERT INTO log_template (service, template, example, first_seen, \
                     last_seen, records) VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (service, template) DO UPDATE SET \
                     first_seen = CASE WHEN excluded.first_seen < log_template.first_seen \
                     THEN excluded.first_seen ELSE log_template.first_seen END, \
                     last_seen = CASE WHEN excluded.last_seen > log_template.last_seen \
                     THEN excluded.last_seen ELSE log_template.last_seen END, \
                     records = log_template.records + excluded.records",
                )
                .bind(&t.service)
                .bind(&t.template)
                .bind(&t.example)
                .bind(t.first_seen)
                .bind(t.last_seen)
                .bind(t.records)
                .execute(&mut *tx)
                .await?;
            }
            true
        });
        Ok(recorded)
    }

    /// Message templates first seen in `[from, to)`, by service and
    /// template.
    pub async fn templates_first_seen(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TemplateSeen>> {
        let sql = "SELECT service, template, example, first_seen, last_seen, records \
                   FROM log_template WHERE first_seen >= $1 AND first_seen < $2 \
                   ORDER BY service, template";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?))
    }

    /// Plans the compaction of every hour before `before` that staged
    /// batches of `topic` hold records of and no file has taken yet: one
    /// file per partition and hour, named when planned. Returns every
    /// planned file of those hours not yet written, including those an
    /// earlier compaction planned and did not finish.
    pub async fn plan_compaction(
        &self,
        topic: &str,
        before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutputRow>> {
        let pending_sql = "SELECT DISTINCT b.kafka_partition, h.hour FROM staged_hour h \
             JOIN staged_batch b ON b.id = h.batch_id \
             WHERE b.topic = $1 AND h.output_id IS NULL AND h.hour < $2 \
             ORDER BY b.kafka_partition, h.hour";
        let seq_sql = "SELECT COALESCE(MAX(seq) + 1, 0) FROM compact_output \
             WHERE topic = $1 AND kafka_partition = $2 AND hour = $3";
        let plan_sql = "INSERT INTO compact_output (topic, kafka_partition, hour, seq, object, \
             planned_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
        let assign_sql = "UPDATE staged_hour SET output_id = $1 \
             WHERE output_id IS NULL AND hour = $2 AND batch_id IN \
             (SELECT id FROM staged_batch WHERE topic = $3 AND kafka_partition = $4)";
        let unwritten_sql = format!(
            "SELECT {OUTPUT_COLUMNS} FROM compact_output WHERE topic = $1 AND hour < $2 \
             AND written_at IS NULL ORDER BY hour, kafka_partition, seq"
        );
        let unwritten = sqlx::AssertSqlSafe(unwritten_sql);
        let planned = in_transaction!(&self.pool, |tx| {
            serialise_on!(&self.pool, tx, format!("rtmas_compact:{topic}"));
            let pending: Vec<(i32, DateTime<Utc>)> = sqlx::query_as(pending_sql)
                .bind(topic)
                .bind(before)
                .fetch_all(&mut *tx)
                .await?;
            for (partition, hour) in pending {
                let (seq,): (i32,) = sqlx::query_as(seq_sql)
                    .bind(topic)
                    .bind(partition)
                    .bind(hour)
                    .fetch_one(&mut *tx)
                    .await?;
                let (id,): (i64,) = sqlx::query_as(plan_sql)
                    .bind(topic)
                    .bind(partition)
                    .bind(hour)
                    .bind(seq)
                    .bind(output_name(topic, partition, hour, seq))
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query(assign_sql)
                    .bind(id)
                    .bind(hour)
                    .bind(topic)
                    .bind(partition)
                    .execute(&mut *tx)
                    .await?;
            }
            let rows: Vec<OutputRow> = sqlx::query_as(unwritten)
                .bind(topic)
                .bind(before)
                .fetch_all(&mut *tx)
                .await?;
            rows
        });
        Ok(planned)
    }

    /// The staged batches a planned file takes its records from, by offset.
    pub async fn output_batches(&self, output_id: i64) -> Result<Vec<StagedBatchRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM staged_batch WHERE id IN \
             (SELECT batch_id FROM staged_hour WHERE output_id = $1) ORDER BY first_offset"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(output_id)
            .fetch_all(pool)
            .await?))
    }

    /// How many records a planned file must hold: those its batches staged
    /// for its hour.
    pub async fn output_expected_rows(&self, output_id: i64) -> Result<i64> {
        let sql = "SELECT CAST(COALESCE(SUM(records), 0) AS BIGINT) FROM staged_hour \
                   WHERE output_id = $1";
        let (n,): (i64,) = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(output_id)
            .fetch_one(pool)
            .await?);
        Ok(n)
    }

    /// Records that a planned file is written, with its rows and size.
    pub async fn output_written(
        &self,
        output_id: i64,
        rows: i64,
        bytes: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE compact_output SET written_at = COALESCE(written_at, $1), \
                   row_count = $2, bytes = $3 WHERE id = $4";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(now)
            .bind(rows)
            .bind(bytes)
            .bind(output_id)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// Staged batches of `topic` whose object is no longer needed: every
    /// hour of it is in a written file, or it holds no record.
    pub async fn removable_batches(&self, topic: &str) -> Result<Vec<StagedBatchRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM staged_batch b WHERE topic = $1 AND removed_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM staged_hour h \
             LEFT JOIN compact_output o ON o.id = h.output_id \
             WHERE h.batch_id = b.id AND o.written_at IS NULL) ORDER BY id"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .fetch_all(pool)
            .await?))
    }

    /// Records that a staged batch's object is deleted.
    pub async fn batch_removed(&self, batch_id: i64, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE staged_batch SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(now)
            .bind(batch_id)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
    }

    /// The staged batches of `topic` whose objects are still present.
    pub async fn present_batches(&self, topic: &str) -> Result<Vec<StagedBatchRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {BATCH_COLUMNS} FROM staged_batch WHERE topic = $1 AND removed_at IS NULL \
             ORDER BY kafka_partition, first_offset"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .fetch_all(pool)
            .await?))
    }

    /// The files compaction wrote for `topic`, by hour, partition and
    /// sequence.
    pub async fn written_outputs(&self, topic: &str) -> Result<Vec<OutputRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {OUTPUT_COLUMNS} FROM compact_output WHERE topic = $1 \
             AND written_at IS NOT NULL ORDER BY hour, kafka_partition, seq"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .fetch_all(pool)
            .await?))
    }

    /// The quarantined messages of `topic`, by partition and offset, at
    /// most `limit`.
    pub async fn quarantined(&self, topic: &str, limit: i64) -> Result<Vec<QuarantinedRow>> {
        let sql = "SELECT topic, kafka_partition, kafka_offset, reason, payload, \
                   kafka_timestamp, quarantined_at FROM quarantined_message WHERE topic = $1 \
                   ORDER BY kafka_partition, kafka_offset LIMIT $2";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// How many messages of `topic` are in quarantine.
    pub async fn quarantined_count(&self, topic: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM quarantined_message WHERE topic = $1";
        let (n,): (i64,) = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(topic)
            .fetch_one(pool)
            .await?);
        Ok(n)
    }

    /// The services with metrics since `since`, sorted: the choices of the
    /// metrics page's service filter.
    pub async fn metric_services(&self, since: DateTime<Utc>) -> Result<Vec<String>> {
        let sql = "SELECT DISTINCT service FROM log_metric WHERE minute >= $1 ORDER BY service";
        let rows: Vec<(String,)> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(since)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(service,)| service).collect())
    }

    /// Per-minute metrics from `from` (inclusive) to `to` (exclusive), by
    /// minute and service; only `service`'s when given.
    pub async fn log_metrics(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        service: Option<&str>,
    ) -> Result<Vec<MetricRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {METRIC_COLUMNS} FROM log_metric WHERE minute >= $1 AND minute < $2 \
             AND (CAST($3 AS TEXT) IS NULL OR service = $3) ORDER BY minute, service"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .bind(service)
            .fetch_all(pool)
            .await?))
    }
}
