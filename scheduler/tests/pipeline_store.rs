//! The log pipeline's records on both backends: a batch is recorded once
//! (its progress moves by compare and set), metrics of one minute merge
//! across batches, and compaction plans each pending hour once, re-plans
//! nothing, and frees a staged batch only when every hour of it is written.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rtmas_scheduler::on_both_backends;
use rtmas_scheduler::store::{MinuteMetrics, NewBatch, QuarantinedMessage, Store, new_sketch};

on_both_backends!(
    a_batch_is_recorded_only_from_where_the_partition_stands,
    metrics_of_one_minute_merge_across_batches,
    compaction_plans_each_hour_once_and_frees_written_batches,
);

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, h, m, 0)
        .single()
        .expect("valid time")
}

fn metrics(minute: DateTime<Utc>, service: &str, info: i64, latencies: &[f64]) -> MinuteMetrics {
    let mut m = MinuteMetrics::new(minute, service.to_owned());
    m.levels[2] = info;
    let mut sketch = new_sketch();
    for l in latencies {
        sketch.add(*l);
    }
    m.latency = sketch;
    m
}

fn batch(partition: i32, first: i64, last: i64, hours: &[(DateTime<Utc>, i32)]) -> NewBatch {
    NewBatch {
        topic: "logs".to_owned(),
        partition,
        first_offset: first,
        last_offset: last,
        object: Some(format!(
            "staged/topic=logs/partition={partition}/{first:020}-{last:020}.jsonl"
        )),
        records: hours.iter().map(|(_, n)| n).sum(),
        bytes: 100,
        hours: hours.to_vec(),
        quarantined: Vec::new(),
        metrics: Vec::new(),
        templates: Vec::new(),
    }
}

async fn a_batch_is_recorded_only_from_where_the_partition_stands(store: Store) {
    let mut first = batch(0, 0, 9, &[(at(2, 0), 9)]);
    first.quarantined.push(QuarantinedMessage {
        offset: 4,
        reason: "empty message".to_owned(),
        payload: b" ".to_vec(),
        kafka_timestamp: None,
    });
    assert!(store.record_batch(&first, at(2, 1)).await.expect("record"));
    // The same offsets again (a consumer that lost a rebalance race).
    assert!(!store.record_batch(&first, at(2, 1)).await.expect("again"));
    // A batch that does not start where the partition stands.
    let skipping = batch(0, 12, 20, &[(at(2, 0), 9)]);
    assert!(!store.record_batch(&skipping, at(2, 1)).await.expect("gap"));
    let next = batch(0, 10, 19, &[(at(2, 0), 10)]);
    assert!(store.record_batch(&next, at(2, 2)).await.expect("next"));

    let offsets = store.consume_offsets("logs").await.expect("offsets");
    assert_eq!(offsets.into_iter().collect::<Vec<_>>(), [(0, 20)]);
    let batches = store.present_batches("logs").await.expect("batches");
    assert_eq!(
        batches
            .iter()
            .map(|b| (b.first_offset, b.last_offset, b.quarantined))
            .collect::<Vec<_>>(),
        [(0, 9, 1), (10, 19, 0)]
    );
    assert_eq!(store.quarantined_count("logs").await.expect("count"), 1);
    let kept = store.quarantined("logs", 10).await.expect("quarantined");
    assert_eq!(
        (
            kept[0].kafka_offset,
            kept[0].reason.as_str(),
            kept[0].payload.as_slice()
        ),
        (4, "empty message", b" ".as_slice())
    );
}

