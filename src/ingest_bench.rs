//! `rtmas bench ingest`: how fast the log pipeline takes lines from Kafka
//! to staged objects, and staged objects to Parquet.
//!
//! Each repeat fills a topic of its own (three partitions) on the brokers
//! of `RTMAS_KAFKA_BROKERS` with simulated lines, then times
//! `kafka_consume` tries (group join, fetch, parse, staged objects in a
//! local folder, records in a fresh SQLite database) until every line is
//! durable, then one `compact` try over all of it. It also times the same
//! lines parsed, staged and counted in memory without the broker, to tell
//! the pipeline's own cost from the broker's. Figures are medians.

use std::time::{Duration, Instant};

use anyhow::Context;
use rtmas_jobs::logs::PipelineSettings;
use rtmas_jobs::logs::compact::compact_once;
use rtmas_jobs::logs::consume::{consume_once, stage_messages};
use rtmas_jobs::logs::produce::{ProduceConfig, create_topic, produce};
use rtmas_jobs::logs::simulate::Simulator;
use rtmas_scheduler::store::Store;
use serde_json::json;

use crate::config::Config;

/// One repeat's figures.
struct Repeat {
    stage_lines_per_second: f64,
    lines_per_second: f64,
    consume_seconds: f64,
    /// Of which the tries spent waiting for the group to give partitions,
    /// and reading (fetch, parse, stage) once it had.
    join_seconds: f64,
    read_seconds: f64,
    tries: usize,
    staged_mb: f64,
    compact_mb_per_second: f64,
    parquet_mb: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn ingest_bench(
    config: &Config,
    lines: u64,
    repeats: usize,
) -> anyhow::Result<serde_json::Value> {
    let mut runs = Vec::new();
    for repeat in 0..repeats {
        let run = one_repeat(config, lines, repeat).await?;
        eprintln!(
            "repeat {}: {:.0} lines/s ({} tries: join {:.2} s, read {:.2} s), \
             staging alone {:.0} lines/s, compaction {:.1} MB/s",
            repeat + 1,
            run.lines_per_second,
            run.tries,
            run.join_seconds,
            run.read_seconds,
            run.stage_lines_per_second,
            run.compact_mb_per_second
        );
        runs.push(run);
    }
    let pick = |f: fn(&Repeat) -> f64| median(runs.iter().map(f).collect());
    Ok(json!({
        "lines": lines,
        "stage_lines_per_second": pick(|r| r.stage_lines_per_second),
        "repeats": repeats,
        "lines_per_second": pick(|r| r.lines_per_second),
        "consume_seconds": pick(|r| r.consume_seconds),
        "join_seconds": pick(|r| r.join_seconds),
        "read_seconds": pick(|r| r.read_seconds),
        "tries": pick(|r| r.tries as f64),
        "staged_mb": pick(|r| r.staged_mb),
        "compact_mb_per_second": pick(|r| r.compact_mb_per_second),
        "parquet_mb": pick(|r| r.parquet_mb),
        "brokers": config.kafka_brokers,
    }))
}

async fn one_repeat(config: &Config, lines: u64, repeat: usize) -> anyhow::Result<Repeat> {
    let topic = format!("rtmas-bench-{}-{repeat}", std::process::id());
    create_topic(&config.kafka_brokers, &topic, 3)
        .await
        .context("cannot create the benchmark topic")?;
    produce(
        &ProduceConfig {
            brokers: config.kafka_brokers.clone(),
            topic: topic.clone(),
            count: Some(lines),
            duration: None,
            // Fast enough that sending is never paced.
            rate: 1e9,
            seed: repeat as u64 + 1,
            anomalies: None,
            create_partitions: None,
        },
        |_, _| {},
    )
    .await
    .context("cannot fill the benchmark topic")?;

    let dir = tempfile::tempdir().context("cannot make a temporary folder")?;
    let store = Store::connect(&format!("sqlite:{}", dir.path().join("bench.db").display()))
        .await
        .context("cannot open the benchmark database")?;
    store.migrate().await?;
    let folder = dir.path().join("store");
    let settings = PipelineSettings {
        kafka_brokers: config.kafka_brokers.clone(),
        store_url: url::Url::from_directory_path(&folder)
            .map_err(|()| anyhow::anyhow!("{} is not absolute", folder.display()))?
            .to_string(),
    };
    let quiet = |_: String| {};

    let started = Instant::now();
    let params = json!({
        "topic": topic,
        "group": "rtmas-bench",
        "max_records": lines,
        "max_bytes": 4_u64 << 30,
        "max_wait": "10s",
    });
    let mut consumed = 0;
    let (mut join_seconds, mut read_seconds, mut tries) = (0.0, 0.0, 0);
    while consumed < lines as i64 {
        let result = consume_once(&store, &settings, params.clone(), &quiet)
            .await
            .map_err(|err| anyhow::anyhow!("consume failed: {err}"))?;
        let seconds = |name: &str| result[name].as_f64().unwrap_or(0.0);
        join_seconds += seconds("join_seconds");
        read_seconds += seconds("read_seconds");
        tries += 1;
        consumed = store.consume_offsets(&topic).await?.values().sum();
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "consumed {consumed} of {lines} lines in 10 minutes"
        );
    }
    let consume_seconds = started.elapsed().as_secs_f64();
    let staged_bytes: i64 = store
        .present_batches(&topic)
        .await?
        .iter()
        .map(|b| b.bytes)
        .sum();

    let started = Instant::now();
    compact_once(
        &store,
        &settings,
        json!({"topic": topic, "until": "2100-01-01T00:00:00Z"}),
        &quiet,
    )
    .await
    .map_err(|err| anyhow::anyhow!("compaction failed: {err}"))?;
    let compact_seconds = started.elapsed().as_secs_f64();
    let parquet_bytes: i64 = store
        .written_outputs(&topic)
        .await?
        .iter()
        .filter_map(|o| o.bytes)
        .sum();
    let staged_mb = staged_bytes as f64 / 1e6;

    // The same lines without the broker: parse, stage, metrics, one core.
    let mut simulator = Simulator::new(repeat as u64 + 1, chrono::Utc::now(), 1e9, Vec::new());
    let messages: Vec<Vec<u8>> = (0..lines)
        .map_while(|_| simulator.next())
        .map(|r| serde_json::to_vec(&r).expect("a simulated record always serialises"))
        .collect();
    let started = Instant::now();
    stage_messages(&messages).map_err(|err| anyhow::anyhow!("staging failed: {err}"))?;
    let stage_lines_per_second = messages.len() as f64 / started.elapsed().as_secs_f64();

    Ok(Repeat {
        stage_lines_per_second,
        lines_per_second: lines as f64 / consume_seconds,
        consume_seconds,
        join_seconds,
        read_seconds,
        tries,
        staged_mb,
        compact_mb_per_second: staged_mb / compact_seconds,
        parquet_mb: parquet_bytes as f64 / 1e6,
    })
}
