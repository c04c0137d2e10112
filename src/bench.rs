//! `rtmas bench …`: benchmarks that print their figures. Targets live here
//! and in BENCHMARKS.md, never in timed tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use rtmas_jobs::WorkerConfig;
use rtmas_scheduler::backfill;
use rtmas_scheduler::clock::SystemClock;
use rtmas_scheduler::scheduler::{Scheduler, SchedulerConfig};
use rtmas_scheduler::store::{NewBackfill, NewRun, Reprocess, RunRow, Store};
use serde_json::json;

// Declared here, beside the command it serves, rather than in main.rs.
#[path = "web_bench.rs"]
mod web_bench;

use crate::cli::connect;
use crate::config::Config;
use crate::services::Services;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Scheduling latency and throughput with noop tasks: a chain (upstream
    /// end → downstream start, and the whole chain's time) and a wide DAG of
    /// independent tasks. Use an otherwise idle database.
    Scheduler {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Runs of each DAG; figures are medians over them.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Tasks in the chain.
        #[arg(long, default_value_t = 40)]
        chain: usize,
        /// Independent tasks in the wide DAG.
        #[arg(long, default_value_t = 1000)]
        width: usize,
        /// Worker runtimes, each with its own connection pool.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Concurrency of each worker.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Time-based scheduling: how late scheduled runs are created after
    /// their interval ends (a DAG that ticks every second), and how long a
    /// 10,000-run backfill takes to plan and create.
    Schedule {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Scheduled runs to measure the firing lag on.
        #[arg(long, default_value_t = 30)]
        ticks: usize,
        /// Runs in each backfill.
        #[arg(long, default_value_t = 10_000)]
        backfill_runs: usize,
        /// Backfills to create; the figure is their median.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
    },
    /// The log pipeline: lines per second from a pre-filled topic on the
    /// brokers of `RTMAS_KAFKA_BROKERS` to durable staged objects (consume,
    /// parse, stage, record), and compaction to Parquet in MB of staged
    /// data per second. Uses a temporary SQLite database and folder.
    Ingest {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Lines in each repeat's topic.
        #[arg(long, default_value_t = 500_000)]
        lines: u64,
        /// Repeats, each on a topic of its own; figures are medians.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// The web UI's heaviest pages: a DAG's page, run pages and job-history
    /// searches, timed in-process (request in, whole body out) with p50,
    /// p95, p99 and max. Creates a PostgreSQL database of its own, seeds it
    /// with runs and task instances, and drops it afterwards.
    Web {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// The server's admin database: the bench creates and drops its
        /// own database there.
        #[arg(
            long,
            env = "RTMAS_BENCH_DATABASE_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        admin_url: String,
        /// DAGs of ten tasks to spread the runs over.
        #[arg(long, default_value_t = 5)]
        dags: usize,
        /// Runs to seed (at least 5,000 per DAG), with a task instance per
        /// task.
        #[arg(long, default_value_t = 100_000)]
        runs: i64,
        /// Timed requests of each page.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Untimed requests of each page first.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Keep the database afterwards (its URL is printed).
        #[arg(long)]
        keep: bool,
    },
}

pub async fn run(config: &Config, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Scheduler {
            json,
            repeats,
            chain,
            width,
            workers,
            concurrency,
        } => {
            let figures = scheduler_bench(
                config,
                repeats.max(1),
                chain.max(2),
                width.max(1),
                workers.max(1),
                concurrency,
            )
            .await?;
            print_figures(&figures, json)?;
        }
        BenchCommand::Schedule {
            json,
            ticks,
            backfill_runs,
            repeats,
        } => {
            let figures =
                schedule_bench(config, ticks.max(2), backfill_runs.max(1), repeats.max(1)).await?;
            print_figures(&figures, json)?;
        }
        BenchCommand::Ingest {
            json,
            lines,
            repeats,
        } => {
            let figures =
                crate::ingest_bench::ingest_bench(config, lines.max(1), repeats.max(1)).await?;
            print_figures(&figures, json)?;
        }
        BenchCommand::Web {
            json,
            admin_url,
            dags,
            runs,
            requests,
            warmup,
            keep,
        } => {
            let options = web_bench::WebBenchOptions {
                admin_url,
                dags: dags.max(1),
                runs,
                requests: requests.max(1),
                warmup,
                keep,
            };
            let figures = web_bench::web_bench(&options).await?;
            if json {
                println!("{figures}");
            } else {
                print!("{}", web_bench::table(&figures));
            }
        }
    }
    Ok(())
}

fn print_figures(figures: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{figures}");
    } else {
        println!("{}", serde_json::to_string_pretty(figures)?);
    }
    Ok(())
}

