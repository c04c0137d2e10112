//! Who is asking: passwords (Argon2id), sessions, API tokens, roles and
//! CSRF tokens.
//!
//! A session is a random secret in an `HttpOnly`, `SameSite=Lax` cookie; an
//! API token is a random secret sent as `Authorization: Bearer …`. The store
//! keeps only their SHA-256, so a leaked database opens no session. Every
//! session has its own CSRF token: forms carry it in a hidden field, and
//! scripts in an `X-CSRF-Token` header. Token calls need no CSRF token,
//! since a browser never sends one by itself.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::CookieJar;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use rtmas_scheduler::store::{Role, UserRow};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::{AppState, WebError};

/// The cookie that holds a session's secret.
pub const SESSION_COOKIE: &str = "rtmas_session";
/// The cookie that pairs with the sign-in form's CSRF field.
pub const LOGIN_COOKIE: &str = "rtmas_login";
/// The header in which scripts send the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field in which forms send it.
pub const CSRF_FIELD: &str = "csrf_token";

/// Hashes a password with Argon2id and a fresh salt, as a PHC string.
///
/// Fails only when the system's random source does.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| WebError::Internal(format!("hashing a password: {err}")))
}

/// Whether `password` matches the PHC string `hash`; false for a hash that
/// does not parse.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new random secret: 32 bytes, base64url without padding.
///
/// # Panics
///
/// When the operating system has no random source, which leaves nothing
/// safe to do.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The SHA-256 of a secret, hex: what the store keeps of it.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// How the user proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A session cookie, with the session's CSRF token.
    Session {
        /// The CSRF token forms and scripts must send back.
        csrf_token: String,
    },
    /// An API token.
    Token,
}

/// The signed-in user of a request. Extracting it fails with
/// [`WebError::Unauthorized`] when there is none.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user.
    pub user: UserRow,
    /// How they signed in.
    pub credential: Credential,
}

impl CurrentUser {
    /// Fails with [`WebError::Forbidden`] unless the user's role allows
    /// what needs `role`.
    pub fn require(&self, role: Role) -> Result<(), WebError> {
        if self.user.role.allows(role) {
            Ok(())
        } else {
            Err(WebError::Forbidden(role))
        }
    }

    /// Whether the user may trigger, backfill, clear, mark and pause.
    pub fn can_operate(&self) -> bool {
        self.user.role.allows(Role::Operator)
    }

    /// The session's CSRF token; empty for token calls, which need none.
    pub fn csrf_token(&self) -> &str {
        match &self.credential {
            Credential::Session { csrf_token } => csrf_token,
            Credential::Token => "",
        }
    }
}

impl CurrentUser {
    /// The user the request's token or session cookie names, if any.
    ///
    /// Fails on a malformed `Authorization` header, or when the store does.
    pub async fn from_headers(
        headers: &HeaderMap,
        state: &AppState,
    ) -> Result<Option<CurrentUser>, WebError> {
        let now = Utc::now();
        Ok(if let Some(token) = bearer_token(headers)? {
            state
                .store()
                .user_by_api_token(&secret_hash(token), now)
                .await?
                .map(|user| CurrentUser {
                    user,
                    credential: Credential::Token,
                })
        } else {
            let jar = CookieJar::from_headers(headers);
            match jar.get(SESSION_COOKIE) {
                Some(cookie) => state
                    .store()
                    .session(&secret_hash(cookie.value()), now)
                    .await?
                    .map(|session| CurrentUser {
                        user: session.user,
                        credential: Credential::Session {
                            csrf_token: session.csrf_token,
                        },
                    }),
                None => None,
            }
        })
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        if let Some(cached) = parts.extensions.get::<CurrentUser>() {
            return Ok(cached.clone());
        }
        let user = CurrentUser::from_headers(&parts.headers, state)
            .await?
            .ok_or(WebError::Unauthorized)?;
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// The token of an `Authorization: Bearer …` header, if there is one.
fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, WebError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| WebError::BadRequest("the Authorization header is not text".to_owned()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some(token.trim())),
        _ => Err(WebError::BadRequest(
            "the Authorization header must be `Bearer <token>`".to_owned(),
        )),
    }
}

/// The user of an API call that changes something: signed in, and, when
/// by session, with the session's CSRF token in the `X-CSRF-Token` header.
#[derive(Debug, Clone)]
pub struct ApiWriter(pub CurrentUser);

impl FromRequestParts<AppState> for ApiWriter {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if let Credential::Session { csrf_token } = &user.credential
            && !is_safe(&parts.method)
        {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !same_secret(sent, csrf_token) {
                return Err(WebError::Csrf);
            }
        }
        Ok(ApiWriter(user))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A posted form of a signed-in user, checked against the session's CSRF
/// token before its fields are read as `T`.
#[derive(Debug)]
pub struct FormPost<T> {
    /// Who posted it.
    pub user: CurrentUser,
    /// Its fields.
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf_token: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for FormPost<T> {
    type Rejection = WebError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        let (mut parts, body) = req.into_parts();
        let user = CurrentUser::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| WebError::BadRequest("the form is larger than 1 MiB".to_owned()))?;
        let field: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|err| WebError::BadRequest(format!("the form cannot be read: {err}")))?;
        if !same_secret(&field.csrf_token, user.csrf_token()) || user.csrf_token().is_empty() {
            return Err(WebError::Csrf);
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|err| WebError::BadRequest(format!("the form is invalid: {err}")))?;
        Ok(FormPost { user, form })
    }
}
