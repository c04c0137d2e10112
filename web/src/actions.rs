//! The changes people make from the UI or the API, each checked and logged
//! with who made it: trigger, pause, clear and mark, backfill and cancel.

use chrono::Utc;
use rtmas_scheduler::backfill;
use rtmas_scheduler::dag::Dag;
use rtmas_scheduler::state::{RunState, TaskState, UnknownState};
use rtmas_scheduler::store::{
    BackfillRow, NewBackfill, NewRun, PlannedRun, RunRow, Store, TaskInstanceRow, TaskSpec,
};

use crate::WebError;
use crate::auth::CurrentUser;
use crate::forms::{Trigger, check_conf, check_run_id};

/// The current definition of an active DAG.
///
/// Fails with [`WebError::NotFound`] when the DAG is unknown or its file
/// is gone.
pub async fn current_dag(store: &Store, dag_id: &str) -> Result<Dag, WebError> {
    let row = store.dag(dag_id).await?;
    if !row.is_active {
        return Err(WebError::NotFound(format!(
            "DAG `{dag_id}` is no longer in the DAG folder"
        )));
    }
    Ok(store.dag_version(row.version_id).await?)
}

/// Creates a manual run of `dag` with the trigger's conf.
///
/// Fails when the conf or run id is invalid, or the run id is taken.
pub async fn trigger(
    store: &Store,
    user: &CurrentUser,
    dag: &Dag,
    trigger: Trigger,
) -> Result<RunRow, WebError> {
    let mut problems = check_conf(dag, &trigger.conf);
    if let Some(run_id) = &trigger.run_id {
        problems.extend(check_run_id(run_id));
    }
    if !problems.is_empty() {
        return Err(WebError::BadRequest(problems.join("; ")));
    }
    let now = Utc::now();
    let mut new = NewRun::manual(&dag.dag_id, trigger.conf, now);
    if let Some(run_id) = trigger.run_id {
        new.run_id = run_id;
    }
    let run = store.create_run(&new, now).await?;
    tracing::info!(user = %user.user.username, dag_id = %run.dag_id, run_id = %run.run_id, "run triggered");
    Ok(run)
}

/// Pauses or unpauses a DAG.
pub async fn set_paused(
    store: &Store,
    user: &CurrentUser,
    dag_id: &str,
    paused: bool,
) -> Result<(), WebError> {
    store.set_paused(dag_id, paused).await?;
    tracing::info!(user = %user.user.username, dag_id, paused, "DAG pause changed");
    Ok(())
}

/// The task instance of `task_id` in run `run_pk`.
pub async fn task_instance(
    store: &Store,
    run_pk: i64,
    task_id: &str,
) -> Result<(RunRow, TaskInstanceRow), WebError> {
    let run = store.run(run_pk).await?;
    let ti = store
        .task_instances(run_pk)
        .await?
        .into_iter()
        .find(|ti| ti.task_id == task_id)
        .ok_or_else(|| WebError::NotFound(format!("run {} has no task `{task_id}`", run.run_id)))?;
    Ok((run, ti))
}

/// Clears a task instance, and with `downstream` every task after it, so
/// they run again. Returns how many were cleared (queued and running ones
/// are left alone).
pub async fn clear_task(
    store: &Store,
    user: &CurrentUser,
    run_pk: i64,
    task_id: &str,
    downstream: bool,
) -> Result<u64, WebError> {
    let (run, _) = task_instance(store, run_pk, task_id).await?;
    let definition = store.dag_version(run.version_id).await?;
    let task = definition
        .task(task_id)
        .ok_or_else(|| WebError::NotFound(format!("DAG {} has no task `{task_id}`", run.dag_id)))?;
    let mut specs = vec![TaskSpec::of(&definition, task)];
    if downstream {
        specs.extend(
            definition
                .downstream_of(task_id)
                .into_iter()
                .map(|t| TaskSpec::of(&definition, t)),
        );
    }
    let cleared = store
        .clear_task_instances(run_pk, &specs, Utc::now())
        .await?;
    tracing::info!(user = %user.user.username, dag_id = %run.dag_id, run_id = %run.run_id,
        task_id, downstream, cleared, "task cleared");
    Ok(cleared)
}

