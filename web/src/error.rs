//! The web layer's one error type. Each variant has its status code; API
//! clients get `{"error": {"status", "code", "message"}}` and browsers a
//! page (or the sign-in form when they are not signed in). Internal
//! failures are logged here, once, and reach the client only as "internal
//! error".

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rtmas_scheduler::backfill::BackfillError;
use rtmas_scheduler::store::{Role, StoreError};
use serde_json::json;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or its values are invalid; the message
    /// says which and why.
    #[error("{0}")]
    BadRequest(String),
    /// No user is signed in, or the token is unknown.
    #[error("sign in first")]
    Unauthorized,
    /// The user's role does not allow this.
    #[error("this needs the {0} role")]
    Forbidden(Role),
    /// A form or call that changes something came without the CSRF token
    /// of the session.
    #[error("the form is stale or did not come from this site; reload the page and try again")]
    Csrf,
    /// The change conflicts with what is there (a run id that is taken).
    #[error("{0}")]
    Conflict(String),
    /// The store or the server failed; the detail is logged, not shown.
    #[error("internal error")]
    Internal(String),
}

/// What an error response carries for the HTML layer to render as a page.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    /// The status.
    pub status: StatusCode,
    /// What the user may read.
    pub message: String,
    /// Whether the fix is to sign in.
    pub sign_in: bool,
}

impl WebError {
    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) | WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable name of the variant.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::NotFound(_) => "not_found",
            WebError::BadRequest(_) => "invalid_request",
            WebError::Unauthorized => "unauthorized",
            WebError::Forbidden(_) => "forbidden",
            WebError::Csrf => "csrf",
            WebError::Conflict(_) => "conflict",
            WebError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(detail) = &self {
            tracing::error!(error = %detail, "request failed");
        }
        let status = self.status();
        let message = self.to_string();
        let body =
            json!({"error": {"status": status.as_u16(), "code": self.code(), "message": message}});
        let mut response = (status, Json(body)).into_response();
        if matches!(self, WebError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response.extensions_mut().insert(ErrorPage {
            status,
            message,
            sign_in: matches!(self, WebError::Unauthorized),
        });
        response
    }
}

impl From<StoreError> for WebError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::DagNotFound(_)
            | StoreError::RunNotFound(_)
            | StoreError::BackfillNotFound(_)
            | StoreError::PoolNotFound(_)
            | StoreError::UserNotFound(_) => WebError::NotFound(err.to_string()),
            StoreError::RunExists { .. } | StoreError::UserExists(_) => {
                WebError::Conflict(err.to_string())
            }
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<BackfillError> for WebError {
    fn from(err: BackfillError) -> Self {
        match err {
            BackfillError::Store(err) => err.into(),
            BackfillError::Schedule(err) => WebError::Internal(err.to_string()),
            other => WebError::BadRequest(other.to_string()),
        }
    }
}

impl From<handlebars::RenderError> for WebError {
    fn from(err: handlebars::RenderError) -> Self {
        WebError::Internal(format!("template: {err}"))
    }
}

// Rejections of axum's extractors describe the client's input (which field,
// which type), so their text is safe and useful to show.
macro_rules! bad_request_from {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for WebError {
            fn from(rejection: $rejection) -> Self {
                WebError::BadRequest(rejection.body_text())
            }
        }
    )*};
}
bad_request_from!(QueryRejection, FormRejection, JsonRejection, PathRejection);
