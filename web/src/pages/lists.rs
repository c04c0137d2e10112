//! Job history, backfills, log metrics, alerts and the account page.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rtmas_scheduler::store::{AlertFilter, HistoryRow, Role, TaskInstanceFilter};
use serde::Deserialize;
use serde_json::json;

use super::page;
use crate::actions;
use crate::auth::{CurrentUser, FormPost, new_secret, secret_hash};
use crate::extract::{Path, Query};
use crate::forms::parse_when;
use crate::{AppState, WebError};

/// Rows per page of the job history and the alerts.
pub const PAGE_ROWS: i64 = 50;

/// The job history's filters, as a query string carries them.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// Only this DAG's task instances.
    #[serde(default)]
    pub dag_id: Option<String>,
    /// Only those in this state, e.g. `failed`.
    #[serde(default)]
    pub state: Option<String>,
    /// Only those of this job kind, e.g. `kafka_consume`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Only those run by this worker.
    #[serde(default)]
    pub worker: Option<String>,
    /// Started at or after this time (date, local time or RFC 3339).
    #[serde(default)]
    pub from: Option<String>,
    /// Started before this time.
    #[serde(default)]
    pub to: Option<String>,
    /// The cursor of the previous page's `next`: the last row's key, or,
    /// with a start time window, its start time and key (`<RFC 3339>,<key>`).
    #[serde(default)]
    pub before: Option<String>,
}

/// The cursor after `row` in a search by `filter`.
pub fn history_cursor(filter: &TaskInstanceFilter, row: &HistoryRow) -> String {
    match row.ti.start_date {
        Some(start) if filter.is_windowed() => format!("{},{}", start.to_rfc3339(), row.ti.id),
        _ => row.ti.id.to_string(),
    }
}

/// The key and start time of a history cursor.
fn parse_cursor(cursor: &str) -> Result<(i64, Option<DateTime<Utc>>), WebError> {
    let bad = || WebError::BadRequest(format!("before: `{cursor}` is not a history cursor"));
    match cursor.rsplit_once(',') {
        Some((start, id)) => {
            let start = DateTime::parse_from_rfc3339(start).map_err(|_| bad())?;
            Ok((
                id.parse().map_err(|_| bad())?,
                Some(start.with_timezone(&Utc)),
            ))
        }
        None => Ok((cursor.parse().map_err(|_| bad())?, None)),
    }
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl HistoryQuery {
    /// The store filter these ask for, or what is wrong with them.
    pub fn filter(&self, limit: i64) -> Result<TaskInstanceFilter, WebError> {
        let when = |value: &Option<String>, name: &str| {
            non_empty(value)
                .map(|text| {
                    parse_when(&text).map_err(|err| WebError::BadRequest(format!("{name}: {err}")))
                })
                .transpose()
        };
        let (before_id, before_start) = match non_empty(&self.before) {
            Some(cursor) => {
                let (id, start) = parse_cursor(&cursor)?;
                (Some(id), start)
            }
            None => (None, None),
        };
        Ok(TaskInstanceFilter {
            dag_id: non_empty(&self.dag_id),
            state: non_empty(&self.state)
                .map(|s| {
                    s.parse()
                        .map_err(|err| WebError::BadRequest(format!("state: {err}")))
                })
                .transpose()?,
            kind: non_empty(&self.kind),
            worker: non_empty(&self.worker),
            started_from: when(&self.from, "from")?,
            started_before: when(&self.to, "to")?,
            before_id,
            before_start,
            limit,
        })
    }
}

/// `GET /history`: task instances across DAGs, filtered and paged.
pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<HistoryQuery>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let filter = query.filter(PAGE_ROWS)?;
    let rows = store.search_task_instances(&filter).await?;
    let next = (rows.len() as i64 == PAGE_ROWS)
        .then(|| rows.last())
        .flatten()
        .map(|row| {
            serde_urlencoded::to_string(HistoryQuery {
                before: Some(history_cursor(&filter, row)),
                ..query.clone()
            })
            .unwrap_or_default()
        });
    let dags: Vec<String> = store
        .list_dags()
        .await?
        .into_iter()
        .map(|d| d.dag_id)
        .collect();
    let kinds = store.task_kinds().await?;
    let workers: Vec<String> = store
        .list_workers()
        .await?
        .into_iter()
        .map(|w| w.name)
        .collect();
    let states: Vec<&str> = rtmas_scheduler::state::TaskState::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    state.templates().render(
        "history",
        &page(
            &user,
            "Job history",
            "history",
            json!({"rows": rows, "query": query, "next": next, "paged": query.before.is_some(),
                   "dags": dags, "kinds": kinds, "workers": workers, "states": states}),
        ),
    )
}

