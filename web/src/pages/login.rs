//! Signing in and out. The sign-in form has no session yet, so its CSRF
//! token is a random value set both in a short-lived cookie and in the
//! form; a post whose two copies differ did not come from the form.

use axum::extract::State;

use crate::extract::{Form, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{
    FormPost, LOGIN_COOKIE, SESSION_COOKIE, hash_password, new_secret, same_secret, secret_hash,
    verify_password,
};
use crate::{AppState, WebError};

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after signing in: a path of this site, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/dags".to_owned(),
    }
}

fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    max_age_secs: i64,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config().secure_cookies)
        .path("/")
        .max_age(cookie_age(max_age_secs))
        .build()
}

fn cookie_age(secs: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(secs)
}

fn render_form(
    state: &AppState,
    jar: CookieJar,
    next: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Result<Response, WebError> {
    let token = new_secret();
    let jar = jar.add(cookie(state, LOGIN_COOKIE, token.clone(), 3600));
    let data = json!({
        "title": "Sign in",
        "nav": "",
        "user": null,
        "csrf": token,
        "page": {"next": next, "username": username, "error": error},
    });
    let html = state.templates().render("login", &data)?;
    Ok((status, jar, html).into_response())
}

/// `GET /login`: the sign-in form.
pub async fn form(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(query): Query<NextQuery>,
) -> Result<Response, WebError> {
    let next = safe_next(query.next.as_deref());
    render_form(&state, jar, &next, "", None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: checks the password and starts a session.
pub async fn submit(
    State(state): State<AppState>,
    jar: CookieJar,
    Form(login): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned());
    if !expected.is_some_and(|token| same_secret(&token, &login.csrf_token)) {
        return Err(WebError::Csrf);
    }
    let next = safe_next(login.next.as_deref());
    let user = state.store().user_by_name(login.username.trim()).await?;
    // Someone unknown costs a hash as well, so that timing does not tell
    // which names exist.
    let hash = match &user {
        Some(user) if !user.disabled => user.password_hash.clone(),
        _ => dummy_hash().to_owned(),
    };
    let password = login.password.clone();
    let matches = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|err| WebError::Internal(format!("password check: {err}")))?;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        _ => {
            tracing::info!(username = %login.username, "sign-in refused");
            return render_form(
                &state,
                jar,
                &next,
                &login.username,
                Some("Wrong username or password."),
                StatusCode::UNAUTHORIZED,
            );
        }
    };

    let secret = new_secret();
    let now = Utc::now();
    let ttl = state.config().session_ttl;
    let expires = now + chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::hours(12));
    let store = state.store();
    store
        .create_session(&secret_hash(&secret), user.id, &new_secret(), now, expires)
        .await?;
    // Sign-ins are rare enough to sweep expired sessions as they happen.
    store.delete_expired_sessions(now).await?;
    tracing::info!(username = %user.username, "signed in");
    let jar = jar
        .remove(Cookie::build(LOGIN_COOKIE).path("/"))
        .add(cookie(&state, SESSION_COOKIE, secret, ttl.as_secs() as i64));
    Ok((jar, Redirect::to(&next)).into_response())
}

/// A valid hash of a password nobody has, computed once.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    _post: FormPost<serde::de::IgnoredAny>,
) -> Result<Response, WebError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state
            .store()
            .delete_session(&secret_hash(cookie.value()))
            .await?;
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((jar, Redirect::to("/login")).into_response())
}
