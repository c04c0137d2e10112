//! Task instances, their tries and their logs: queued by the scheduler,
//! claimed and finished by workers.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Pool, Result, Store, StoreError, on_pool, parse_state};
use crate::queue::{QUEUE_NAME, TaskJob};
use crate::state::TaskState;

/// A stored task instance.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TaskInstanceRow {
    /// Store key.
    pub id: i64,
    /// Store key of its run.
    pub run_pk: i64,
    /// The DAG.
    pub dag_id: String,
    /// The task.
    pub task_id: String,
    /// The job kind that runs it.
    pub kind: String,
    /// Its state.
    pub state: TaskState,
    /// The current (or last) try; 0 before the first.
    pub try_number: i32,
    /// First try plus retries.
    pub max_tries: i32,
    /// Host of the worker that ran the current try.
    pub hostname: Option<String>,
    /// Name of the worker that ran the current try.
    pub worker: Option<String>,
    /// When the current try was queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// When the current try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_date: Option<DateTime<Utc>>,
    /// Run time of the current try in milliseconds.
    pub duration_ms: Option<i64>,
    /// When the next try may be queued (`up_for_retry`).
    pub next_try_at: Option<DateTime<Utc>>,
    /// Why the last try failed.
    pub error: Option<String>,
}

#[derive(sqlx::FromRow)]
struct RawTi {
    id: i64,
    run_pk: i64,
    dag_id: String,
    task_id: String,
    kind: String,
    state: String,
    try_number: i32,
    max_tries: i32,
    hostname: Option<String>,
    worker: Option<String>,
    queued_at: Option<DateTime<Utc>>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
    next_try_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

impl TryFrom<RawTi> for TaskInstanceRow {
    type Error = StoreError;

