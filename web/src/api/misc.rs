//! Job history, log metrics, alerts, the caller and their API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{TimeDelta, Utc};
use rtmas_scheduler::store::{AlertRow, ApiTokenRow, HistoryRow, MetricRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{ApiWriter, CurrentUser, new_secret, secret_hash};
use crate::extract::{Json, Path, Query};
use crate::forms::parse_when;
use crate::pages::{AlertsQuery, HistoryQuery, history_cursor};
use crate::{AppState, WebError};

#[derive(Deserialize, IntoParams)]
pub struct PageSize {
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// A page of task instances.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    #[schema(value_type = Vec<Object>)]
    task_instances: Vec<HistoryRow>,
    /// Pass as `before` for the next page; absent on the last.
    next: Option<String>,
}

/// Task instances across DAGs, newest first (newest start first with a
/// `from`/`to` window), filtered and paged.
#[utoipa::path(get, path = "/api/v1/task-instances", tag = "history",
    params(HistoryQuery, PageSize),
    responses((status = 200, body = HistoryPage), (status = 400, description = "bad filter")))]
pub async fn history(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<HistoryQuery>,
    Query(size): Query<PageSize>,
) -> Result<axum::Json<HistoryPage>, WebError> {
    let limit = size.limit.unwrap_or(50).clamp(1, 500);
    let filter = query.filter(limit)?;
    let rows = state.store().search_task_instances(&filter).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last())
        .flatten()
        .map(|row| history_cursor(&filter, row));
    Ok(axum::Json(HistoryPage {
        task_instances: rows,
        next,
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct MetricsQuery {
    /// From this minute (default: an hour ago).
    from: Option<String>,
    /// Up to this minute, excluded (default: now).
    to: Option<String>,
    /// Only this service.
    service: Option<String>,
}

/// Per-minute log metrics.
#[derive(Serialize, ToSchema)]
pub struct Metrics {
    #[schema(value_type = Vec<Object>)]
    metrics: Vec<MetricRow>,
}

/// Log volume by level, error counts and latency percentiles per service
/// and minute, at most 7 days at once.
#[utoipa::path(get, path = "/api/v1/metrics/logs", tag = "metrics", params(MetricsQuery),
    responses((status = 200, body = Metrics), (status = 400, description = "bad range")))]
pub async fn metrics(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<MetricsQuery>,
) -> Result<axum::Json<Metrics>, WebError> {
    let now = Utc::now();
    let read = |value: &Option<String>, name: &str, default| match value.as_deref() {
        Some(text) if !text.trim().is_empty() => {
            parse_when(text).map_err(|err| WebError::BadRequest(format!("{name}: {err}")))
        }
        _ => Ok(default),
    };
    let to = read(&query.to, "to", now)?;
    let from = read(&query.from, "from", to - TimeDelta::hours(1))?;
    if from >= to {
        return Err(WebError::BadRequest("from must be before to".to_owned()));
    }
    if to - from > TimeDelta::days(7) {
        return Err(WebError::BadRequest(
            "at most 7 days of metrics at once".to_owned(),
        ));
    }
    let service = query.service.as_deref().filter(|s| !s.is_empty());
    Ok(axum::Json(Metrics {
        metrics: state.store().log_metrics(from, to, service).await?,
    }))
}

/// A page of alerts.
#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    #[schema(value_type = Vec<Object>)]
    alerts: Vec<AlertRow>,
    /// Pass as `before` for the next page; absent on the last.
    next_before: Option<i64>,
}

/// Alerts, newest first, filtered and paged.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery, PageSize),
    responses((status = 200, body = AlertPage), (status = 400, description = "bad filter")))]
pub async fn alerts(
    State(state): State<AppState>,
    _user: CurrentUser,
    Query(query): Query<AlertsQuery>,
    Query(size): Query<PageSize>,
) -> Result<axum::Json<AlertPage>, WebError> {
    let limit = size.limit.unwrap_or(50).clamp(1, 500);
    let alerts = state.store().list_alerts(&query.filter(limit)?).await?;
    let next_before = (alerts.len() as i64 == limit)
        .then(|| alerts.last().map(|a| a.id))
        .flatten();
    Ok(axum::Json(AlertPage {
        alerts,
        next_before,
    }))
}

/// The caller.
#[derive(Serialize, ToSchema)]
pub struct Me {
    username: String,
    /// `viewer`, `operator` or `admin`.
    role: String,
    /// The session's CSRF token, for scripts; empty for token calls.
    csrf_token: String,
}

/// Who is calling, with which role.
#[utoipa::path(get, path = "/api/v1/me", tag = "account",
    responses((status = 200, body = Me), (status = 401, description = "not signed in")))]
pub async fn me(user: CurrentUser) -> axum::Json<Me> {
    axum::Json(Me {
        username: user.user.username.clone(),
        role: user.user.role.as_str().to_owned(),
        csrf_token: user.csrf_token().to_owned(),
    })
}

/// The caller's API tokens (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "account",
    responses((status = 200, body = Vec<Object>)))]
pub async fn tokens(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<axum::Json<Vec<ApiTokenRow>>, WebError> {
    Ok(axum::Json(
        state.store().list_api_tokens(user.user.id).await?,
    ))
}

/// A token to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for, 1 to 100 characters.
    name: String,
}

/// A new token; the secret is shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[schema(value_type = Object)]
    token: ApiTokenRow,
    /// Send it as `Authorization: Bearer <secret>`.
    secret: String,
}

/// Make an API token with the caller's role.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "account", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, description = "bad name")))]
pub async fn create_token(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Json(request): Json<NewToken>,
) -> Result<Response, WebError> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(WebError::BadRequest(
            "a token needs a name of 1 to 100 characters".to_owned(),
        ));
    }
    let secret = new_secret();
    let token = state
        .store()
        .create_api_token(user.user.id, name, &secret_hash(&secret), Utc::now())
        .await?;
    tracing::info!(user = %user.user.username, name, "API token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedToken { token, secret }),
    )
        .into_response())
}

/// Revoke one of the caller's tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "account",
    params(("id" = i64, Path, description = "the token's key")),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such token")))]
pub async fn revoke_token(
    State(state): State<AppState>,
    ApiWriter(user): ApiWriter,
    Path(id): Path<i64>,
) -> Result<StatusCode, WebError> {
    if !state.store().revoke_api_token(user.user.id, id).await? {
        return Err(WebError::NotFound(format!("you have no token {id}")));
    }
    tracing::info!(user = %user.user.username, token_id = id, "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