/// `GET /backfills`: recent backfills.
pub async fn backfills(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Html<String>, WebError> {
    let rows = state.store().list_backfills(None, 200).await?;
    state.templates().render(
        "backfills",
        &page(&user, "Backfills", "backfills", json!({"backfills": rows})),
    )
}

/// `GET /backfills/{id}`: a backfill's progress and runs.
pub async fn backfill(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let row = store.backfill(id).await?;
    let progress = store.backfill_progress(id).await?;
    let runs = store.backfill_runs(id).await?;
    let percent = if progress.total() > 0 {
        progress.done() * 100 / progress.total()
    } else {
        100
    };
    state.templates().render(
        "backfill",
        &page(
            &user,
            &format!("Backfill {id}"),
            "backfills",
            json!({"backfill": row, "progress": progress, "total": progress.total(),
                   "done": progress.done(), "percent": percent, "runs": runs,
                   "live": row.state == "running"}),
        ),
    )
}

/// `POST /backfills/{id}/cancel`.
pub async fn cancel_backfill(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: FormPost<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    post.user.require(Role::Operator)?;
    actions::cancel_backfill(state.store(), &post.user, id).await?;
    Ok(Redirect::to(&format!("/backfills/{id}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct MetricsQuery {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    hours: Option<i64>,
}

/// `GET /metrics`: charts of log volume, error rate and latency per
/// service; the page's script fetches the figures from the API.
pub async fn metrics(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<MetricsQuery>,
) -> Result<Html<String>, WebError> {
    let hours = query.hours.unwrap_or(6).clamp(1, 24 * 7);
    let now = Utc::now();
    let from = now - TimeDelta::hours(hours);
    let services = state
        .store()
        .metric_services(now - TimeDelta::hours(24 * 7))
        .await?;
    let service = non_empty(&query.service);
    let mut url_query = vec![
        ("from", from.to_rfc3339()),
        ("to", (now + TimeDelta::minutes(1)).to_rfc3339()),
    ];
    if let Some(service) = &service {
        url_query.push(("service", service.clone()));
    }
    let data_url = format!(
        "/api/v1/metrics/logs?{}",
        serde_urlencoded::to_string(&url_query).unwrap_or_default()
    );
    state.templates().render(
        "metrics",
        &page(
            &user,
            "Log metrics",
            "metrics",
            json!({"services": services, "service": service, "hours": hours,
                   "ranges": [1, 6, 24, 168], "data_url": data_url,
                   "from_ms": from.timestamp_millis(), "to_ms": now.timestamp_millis()}),
        ),
    )
}

/// The alerts' filters.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, utoipa::IntoParams)]
pub struct AlertsQuery {
    /// `firing` or `resolved`.
    #[serde(default)]
    pub state: Option<String>,
    /// `critical`, `warning` or `info`.
    #[serde(default)]
    pub severity: Option<String>,
    /// Only this service's.
    #[serde(default)]
    pub service: Option<String>,
    /// Keyset cursor: only alerts with a smaller key.
    #[serde(default)]
    pub before: Option<i64>,
}

impl AlertsQuery {
    /// The store filter, or what is wrong with the query.
    pub fn filter(&self, limit: i64) -> Result<AlertFilter, WebError> {
        let state = non_empty(&self.state);
        if let Some(s) = &state
            && !["firing", "resolved"].contains(&s.as_str())
        {
            return Err(WebError::BadRequest(format!(
                "state: `{s}` is not firing or resolved"
            )));
        }
        let severity = non_empty(&self.severity);
        if let Some(s) = &severity
            && !["critical", "warning", "info"].contains(&s.as_str())
        {
            return Err(WebError::BadRequest(format!(
                "severity: `{s}` is not critical, warning or info"
            )));
        }
        Ok(AlertFilter {
            state,
            severity,
            service: non_empty(&self.service),
            before_id: self.before,
            limit,
        })
    }
}

/// `GET /alerts`: alerts raised by the anomaly scans, filtered and paged.
pub async fn alerts(
    State(state): State<AppState>,
    user: CurrentUser,
    Query(query): Query<AlertsQuery>,
) -> Result<Html<String>, WebError> {
    let store = state.store();
    let rows = store.list_alerts(&query.filter(PAGE_ROWS)?).await?;
    let next = (rows.len() as i64 == PAGE_ROWS)
        .then(|| rows.last().map(|r| r.id))
        .flatten()
        .map(|before| {
            serde_urlencoded::to_string(AlertsQuery {
                before: Some(before),
                ..query.clone()
            })
            .unwrap_or_default()
        });
    let services = store.alert_services().await?;
    state.templates().render(
        "alerts",
        &page(
            &user,
            "Alerts",
            "alerts",
            json!({"alerts": rows, "query": query, "next": next, "services": services,
                   "states": ["firing", "resolved"], "severities": ["critical", "warning", "info"]}),
        ),
    )
}

async fn render_account(
    state: &AppState,
    user: &CurrentUser,
    new_token: Option<String>,
) -> Result<Html<String>, WebError> {
    let tokens = state.store().list_api_tokens(user.user.id).await?;
    state.templates().render(
        "account",
        &page(
            user,
            "Account",
            "account",
            json!({"tokens": tokens, "new_token": new_token}),
        ),
    )
}

/// `GET /account`: who is signed in, and their API tokens.
pub async fn account(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Html<String>, WebError> {
    render_account(&state, &user, None).await
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

/// `POST /account/tokens`: a new API token, shown once.
pub async fn create_token(
    State(state): State<AppState>,
    post: FormPost<TokenForm>,
) -> Result<Html<String>, WebError> {
    let name = post.form.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(WebError::BadRequest(
            "a token needs a name of 1 to 100 characters".to_owned(),
        ));
    }
    let token = new_secret();
    state
        .store()
        .create_api_token(post.user.user.id, name, &secret_hash(&token), Utc::now())
        .await?;
    tracing::info!(user = %post.user.user.username, name, "API token created");
    render_account(&state, &post.user, Some(token)).await
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    post: FormPost<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    if !state
        .store()
        .revoke_api_token(post.user.user.id, id)
        .await?
    {
        return Err(WebError::NotFound(format!("you have no token {id}")));
    }
    tracing::info!(user = %post.user.user.username, token_id = id, "API token revoked");
    Ok(Redirect::to("/account").into_response())
}
