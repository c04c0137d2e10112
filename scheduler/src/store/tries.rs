//! Tries of task instances, as workers see them: claiming a queued try,
//! recording how it ended, and its log.
//!
//! On PostgreSQL, claiming and finishing are each one statement (one round
//! trip and one commit), since every task pays for them; SQLite runs the
//! same steps in a transaction.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{EVENTS_CHANNEL, Pool, Result, Store, on_pool};
use crate::queue::TaskJob;
use crate::state::TaskState;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct TryRow {
    /// The task instance.
    pub ti_id: i64,
    /// The try.
    pub try_number: i32,
    /// `running`, `success` or `failed`.
    pub state: String,
    /// The worker's host.
    pub hostname: String,
    /// The worker's name.
    pub worker: String,
    /// When it started.
    pub start_date: DateTime<Utc>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// How long it ran, in milliseconds.
    pub duration_ms: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A try a worker has claimed: everything it needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The task instance.
    pub ti_id: i64,
    /// The claimed try.
    pub try_number: i32,
    /// First try plus retries.
    pub max_tries: i32,
    /// The task.
    pub task_id: String,
    /// Its job kind.
    pub kind: String,
    /// The run's store key.
    pub run_pk: i64,
    /// The DAG.
    pub dag_id: String,
    /// The run id.
    pub run_id: String,
    /// The DAG version the run was created from.
    pub version_id: i64,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// Start of the run's data interval.
    pub data_interval_start: DateTime<Utc>,
    /// End of the run's data interval.
    pub data_interval_end: DateTime<Utc>,
    /// The trigger's configuration.
    pub conf: serde_json::Value,
    /// When the try started.
    pub start_date: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawClaim {
    max_tries: i32,
    task_id: String,
    kind: String,
    run_pk: i64,
    dag_id: String,
    run_id: String,
    version_id: i64,
    logical_date: DateTime<Utc>,
    data_interval_start: DateTime<Utc>,
    data_interval_end: DateTime<Utc>,
    conf: Json<serde_json::Value>,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TryOutcome {
    /// It succeeded, with an optional result for downstream tasks and the UI.
    Success(Option<serde_json::Value>),
    /// It failed; `retry_at` is when the next try may be queued, `None` when
    /// no try is left.
    Failed {
        /// Why, in one line.
        error: String,
        /// When to retry.
        retry_at: Option<DateTime<Utc>>,
    },
}

/// One line of a task log.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct LogLine {
    /// When the line was read.
    pub ts: DateTime<Utc>,
    /// `stdout`, `stderr` or `rtmas` for the worker's own notes.
    pub stream: String,
    /// The text, without its line break.
    pub line: String,
}

/// Moves a queued try to running; binds: ti id, try number, hostname,
/// worker, start date.
macro_rules! claim_update {
    () => {
        "UPDATE task_instance SET state = 'running', hostname = $3, worker = $4, \
         start_date = $5 WHERE id = $1 AND try_number = $2 AND state = 'queued'"
    };
}

/// What a worker needs to know of a claimed try, from `ti` and its run `r`.
macro_rules! claim_select {
    () => {
        "SELECT ti.max_tries, ti.task_id, ti.kind, r.id AS run_pk, r.dag_id, r.run_id, \
         r.version_id, r.logical_date, r.data_interval_start, r.data_interval_end, r.conf"
    };
}

/// Ends the running try of a task instance; binds: ti id, try number, state,
/// end date, duration, error, next try time, result.
macro_rules! finish_update {
    () => {
        "UPDATE task_instance SET state = $3, end_date = $4, duration_ms = $5, \
         error = $6, next_try_at = $7, result = $8 \
         WHERE id = $1 AND try_number = $2 AND state = 'running'"
    };
}

/// Ends the try's own record; binds as [`finish_update`], with the try's
/// state (`success` or `failed`) ninth.
macro_rules! finish_try_update {
    () => {
        "UPDATE task_try SET state = $9, end_date = $4, duration_ms = $5, error = $6 \
         WHERE ti_id = $1 AND try_number = $2"
    };
}

impl Store {
    /// Claims a queued try for a worker: moves it to `running` and records
    /// the try. Returns `None` when the try is no longer queued (already
    /// taken, cleared or superseded), so no try ever starts twice.
    pub async fn claim(
        &self,
        job: TaskJob,
        hostname: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Claim>> {
        let raw: Option<RawClaim> = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as(concat!(
                    "WITH claimed AS (",
                    claim_update!(),
                    " RETURNING id, try_number, max_tries, task_id, kind, run_pk), \
                     tried AS (INSERT INTO task_try \
                     (ti_id, try_number, state, hostname, worker, start_date) \
                     SELECT id, try_number, 'running', $3, $4, $5 FROM claimed) ",
                    claim_select!(),
                    " FROM claimed ti JOIN dag_run r ON r.id = ti.run_pk",
                ))
                .bind(job.ti_id)
                .bind(job.try_number)
                .bind(hostname)
                .bind(worker)
                .bind(now)
                .fetch_optional(pool)
                .await?
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let claimed = sqlx::query(claim_update!())
                    .bind(job.ti_id)
                    .bind(job.try_number)
                    .bind(hostname)
                    .bind(worker)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if claimed == 0 {
                    return Ok(None);
                }
                sqlx::query(
                    "INSERT INTO task_try (ti_id, try_number, state, hostname, worker, start_date) \
                     VALUES ($1, $2, 'running', $3, $4, $5)",
                )
                .bind(job.ti_id)
                .bind(job.try_number)
                .bind(hostname)
                .bind(worker)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let raw = sqlx::query_as(concat!(
                    claim_select!(),
                    " FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk WHERE ti.id = $1",
                ))
                .bind(job.ti_id)
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Some(raw)
            }
        };
        Ok(raw.map(|raw| Claim {
            ti_id: job.ti_id,
            try_number: job.try_number,
            max_tries: raw.max_tries,
            task_id: raw.task_id,
            kind: raw.kind,
            run_pk: raw.run_pk,
            dag_id: raw.dag_id,
            run_id: raw.run_id,
            version_id: raw.version_id,
            logical_date: raw.logical_date,
            data_interval_start: raw.data_interval_start,
            data_interval_end: raw.data_interval_end,
            conf: raw.conf.0,
            start_date: now,
        }))
    }

    /// Records how a claimed try ended and wakes the scheduler. Returns the
    /// state the task instance is now in. Does nothing (and returns `None`)
    /// when the try is no longer the running one, e.g. it was cleared.
    pub async fn finish_try(
        &self,
        claim: &Claim,
        outcome: &TryOutcome,
        now: DateTime<Utc>,
    ) -> Result<Option<TaskState>> {
        let duration_ms = (now - claim.start_date).num_milliseconds().max(0);
        let (state, error, retry_at, result) = match outcome {
            TryOutcome::Success(result) => (TaskState::Success, None, None, result.clone()),
            TryOutcome::Failed {
                error,
                retry_at: Some(at),
            } => (TaskState::UpForRetry, Some(error.as_str()), Some(*at), None),
            TryOutcome::Failed {
                error,
                retry_at: None,
            } => (TaskState::Failed, Some(error.as_str()), None, None),
        };
        let try_state = if state == TaskState::Success {
            "success"
        } else {
            "failed"
        };
        let updated = match &self.pool {
            // The notification goes out when the statement commits, so the
            // scheduler never wakes before the new state is visible.
            Pool::Postgres(pool) => {
                let (n,): (i64,) = sqlx::query_as(concat!(
                    "WITH done AS (",
                    finish_update!(),
                    " RETURNING id), tried AS (",
                    finish_try_update!(),
                    " AND EXISTS (SELECT 1 FROM done)), \
                     told AS (SELECT pg_notify($10, 'task_finished') FROM done) \
                     SELECT count(*) FROM told",
                ))
                .bind(claim.ti_id)
                .bind(claim.try_number)
                .bind(state.as_str())
                .bind(now)
                .bind(duration_ms)
                .bind(error)
                .bind(retry_at)
                .bind(result.map(Json))
                .bind(try_state)
                .bind(EVENTS_CHANNEL)
                .fetch_one(pool)
                .await?;
                self.wake_local();
                n as u64
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let n = sqlx::query(finish_update!())
                    .bind(claim.ti_id)
                    .bind(claim.try_number)
                    .bind(state.as_str())
                    .bind(now)
                    .bind(duration_ms)
                    .bind(error)
                    .bind(retry_at)
                    .bind(result.clone().map(Json))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if n > 0 {
                    // Bound like the statement above, which shares its
                    // numbering with this one on PostgreSQL.
                    sqlx::query(finish_try_update!())
                        .bind(claim.ti_id)
                        .bind(claim.try_number)
                        .bind(state.as_str())
                        .bind(now)
                        .bind(duration_ms)
                        .bind(error)
                        .bind(retry_at)
                        .bind(result.clone().map(Json))
                        .bind(try_state)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                if n > 0 {
                    self.announce(super::TASK_FINISHED).await?;
                }
                n
            }
        };
        Ok((updated > 0).then_some(state))
    }

    /// Every try a worker started for a task instance, first first.
    pub async fn task_tries(&self, ti_id: i64) -> Result<Vec<TryRow>> {
        let sql = "SELECT ti_id, try_number, state, hostname, worker, start_date, end_date, \
                   duration_ms, error FROM task_try WHERE ti_id = $1 ORDER BY try_number";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(ti_id)
            .fetch_all(pool)
            .await?))
    }

    /// Appends lines to the log of a try.
    pub async fn append_log(&self, ti_id: i64, try_number: i32, lines: &[LogLine]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            for line in lines {
                sqlx::query(
                    "INSERT INTO task_log (ti_id, try_number, ts, stream, line) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(ti_id)
                .bind(try_number)
                .bind(line.ts)
                .bind(&line.stream)
                .bind(&line.line)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The log of a try, in the order it was written.
    pub async fn task_log(&self, ti_id: i64, try_number: i32) -> Result<Vec<LogLine>> {
        let sql = "SELECT ts, stream, line FROM task_log WHERE ti_id = $1 AND try_number = $2 \
                   ORDER BY id";
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(ti_id)
                .bind(try_number)
                .fetch_all(pool)
                .await?
        }))
    }
}
