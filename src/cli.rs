//! The subcommands that talk to the metadata store: scheduler, worker, and
//! the `dags` and `runs` listings and actions (backfills are in
//! `backfills`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;
use rtmas_jobs::{WorkerConfig, run_worker};
use rtmas_scheduler::clock::SystemClock;
use rtmas_scheduler::dag::load_dag_folder;
use rtmas_scheduler::scheduler::{Scheduler, SchedulerConfig};
use rtmas_scheduler::store::{NewRun, RunRow, Store, StoreError};
use serde_json::json;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Check DAG files; exits 1 when any is invalid.
    Validate {
        /// The folder to check [default: the configured DAG folder].
        dir: Option<PathBuf>,
        /// Print a JSON report.
        #[arg(long)]
        json: bool,
    },
    /// List the DAGs the scheduler has synced, and files that failed to load.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a manual run of a DAG.
    Trigger {
        /// The DAG.
        dag_id: String,
        /// Run configuration, a JSON object; overrides DAG params by name.
        #[arg(long)]
        conf: Option<String>,
        /// Run id [default: manual__<now>].
        #[arg(long)]
        run_id: Option<String>,
        /// Wait for the run to finish; exit 1 when it fails.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create runs for the schedule's intervals in a past date range; the
    /// scheduler runs them.
    Backfill(crate::backfills::BackfillArgs),
    /// Stop creating and starting runs of a DAG; running runs finish.
    Pause {
        /// The DAG.
        dag_id: String,
    },
    /// Resume scheduling a paused DAG.
    Unpause {
        /// The DAG.
        dag_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List the recent runs of a DAG.
    List {
        /// The DAG.
        dag_id: String,
        /// How many runs.
        #[arg(long, default_value_t = 25)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a run and its task instances.
    Show {
        /// The run id (or the run's numeric key).
        run_id: String,
        /// The DAG, when the run id is used by several.
        #[arg(long)]
        dag: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark a run success or failed, with its unfinished task instances.
    Mark {
        /// The run id (or the run's numeric key).
        run_id: String,
        /// The state to give it.
        state: crate::operations::Outcome,
        /// The DAG, when the run id is used by several.
        #[arg(long)]
        dag: Option<String>,
    },
    /// Clear a finished run so that its tasks run again.
    Clear {
        /// The run id (or the run's numeric key).
        run_id: String,
        /// The DAG, when the run id is used by several.
        #[arg(long)]
        dag: Option<String>,
    },
}

/// Parses `--conf`: a JSON object, `{}` when absent.
pub fn parse_conf(text: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let conf: serde_json::Value = match text {
        Some(text) => serde_json::from_str(text).context("--conf is not valid JSON")?,
        None => json!({}),
    };
    anyhow::ensure!(
        conf.is_object(),
        "--conf must be a JSON object, e.g. '{{\"a\": 1}}'"
    );
    Ok(conf)
}

/// Connects to the configured database and brings its schema up to date.
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url()?;
    let store = Store::connect(url)
        .await
        .context("failed to connect to the database")?;
    store
        .migrate()
        .await
        .context("failed to migrate the database")?;
    Ok(store)
}

/// Resolves when the process is asked to stop (SIGTERM or Ctrl-C).
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler only fails outside a Tokio runtime");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stop requested");
}

pub fn scheduler_config(config: &Config) -> SchedulerConfig {
    SchedulerConfig {
        dags_dir: config.dags_dir.clone(),
        dag_sync_interval: config.scheduler.dag_sync_interval,
        poll_interval: config.scheduler.poll_interval,
        worker_timeout: config.scheduler.worker_timeout,
    }
}

pub fn worker_config(
    config: &Config,
    concurrency: Option<usize>,
    name: Option<String>,
) -> WorkerConfig {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    WorkerConfig {
        name: name.unwrap_or_else(|| format!("{hostname}-{}", std::process::id())),
        hostname,
        concurrency: concurrency.unwrap_or(config.worker.concurrency),
        grace_period: config.worker.grace_period,
        poll_interval: config.worker.poll_interval,
        heartbeat_interval: config.worker.heartbeat_interval,
    }
}