async fn metrics_of_one_minute_merge_across_batches(store: Store) {
    let minute = at(2, 5);
    let mut a = batch(0, 0, 2, &[(at(2, 0), 3)]);
    a.metrics = vec![metrics(minute, "api", 3, &[10.0, 20.0, 30.0])];
    let mut b = batch(1, 0, 1, &[(at(2, 0), 2)]);
    let mut errors = metrics(minute, "api", 0, &[1000.0, 2000.0]);
    errors.levels[4] = 2;
    b.metrics = vec![errors, metrics(minute, "web", 1, &[])];
    assert!(store.record_batch(&a, at(2, 6)).await.expect("a"));
    assert!(store.record_batch(&b, at(2, 6)).await.expect("b"));

    let rows = store
        .log_metrics(at(2, 0), at(3, 0), None)
        .await
        .expect("metrics");
    assert_eq!(rows.len(), 2);
    let api = &rows[0];
    assert_eq!((api.service.as_str(), api.total), ("api", 5));
    assert_eq!((api.info_count, api.error_count), (3, 2));
    assert!((api.error_rate() - 0.4).abs() < 1e-9);
    assert_eq!(api.latency_count, 5);
    // The median of both batches' latencies (10, 20, 30, 1000, 2000) is 30:
    // neither batch alone has it (20 and 1000).
    let p50 = api.latency_p50.expect("p50");
    assert!((p50 - 30.0).abs() <= 0.3 + 1e-9, "merged median {p50}");
    let p99 = api.latency_p99.expect("p99");
    assert!(p99 >= 990.0, "merged p99 {p99}");
    let web = &rows[1];
    assert_eq!(
        (web.service.as_str(), web.total, web.latency_count),
        ("web", 1, 0)
    );
    assert_eq!(web.latency_p50, None);
    let only_web = store
        .log_metrics(at(2, 0), at(3, 0), Some("web"))
        .await
        .expect("web metrics");
    assert_eq!(only_web.len(), 1);
}

async fn compaction_plans_each_hour_once_and_frees_written_batches(store: Store) {
    // Batch 1 spans hours 1 and 2; batch 2 is hour 2 only.
    let one = batch(0, 0, 9, &[(at(1, 0), 4), (at(2, 0), 6)]);
    let two = batch(0, 10, 14, &[(at(2, 0), 5)]);
    assert!(store.record_batch(&one, at(2, 30)).await.expect("one"));
    assert!(store.record_batch(&two, at(2, 40)).await.expect("two"));

    // Up to 02:00: hour 1 only.
    let plans = store
        .plan_compaction("logs", at(2, 0), at(3, 0))
        .await
        .expect("plan");
    assert_eq!(
        plans.iter().map(|p| p.object.as_str()).collect::<Vec<_>>(),
        ["logs/date=2026-12-04/hour=01/logs-p0-0000.parquet"]
    );
    assert_eq!(
        store.output_expected_rows(plans[0].id).await.expect("rows"),
        4
    );
    // Planned but not written: planned again as the same file.
    let again = store
        .plan_compaction("logs", at(2, 0), at(3, 0))
        .await
        .expect("plan again");
    assert_eq!(again, plans);
    store
        .output_written(plans[0].id, 4, 1000, at(3, 1))
        .await
        .expect("written");
    assert!(
        store
            .removable_batches("logs")
            .await
            .expect("removable")
            .is_empty(),
        "batch one still has hour 2 to compact"
    );

    let plans = store
        .plan_compaction("logs", at(3, 0), at(3, 5))
        .await
        .expect("plan hour 2");
    assert_eq!(plans.len(), 1);
    assert_eq!(
        store.output_expected_rows(plans[0].id).await.expect("rows"),
        11
    );
    let batches = store.output_batches(plans[0].id).await.expect("batches");
    assert_eq!(
        batches.iter().map(|b| b.first_offset).collect::<Vec<_>>(),
        [0, 10]
    );
    store
        .output_written(plans[0].id, 11, 2000, at(3, 6))
        .await
        .expect("written");
    let removable = store.removable_batches("logs").await.expect("removable");
    assert_eq!(removable.len(), 2);
    for b in &removable {
        store.batch_removed(b.id, at(3, 7)).await.expect("removed");
    }
    assert!(
        store
            .present_batches("logs")
            .await
            .expect("present")
            .is_empty()
    );

    // Late data for hour 1 becomes its next file.
    let late = batch(0, 15, 15, &[(at(1, 0), 1)]);
    assert!(store.record_batch(&late, at(3, 10)).await.expect("late"));
    let plans = store
        .plan_compaction("logs", at(4, 0), at(4, 1))
        .await
        .expect("plan late");
    assert_eq!(
        plans.iter().map(|p| p.object.as_str()).collect::<Vec<_>>(),
        ["logs/date=2026-12-04/hour=01/logs-p0-0001.parquet"]
    );
    assert!(
        store
            .plan_compaction("logs", at(4, 0) + TimeDelta::hours(1), at(4, 2))
            .await
            .expect("nothing new")
            .iter()
            .all(|p| p.id == plans[0].id),
        "only the unwritten file is planned again"
    );
    let written = store.written_outputs("logs").await.expect("written");
    assert_eq!(written.len(), 2);
}
