//! The metadata store: DAGs, DAG versions, runs, task instances, tries and
//! task logs; the web UI's users, sessions, API tokens and alerts, and its
//! history searches; on PostgreSQL or SQLite.
//!
//! Both backends run the same SQL text (bound parameters written `$1`, which
//! both accept) through the [`on_pool!`] macro, and pass one shared test
//! suite. Times are always bound from Rust, never taken from the database's
//! clock, so a controllable clock drives both alike.

/// Runs `$body` in a transaction `$tx` on whichever pool the store holds,
/// committing when the body completes. An early `return` or `?` rolls back.
macro_rules! in_transaction {
    ($pool:expr, |$tx:ident| $body:block) => {
        match $pool {
            $crate::store::Pool::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Pool::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

mod alerts;
mod backfills;
mod dags;
mod history;
mod operations;
mod pipeline;
mod pools;
mod runs;
mod scheduled;
mod search;
mod task_instances;
mod tries;
mod users;
mod workers;

use std::str::FromStr;

use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::Notify;

pub use alerts::{AlertEvent, AlertFilter, AlertRow, NewAlert};
pub use backfills::{
    BackfillProgress, BackfillRow, NewBackfill, PlannedAction, PlannedRun, Reprocess,
};
pub use dags::{DagRow, DagSource, ImportErrorRow, SyncReport};
pub use history::{HistoryRow, RunFilter, RunSummary, TaskInstanceFilter};
pub use pipeline::{
    LEVELS, MetricRow, MinuteMetrics, NewBatch, OutputRow, QuarantinedMessage, QuarantinedRow,
    StagedBatchRow, TemplateSeen, new_sketch, output_name,
};
pub use pools::PoolRow;
pub use runs::{NewRun, RunRow, RunType, TaskSpec};
pub use scheduled::ScheduledDag;
pub use task_instances::{ReadyTi, TaskInstanceRow};
pub use tries::{Claim, KeyedLogLine, LogLine, TryOutcome, TryRow};
pub use users::{ApiTokenRow, Role, SessionRow, UnknownRole, UserRow};
pub use workers::{OrphanedTry, WorkerRow};

/// The announcement of a finished task: it wakes the scheduler to queue
/// the task's downstream, but cannot let a queued run start.
pub const TASK_FINISHED: &str = "task_finished";

/// The Postgres channel on which task and run changes are announced.
pub const EVENTS_CHANNEL: &str = "rtmas_events";

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `postgres://…` nor `sqlite:…`.
    #[error("unsupported database URL `{0}`: expected postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    /// The DAG is not in the store (never synced, or its file is gone).
    #[error("DAG `{0}` not found")]
    DagNotFound(String),
    /// A run with this id exists already for the DAG.
    #[error("run `{run_id}` of DAG `{dag_id}` exists already")]
    RunExists {
        /// The DAG.
        dag_id: String,
        /// The run id that is taken.
        run_id: String,
    },
    /// No pool has this name.
    #[error("pool `{0}` not found")]
    PoolNotFound(String),
    /// No backfill has this key.
    #[error("backfill {0} not found")]
    BackfillNotFound(i64),
    /// No run matches.
    #[error("run `{0}` not found")]
    RunNotFound(String),
    /// A user with this name exists already.
    #[error("user `{0}` exists already")]
    UserExists(String),
    /// No user has this name (or, for an API token, this key).
    #[error("user `{0}` not found")]
    UserNotFound(String),
    /// A stored value cannot be read back (a state name, a DAG definition).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Migrating the schema failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The job queue refused a job.
    #[error("job queue error: {0}")]
    Queue(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A connection pool to one of the two supported databases.
#[derive(Debug, Clone)]
pub enum Pool {
    /// PostgreSQL: production, many processes and machines.
    Postgres(PgPool),
    /// SQLite: standalone mode and small single-machine setups.
    Sqlite(SqlitePool),
}

/// Runs the same expression against whichever pool the store holds.
///
/// The body is type-checked once per backend, so a query written once works
/// on both as long as its SQL and bound types are portable.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::store::Pool::Postgres($p) => $body,
            $crate::store::Pool::Sqlite($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// Handle to the metadata store; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    events: Arc<Notify>,
    jobs: Arc<Notify>,
    runs_changed: Arc<AtomicBool>,
}

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite:PATH`), creating the
    /// SQLite file when missing.
    ///
    /// Fails when the URL is of another kind or the database is unreachable.
    pub async fn connect(url: &str) -> Result<Store> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlite_pool(SqliteConnectOptions::from_str(url)?).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        Ok(Store::from_pool(pool))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: Pool) -> Store {
        Store {
            pool,
            events: Arc::new(Notify::new()),
            jobs: Arc::new(Notify::new()),
            runs_changed: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The underlying pool, for the job queue and listeners.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Which backend this is: `postgres` or `sqlite`.
    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Creates or upgrades the schema, including the job queue's tables.
    ///
    /// Fails when a migration fails; migrations run in transactions, so a
    /// failed one leaves the schema as it was.
    pub async fn migrate(&self) -> Result<()> {
        match &self.pool {
            Pool::Postgres(pool) => {
                apalis_postgres::PostgresStorage::setup(pool)
                    .await
                    .map_err(|err| StoreError::Queue(err.to_string()))?;
                let mut migrator = sqlx::migrate!("../migrations/postgres");
                migrator.dangerous_set_table_name("rtmas_migrations");
                migrator.run(pool).await?;
            }
            Pool::Sqlite(pool) => {
                apalis_sqlite::SqliteStorage::setup(pool)
                    .await
                    .map_err(|err| StoreError::Queue(err.to_string()))?;
                let mut migrator = sqlx::migrate!("../migrations/sqlite");
                migrator.dangerous_set_table_name("rtmas_migrations");
                migrator.run(pool).await?;
            }
        }
        Ok(())
    }

    /// Tells waiting schedulers that something changed: in this process at
    /// once, and on Postgres to every process listening on
    /// [`EVENTS_CHANNEL`].
    pub async fn announce(&self, what: &str) -> Result<()> {
        if what != TASK_FINISHED {
            self.runs_changed.store(true, Ordering::Release);
        }
        self.wake_local();
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(EVENTS_CHANNEL)
                .bind(what)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Deletes the job queue's records of jobs that finished before
    /// `before`. The queue only delivers jobs; the task instance and its
    /// tries keep the history, so finished jobs are of no further use and
    /// would otherwise slow the queue's own bookkeeping as they pile up.
    /// Returns how many it deleted.
    pub async fn prune_queue(&self, before: DateTime<Utc>) -> Result<u64> {
        let n = match &self.pool {
            Pool::Postgres(pool) => sqlx::query(
                "DELETE FROM apalis.jobs WHERE status IN ('Done', 'Killed') AND done_at < $1",
            )
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
            // apalis-sqlite keeps `done_at` as Unix seconds.
            Pool::Sqlite(pool) => {
                sqlx::query("DELETE FROM Jobs WHERE status IN ('Done', 'Killed') AND done_at < $1")
                    .bind(before.timestamp())
                    .execute(pool)
                    .await?
                    .rows_affected()
            }
        };
        Ok(n)
    }

    /// Raises the in-process signal of [`Store::announce`]: wakes a waiting
    /// scheduler, or the next one to wait.
    pub(crate) fn wake_local(&self) {
        self.events.notify_waiters();
        self.events.notify_one();
    }

    /// Whether, since the last call, this process announced a change that
    /// may let a queued run start (anything but a finished task).
    pub fn take_runs_changed(&self) -> bool {
        self.runs_changed.swap(false, Ordering::AcqRel)
    }

    /// The in-process signal behind [`Store::announce`].
    pub fn local_events(&self) -> Arc<Notify> {
        self.events.clone()
    }

    /// An in-process signal raised whenever this handle queues jobs, so a
    /// worker in the same process (standalone mode) takes them at once.
    pub fn local_jobs(&self) -> Arc<Notify> {
        self.jobs.clone()
    }
}

/// Opens a SQLite pool tuned for several processes sharing one file: WAL,
/// a generous busy timeout, and foreign keys on.
pub async fn sqlite_pool(options: SqliteConnectOptions) -> Result<SqlitePool> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true);
    Ok(SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?)
}

/// Parses a stored state name, reporting a corrupt row otherwise.
pub(crate) fn parse_state<T: FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown state `{s}`")))
}
