//! The DAGs list; a DAG's grid, graph and runs; its source; pausing; and
//! the trigger and backfill forms.

use std::collections::HashMap;

use axum::extract::State;

use crate::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use rtmas_scheduler::store::Role;
use serde::Deserialize;
use serde_json::json;

use super::page;
use crate::actions;
use crate::auth::{CurrentUser, FormPost};
use crate::forms::{BackfillFields, RunsQuery, TriggerForm, run_filter};
use crate::views::{self, dag_summaries};
use crate::{AppState, WebError};

/// Runs shown in a DAG's grid.
const GRID_RUNS: i64 = 25;
/// Runs per page of a DAG's runs list.
const RUNS_PAGE: i64 = 50;

#[derive(Debug, Deserialize)]
pub struct DagsQuery {
    #[serde(default)]
    tag: Option<String>,
}

/// `GET /dags`: every DAG with its schedule, next run, recent runs, and the
/// files that failed to load.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<DagsQuery>,
) -> Result<Html<String>, WebError> {
    let mut dags = dag_summaries(state.store(), Utc::now()).await?;
    let mut tags: Vec<String> = dags.iter().flat_map(|d| d.tags.clone()).collect();
    tags.sort();
    tags.dedup();
    if let Some(tag) = query.tag.as_deref().filter(|t| !t.is_empty()) {
        dags.retain(|d| d.tags.iter().any(|t| t == tag));
    }
    let errors = state.store().import_errors().await?;
    state.templates().render(
        "dags",
        &page(
            &user,
            "DAGs",
            "dags",
            json!({"dags": dags, "import_errors": errors, "tags": tags, "tag": query.tag}),
        ),
    )
}

/// `GET /dags/{dag_id}`: the grid of recent runs by tasks, the graph of
/// tasks, and the DAG's runs with filters.
pub async fn show(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let row = store.dag(&dag_id).await?;
    let dag = store.dag_version(row.version_id).await?;
    let filter = run_filter(&dag_id, &query, RUNS_PAGE)?;
    let (runs, tis) = store.grid(&dag_id, GRID_RUNS).await?;
    let latest: Vec<_> = match runs.first() {
        Some(run) => tis.iter().filter(|t| t.run_pk == run.id).cloned().collect(),
        None => Vec::new(),
    };
    let graph = views::graph(&dag, &latest);
    let grid = views::grid(&dag, runs, tis);
    let listed = store.search_runs(&filter).await?;
    let next_cursor = (listed.len() as i64 == RUNS_PAGE)
        .then(|| listed.last())
        .flatten()
        .map(|r| format!("{},{}", r.logical_date.to_rfc3339(), r.id));
    let next_query = next_cursor.map(|cursor| {
        serde_urlencoded::to_string([
            ("state", query.state.clone().unwrap_or_default()),
            ("run_type", query.run_type.clone().unwrap_or_default()),
            ("before", cursor),
        ])
        .unwrap_or_default()
    });
    let next_run_at = views::next_run_at(store, &row, Utc::now()).await?;
    state.templates().render(
        "dag",
        &page(
            &user,
            &dag_id,
            "dags",
            json!({
                "dag": row,
                "definition": dag,
                "next_run_at": next_run_at,
                "grid": grid,
                "graph": graph,
                "runs": listed,
                "filter": {"state": query.state, "run_type": query.run_type},
                "run_states": ["queued", "running", "success", "failed"],
                "run_types": ["scheduled", "manual", "backfill"],
                "next_query": next_query,
            }),
        ),
    )
}

