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

/// A log line with its key, which orders the lines of a try.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct KeyedLogLine {
    /// The line's key; later lines have greater keys.
    pub id: i64,
    /// When the line was read.
    pub ts: DateTime<Utc>,
    /// `stdout`, `stderr` or `rtmas`.
    pub stream: String,
    /// The text.
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

/// Ends the try's own record; binds: ti id, try number, the try's state
/// (`success` or `failed`), end date, duration, error.
macro_rules! finish_try_update {
    () => {
        "UPDATE task_try SET state = $3, end_date = $4, duration_ms = $5, error = $6 \
         WHERE ti_id = $1 AND try_number = $2"
    };
}

/// How a try ends, as stored: the task instance's new state and the values
/// of its columns.
struct Ending<'a> {
    ti_id: i64,
    try_number: i32,
    state: TaskState,
    try_state: &'static str,
    end_date: DateTime<Utc>,
    duration_ms: i64,
    error: Option<&'a str>,
    retry_at: Option<DateTime<Utc>>,
    result: Option<&'a serde_json::Value>,
}

impl<'a> Ending<'a> {
    fn new(claim: &Claim, outcome: &'a TryOutcome, now: DateTime<Utc>) -> Ending<'a> {
        let (state, error, retry_at, result) = match outcome {
            TryOutcome::Success(result) => (TaskState::Success, None, None, result.as_ref()),
            TryOutcome::Failed {
                error,
                retry_at: Some(at),
            } => (TaskState::UpForRetry, Some(error.as_str()), Some(*at), None),
            TryOutcome::Failed {
                error,
                retry_at: None,
            } => (TaskState::Failed, Some(error.as_str()), None, None),
        };
        Ending {
            ti_id: claim.ti_id,
            try_number: claim.try_number,
            state,
            try_state: if state == TaskState::Success {
                "success"
            } else {
                "failed"
            },
            end_date: now,
            duration_ms: (now - claim.start_date).num_milliseconds().max(0),
            error,
            retry_at,
            result,
        }
    }
}

#[derive(sqlx::FromRow)]
struct RawClaimOf {
    ti_id: i64,
    claimed_try: i32,
    #[sqlx(flatten)]
    raw: RawClaim,
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
        Ok(self
            .claim_many(&[job], hostname, worker, now)
            .await?
            .pop()
            .flatten())
    }

