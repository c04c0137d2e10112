//! Minute metrics and message templates recorded as `kafka_consume`
//! records them, without Kafka: one batch with no staged object per call,
//! at the next offset of partition 0.

// Shared by test crates that each use part of it.
#![allow(dead_code)]

use chrono::Utc;
use rtmas_scheduler::store::{MinuteMetrics, NewBatch, Store, TemplateSeen};

/// Records `metrics` and `templates` as the batch at `offset` of topic
/// `logs`, partition 0 (offsets start at 0 and follow each other).
pub async fn record_metrics(
    store: &Store,
    offset: i64,
    metrics: Vec<MinuteMetrics>,
    templates: Vec<TemplateSeen>,
) {
    let batch = NewBatch {
        topic: "logs".to_owned(),
        partition: 0,
        first_offset: offset,
        last_offset: offset,
        object: None,
        records: 0,
        bytes: 0,
        hours: Vec::new(),
        quarantined: Vec::new(),
        metrics,
        templates,
    };
    let recorded = store
        .record_batch(&batch, Utc::now())
        .await
        .expect("record");
    assert!(recorded, "offset {offset} follows the last one recorded");
}
