//! `rtmas pools …`, `rtmas tasks …` and `rtmas runs mark`: what operators do
//! by hand to pools, task instances and runs.

use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use rtmas_scheduler::state::{RunState, TaskState};
use rtmas_scheduler::store::{Store, TaskSpec};

use crate::cli::{connect, find_run};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Pools with their slots and use.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a pool or change its slots.
    Set {
        /// The pool's name, as tasks write it in `pool:`.
        name: String,
        /// Its slots.
        slots: u32,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a pool; tasks that name it wait until it exists again.
    Delete {
        /// The pool.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Clear a task instance so it runs again (its run too, when finished).
    Clear {
        /// The run id (or the run's numeric key).
        run_id: String,
        /// The task.
        task_id: String,
        /// Clear every task downstream of it as well.
        #[arg(long)]
        downstream: bool,
        /// The DAG, when the run id is used by several.
        #[arg(long)]
        dag: Option<String>,
    },
    /// Mark a task instance success or failed; its downstream follows.
    Mark {
        /// The run id (or the run's numeric key).
        run_id: String,
        /// The task.
        task_id: String,
        /// The state to give it.
        state: Outcome,
        /// The DAG, when the run id is used by several.
        #[arg(long)]
        dag: Option<String>,
    },
}

/// A state a task instance or run can be marked with.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Outcome {
    /// Succeeded.
    Success,
    /// Failed.
    Failed,
}

pub async fn pools(config: &Config, command: PoolsCommand) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    match command {
        PoolsCommand::List { json } => {
            let pools = store.list_pools().await?;
            if json {
                println!("{}", serde_json::to_string(&pools)?);
            } else {
                println!(
                    "{:<24} {:>6} {:>7} {:>7}  DESCRIPTION",
                    "POOL", "SLOTS", "QUEUED", "RUNNING"
                );
                for pool in &pools {
                    println!(
                        "{:<24} {:>6} {:>7} {:>7}  {}",
                        pool.name,
                        pool.slots,
                        pool.queued_slots,
                        pool.running_slots,
                        pool.description.as_deref().unwrap_or("")
                    );
                }
            }
        }
        PoolsCommand::Set {
            name,
            slots,
            description,
        } => {
            store
                .set_pool(&name, slots, description.as_deref(), Utc::now())
                .await?;
            println!("pool {name} has {slots} slots");
        }
        PoolsCommand::Delete { name } => {
            store.delete_pool(&name).await?;
            println!("deleted pool {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn tasks(config: &Config, command: TasksCommand) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    match command {
        TasksCommand::Clear {
            run_id,
            task_id,
            downstream,
            dag,
        } => {
            let run = find_run(&store, &run_id, dag.as_deref()).await?;
            let definition = store.dag_version(run.version_id).await?;
            let task = definition
                .task(&task_id)
                .with_context(|| format!("DAG {} has no task `{task_id}`", run.dag_id))?;
            let mut specs = vec![TaskSpec::of(&definition, task)];
            if downstream {
                specs.extend(
                    definition
                        .downstream_of(&task_id)
                        .into_iter()
                        .map(|t| TaskSpec::of(&definition, t)),
                );
            }
            let cleared = store
                .clear_task_instances(run.id, &specs, Utc::now())
                .await?;
            println!("cleared {cleared} task instance(s) of run {}", run.run_id);
        }
        TasksCommand::Mark {
            run_id,
            task_id,
            state,
            dag,
        } => {
            let run = find_run(&store, &run_id, dag.as_deref()).await?;
            let ti = task_instance(&store, run.id, &task_id).await?;
            let state = match state {
                Outcome::Success => TaskState::Success,
                Outcome::Failed => TaskState::Failed,
            };
            if store.mark_task_instance(ti, state, Utc::now()).await? {
                println!("marked {task_id} of run {} {state}", run.run_id);
            } else {
                println!("{task_id} of run {} was {state} already", run.run_id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rtmas runs mark RUN_ID STATE`.
pub async fn mark_run(
    config: &Config,
    run_id: &str,
    dag: Option<&str>,
    state: Outcome,
) -> anyhow::Result<ExitCode> {
    let store = connect(config).await?;
    let run = find_run(&store, run_id, dag).await?;
    let state = match state {
        Outcome::Success => RunState::Success,
        Outcome::Failed => RunState::Failed,
    };
    if store.mark_run(run.id, state, Utc::now()).await? {
        println!("marked run {} {state}", run.run_id);
    } else {
        println!("run {} was {state} already", run.run_id);
    }
    Ok(ExitCode::SUCCESS)
}

async fn task_instance(store: &Store, run_pk: i64, task_id: &str) -> anyhow::Result<i64> {
    let tis = store.task_instances(run_pk).await?;
    tis.iter()
        .find(|t| t.task_id == task_id)
        .map(|t| t.id)
        .with_context(|| format!("the run has no task instance `{task_id}` (has it started?)"))
}
