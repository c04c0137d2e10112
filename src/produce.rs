//! `rtmas produce`: simulated logs to Kafka, with progress on stderr and
//! the injected anomalies in a ground truth file.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rtmas_jobs::logs::produce::{ProduceConfig, produce};

use crate::config::Config;

/// What `rtmas produce` sends.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("amount").required(true).args(["count", "duration"]))]
pub struct ProduceArgs {
    /// The topic; it must exist unless --partitions is given.
    #[arg(long, default_value = "logs")]
    topic: String,
    /// Create the topic with this many partitions when it does not exist.
    #[arg(long)]
    partitions: Option<i32>,
    /// Send this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Send for this long, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Records per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seed of the simulation: the same seed sends the same records.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the injected anomalies to this file, one JSON object per line.
    #[arg(long)]
    anomalies: Option<PathBuf>,
}

pub async fn run(config: &Config, args: ProduceArgs) -> anyhow::Result<()> {
    let settings = ProduceConfig {
        brokers: config.kafka_brokers.clone(),
        topic: args.topic,
        count: args.count,
        duration: args.duration,
        rate: args.rate,
        seed: args.seed,
        anomalies: args.anomalies,
        create_partitions: args.partitions,
    };
    let report = produce(&settings, |sent, elapsed| {
        eprintln!(
            "sent {sent} records in {:.1} s ({:.0}/s)",
            elapsed.as_secs_f64(),
            sent as f64 / elapsed.as_secs_f64().max(1e-9)
        );
    })
    .await
    .context("failed to produce")?;
    println!(
        "sent {} records to {} in {:.2} s ({:.0} records/s); {} anomalies injected",
        report.sent,
        settings.topic,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.anomalies.len()
    );
    Ok(())
}
