//! Runs, task instances, tries and logs; clearing and marking.

use axum::extract::State;
use rtmas_scheduler::store::{KeyedLogLine, Role, RunRow, TaskInstanceRow, TryRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dags::Changed;
use crate::actions;
use crate::auth::{ApiWriter, CurrentUser};
use crate::extract::{Json, Path, Query};
use crate::{AppState, WebError};

/// A run and its task instances.
#[derive(Serialize, ToSchema)]
pub struct RunDetail {
    #[schema(value_type = Object)]
    run: RunRow,
    #[schema(value_type = Vec<Object>)]
    task_instances: Vec<TaskInstanceRow>,
}

/// Get a run with its task instances.
#[utoipa::path(get, path = "/api/v1/runs/{run_pk}", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key")),
    responses((status = 200, body = RunDetail), (status = 404, description = "no such run")))]
pub async fn show(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(run_pk): Path<i64>,
) -> Result<axum::Json<RunDetail>, WebError> {
    Ok(axum::Json(RunDetail {
        run: state.store().run(run_pk).await?,
        task_instances: state.store().task_instances(run_pk).await?,
    }))
}

/// The state to mark something with.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    /// `success` or `failed`.
    state: String,
}

/// Mark a run success or failed, with its unfinished task instances
/// (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_pk}/mark", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key")),
    request_body = MarkRequest,
    responses((status = 200, body = Changed), (status = 400, description = "not success or failed"),
        (status = 403, description = "not an operator")))]
pub async fn mark(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(run_pk): Path<i64>,
    Json(request): Json<MarkRequest>,
) -> Result<axum::Json<Changed>, WebError> {
    user.require(Role::Operator)?;
    let changed = actions::mark_run(state.store(), &user, run_pk, &request.state).await?;
    Ok(axum::Json(Changed { changed }))
}

/// Clear a finished run so that its tasks run again (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_pk}/clear", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key")),
    responses((status = 200, body = Changed), (status = 409, description = "the run is not finished"),
        (status = 403, description = "not an operator")))]
pub async fn clear(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(run_pk): Path<i64>,
) -> Result<axum::Json<Changed>, WebError> {
    user.require(Role::Operator)?;
    actions::clear_run(state.store(), &user, run_pk).await?;
    Ok(axum::Json(Changed { changed: true }))
}

/// A task instance and its tries.
#[derive(Serialize, ToSchema)]
pub struct TaskDetail {
    #[schema(value_type = Object)]
    task_instance: TaskInstanceRow,
    #[schema(value_type = Vec<Object>)]
    tries: Vec<TryRow>,
}

/// Get a task instance of a run, with its tries.
#[utoipa::path(get, path = "/api/v1/runs/{run_pk}/tasks/{task_id}", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key"),
        ("task_id" = String, Path, description = "the task")),
    responses((status = 200, body = TaskDetail), (status = 404, description = "no such task instance")))]
pub async fn task(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((run_pk, task_id)): Path<(i64, String)>,
) -> Result<axum::Json<TaskDetail>, WebError> {
    let (_, ti) = actions::task_instance(state.store(), run_pk, &task_id).await?;
    Ok(axum::Json(TaskDetail {
        tries: state.store().task_tries(ti.id).await?,
        task_instance: ti,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct LogQuery {
    /// Only lines after the line with this key (0, the default, for all).
    after: Option<i64>,
    /// At most this many lines, 1 to 10000 (default 1000).
    limit: Option<i64>,
}

/// Lines of a try's log.
#[derive(Serialize, ToSchema)]
pub struct LogPage {
    #[schema(value_type = Vec<Object>)]
    lines: Vec<KeyedLogLine>,
    /// The key of the last line returned (or `after` when none): pass it as
    /// `after` to tail the log.
    last: i64,
    /// Whether the try is still running, so more lines may come.
    running: bool,
}

/// A try's log, from a line on: poll with `after` to tail it.
#[utoipa::path(get, path = "/api/v1/runs/{run_pk}/tasks/{task_id}/tries/{try_number}/log",
    tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key"),
        ("task_id" = String, Path, description = "the task"),
        ("try_number" = i32, Path, description = "the try, from 1"), LogQuery),
    responses((status = 200, body = LogPage), (status = 404, description = "no such try")))]
pub async fn log(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path((run_pk, task_id, try_number)): Path<(i64, String, i32)>,
    Query(query): Query<LogQuery>,
) -> Result<axum::Json<LogPage>, WebError> {
    let store = state.store();
    let (run, ti) = actions::task_instance(store, run_pk, &task_id).await?;
    let tries = store.task_tries(ti.id).await?;
    let this_try = tries
        .iter()
        .find(|t| t.try_number == try_number)
        .ok_or_else(|| {
            WebError::NotFound(format!(
                "task {task_id} of run {} has no try {try_number}",
                run.run_id
            ))
        })?;
    let after = query.after.unwrap_or(0).max(0);
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let lines = store
        .task_log_after(ti.id, try_number, after, limit)
        .await?;
    Ok(axum::Json(LogPage {
        last: lines.last().map(|l| l.id).unwrap_or(after),
        running: this_try.state == "running",
        lines,
    }))
}

/// What to clear.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearRequest {
    /// Clear every task after this one too.
    #[serde(default)]
    downstream: bool,
}

/// How many task instances were cleared.
#[derive(Serialize, ToSchema)]
pub struct Cleared {
    cleared: u64,
}

/// Clear a task instance so that it runs again, with its downstream when
/// asked (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_pk}/tasks/{task_id}/clear", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key"),
        ("task_id" = String, Path, description = "the task")),
    request_body = ClearRequest,
    responses((status = 200, body = Cleared), (status = 403, description = "not an operator"),
        (status = 404, description = "no such task instance")))]
pub async fn clear_task(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path((run_pk, task_id)): Path<(i64, String)>,
    Json(request): Json<ClearRequest>,
) -> Result<axum::Json<Cleared>, WebError> {
    user.require(Role::Operator)?;
    let cleared =
        actions::clear_task(state.store(), &user, run_pk, &task_id, request.downstream).await?;
    Ok(axum::Json(Cleared { cleared }))
}

/// Mark a task instance success or failed (operator).
#[utoipa::path(post, path = "/api/v1/runs/{run_pk}/tasks/{task_id}/mark", tag = "runs",
    params(("run_pk" = i64, Path, description = "the run's key"),
        ("task_id" = String, Path, description = "the task")),
    request_body = MarkRequest,
    responses((status = 200, body = Changed), (status = 400, description = "not success or failed"),
        (status = 403, description = "not an operator")))]
pub async fn mark_task(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path((run_pk, task_id)): Path<(i64, String)>,
    Json(request): Json<MarkRequest>,
) -> Result<axum::Json<Changed>, WebError> {
    user.require(Role::Operator)?;
    let changed =
        actions::mark_task(state.store(), &user, run_pk, &task_id, &request.state).await?;
    Ok(axum::Json(Changed { changed }))
}
