//! The HTML pages and form posts. Pages need a signed-in user; posts that
//! change something also need the operator role and the session's CSRF
//! token. Errors become an error page, or the sign-in form when nobody is
//! signed in.
//!
//! - `login`: sign in and out.
//! - `dags`: the DAGs list, a DAG's grid, graph, runs and source, pausing,
//!   the trigger and backfill forms.
//! - `runs`: a run with its Gantt chart, a task's tries and log, clearing
//!   and marking.
//! - `lists`: job history, backfills, log metrics, alerts and the account
//!   page with API tokens.

mod dags;
mod lists;
mod login;
mod runs;

pub use lists::{AlertsQuery, HistoryQuery, history_cursor};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::ErrorPage;

/// Every page and form post.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dags") }))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/dags", get(dags::list))
        .route("/dags/{dag_id}", get(dags::show))
        .route("/dags/{dag_id}/source", get(dags::source))
        .route("/dags/{dag_id}/pause", post(dags::pause))
        .route(
            "/dags/{dag_id}/trigger",
            get(dags::trigger_form).post(dags::trigger),
        )
        .route(
            "/dags/{dag_id}/backfill",
            get(dags::backfill_form).post(dags::backfill),
        )
        .route("/runs/{run_pk}", get(runs::show))
        .route("/runs/{run_pk}/mark", post(runs::mark))
        .route("/runs/{run_pk}/clear", post(runs::clear))
        .route("/runs/{run_pk}/tasks/{task_id}", get(runs::task))
        .route(
            "/runs/{run_pk}/tasks/{task_id}/clear",
            post(runs::clear_task),
        )
        .route("/runs/{run_pk}/tasks/{task_id}/mark", post(runs::mark_task))
        .route("/history", get(lists::history))
        .route("/backfills", get(lists::backfills))
        .route("/backfills/{id}", get(lists::backfill))
        .route("/backfills/{id}/cancel", post(lists::cancel_backfill))
        .route("/metrics", get(lists::metrics))
        .route("/alerts", get(lists::alerts))
        .route("/account", get(lists::account))
        .route("/account/tokens", post(lists::create_token))
        .route("/account/tokens/{id}/revoke", post(lists::revoke_token))
}

/// The data every page's layout needs, with the page's own under `page`.
pub fn page(user: &CurrentUser, title: &str, nav: &str, page: impl Serialize) -> Value {
    json!({
        "title": title,
        "nav": nav,
        "user": {
            "username": user.user.username,
            "role": user.user.role.as_str(),
            "can_operate": user.can_operate(),
        },
        "csrf": user.csrf_token(),
        "page": page,
    })
}

/// Turns the error responses of page handlers into pages: the sign-in
/// form for someone not signed in, an error page otherwise.
pub async fn error_pages(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let back_to = match *req.method() {
        Method::GET => req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        _ => "/dags".to_owned(),
    };
    let headers = req.headers().clone();
    let response = next.run(req).await;
    let Some(error) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    if error.sign_in {
        let query = serde_urlencoded::to_string([("next", back_to.as_str())]).unwrap_or_default();
        return Redirect::to(&format!("/login?{query}")).into_response();
    }
    // The page keeps its navigation for whoever is signed in; a failing
    // store leaves it out.
    let title = error.status.canonical_reason().unwrap_or("Error");
    let body = json!({"status": error.status.as_u16(), "message": error.message});
    let data = match CurrentUser::from_headers(&headers, &state).await {
        Ok(Some(user)) => page(&user, title, "", body),
        _ => json!({"title": title, "nav": "", "user": Value::Null, "csrf": "", "page": body}),
    };
    match state.templates().render("error", &data) {
        Ok(html) => (error.status, html).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    }
}