async fn schedule_bench(
    config: &Config,
    ticks: usize,
    backfill_runs: usize,
    repeats: usize,
) -> anyhow::Result<serde_json::Value> {
    let store = connect(config).await?;
    let dags = tempfile_dir()?;
    let tag = std::process::id();
    let ticking = format!("bench_tick_{tag}");
    std::fs::write(
        dags.join("tick.yaml"),
        format!(
            "dag_id: {ticking}\nschedule: '* * * * * *'\ncatchup: false\n\
             max_active_runs: 1000\ntasks:\n  - {{id: a, kind: noop}}\n"
        ),
    )?;
    let backfilled: Vec<String> = (0..repeats)
        .map(|i| format!("bench_backfill_{tag}_{i}"))
        .collect();
    for dag_id in &backfilled {
        std::fs::write(
            dags.join(format!("{dag_id}.yaml")),
            format!(
                "dag_id: {dag_id}\nschedule: {{every: 1m}}\nstart_date: '2020-01-01'\n\
                 tasks:\n  - {{id: a, kind: noop}}\n"
            ),
        )?;
    }

    // Backfills first, on a quiet database: the time to plan and store
    // every run of the range in one transaction.
    let scheduler = synced_scheduler(&store, &dags, config).await?;
    // Paused, so the scheduler leaves the backfill runs queued.
    for dag_id in &backfilled {
        store.set_paused(dag_id, true).await?;
    }
    let from = chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")?.to_utc();
    let to = from + chrono::TimeDelta::minutes(backfill_runs as i64 - 1);
    let mut backfill_seconds = Vec::new();
    for dag_id in &backfilled {
        let new = NewBackfill {
            dag_id: dag_id.clone(),
            from,
            to,
            reprocess: Reprocess::None,
            backwards: false,
            max_active_runs: 4,
            conf: json!({}),
        };
        let started = std::time::Instant::now();
        let (_, plan) = backfill::create(&store, &new, Utc::now()).await?;
        backfill_seconds.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(
            plan.len() == backfill_runs,
            "backfill planned {} runs",
            plan.len()
        );
    }

    // Firing lag: a DAG that ticks every second, with workers running its
    // runs, as in production.
    let mut services = Services::new();
    services.spawn_scheduler(scheduler);
    let worker = WorkerConfig {
        name: format!("bench-{tag}"),
        hostname: "bench".to_owned(),
        concurrency: 8,
        grace_period: Duration::from_secs(5),
        poll_interval: config.worker.poll_interval,
        heartbeat_interval: config.worker.heartbeat_interval,
    };
    services.spawn_worker(connect(config).await?, config.registry()?, worker);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ticks as u64 * 3 + 30);
    let runs = loop {
        let runs = store.list_runs(&ticking, ticks as i64 + 1).await?;
        if runs.len() > ticks {
            break runs;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "scheduled runs are not being created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    services.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dags);

    // The first run comes from start-up, not from a tick.
    let mut lag_ms: Vec<f64> = runs[..ticks]
        .iter()
        .map(|r| {
            (r.queued_at - r.data_interval_end)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1e3
        })
        .collect();
    Ok(json!({
        "backend": store.backend_name(),
        "firing_lag_p50_ms": round(percentile(&mut lag_ms, 50.0)),
        "firing_lag_p99_ms": round(percentile(&mut lag_ms, 99.0)),
        format!("backfill{backfill_runs}_seconds"): round(percentile(&mut backfill_seconds, 50.0)),
        "samples": {
            "ticks": ticks,
            "backfill_seconds": backfill_seconds.iter().map(|v| round(*v)).collect::<Vec<_>>(),
        },
    }))
}

async fn scheduler_bench(
    config: &Config,
    repeats: usize,
    chain: usize,
    width: usize,
    workers: usize,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let store = connect(config).await?;
    let dags = tempfile_dir()?;
    let chain_id = format!("bench_chain{chain}");
    let wide_id = format!("bench_wide{width}");
    std::fs::write(dags.join("chain.yaml"), chain_dag(&chain_id, chain))?;
    std::fs::write(dags.join("wide.yaml"), wide_dag(&wide_id, width))?;

    let mut services = Services::new();
    let scheduler = synced_scheduler(&store, &dags, config).await?;
    services.spawn_scheduler(scheduler);
    for i in 0..workers {
        let worker = WorkerConfig {
            name: format!("bench-{}-{i}", std::process::id()),
            hostname: "bench".to_owned(),
            concurrency,
            grace_period: Duration::from_secs(5),
            poll_interval: config.worker.poll_interval,
            heartbeat_interval: config.worker.heartbeat_interval,
        };
        services.spawn_worker(connect(config).await?, config.registry()?, worker);
    }

    let mut latencies_ms = Vec::new();
    let mut chain_seconds = Vec::new();
    for _ in 0..repeats {
        let run = run_to_end(&store, &chain_id).await?;
        let tis = store.task_instances(run.id).await?;
        for pair in tis.windows(2) {
            if let (Some(end), Some(start)) = (pair[0].end_date, pair[1].start_date) {
                latencies_ms.push((start - end).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
        let end = run.end_date.context("finished run has an end date")?;
        chain_seconds.push((end - run.queued_at).num_milliseconds() as f64 / 1000.0);
    }
    let mut tasks_per_second = Vec::new();
    for _ in 0..repeats {
        let run = run_to_end(&store, &wide_id).await?;
        let end = store
            .task_instances(run.id)
            .await?
            .iter()
            .filter_map(|t| t.end_date)
            .max();
        let end = end.context("finished run has ended tasks")?;
        let seconds = (end - run.queued_at).num_milliseconds().max(1) as f64 / 1000.0;
        tasks_per_second.push(width as f64 / seconds);
    }

    services.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dags);

    Ok(json!({
        "backend": store.backend_name(),
        "repeats": repeats,
        "workers": workers,
        "concurrency": concurrency,
        "latency_p50_ms": round(percentile(&mut latencies_ms, 50.0)),
        "latency_p99_ms": round(percentile(&mut latencies_ms, 99.0)),
        format!("chain{chain}_seconds"): round(percentile(&mut chain_seconds, 50.0)),
        "tasks_per_second": round(percentile(&mut tasks_per_second, 50.0)),
        "samples": {
            "latency_edges": latencies_ms.len(),
            "chain_seconds": chain_seconds,
            "tasks_per_second": tasks_per_second.iter().map(|v| round(*v)).collect::<Vec<_>>(),
        },
    }))
}

async fn run_to_end(store: &Store, dag_id: &str) -> anyhow::Result<RunRow> {
    let now = Utc::now();
    let run = store
        .create_run(&NewRun::manual(dag_id, json!({}), now), now)
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let row = store.run(run.id).await?;
        if row.state.is_finished() {
            anyhow::ensure!(
                row.state == rtmas_scheduler::state::RunState::Success,
                "benchmark run {} ended {}",
                row.run_id,
                row.state
            );
            return Ok(row);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "benchmark run took over 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn chain_dag(dag_id: &str, n: usize) -> String {
    let mut yaml =
        format!("dag_id: {dag_id}\nmax_active_runs: 1\ntasks:\n  - {{id: t0, kind: noop}}\n");
    for i in 1..n {
        yaml.push_str(&format!(
            "  - {{id: t{i}, kind: noop, depends_on: [t{}]}}\n",
            i - 1
        ));
    }
    yaml
}

fn wide_dag(dag_id: &str, n: usize) -> String {
    let mut yaml = format!("dag_id: {dag_id}\nmax_active_runs: 1\ntasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
    }
    yaml
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("rtmas-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Nearest-rank percentile; sorts `values`.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A scheduler over the benchmark's DAG folder, with the folder synced; it
/// reads the folder again only after an hour.
async fn synced_scheduler(
    store: &Store,
    dags: &std::path::Path,
    config: &Config,
) -> anyhow::Result<Scheduler> {
    let mut scheduler = Scheduler::new(
        store.clone(),
        Arc::new(config.registry()?),
        Arc::new(SystemClock),
        SchedulerConfig {
            dags_dir: dags.to_owned(),
            dag_sync_interval: Duration::from_secs(3600),
            poll_interval: config.scheduler.poll_interval,
            worker_timeout: config.scheduler.worker_timeout,
        },
    );
    scheduler
        .sync_dags()
        .await
        .context("failed to sync the benchmark DAGs")?;
    Ok(scheduler)
}
