//! Workers as the scheduler sees them: registered at start, beating while
//! they live, marked stopped when they exit. A running try whose worker has
//! stopped beating (killed, machine lost) or exited without finishing it is
//! an orphan: the scheduler ends it as failed, with the reason, and retries
//! it when tries are left.

use chrono::{DateTime, Utc};

use super::{Result, Store, TASK_FINISHED, on_pool};
use crate::state::TaskState;

/// A worker's record.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct WorkerRow {
    /// Its name, unique among workers.
    pub name: String,
    /// The host it runs on.
    pub hostname: String,
    /// Tries it runs at once.
    pub concurrency: i32,
    /// When it (last) started.
    pub started_at: DateTime<Utc>,
    /// Its last sign of life.
    pub last_heartbeat: DateTime<Utc>,
    /// When it stopped, if it did.
    pub stopped_at: Option<DateTime<Utc>>,
}

/// A running try whose worker is gone.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OrphanedTry {
    /// The task instance.
    pub ti_id: i64,
    /// The try.
    pub try_number: i32,
    /// First try plus retries.
    pub max_tries: i32,
    /// The task.
    pub task_id: String,
    /// The DAG version of its run.
    pub version_id: i64,
    /// The worker that ran it.
    pub worker: String,
    /// That worker's host.
    pub hostname: Option<String>,
    /// The worker's last heartbeat, if it ever registered.
    pub last_heartbeat: Option<DateTime<Utc>>,
    /// When the worker said it stopped, if it did.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Records a worker as started (again) and alive now.
    pub async fn register_worker(
        &self,
        name: &str,
        hostname: &str,
        concurrency: i32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO worker (name, hostname, concurrency, started_at, last_heartbeat) \
                   VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO UPDATE SET \
                   hostname = excluded.hostname, concurrency = excluded.concurrency, \
                   started_at = excluded.started_at, last_heartbeat = excluded.last_heartbeat, \
                   stopped_at = NULL";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(hostname)
            .bind(concurrency)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records that a worker is alive now.
    pub async fn worker_heartbeat(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE worker SET last_heartbeat = $2 WHERE name = $1";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records that a worker has exited; tries it left running become
    /// orphans at once.
    pub async fn worker_stopped(&self, name: &str, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE worker SET stopped_at = $2 WHERE name = $1";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        self.announce("worker_stopped").await
    }

    /// Every registered worker, most recently seen first.
    pub async fn list_workers(&self) -> Result<Vec<WorkerRow>> {
        let sql = "SELECT name, hostname, concurrency, started_at, last_heartbeat, stopped_at \
                   FROM worker ORDER BY last_heartbeat DESC";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// Running tries whose worker has beaten last before `silent_since`,
    /// has stopped, never registered, or has started again since the try
    /// began (a restarted worker with the same name runs none of its old
    /// tries).
    pub async fn orphaned_tries(&self, silent_since: DateTime<Utc>) -> Result<Vec<OrphanedTry>> {
        let sql = "SELECT ti.id AS ti_id, ti.try_number, ti.max_tries, ti.task_id, r.version_id, \
                   ti.worker, ti.hostname, w.last_heartbeat, w.stopped_at \
                   FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk \
                   LEFT JOIN worker w ON w.name = ti.worker \
                   WHERE ti.state = 'running' AND ti.worker IS NOT NULL AND (w.name IS NULL \
                   OR w.stopped_at IS NOT NULL OR w.last_heartbeat < $1 \
                   OR ti.start_date < w.started_at)";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(silent_since)
            .fetch_all(pool)
            .await?))
    }

    /// Ends an orphaned try as failed with `error`: the task instance goes
    /// to `up_for_retry` (when `retry_at` is given) or `failed`, and the
    /// reason goes to the try's record and log. Does nothing when the try
    /// has moved on meanwhile (its worker finished it after all). Returns
    /// whether this call ended it.
    pub async fn fail_orphaned_try(
        &self,
        orphan: &OrphanedTry,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let state = match retry_at {
            Some(_) => TaskState::UpForRetry,
            None => TaskState::Failed,
        };
        let ended = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE task_instance SET state = $4, end_date = $5, error = $6, \
                 next_try_at = $7, duration_ms = NULL \
                 WHERE id = $1 AND try_number = $2 AND worker = $3 AND state = 'running'",
            )
            .bind(orphan.ti_id)
            .bind(orphan.try_number)
            .bind(&orphan.worker)
            .bind(state.as_str())
            .bind(now)
            .bind(error)
            .bind(retry_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE task_try SET state = 'failed', end_date = $3, error = $4 \
                     WHERE ti_id = $1 AND try_number = $2",
                )
                .bind(orphan.ti_id)
                .bind(orphan.try_number)
                .bind(now)
                .bind(error)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO task_log (ti_id, try_number, ts, stream, line) \
                     VALUES ($1, $2, $3, 'rtmas', $4)",
                )
                .bind(orphan.ti_id)
                .bind(orphan.try_number)
                .bind(now)
                .bind(format!("try failed: {error}"))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            n > 0
        });
        if ended {
            self.announce(TASK_FINISHED).await?;
        }
        Ok(ended)
    }
}
