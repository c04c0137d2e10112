//! Staged batches: the objects a consume writes before compaction, each
//! named by topic, partition and the offsets it holds. The metadata store
//! records which of them count (and how far each partition is consumed);
//! listing the store finds those that were written but never recorded.
//!
//! Offsets are zero-padded to 20 digits, so the names of one partition sort
//! by offset. A batch holds the records of offsets `first ..= last`.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::LogRecord;
use crate::storage::Storage;

/// The folder, under the store's prefix, that staged batches go to.
pub const STAGED: &str = "staged";

/// One line of a staged object: a record and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedLine {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The Kafka message's timestamp.
    #[serde(serialize_with = "super::rfc3339::serialize_option")]
    pub kafka_timestamp: Option<DateTime<Utc>>,
    /// The record.
    pub record: LogRecord,
}

/// One staged batch of one partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StagedBatch {
    /// The Kafka topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// Offset of its first record.
    pub first_offset: i64,
    /// Offset of its last record.
    pub last_offset: i64,
}

impl StagedBatch {
    /// Its object name under the store's prefix, e.g.
    /// `staged/topic=logs/partition=2/00000000000000000100-00000000000000000199.jsonl`.
    pub fn name(&self) -> String {
        format!(
            "{STAGED}/topic={}/partition={}/{:020}-{:020}.jsonl",
            self.topic, self.partition, self.first_offset, self.last_offset
        )
    }

    /// Reads a name made by [`StagedBatch::name`]; `None` for any other.
    pub fn parse(name: &str) -> Option<StagedBatch> {
        let rest = name.strip_prefix(STAGED)?.strip_prefix('/')?;
        let (topic, rest) = rest.strip_prefix("topic=")?.split_once('/')?;
        let (partition, file) = rest.strip_prefix("partition=")?.split_once('/')?;
        let (first, last) = file.strip_suffix(".jsonl")?.split_once('-')?;
        let batch = StagedBatch {
            topic: topic.to_owned(),
            partition: partition.parse().ok()?,
            first_offset: first.parse().ok()?,
            last_offset: last.parse().ok()?,
        };
        (batch.first_offset >= 0 && batch.first_offset <= batch.last_offset && batch.partition >= 0)
            .then_some(batch)
    }
}

/// The staged batches of `topic` in the store, by partition and offset.
/// Objects with other names are not batches and are left out.
///
/// Fails when the store cannot be listed.
pub async fn staged_batches(
    storage: &Storage,
    topic: &str,
) -> Result<Vec<StagedBatch>, object_store::Error> {
    let folder = storage.path(&format!("{STAGED}/topic={topic}"));
    let prefix = storage.prefix.to_string();
    let mut batches: Vec<StagedBatch> = storage
        .store
        .list(Some(&folder))
        .try_filter_map(|meta| {
            let location = meta.location.to_string();
            let relative = location
                .strip_prefix(&prefix)
                .unwrap_or(&location)
                .trim_start_matches('/')
                .to_owned();
            async move { Ok(StagedBatch::parse(&relative)) }
        })
        .try_collect()
        .await?;
    batches.sort_by_key(|b| (b.partition, b.first_offset, b.last_offset));
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;
    use crate::storage::open_with;

    fn batch(partition: i32, first: i64, last: i64) -> StagedBatch {
        StagedBatch {
            topic: "logs".to_owned(),
            partition,
            first_offset: first,
            last_offset: last,
        }
    }

    #[test]
    fn names_round_trip_and_sort_by_offset() {
        let a = batch(2, 100, 199);
        assert_eq!(
            a.name(),
            "staged/topic=logs/partition=2/00000000000000000100-00000000000000000199.jsonl"
        );
        assert_eq!(StagedBatch::parse(&a.name()), Some(a.clone()));
        let b = batch(2, 1000, 1099);
        assert!(a.name() < b.name(), "offset order is name order");
        for foreign in [
            "staged/topic=logs/partition=2/notes.txt",
            "staged/topic=logs/partition=x/1-2.jsonl",
            "staged/topic=logs/partition=1/9-3.jsonl",
            "logs/date=2026-01-01/hour=00/part.parquet",
        ] {
            assert_eq!(StagedBatch::parse(foreign), None, "{foreign}");
        }
    }

    #[tokio::test]
    async fn staged_batches_are_listed_from_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage =
            open_with(&format!("file://{}", dir.path().display()), &[]).expect("open store");
        for name in [
            batch(1, 0, 9).name(),
            batch(0, 10, 19).name(),
            batch(0, 0, 9).name(),
            "staged/topic=logs/partition=0/README".to_owned(),
            "staged/topic=other/partition=0/00000000000000000000-00000000000000000001.jsonl"
                .to_owned(),
        ] {
            storage
                .store
                .put(&storage.path(&name), PutPayload::from_static(b"{}"))
                .await
                .expect("put");
        }
        let listed = staged_batches(&storage, "logs").await.expect("list");
        assert_eq!(listed, [batch(0, 0, 9), batch(0, 10, 19), batch(1, 0, 9)]);
    }
}