pub async fn scheduler(config: &Config) -> anyhow::Result<()> {
    let store = connect(config).await?;
    let scheduler = Scheduler::new(
        store,
        Arc::new(config.registry()?),
        Arc::new(SystemClock),
        scheduler_config(config),
    );
    scheduler
        .run(shutdown_signal())
        .await
        .context("scheduler failed")
}

pub async fn worker(
    config: &Config,
    concurrency: Option<usize>,
    name: Option<String>,
) -> anyhow::Result<()> {
    let store = connect(config).await?;
    let worker = worker_config(config, concurrency, name);
    run_worker(store, config.registry()?, worker, shutdown_signal())
        .await
        .context("worker failed")
}

pub async fn dags(config: &Config, command: DagsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DagsCommand::Validate { dir, json } => {
            let dir = dir.unwrap_or_else(|| config.dags_dir.clone());
            let folder = load_dag_folder(&dir, &config.registry()?)
                .with_context(|| format!("failed to read DAG folder {}", dir.display()))?;
            if json {
                let errors: Vec<_> = folder
                    .errors
                    .iter()
                    .flat_map(|f| &f.errors)
                    .map(|e| {
                        json!({"file": e.file, "line": e.line, "column": e.column,
                               "message": e.message, "hint": e.hint})
                    })
                    .collect();
                let dags: Vec<_> = folder.dags.iter().map(|d| &d.dag.dag_id).collect();
                println!("{}", json!({"dags": dags, "errors": errors}));
            } else {
                for dag in &folder.dags {
                    println!("ok    {} ({})", dag.dag.dag_id, dag.path.display());
                }
                for err in folder.errors.iter().flat_map(|f| &f.errors) {
                    println!("{err}");
                }
                let count: usize = folder.errors.iter().map(|f| f.errors.len()).sum();
                println!(
                    "{} DAG(s) valid, {} file(s) invalid, {count} error(s)",
                    folder.dags.len(),
                    folder.errors.len()
                );
            }
            Ok(if folder.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        DagsCommand::List { json } => {
            let store = connect(config).await?;
            let dags = store.list_dags().await?;
            let errors = store.import_errors().await?;
            if json {
                println!("{}", json!({"dags": dags, "import_errors": errors}));
            } else {
                println!(
                    "{:<28} {:<20} {:<7} {:<7} TAGS",
                    "DAG", "SCHEDULE", "PAUSED", "ACTIVE"
                );
                for dag in &dags {
                    println!(
                        "{:<28} {:<20} {:<7} {:<7} {}",
                        dag.dag_id,
                        dag.schedule.as_deref().unwrap_or("manual"),
                        dag.is_paused,
                        dag.is_active,
                        dag.tags.0.join(",")
                    );
                }
                for err in &errors {
                    println!("\nfailed to load {}:\n{}", err.fileloc, err.message);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            wait,
            json,
        } => {
            let conf = parse_conf(conf.as_deref())?;
            let store = connect(config).await?;
            let now = Utc::now();
            let mut run = NewRun::manual(&dag_id, conf, now);
            if let Some(run_id) = run_id {
                run.run_id = run_id;
            }
            let row = store.create_run(&run, now).await?;
            if !json {
                println!("created run {} of {}", row.run_id, row.dag_id);
            }
            if !wait {
                if json {
                    println!("{}", serde_json::to_string(&row)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            let finished = wait_for_run(&store, row.id).await?;
            print_run(&store, &finished, json).await?;
            Ok(
                if finished.state == rtmas_scheduler::state::RunState::Success {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        DagsCommand::Backfill(args) => crate::backfills::create(config, args).await,
        DagsCommand::Pause { dag_id } => {
            connect(config).await?.set_paused(&dag_id, true).await?;
            println!("paused {dag_id}");
            Ok(ExitCode::SUCCESS)
        }
        DagsCommand::Unpause { dag_id } => {
            connect(config).await?.set_paused(&dag_id, false).await?;
            println!("unpaused {dag_id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn wait_for_run(store: &Store, run_pk: i64) -> anyhow::Result<RunRow> {
    loop {
        let run = store.run(run_pk).await?;
        if run.state.is_finished() {
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn print_run(store: &Store, run: &RunRow, json: bool) -> anyhow::Result<()> {
    let tis = store.task_instances(run.id).await?;
    if json {
        println!("{}", json!({"run": run, "task_instances": tis}));
        return Ok(());
    }
    println!("run        {} (key {})", run.run_id, run.id);
    println!("dag        {} (version {})", run.dag_id, run.version_id);
    println!("state      {}", run.state);
    println!("logical    {}", run.logical_date.to_rfc3339());
    println!(
        "interval   {} .. {}",
        run.data_interval_start.to_rfc3339(),
        run.data_interval_end.to_rfc3339()
    );
    println!("conf       {}", run.conf);
    if let Some(at) = run.deadline_missed_at {
        println!("deadline   missed (still running at {})", at.to_rfc3339());
    }
    println!(
        "\n{:<24} {:<16} {:>5} {:>10}  ERROR",
        "TASK", "STATE", "TRY", "MS"
    );
    for ti in &tis {
        println!(
            "{:<24} {:<16} {:>5} {:>10}  {}",
            ti.task_id,
            ti.state,
            ti.try_number,
            ti.duration_ms.map(|d| d.to_string()).unwrap_or_default(),
            ti.error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn runs(config: &Config, command: RunsCommand) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    match command {
        RunsCommand::List {
            dag_id,
            limit,
            json,
        } => {
            store.dag(&dag_id).await?;
            let runs = store.list_runs(&dag_id, limit).await?;
            if json {
                println!("{}", serde_json::to_string(&runs)?);
            } else {
                println!("{:<48} {:<10} {:<10} LOGICAL DATE", "RUN", "TYPE", "STATE");
                for run in &runs {
                    println!(
                        "{:<48} {:<10} {:<10} {}",
                        run.run_id,
                        run.run_type,
                        run.state,
                        run.logical_date.to_rfc3339()
                    );
                }
            }
        }
        RunsCommand::Show { run_id, dag, json } => {
            let run = find_run(&store, &run_id, dag.as_deref()).await?;
            print_run(&store, &run, json).await?;
        }
        RunsCommand::Mark { run_id, state, dag } => {
            return crate::operations::mark_run(config, &run_id, dag.as_deref(), state).await;
        }
        RunsCommand::Clear { run_id, dag } => {
            let run = find_run(&store, &run_id, dag.as_deref()).await?;
            if store.clear_run(run.id, Utc::now()).await? {
                println!(
                    "cleared run {} of {}; it is queued again",
                    run.run_id, run.dag_id
                );
            } else {
                anyhow::bail!(
                    "run {} is {}: only finished runs can be cleared",
                    run.run_id,
                    run.state
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The run named by `run_id` (or by its numeric key), in `dag` when given.
pub async fn find_run(store: &Store, run_id: &str, dag: Option<&str>) -> anyhow::Result<RunRow> {
    let mut matches = store.runs_by_run_id(run_id).await?;
    // A bare number may also be the run's database key.
    if matches.is_empty()
        && let Ok(key) = run_id.parse::<i64>()
    {
        match store.run(key).await {
            Ok(run) => matches.push(run),
            Err(StoreError::RunNotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(dag) = dag {
        matches.retain(|r| r.dag_id == dag);
    }
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => anyhow::bail!("no run `{run_id}`"),
        _ => anyhow::bail!("run id `{run_id}` is used by several DAGs; pass --dag"),
    }
}
