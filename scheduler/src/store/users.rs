//! The web UI's users, their sign-in sessions and their API tokens.
//!
//! Passwords and tokens are hashed by the caller; the store keeps and
//! compares the strings it is given and never sees a secret.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::{Result, Store, StoreError, on_pool};

/// What a user may do; each role may do everything of the roles below it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads DAGs, runs, logs and alerts.
    Viewer,
    /// Also triggers, clears, pauses and backfills.
    Operator,
    /// Also manages users.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name as stored and shown: `viewer`, `operator`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A role name that is not `viewer`, `operator` or `admin`.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}`: expected viewer, operator or admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A stored user.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UserRow {
    /// Store key.
    pub id: i64,
    /// The name the user signs in with; unique.
    pub username: String,
    /// What the user may do.
    pub role: Role,
    /// The password hash as the web layer made it; never serialised.
    #[serde(skip)]
    pub password_hash: String,
    /// A disabled user cannot sign in, and its sessions and tokens stop
    /// working.
    pub disabled: bool,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

/// A live session and the user it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The signed-in user.
    pub user: UserRow,
    /// The token the session's forms must carry.
    pub csrf_token: String,
    /// When the session stops working.
    pub expires_at: DateTime<Utc>,
}

/// A stored API token (its hash is never read back).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct ApiTokenRow {
    /// Store key.
    pub id: i64,
    /// The user it acts as.
    pub user_id: i64,
    /// The name its owner gave it, e.g. `ci-deploy`.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was last presented, if ever.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct RawUser {
    id: i64,
    username: String,
    password_hash: String,
    role: String,
    disabled: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<RawUser> for UserRow {
    type Error = StoreError;

    fn try_from(raw: RawUser) -> Result<UserRow> {
        let role = raw.role.parse().map_err(|err: UnknownRole| {
            StoreError::Corrupt(format!("user `{}`: {err}", raw.username))
        })?;
        Ok(UserRow {
            id: raw.id,
            username: raw.username,
            role,
            password_hash: raw.password_hash,
            disabled: raw.disabled,
            created_at: raw.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct RawSession {
    #[sqlx(flatten)]
    user: RawUser,
    csrf_token: String,
    expires_at: DateTime<Utc>,
}

/// The columns of a [`RawUser`] from `app_user`.
const USER_COLUMNS: &str = "id, username, password_hash, role, disabled, created_at";

/// The columns of a [`RawUser`] from `app_user u` in a join, named plainly.
const JOINED_USER_COLUMNS: &str = "u.id AS id, u.username AS username, \
     u.password_hash AS password_hash, u.role AS role, u.disabled AS disabled, \
     u.created_at AS created_at";

const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, last_used_at";

/// Whether `err` is the refusal of a unique constraint (both backends).
fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

impl Store {
    /// Creates a user.
    ///
    /// Fails with [`StoreError::UserExists`] when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<UserRow> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO app_user (username, password_hash, role, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
        ));
        let raw: Result<RawUser, sqlx::Error> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(username)
                .bind(password_hash)
                .bind(role.as_str())
                .bind(false)
                .bind(now)
                .fetch_one(pool)
                .await
        });
        match raw {
            Ok(raw) => raw.try_into(),
            Err(err) if is_unique_violation(&err) => {
                Err(StoreError::UserExists(username.to_owned()))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The user with this name, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM app_user WHERE username = $1"
        ));
        let raw: Option<RawUser> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(username)
            .fetch_optional(pool)
            .await?);
        raw.map(UserRow::try_from).transpose()
    }

    /// Replaces a user's password hash. Sessions already open stay open.
    ///
    /// Fails with [`StoreError::UserNotFound`] for an unknown name.
    pub async fn set_password(&self, username: &str, password_hash: &str) -> Result<()> {
        self.update_user(
            "UPDATE app_user SET password_hash = $2 WHERE username = $1",
            username,
            password_hash,
        )
        .await
    }

    /// Gives a user another role, effective on its next request.
    ///
    /// Fails with [`StoreError::UserNotFound`] for an unknown name.
    pub async fn set_role(&self, username: &str, role: Role) -> Result<()> {
        self.update_user(
            "UPDATE app_user SET role = $2 WHERE username = $1",
            username,
            role.as_str(),
        )
        .await
    }

    /// Disables or re-enables a user. A disabled user's sessions and API
    /// tokens are not found while it stays disabled.
    ///
    /// Fails with [`StoreError::UserNotFound`] for an unknown name.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<()> {
        let sql = "UPDATE app_user SET disabled = $2 WHERE username = $1";
        let n = on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(username)
            .bind(disabled)
            .execute(pool)
            .await?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::UserNotFound(username.to_owned()));
        }
        Ok(())
    }

    /// Runs `sql`, an update of one user by name (`$1`) setting one text
    /// column to `$2`.
    async fn update_user(&self, sql: &'static str, username: &str, value: &str) -> Result<()> {
        let n = on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(username)
            .bind(value)
            .execute(pool)
            .await?
            .rows_affected());
        if n == 0 {
            return Err(StoreError::UserNotFound(username.to_owned()));
        }
        Ok(())
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM app_user ORDER BY username"
        ));
        let rows: Vec<RawUser> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?);
        rows.into_iter().map(UserRow::try_from).collect()
    }

    /// How many users there are, disabled ones included.
    pub async fn count_users(&self) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM app_user";
        let (n,): (i64,) = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_one(pool)
            .await?);
        Ok(n)
    }

    /// Records a session of `user_id`, known by the hash of its token.
    ///
    /// Fails with a database error when the token hash is taken or the
    /// user does not exist.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO user_session (token_hash, user_id, csrf_token, created_at, \
                   expires_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(token_hash)
            .bind(user_id)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The session with this token hash and its user; `None` when there is
    /// none, it expired (`expires_at <= now`) or its user is disabled.
    pub async fn session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<SessionRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {JOINED_USER_COLUMNS}, s.csrf_token AS csrf_token, \
             s.expires_at AS expires_at \
             FROM user_session s JOIN app_user u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT u.disabled"
        ));
        let raw: Option<RawSession> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(token_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?);
        raw.map(|raw| {
            Ok(SessionRow {
                user: raw.user.try_into()?,
                csrf_token: raw.csrf_token,
                expires_at: raw.expires_at,
            })
        })
        .transpose()
    }

    /// Ends a session (signing out); nothing happens for an unknown one.
    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let sql = "DELETE FROM user_session WHERE token_hash = $1";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(token_hash)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Deletes the sessions that expired at or before `now`. Returns how
    /// many it deleted.
    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql = "DELETE FROM user_session WHERE expires_at <= $1";
        Ok(on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Records an API token of `user_id`, known by its hash.
    ///
    /// Fails with [`StoreError::UserNotFound`] when the user does not
    /// exist, and with a database error when the hash is taken.
    pub async fn create_api_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiTokenRow> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_token (user_id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING {TOKEN_COLUMNS}"
        ));
        let row: Result<ApiTokenRow, sqlx::Error> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(user_id)
                .bind(name)
                .bind(token_hash)
                .bind(now)
                .fetch_one(pool)
                .await
        });
        row.map_err(|err| match err {
            sqlx::Error::Database(e) if e.is_foreign_key_violation() => {
                StoreError::UserNotFound(user_id.to_string())
            }
            err => err.into(),
        })
    }

    /// The user an API token acts as, recording that the token was used at
    /// `now` (to the minute: a later use within a minute of the recorded
    /// one is not written); `None` when the token is unknown or its user is
    /// disabled.
    pub async fn user_by_api_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<UserRow>> {
        let find = sqlx::AssertSqlSafe(format!(
            "SELECT {JOINED_USER_COLUMNS} FROM api_token t JOIN app_user u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND NOT u.disabled"
        ));
        let raw: Option<RawUser> = on_pool!(&self.pool, |pool| sqlx::query_as(find)
            .bind(token_hash)
            .fetch_optional(pool)
            .await?);
        let Some(raw) = raw else {
            return Ok(None);
        };

        // To the minute: a token used many times a second writes once.
        let used = "UPDATE api_token SET last_used_at = $2 WHERE token_hash = $1 \
                    AND (last_used_at IS NULL OR last_used_at < $3)";
        on_pool!(&self.pool, |pool| sqlx::query(used)
            .bind(token_hash)
            .bind(now)
            .bind(now - chrono::TimeDelta::minutes(1))
            .execute(pool)
            .await?
            .rows_affected());
        raw.try_into().map(Some)
    }

    /// A user's API tokens, oldest first.
    pub async fn list_api_tokens(&self, user_id: i64) -> Result<Vec<ApiTokenRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_token WHERE user_id = $1 ORDER BY id"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(user_id)
            .fetch_all(pool)
            .await?))
    }

    /// Deletes one of a user's API tokens. Returns false when the user has
    /// no token with this key (another user's token is left alone).
    pub async fn revoke_api_token(&self, user_id: i64, token_id: i64) -> Result<bool> {
        let sql = "DELETE FROM api_token WHERE id = $1 AND user_id = $2";
        let n = on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(token_id)
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_read_back_their_names_and_allow_the_roles_below() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().ok(), Some(role));
            assert_eq!(role.to_string(), role.as_str());
            assert_eq!(
                serde_json::to_value(role).ok(),
                Some(serde_json::Value::from(role.as_str()))
            );
        }
        assert!("Admin".parse::<Role>().is_err());
        assert!(Role::Admin.allows(Role::Operator) && Role::Operator.allows(Role::Operator));
        assert!(!Role::Viewer.allows(Role::Operator));
    }
}
