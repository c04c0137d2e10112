//! DAGs, their grid and runs, pausing, triggering and backfills.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rtmas_scheduler::store::{
    BackfillProgress, BackfillRow, DagRow, DagSource, ImportErrorRow, PlannedRun, Role, RunRow,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::actions;
use crate::auth::{ApiWriter, CurrentUser};
use crate::extract::{Json, Path, Query};
use crate::forms::{BackfillFields, Trigger};
use crate::views::{self, DagSummary, Grid, dag_summaries};
use crate::{AppState, WebError};

/// The DAGs and the files that failed to load.
#[derive(Serialize, ToSchema)]
pub struct DagList {
    dags: Vec<DagSummary>,
    #[schema(value_type = Vec<Object>)]
    import_errors: Vec<ImportErrorRow>,
}

/// List DAGs with their schedule, next run and recent runs.
#[utoipa::path(get, path = "/api/v1/dags", tag = "dags",
    responses((status = 200, body = DagList), (status = 401, description = "not signed in")))]
pub async fn list(
    State(state): State<AppState>,
    _user: CurrentUser,
) -> Result<axum::Json<DagList>, WebError> {
    Ok(axum::Json(DagList {
        dags: dag_summaries(state.store(), Utc::now()).await?,
        import_errors: state.store().import_errors().await?,
    }))
}

/// A DAG: its row, its current definition and its source.
#[derive(Serialize, ToSchema)]
pub struct DagDetail {
    #[schema(value_type = Object)]
    dag: DagRow,
    #[schema(value_type = Object)]
    definition: rtmas_scheduler::dag::Dag,
    #[schema(value_type = Object)]
    source: DagSource,
}

/// Get a DAG, its definition and its YAML source.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG")),
    responses((status = 200, body = DagDetail), (status = 404, description = "no such DAG")))]
pub async fn show(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<axum::Json<DagDetail>, WebError> {
    let store = state.store();
    let dag = store.dag(&dag_id).await?;
    Ok(axum::Json(DagDetail {
        definition: store.dag_version(dag.version_id).await?,
        source: store.dag_source(dag.version_id).await?,
        dag,
    }))
}

/// A change to a DAG.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DagUpdate {
    /// Pause (true) or unpause (false) scheduling.
    is_paused: bool,
}

/// Pause or unpause a DAG (operator).
#[utoipa::path(patch, path = "/api/v1/dags/{dag_id}", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG")),
    request_body = DagUpdate,
    responses((status = 200, description = "the DAG as it is now", body = Object),
        (status = 403, description = "not an operator"), (status = 404, description = "no such DAG")))]
pub async fn update(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(dag_id): Path<String>,
    Json(update): Json<DagUpdate>,
) -> Result<axum::Json<DagRow>, WebError> {
    user.require(Role::Operator)?;
    actions::set_paused(state.store(), &user, &dag_id, update.is_paused).await?;
    Ok(axum::Json(state.store().dag(&dag_id).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct GridQuery {
    /// How many recent runs (1 to 100, default 25).
    runs: Option<i64>,
}

/// The grid of a DAG's recent runs by its tasks.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/grid", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG"), GridQuery),
    responses((status = 200, body = Grid), (status = 404, description = "no such DAG")))]
pub async fn grid(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(query): Query<GridQuery>,
) -> Result<axum::Json<Grid>, WebError> {
    let store = state.store();
    let dag_row = store.dag(&dag_id).await?;
    let dag = store.dag_version(dag_row.version_id).await?;
    let (runs, tis) = store
        .grid(&dag_id, query.runs.unwrap_or(25).clamp(1, 100))
        .await?;
    Ok(axum::Json(views::grid(&dag, runs, tis)))
}

#[derive(Deserialize, IntoParams)]
pub struct RunsQuery {
    /// Only runs in this state: queued, running, success or failed.
    state: Option<String>,
    /// Only runs of this type: manual, scheduled or backfill.
    run_type: Option<String>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// A page of runs.
#[derive(Serialize, ToSchema)]
pub struct RunPage {
    #[schema(value_type = Vec<Object>)]
    runs: Vec<RunRow>,
    /// Pass as `before` for the next page; absent on the last.
    next: Option<String>,
}

/// A DAG's runs, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/v1/dags/{dag_id}/runs", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG"), RunsQuery),
    responses((status = 200, body = RunPage), (status = 400, description = "bad filter")))]
pub async fn runs(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<axum::Json<RunPage>, WebError> {
    let limit = query.limit.unwrap_or(50).clamp(1, 500);
    state.store().dag(&dag_id).await?;
    let filter = crate::forms::run_filter(
        &dag_id,
        &crate::forms::RunsQuery {
            state: query.state,
            run_type: query.run_type,
            before: query.before,
        },
        limit,
    )?;
    let runs = state.store().search_runs(&filter).await?;
    let next = (runs.len() as i64 == limit)
        .then(|| runs.last())
        .flatten()
        .map(|r| format!("{},{}", r.logical_date.to_rfc3339(), r.id));
    Ok(axum::Json(RunPage { runs, next }))
}

/// A manual run to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// The run's conf, a JSON object; keys that name DAG params must keep
    /// their kind.
    #[serde(default)]
    #[schema(value_type = Object)]
    conf: Option<serde_json::Value>,
    /// The run id [default: manual__<now>].
    #[serde(default)]
    run_id: Option<String>,
}

/// Trigger a manual run (operator).
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/runs", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG")),
    request_body = TriggerRequest,
    responses((status = 201, description = "the run", body = Object),
        (status = 400, description = "invalid conf or run id"),
        (status = 403, description = "not an operator"),
        (status = 409, description = "the run id is taken")))]
