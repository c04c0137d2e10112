//! A run: its task instances with tries and durations on a time axis, its
//! conf and data interval; a task's tries and logs, tailing live while it
//! runs; clearing and marking.

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use rtmas_scheduler::store::Role;
use serde::Deserialize;
use serde_json::json;

use super::page;
use crate::actions;
use crate::auth::{CurrentUser, FormPost};
use crate::views;
use crate::{AppState, WebError};

/// Log lines a task page shows at first; its script fetches the rest.
pub const LOG_PAGE: i64 = 5000;

/// `GET /runs/{run_pk}`.
pub async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(run_pk): Path<i64>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let run = store.run(run_pk).await?;
    let tis = store.task_instances(run_pk).await?;
    let gantt = views::gantt(&tis, Utc::now());
    let backfill = match run.backfill_id {
        Some(id) => Some(store.backfill(id).await?),
        None => None,
    };
    state.templates().render(
        "run",
        &page(
            &user,
            &run.run_id,
            "dags",
            json!({
                "run": run,
                "live": !run.state.is_finished(),
                "finished": run.state.is_finished(),
                "task_instances": tis,
                "gantt": gantt,
                "backfill": backfill,
            }),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct TryQuery {
    #[serde(default, rename = "try")]
    try_number: Option<i32>,
}

/// `GET /runs/{run_pk}/tasks/{task_id}?try=N`: the task instance, its
/// tries, and the log of one try (the current one by default).
pub async fn task(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((run_pk, task_id)): Path<(i64, String)>,
    Query(query): Query<TryQuery>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let (run, ti) = actions::task_instance(store, run_pk, &task_id).await?;
    let tries = store.task_tries(ti.id).await?;
    let shown = query
        .try_number
        .or_else(|| tries.last().map(|t| t.try_number))
        .unwrap_or(0);
    let current = tries.iter().find(|t| t.try_number == shown);
    if query.try_number.is_some() && current.is_none() {
        return Err(WebError::NotFound(format!(
            "task {task_id} of run {} has no try {shown}",
            run.run_id
        )));
    }
    let lines = store.task_log_after(ti.id, shown, 0, LOG_PAGE).await?;
    // A running try is tailed; so is a long log, until its last line.
    let live = current.is_some_and(|t| t.state == "running") || lines.len() as i64 == LOG_PAGE;
    state.templates().render(
        "task",
        &page(
            &user,
            &format!("{task_id} · {}", run.run_id),
            "dags",
            json!({
                "run": run,
                "ti": ti,
                "tries": tries,
                "shown": shown,
                "current": current,
                "lines": lines,
                "last_line": lines.last().map(|l| l.id).unwrap_or(0),
                "live": live,
                "log_url": format!("/api/v1/runs/{run_pk}/tasks/{task_id}/tries/{shown}/log"),
            }),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct MarkForm {
    state: String,
}

/// `POST /runs/{run_pk}/mark` with `state=success|failed`.
pub async fn mark(
    State(state): State<AppState>,
    Path(run_pk): Path<i64>,
    post: FormPost<MarkForm>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    actions::mark_run(state.store(), &post.user, run_pk, &post.form.state).await?;
    Ok(Redirect::to(&format!("/runs/{run_pk}")).into_response())
}

/// `POST /runs/{run_pk}/clear`: runs a finished run again.
pub async fn clear(
    State(state): State<AppState>,
    Path(run_pk): Path<i64>,
    post: FormPost<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    actions::clear_run(state.store(), &post.user, run_pk).await?;
    Ok(Redirect::to(&format!("/runs/{run_pk}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ClearForm {
    #[serde(default)]
    downstream: Option<String>,
}

/// `POST /runs/{run_pk}/tasks/{task_id}/clear`, with `downstream=true` to
/// clear every task after it too.
pub async fn clear_task(
    State(state): State<AppState>,
    Path((run_pk, task_id)): Path<(i64, String)>,
    post: FormPost<ClearForm>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    let downstream = post
        .form
        .downstream
        .as_deref()
        .is_some_and(|v| v == "true" || v == "on");
    actions::clear_task(state.store(), &post.user, run_pk, &task_id, downstream).await?;
    Ok(Redirect::to(&format!("/runs/{run_pk}")).into_response())
}

/// `POST /runs/{run_pk}/tasks/{task_id}/mark` with `state=success|failed`.
pub async fn mark_task(
    State(state): State<AppState>,
    Path((run_pk, task_id)): Path<(i64, String)>,
    post: FormPost<MarkForm>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    actions::mark_task(
        state.store(),
        &post.user,
        run_pk,
        &task_id,
        &post.form.state,
    )
    .await?;
    Ok(Redirect::to(&format!("/runs/{run_pk}")).into_response())
}