    /// Claims several queued tries at once, as [`Store::claim`] does each:
    /// one statement and one commit for all of them on PostgreSQL, one
    /// transaction on SQLite. Returns, in the order of `jobs`, the claim of
    /// each try or `None` for those no longer queued.
    pub async fn claim_many(
        &self,
        jobs: &[TaskJob],
        hostname: &str,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<Claim>>> {
        // Keyed by try, not by task instance: a batch may hold a stale job
        // of an earlier try of the same task instance beside the current one.
        let mut claimed: std::collections::HashMap<(i64, i32), RawClaim> =
            std::collections::HashMap::with_capacity(jobs.len());
        match &self.pool {
            Pool::Postgres(pool) => {
                let ids: Vec<i64> = jobs.iter().map(|j| j.ti_id).collect();
                let tries: Vec<i32> = jobs.iter().map(|j| j.try_number).collect();
                let rows: Vec<RawClaimOf> = sqlx::query_as(concat!(
                    "WITH want AS (SELECT * FROM unnest($1::bigint[], $2::int[]) \
                     AS w(id, try_number)), \
                     claimed AS (UPDATE task_instance ti SET state = 'running', hostname = $3, \
                     worker = $4, start_date = $5 FROM want WHERE ti.id = want.id \
                     AND ti.try_number = want.try_number AND ti.state = 'queued' \
                     RETURNING ti.id, ti.try_number, ti.max_tries, ti.task_id, ti.kind, ti.run_pk), \
                     tried AS (INSERT INTO task_try \
                     (ti_id, try_number, state, hostname, worker, start_date) \
                     SELECT id, try_number, 'running', $3, $4, $5 FROM claimed) ",
                    claim_select!(),
                    ", ti.id AS ti_id, ti.try_number AS claimed_try \
                     FROM claimed ti JOIN dag_run r ON r.id = ti.run_pk",
                ))
                .bind(&ids)
                .bind(&tries)
                .bind(hostname)
                .bind(worker)
                .bind(now)
                .fetch_all(pool)
                .await?;
                claimed.extend(
                    rows.into_iter()
                        .map(|row| ((row.ti_id, row.claimed_try), row.raw)),
                );
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for job in jobs {
                    let n = sqlx::query(claim_update!())
                        .bind(job.ti_id)
                        .bind(job.try_number)
                        .bind(hostname)
                        .bind(worker)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n == 0 {
                        continue;
                    }
                    sqlx::query(
                        "INSERT INTO task_try (ti_id, try_number, state, hostname, worker, \
                         start_date) VALUES ($1, $2, 'running', $3, $4, $5)",
                    )
                    .bind(job.ti_id)
                    .bind(job.try_number)
                    .bind(hostname)
                    .bind(worker)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let raw: RawClaim = sqlx::query_as(concat!(
                        claim_select!(),
                        " FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk \
                         WHERE ti.id = $1",
                    ))
                    .bind(job.ti_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    claimed.insert((job.ti_id, job.try_number), raw);
                }
                tx.commit().await?;
            }
        }
        Ok(jobs
            .iter()
            .map(|job| {
                claimed
                    .remove(&(job.ti_id, job.try_number))
                    .map(|raw| Claim {
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
                    })
            })
            .collect())
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
        Ok(self
            .finish_many(&[(claim, outcome, now)])
            .await?
            .pop()
            .flatten())
    }

    /// Records how several tries ended, as [`Store::finish_try`] does each,
    /// with one statement and one commit (and one wake-up) for all. Returns,
    /// in order, each task instance's new state, or `None` for a try that is
    /// no longer the running one.
    pub async fn finish_many(
        &self,
        endings: &[(&Claim, &TryOutcome, DateTime<Utc>)],
    ) -> Result<Vec<Option<TaskState>>> {
        // A try ends once: a repeat of one in the same batch is answered
        // `None` and not sent.
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<bool> = endings
            .iter()
            .map(|(claim, _, _)| seen.insert((claim.ti_id, claim.try_number)))
            .collect();
        let endings: Vec<Ending> = endings
            .iter()
            .zip(&firsts)
            .filter(|(_, first)| **first)
            .map(|((claim, outcome, now), _)| Ending::new(claim, outcome, *now))
            .collect();
        // Tries that ended, keyed by try: a stale ending of an earlier try
        // of the same task instance must not pass for the current one's.
        let mut done: std::collections::HashSet<(i64, i32)> = std::collections::HashSet::new();
        match &self.pool {
            // The notification goes out when the statement commits, so the
            // scheduler never wakes before the new states are visible.
            Pool::Postgres(pool) => {
                let results: Vec<Option<String>> = endings
                    .iter()
                    .map(|e| e.result.map(|v| v.to_string()))
                    .collect();
                let rows: Vec<(i64, i32)> = sqlx::query_as(
                    "WITH f AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], \
                     $4::timestamptz[], $5::bigint[], $6::text[], $7::timestamptz[], $8::text[], \
                     $9::text[]) AS f(id, try_number, state, end_date, duration_ms, error, \
                     next_try_at, result, try_state)), \
                     done AS (UPDATE task_instance ti SET state = f.state, end_date = f.end_date, \
                     duration_ms = f.duration_ms, error = f.error, next_try_at = f.next_try_at, \
                     result = f.result::jsonb FROM f WHERE ti.id = f.id \
                     AND ti.try_number = f.try_number AND ti.state = 'running' \
                     RETURNING ti.id, ti.try_number), \
                     tried AS (UPDATE task_try t SET state = f.try_state, end_date = f.end_date, \
                     duration_ms = f.duration_ms, error = f.error FROM f JOIN done \
                     ON done.id = f.id AND done.try_number = f.try_number \
                     WHERE t.ti_id = f.id AND t.try_number = f.try_number), \
                     told AS (SELECT pg_notify($10, 'task_finished') WHERE EXISTS \
                     (SELECT 1 FROM done)) \
                     SELECT done.id, done.try_number FROM done CROSS JOIN told",
                )
                .bind(endings.iter().map(|e| e.ti_id).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.try_number).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.state.as_str()).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.end_date).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.duration_ms).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.error).collect::<Vec<_>>())
                .bind(endings.iter().map(|e| e.retry_at).collect::<Vec<_>>())
                .bind(&results)
                .bind(endings.iter().map(|e| e.try_state).collect::<Vec<_>>())
                .bind(EVENTS_CHANNEL)
                .fetch_all(pool)
                .await?;
                done.extend(rows);
                if !done.is_empty() {
                    self.wake_local();
                }
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for e in &endings {
                    let n = sqlx::query(finish_update!())
                        .bind(e.ti_id)
                        .bind(e.try_number)
                        .bind(e.state.as_str())
                        .bind(e.end_date)
                        .bind(e.duration_ms)
                        .bind(e.error)
                        .bind(e.retry_at)
                        .bind(e.result.map(Json))
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if n == 0 {
                        continue;
                    }
                    sqlx::query(finish_try_update!())
                        .bind(e.ti_id)
                        .bind(e.try_number)
                        .bind(e.try_state)
                        .bind(e.end_date)
                        .bind(e.duration_ms)
                        .bind(e.error)
                        .execute(&mut *tx)
                        .await?;
                    done.insert((e.ti_id, e.try_number));
                }
                tx.commit().await?;
                if !done.is_empty() {
                    self.announce(super::TASK_FINISHED).await?;
                }
            }
        }
        let mut sent = endings.iter();
        Ok(firsts
            .iter()
            .map(|first| {
                let ending = if *first { sent.next() } else { None };
                ending.and_then(|e| done.contains(&(e.ti_id, e.try_number)).then_some(e.state))
            })
            .collect())
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

    /// Up to `limit` lines of a try's log written after the line with key
    /// `after` (0 for the first), each with its key: the next page of a
    /// log that is being tailed.
    pub async fn task_log_after(
        &self,
        ti_id: i64,
        try_number: i32,
        after: i64,
        limit: i64,
    ) -> Result<Vec<KeyedLogLine>> {
        let sql = "SELECT id, ts, stream, line FROM task_log \
                   WHERE ti_id = $1 AND try_number = $2 AND id > $3 ORDER BY id LIMIT $4";
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(ti_id)
                .bind(try_number)
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
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