    fn try_from(r: RawTi) -> Result<TaskInstanceRow> {
        Ok(TaskInstanceRow {
            id: r.id,
            run_pk: r.run_pk,
            dag_id: r.dag_id,
            task_id: r.task_id,
            kind: r.kind,
            state: parse_state(&r.state)?,
            try_number: r.try_number,
            max_tries: r.max_tries,
            hostname: r.hostname,
            worker: r.worker,
            queued_at: r.queued_at,
            start_date: r.start_date,
            end_date: r.end_date,
            duration_ms: r.duration_ms,
            next_try_at: r.next_try_at,
            error: r.error,
        })
    }
}

macro_rules! ti_columns {
    () => {
        "id, run_pk, dag_id, task_id, kind, state, try_number, max_tries, \
     hostname, worker, queued_at, start_date, end_date, duration_ms, next_try_at, error"
    };
}

/// One try as a worker recorded it.
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

impl Store {
    /// The task instances of a run, in creation (task file) order.
    pub async fn task_instances(&self, run_pk: i64) -> Result<Vec<TaskInstanceRow>> {
        let sql: &str = concat!(
            "SELECT ",
            ti_columns!(),
            " FROM task_instance WHERE run_pk = $1 ORDER BY id"
        );
        let rows: Vec<RawTi> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql).bind(run_pk).fetch_all(pool).await?
        });
        rows.into_iter().map(TaskInstanceRow::try_from).collect()
    }

    /// One task instance by store key.
    pub async fn task_instance(&self, ti_id: i64) -> Result<TaskInstanceRow> {
        let sql: &str = concat!(
            "SELECT ",
            ti_columns!(),
            " FROM task_instance WHERE id = $1"
        );
        let row: Option<RawTi> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(ti_id)
            .fetch_optional(pool)
            .await?);
        row.ok_or_else(|| StoreError::Corrupt(format!("task instance {ti_id} is missing")))?
            .try_into()
    }

    /// Moves task instances to a final state without running them
    /// (`upstream_failed`, `skipped`), each only if it is still in the state
    /// the caller saw. Returns how many moved.
    pub async fn settle_task_instances(
        &self,
        changes: &[(i64, TaskState, TaskState)],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let mut moved = 0;
            for (ti_id, from, to) in changes {
                moved += sqlx::query(
                    "UPDATE task_instance SET state = $3, end_date = $4 \
                     WHERE id = $1 AND state = $2",
                )
                .bind(ti_id)
                .bind(from.as_str())
                .bind(to.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(moved)
        })
    }

    /// Queues the next try of each task instance that is still in the state
    /// the caller saw, and puts one job per try on the queue, in one
    /// transaction. Returns the jobs queued.
    pub async fn enqueue(
        &self,
        tis: &[(i64, TaskState)],
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskJob>> {
        let update = "UPDATE task_instance SET state = 'queued', try_number = try_number + 1, \
             queued_at = $3, next_try_at = NULL, hostname = NULL, worker = NULL, \
             start_date = NULL, end_date = NULL, duration_ms = NULL \
             WHERE id = $1 AND state = $2 RETURNING try_number";
        let jobs = match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let mut jobs = Vec::with_capacity(tis.len());
                for (ti_id, from) in tis {
                    let row: Option<(i32,)> = sqlx::query_as(update)
                        .bind(ti_id)
                        .bind(from.as_str())
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((try_number,)) = row {
                        jobs.push(TaskJob {
                            ti_id: *ti_id,
                            try_number,
                        });
                    }
                }
                let tasks = jobs.iter().map(|job| job.to_apalis()).collect();
                apalis_postgres::queries::push_tasks(&mut *tx, QUEUE_NAME, tasks)
                    .await
                    .map_err(|err| StoreError::Queue(err.to_string()))?;
                tx.commit().await?;
                jobs
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let mut jobs = Vec::with_capacity(tis.len());
                for (ti_id, from) in tis {
                    let row: Option<(i32,)> = sqlx::query_as(update)
                        .bind(ti_id)
                        .bind(from.as_str())
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((try_number,)) = row {
                        jobs.push(TaskJob {
                            ti_id: *ti_id,
                            try_number,
                        });
                    }
                }
                let tasks: Vec<_> = jobs.iter().map(|job| job.to_apalis()).collect();
                apalis_sqlite::queries::push_tasks(&mut *tx, QUEUE_NAME, &tasks)
                    .await
                    .map_err(|err| StoreError::Queue(err.to_string()))?;
                tx.commit().await?;
                jobs
            }
        };
        if !jobs.is_empty() {
            self.jobs.notify_waiters();
        }
        Ok(jobs)
    }

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
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let claimed = sqlx::query(
                "UPDATE task_instance SET state = 'running', hostname = $3, worker = $4, \
                 start_date = $5 WHERE id = $1 AND try_number = $2 AND state = 'queued'",
            )
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
            let raw: RawClaim = sqlx::query_as(
                "SELECT ti.max_tries, ti.task_id, ti.kind, r.id AS run_pk, r.dag_id, r.run_id, \
                 r.version_id, r.logical_date, r.data_interval_start, r.data_interval_end, \
                 r.conf FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk \
                 WHERE ti.id = $1",
            )
            .bind(job.ti_id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(Claim {
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
        })
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
        let updated = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE task_instance SET state = $3, end_date = $4, duration_ms = $5, \
                 error = $6, next_try_at = $7, result = $8 \
                 WHERE id = $1 AND try_number = $2 AND state = 'running'",
            )
            .bind(claim.ti_id)
            .bind(claim.try_number)
            .bind(state.as_str())
            .bind(now)
            .bind(duration_ms)
            .bind(error)
            .bind(retry_at)
            .bind(result.map(Json))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "UPDATE task_try SET state = $3, end_date = $4, duration_ms = $5, error = $6 \
                 WHERE ti_id = $1 AND try_number = $2",
            )
            .bind(claim.ti_id)
            .bind(claim.try_number)
            .bind(try_state)
            .bind(now)
            .bind(duration_ms)
            .bind(error)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            n
        });
        if updated == 0 {
            return Ok(None);
        }
        self.announce("task_finished").await?;
        Ok(Some(state))
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
