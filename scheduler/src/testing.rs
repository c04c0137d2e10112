//! Test support (feature `testing`): a fresh database for each test.
//!
//! PostgreSQL tests use the server named by `RTMAS_TEST_DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`) and create a
//! database of their own on it. They fail loudly when it is unreachable:
//! the test command (`scripts/test`) starts one.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::store::Store;

/// The server PostgreSQL tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("RTMAS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty database named after `label` and returns its URL.
///
/// # Panics
///
/// When the server cannot be reached or refuses: tests must not pass
/// without the service they claim to exercise.
pub async fn fresh_postgres_url(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let admin = admin_url();
    let name = format!(
        "rtmas_t_{}_{}_{}",
        label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<String>(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
    .to_lowercase();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|err| {
        panic!("PostgreSQL is required at {admin} (set RTMAS_TEST_DATABASE_URL): {err}")
    });
    // Identifiers cannot be bound; the name is built from [a-z0-9_] only.
    let drop_sql = format!("DROP DATABASE IF EXISTS {name}");
    let create_sql = format!("CREATE DATABASE {name}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop_sql))
        .execute(&mut conn)
        .await
        .expect("drop test database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create_sql))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(&admin);
    format!("{base}/{name}")
}

/// A migrated store on a fresh PostgreSQL database.
pub async fn postgres_store(label: &str) -> Store {
    let store = Store::connect(&fresh_postgres_url(label).await)
        .await
        .expect("connect to test database");
    store.migrate().await.expect("migrate test database");
    store
}

/// A migrated store on a fresh SQLite file inside `dir`.
pub async fn sqlite_store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite:{}", dir.join("rtmas.db").display());
    let store = Store::connect(&url).await.expect("open test database");
    store.migrate().await.expect("migrate test database");
    store
}

/// Defines, for each async test function `name(store: Store)`, a module
/// `name` with two tests: `postgres` and `sqlite`, each on a fresh database.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::testing::postgres_store(stringify!($name)).await).await;
            }

            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().expect("temp dir");
                super::$name($crate::testing::sqlite_store(dir.path()).await).await;
            }
        })*
    };
}
