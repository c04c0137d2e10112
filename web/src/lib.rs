//! The RTMAS web server: server-rendered pages for operators and a JSON API
//! under `/api/v1`, both over the metadata store. Every page and endpoint
//! needs a signed-in user (a session cookie, or an API token in an
//! `Authorization: Bearer` header); changes need the operator role.
//!
//! # Layout
//!
//! - `actions`: the changes people make (trigger, pause, clear, mark,
//!   backfill), checked and logged with who made them.
//! - `error`: the one error type of the web layer; it maps to status codes,
//!   renders as JSON for the API and as a page for browsers, and never
//!   shows internal error text.
//! - `extract`: axum's extractors, failing with [`WebError`].
//! - `auth`: passwords, sessions, API tokens, roles and CSRF tokens.
//! - `render`: the handlebars templates of `templates/web` and their
//!   helpers.
//! - `assets`: the UI's stylesheet, script and vendored chart library,
//!   served from the binary.
//! - `forms`: what a trigger or a backfill asks for, validated the same way
//!   for the browser and the API.
//! - `views`: what pages and the API both show (DAG summaries, grids, task
//!   graphs, Gantt bars).
//! - `pages`: the HTML pages and form posts.
//! - `api`: the JSON API and its OpenAPI document.

mod actions;
mod api;
mod assets;
pub mod auth;
mod error;
mod extract;
mod forms;
mod pages;
mod render;
mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use rtmas_scheduler::store::Store;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::WebError;
pub use render::Templates;

/// Settings of the web server.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Whether session cookies are marked `Secure` (sent over HTTPS only).
    /// Set it when the UI is served over HTTPS, as it should be outside a
    /// workstation.
    pub secure_cookies: bool,
    /// How long a sign-in lasts, e.g. 12 hours.
    pub session_ttl: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            secure_cookies: false,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// What every handler shares: the store, the templates and the settings.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    templates: Templates,
    config: WebConfig,
    openapi: String,
}

impl AppState {
    /// State over `store` with the built-in templates.
    ///
    /// Fails when a template does not compile, which only a broken build
    /// can cause.
    pub fn new(store: Store, config: WebConfig) -> Result<AppState, WebError> {
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                templates: Templates::load()?,
                config,
                openapi: api::openapi_json(),
            }),
        })
    }

    /// The metadata store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    pub(crate) fn config(&self) -> &WebConfig {
        &self.inner.config
    }
}

/// The whole application: pages, API, assets, with request tracing and
/// the security headers every response carries.
pub fn router(state: AppState) -> Router {
    let pages = pages::router().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        pages::error_pages,
    ));
    Router::new()
        .merge(pages)
        .merge(api::router())
        .route("/assets/{*path}", axum::routing::get(assets::serve))
        .layer(TraceLayer::new_for_http())
        .layer(header_layer(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
        .with_state(state)
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then lets
/// requests in flight finish.
///
/// Fails when accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "web server listening");
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