/// Marks a task instance `success` or `failed` (as the form or call names
/// the state). Returns whether it changed.
///
/// Fails with [`WebError::BadRequest`] for another state.
pub async fn mark_task(
    store: &Store,
    user: &CurrentUser,
    run_pk: i64,
    task_id: &str,
    state: &str,
) -> Result<bool, WebError> {
    let state: TaskState = state
        .parse()
        .map_err(|err: UnknownState| WebError::BadRequest(err.to_string()))?;
    if !matches!(state, TaskState::Success | TaskState::Failed) {
        return Err(WebError::BadRequest(format!(
            "a task instance can be marked success or failed, not {state}"
        )));
    }
    let (run, ti) = task_instance(store, run_pk, task_id).await?;
    let changed = store.mark_task_instance(ti.id, state, Utc::now()).await?;
    tracing::info!(user = %user.user.username, dag_id = %run.dag_id, run_id = %run.run_id,
        task_id, state = %state, changed, "task marked");
    Ok(changed)
}

/// Marks a run `success` or `failed` (as the form or call names the
/// state). Returns whether it changed.
///
/// Fails with [`WebError::BadRequest`] for another state.
pub async fn mark_run(
    store: &Store,
    user: &CurrentUser,
    run_pk: i64,
    state: &str,
) -> Result<bool, WebError> {
    let state: RunState = state
        .parse()
        .map_err(|err: UnknownState| WebError::BadRequest(err.to_string()))?;
    if !state.is_finished() {
        return Err(WebError::BadRequest(format!(
            "a run can be marked success or failed, not {state}"
        )));
    }
    let run = store.run(run_pk).await?;
    let changed = store.mark_run(run_pk, state, Utc::now()).await?;
    tracing::info!(user = %user.user.username, dag_id = %run.dag_id, run_id = %run.run_id,
        state = %state, changed, "run marked");
    Ok(changed)
}

/// Clears a finished run so that all its tasks run again.
///
/// Fails with [`WebError::Conflict`] while the run is still going.
pub async fn clear_run(store: &Store, user: &CurrentUser, run_pk: i64) -> Result<(), WebError> {
    let run = store.run(run_pk).await?;
    if !store.clear_run(run_pk, Utc::now()).await? {
        return Err(WebError::Conflict(format!(
            "run {} is {}: only finished runs can be cleared",
            run.run_id, run.state
        )));
    }
    tracing::info!(user = %user.user.username, dag_id = %run.dag_id, run_id = %run.run_id, "run cleared");
    Ok(())
}

/// The runs a backfill would create or re-run; changes nothing.
pub async fn preview_backfill(
    store: &Store,
    new: &NewBackfill,
) -> Result<Vec<PlannedRun>, WebError> {
    Ok(backfill::preview(store, new, Utc::now()).await?)
}

/// Creates a backfill; the scheduler then runs it.
pub async fn create_backfill(
    store: &Store,
    user: &CurrentUser,
    new: &NewBackfill,
) -> Result<(BackfillRow, Vec<PlannedRun>), WebError> {
    let (row, plan) = backfill::create(store, new, Utc::now()).await?;
    tracing::info!(user = %user.user.username, dag_id = %row.dag_id, backfill_id = row.id,
        runs = plan.len(), "backfill created");
    Ok((row, plan))
}

/// Cancels a running backfill: its runs that have not started fail.
/// Returns whether it was running.
pub async fn cancel_backfill(store: &Store, user: &CurrentUser, id: i64) -> Result<bool, WebError> {
    store.backfill(id).await?;
    let cancelled = store.cancel_backfill(id, Utc::now()).await?;
    tracing::info!(user = %user.user.username, backfill_id = id, cancelled, "backfill cancel");
    Ok(cancelled)
}