/// `GET /dags/{dag_id}/source`: the YAML of the DAG's current version.
pub async fn source(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Html<String>, WebError> {
    let row = state.store().dag(&dag_id).await?;
    let source = state.store().dag_source(row.version_id).await?;
    state.templates().render(
        "dag_source",
        &page(
            &user,
            &dag_id,
            "dags",
            json!({"dag": row, "source": source}),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct PauseForm {
    paused: String,
}

/// `POST /dags/{dag_id}/pause` with `paused=true|false`.
pub async fn pause(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    post: FormPost<PauseForm>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    let paused = match post.form.paused.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(WebError::BadRequest(format!(
                "paused must be true or false, not `{other}`"
            )));
        }
    };
    actions::set_paused(state.store(), &post.user, &dag_id, paused).await?;
    Ok(Redirect::to(&format!("/dags/{dag_id}")).into_response())
}

fn render_trigger(
    state: &AppState,
    user: &CurrentUser,
    dag_id: &str,
    description: Option<&str>,
    form: &TriggerForm,
    status: StatusCode,
) -> Result<Response, WebError> {
    let html = state.templates().render(
        "trigger",
        &page(
            user,
            &format!("Trigger {dag_id}"),
            "dags",
            json!({"dag_id": dag_id, "description": description, "form": form}),
        ),
    )?;
    Ok((status, html).into_response())
}

/// `GET /dags/{dag_id}/trigger`: a form with a field per DAG param.
pub async fn trigger_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Response, WebError> {
    user.require(Role::Operator)?;
    let dag = actions::current_dag(state.store(), &dag_id).await?;
    let form = TriggerForm::blank(&dag);
    render_trigger(
        &state,
        &user,
        &dag_id,
        dag.description.as_deref(),
        &form,
        StatusCode::OK,
    )
}

/// `POST /dags/{dag_id}/trigger`: creates the run and shows it, or shows
/// the form again with what is wrong.
pub async fn trigger(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    post: FormPost<HashMap<String, String>>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    let dag = actions::current_dag(state.store(), &dag_id).await?;
    match TriggerForm::read(&dag, &post.form) {
        Ok(trigger) => {
            let run = match actions::trigger(state.store(), &post.user, &dag, trigger).await {
                Ok(run) => run,
                Err(WebError::Conflict(message)) => {
                    let form = TriggerForm::refused(&dag, &post.form, message);
                    return render_trigger(
                        &state,
                        &post.user,
                        &dag_id,
                        dag.description.as_deref(),
                        &form,
                        StatusCode::CONFLICT,
                    );
                }
                Err(err) => return Err(err),
            };
            Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response())
        }
        Err(form) => render_trigger(
            &state,
            &post.user,
            &dag_id,
            dag.description.as_deref(),
            &form,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

/// `GET /dags/{dag_id}/backfill`: the backfill form.
pub async fn backfill_form(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(dag_id): Path<String>,
) -> Result<Html<String>, WebError> {
    user.require(Role::Operator)?;
    let dag = actions::current_dag(state.store(), &dag_id).await?;
    state.templates().render(
        "backfill_form",
        &page(
            &user,
            &format!("Backfill {dag_id}"),
            "dags",
            json!({"dag_id": dag_id, "schedule": dag.schedule.is_some(),
                   "form": BackfillFields::blank(Utc::now()), "errors": [], "plan": null}),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct BackfillPost {
    #[serde(flatten)]
    fields: BackfillFields,
    /// `preview` for the dry run, `create` to carry it out.
    #[serde(default)]
    action: String,
}

/// `POST /dags/{dag_id}/backfill`: previews the runs (`action=preview`) or
/// creates the backfill and shows its progress.
pub async fn backfill(
    State(state): State<AppState>,
    Path(dag_id): Path<String>,
    post: FormPost<BackfillPost>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    let store = state.store();
    let dag = actions::current_dag(store, &dag_id).await?;
    let fields = &post.form.fields;
    let outcome = match fields.read(&dag) {
        Ok(new) if post.form.action == "create" => {
            match actions::create_backfill(store, &post.user, &new).await {
                Ok((row, _)) => {
                    return Ok(Redirect::to(&format!("/backfills/{}", row.id)).into_response());
                }
                Err(WebError::BadRequest(message)) => Err(vec![message]),
                Err(err) => return Err(err),
            }
        }
        Ok(new) => match actions::preview_backfill(store, &new).await {
            Ok(plan) => Ok(plan),
            Err(WebError::BadRequest(message)) => Err(vec![message]),
            Err(err) => return Err(err),
        },
        Err(errors) => Err(errors),
    };
    let (status, plan, errors) = match outcome {
        Ok(plan) => (StatusCode::OK, Some(plan), Vec::new()),
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, None, errors),
    };
    let html = state.templates().render(
        "backfill_form",
        &page(
            &post.user,
            &format!("Backfill {dag_id}"),
            "dags",
            json!({"dag_id": dag_id, "schedule": dag.schedule.is_some(),
                   "form": fields, "errors": errors, "plan": plan}),
        ),
    )?;
    Ok((status, html).into_response())
}
