//! `rtmas dags backfill` and `rtmas backfills …`: creating backfills (or
//! previewing them), following their progress, listing and cancelling
//! them. The scheduler runs a backfill's runs; these commands only ask.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rtmas_scheduler::backfill;
use rtmas_scheduler::dag::parse_start_date;
use rtmas_scheduler::store::{BackfillRow, NewBackfill, PlannedAction, Reprocess, Store};
use serde_json::json;

use crate::cli::{connect, parse_conf};
use crate::config::Config;

/// What `rtmas dags backfill` asks for.
#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// The DAG; it must have a schedule.
    dag_id: String,
    /// First logical date: RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last logical date (included): RFC 3339 or YYYY-MM-DD.
    #[arg(long)]
    to: String,
    /// Which existing runs to run again: none, failed or all.
    #[arg(long, default_value = "none")]
    reprocess: Reprocess,
    /// List the runs it would create or re-run, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run the newest date first.
    #[arg(long)]
    backwards: bool,
    /// Runs of this backfill active at once.
    #[arg(long, default_value_t = 4)]
    max_active_runs: u32,
    /// Configuration for every run, a JSON object.
    #[arg(long)]
    conf: Option<String>,
    /// Show a progress bar until every run has finished; exit 1 if any failed.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackfillsCommand {
    /// Recent backfills, newest first.
    List {
        /// Only this DAG's.
        dag_id: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 25)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A backfill and its progress.
    Show {
        /// The backfill's id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a backfill: runs not yet started are failed, running ones finish.
    Cancel {
        /// The backfill's id.
        id: i64,
    },
}

pub async fn create(config: &Config, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let new = NewBackfill {
        dag_id: args.dag_id.clone(),
        from: parse_start_date(&args.from).context("--from")?,
        to: parse_start_date(&args.to).context("--to")?,
        reprocess: args.reprocess,
        backwards: args.backwards,
        max_active_runs: args.max_active_runs,
        conf: parse_conf(args.conf.as_deref())?,
    };
    let store = connect(config).await?;
    let now = Utc::now();

    if args.dry_run {
        let plan = backfill::preview(&store, &new, now).await?;
        if args.json {
            println!("{}", json!({"dry_run": true, "runs": plan}));
        } else {
            print_plan(&plan);
            println!("dry run: nothing was created");
        }
        return Ok(ExitCode::SUCCESS);
    }

    let (row, plan) = backfill::create(&store, &new, now).await?;
    if args.json && !args.wait {
        println!("{}", json!({"backfill": row, "runs": plan}));
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        print_plan(&plan);
        println!("created backfill {} of {}", row.id, row.dag_id);
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let failed = wait_for(&store, &row, !args.json).await?;
    if args.json {
        let row = store.backfill(row.id).await?;
        let progress = store.backfill_progress(row.id).await?;
        println!("{}", json!({"backfill": row, "progress": progress}));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_plan(plan: &[rtmas_scheduler::store::PlannedRun]) {
    println!("{:<28} {:<28} ACTION", "LOGICAL DATE", "INTERVAL END");
    for run in plan {
        let action = match &run.action {
            PlannedAction::Create => "create".to_owned(),
            PlannedAction::Rerun { state, .. } => format!("re-run ({state})"),
            PlannedAction::Skip { state, .. } => format!("skip: run exists ({state})"),
        };
        println!(
            "{:<28} {:<28} {action}",
            run.interval.start.to_rfc3339(),
            run.interval.end.to_rfc3339()
        );
    }
}

/// Follows a backfill until none of its runs is queued or running; returns
/// how many failed.
async fn wait_for(store: &Store, row: &BackfillRow, show_bar: bool) -> anyhow::Result<i64> {
    let bar = if show_bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} runs {msg} [{elapsed}]")
                .context("progress bar template")?,
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    loop {
        let progress = store.backfill_progress(row.id).await?;
        bar.set_length(progress.total() as u64);
        bar.set_position(progress.done() as u64);
        bar.set_message(format!(
            "({} running, {} failed)",
            progress.running, progress.failed
        ));
        let state = store.backfill(row.id).await?.state;
        if (progress.queued + progress.running == 0 && state != "running") || state == "cancelled" {
            bar.finish();
            return Ok(progress.failed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn command(config: &Config, command: BackfillsCommand) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    match command {
        BackfillsCommand::List {
            dag_id,
            limit,
            json,
        } => {
            let rows = store.list_backfills(dag_id.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>6} {:<24} {:<10} {:<12} {:<12} PROGRESS",
                "ID", "DAG", "STATE", "FROM", "TO"
            );
            for row in &rows {
                let progress = store.backfill_progress(row.id).await?;
                println!(
                    "{:>6} {:<24} {:<10} {:<12} {:<12} {}/{}",
                    row.id,
                    row.dag_id,
                    row.state,
                    row.from_date.format("%F"),
                    row.to_date.format("%F"),
                    progress.done(),
                    progress.total()
                );
            }
        }
        BackfillsCommand::Show { id, json } => {
            let row = store.backfill(id).await?;
            let progress = store.backfill_progress(id).await?;
            if json {
                println!("{}", json!({"backfill": row, "progress": progress}));
            } else {
                println!("backfill   {} of {}", row.id, row.dag_id);
                println!("state      {}", row.state);
                println!(
                    "range      {} .. {}",
                    row.from_date.to_rfc3339(),
                    row.to_date.to_rfc3339()
                );
                println!("reprocess  {}", row.reprocess);
                println!("backwards  {}", row.backwards);
                println!("max active {}", row.max_active_runs);
                println!("conf       {}", row.conf.0);
                println!(
                    "runs       {} queued, {} running, {} success, {} failed",
                    progress.queued, progress.running, progress.success, progress.failed
                );
            }
        }
        BackfillsCommand::Cancel { id } => {
            if store.cancel_backfill(id, Utc::now()).await? {
                println!("cancelled backfill {id}");
            } else {
                println!("backfill {id} had already finished or been cancelled");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
