//! The JSON API under `/api/v1`: everything the UI does, for scripts and
//! other tools. Each handler declares its OpenAPI operation next to it, and
//! the document at `/api/v1/openapi.json` is built from those, so it cannot
//! drift from the routes. Errors are `{"error": {"status", "code",
//! "message"}}`.
//!
//! - `dags`: DAGs, their grid and runs, pausing, triggering, backfills.
//! - `runs`: runs, task instances, tries and logs, clearing and marking.
//! - `misc`: job history, log metrics, alerts, the caller and API tokens.

mod dags;
mod misc;
mod runs;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{AppState, WebError};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "RTMAS API",
        description = "DAGs, runs, task logs, job history, log metrics and alerts of RTMAS. \
            Calls need an API token (`Authorization: Bearer …`, made on the account page or \
            with `rtmas users token`) or a session cookie with an `X-CSRF-Token` header; \
            changes need the operator role."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "dags", description = "DAGs, pausing, triggering and backfilling"),
        (name = "runs", description = "Runs, task instances, tries and logs"),
        (name = "history", description = "Task instances across DAGs"),
        (name = "metrics", description = "Per-minute log metrics"),
        (name = "alerts", description = "Alerts raised by anomaly scans"),
        (name = "account", description = "The caller and their API tokens"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(dags::list))
        .routes(routes!(dags::show, dags::update))
        .routes(routes!(dags::grid))
        .routes(routes!(dags::runs, dags::trigger))
        .routes(routes!(dags::backfill))
        .routes(routes!(dags::backfills))
        .routes(routes!(dags::backfill_detail))
        .routes(routes!(dags::cancel_backfill))
        .routes(routes!(runs::show))
        .routes(routes!(runs::mark))
        .routes(routes!(runs::clear))
        .routes(routes!(runs::task))
        .routes(routes!(runs::log))
        .routes(routes!(runs::clear_task))
        .routes(routes!(runs::mark_task))
        .routes(routes!(misc::history))
        .routes(routes!(misc::metrics))
        .routes(routes!(misc::alerts))
        .routes(routes!(misc::me))
        .routes(routes!(misc::tokens, misc::create_token))
        .routes(routes!(misc::revoke_token))
}

/// The API's routes, its OpenAPI document, and JSON 404s for the rest of
/// `/api/`.
pub fn router() -> Router<AppState> {
    let (router, _) = documented().split_for_parts();
    router
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/{*rest}", any(unknown))
}

/// The OpenAPI document as JSON text.
pub fn openapi_json() -> String {
    documented()
        .into_openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.inner.openapi.clone(),
    )
}

async fn unknown() -> WebError {
    WebError::NotFound("no such API endpoint".to_owned())
}