pub async fn trigger(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(dag_id): Path<String>,
    Json(request): Json<TriggerRequest>,
) -> Result<Response, WebError> {
    user.require(Role::Operator)?;
    let dag = actions::current_dag(state.store(), &dag_id).await?;
    let trigger = Trigger {
        conf: request
            .conf
            .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
        run_id: request.run_id,
    };
    let run = actions::trigger(state.store(), &user, &dag, trigger).await?;
    Ok((StatusCode::CREATED, axum::Json(run)).into_response())
}

/// A backfill to create, or only to preview.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// First logical date: `YYYY-MM-DD` or RFC 3339.
    from: String,
    /// Last logical date, included.
    to: String,
    /// Which existing runs to run again: none (default), failed or all.
    #[serde(default)]
    reprocess: Option<String>,
    /// Newest date first.
    #[serde(default)]
    backwards: bool,
    /// Runs active at once, 1 to 64 (default 4).
    #[serde(default)]
    max_active_runs: Option<u32>,
    /// Conf for every run.
    #[serde(default)]
    #[schema(value_type = Object)]
    conf: Option<serde_json::Value>,
    /// Only list the runs it would create or re-run.
    #[serde(default)]
    dry_run: bool,
}

/// A backfill and its plan; without `backfill` for a dry run.
#[derive(Serialize, ToSchema)]
pub struct BackfillCreated {
    #[schema(value_type = Option<Object>)]
    backfill: Option<BackfillRow>,
    #[schema(value_type = Vec<Object>)]
    plan: Vec<PlannedRun>,
}

/// Backfill a date range (operator), or preview it with `dry_run`.
#[utoipa::path(post, path = "/api/v1/dags/{dag_id}/backfills", tag = "dags",
    params(("dag_id" = String, Path, description = "the DAG")),
    request_body = BackfillRequest,
    responses((status = 201, description = "created", body = BackfillCreated),
        (status = 200, description = "the dry run's plan", body = BackfillCreated),
        (status = 400, description = "invalid range or options"),
        (status = 403, description = "not an operator")))]
pub async fn backfill(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(dag_id): Path<String>,
    Json(request): Json<BackfillRequest>,
) -> Result<Response, WebError> {
    user.require(Role::Operator)?;
    let store = state.store();
    let dag = actions::current_dag(store, &dag_id).await?;
    let fields = BackfillFields {
        from: request.from,
        to: request.to,
        reprocess: request.reprocess.unwrap_or_default(),
        backwards: request.backwards.then(|| "true".to_owned()),
        max_active_runs: request
            .max_active_runs
            .map(|n| n.to_string())
            .unwrap_or_default(),
        conf: request.conf.map(|c| c.to_string()).unwrap_or_default(),
    };
    let new = fields
        .read(&dag)
        .map_err(|errors| WebError::BadRequest(errors.join("; ")))?;
    if request.dry_run {
        let plan = actions::preview_backfill(store, &new).await?;
        return Ok(axum::Json(BackfillCreated {
            backfill: None,
            plan,
        })
        .into_response());
    }
    let (row, plan) = actions::create_backfill(store, &user, &new).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(BackfillCreated {
            backfill: Some(row),
            plan,
        }),
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
pub struct BackfillsQuery {
    /// Only this DAG's.
    dag_id: Option<String>,
}

/// Recent backfills, newest first.
#[utoipa::path(get, path = "/api/v1/backfills", tag = "dags", params(BackfillsQuery),
    responses((status = 200, body = Vec<Object>)))]
pub async fn backfills(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<BackfillsQuery>,
) -> Result<axum::Json<Vec<BackfillRow>>, WebError> {
    Ok(axum::Json(
        state
            .store()
            .list_backfills(query.dag_id.as_deref(), 200)
            .await?,
    ))
}

/// A backfill with its progress and runs.
#[derive(Serialize, ToSchema)]
pub struct BackfillDetail {
    #[schema(value_type = Object)]
    backfill: BackfillRow,
    #[schema(value_type = Object)]
    progress: BackfillProgress,
    #[schema(value_type = Vec<Object>)]
    runs: Vec<RunRow>,
}

/// A backfill, how far it has come, and its runs.
#[utoipa::path(get, path = "/api/v1/backfills/{id}", tag = "dags",
    params(("id" = i64, Path, description = "the backfill")),
    responses((status = 200, body = BackfillDetail), (status = 404, description = "no such backfill")))]
pub async fn backfill_detail(
    State(state): State<AppState>,
    _user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<axum::Json<BackfillDetail>, WebError> {
    let store = state.store();
    Ok(axum::Json(BackfillDetail {
        backfill: store.backfill(id).await?,
        progress: store.backfill_progress(id).await?,
        runs: store.backfill_runs(id).await?,
    }))
}

/// Whether something changed.
#[derive(Serialize, ToSchema)]
pub struct Changed {
    /// False when it was so already.
    pub changed: bool,
}

/// Cancel a running backfill (operator): its runs that have not started
/// fail.
#[utoipa::path(post, path = "/api/v1/backfills/{id}/cancel", tag = "dags",
    params(("id" = i64, Path, description = "the backfill")),
    responses((status = 200, body = Changed), (status = 403, description = "not an operator")))]
pub async fn cancel_backfill(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(id): Path<i64>,
) -> Result<axum::Json<Changed>, WebError> {
    user.require(Role::Operator)?;
    let changed = actions::cancel_backfill(state.store(), &user, id).await?;
    Ok(axum::Json(Changed { changed }))
}
