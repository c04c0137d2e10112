//! DAG runs: created by triggers (and by schedules and backfills), started
//! by the scheduler, finished when their leaves are.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Pool, Result, Store, StoreError, on_pool, parse_state};
use crate::state::RunState;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// Triggered by a person or a program.
    Manual,
    /// Created by the DAG's schedule.
    Scheduled,
    /// Created by a backfill.
    Backfill,
}

impl RunType {
    /// The name as stored, and as the prefix of generated run ids.
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Manual => "manual",
            RunType::Scheduled => "scheduled",
            RunType::Backfill => "backfill",
        }
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The DAG to run; its current version is recorded on the run.
    pub dag_id: String,
    /// Unique within the DAG; see [`NewRun::default_run_id`].
    pub run_id: String,
    /// Why the run exists.
    pub run_type: RunType,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// Start of the data interval it covers.
    pub data_interval_start: DateTime<Utc>,
    /// End (exclusive) of the data interval it covers.
    pub data_interval_end: DateTime<Utc>,
    /// Configuration passed by the trigger; overrides DAG params by name.
    pub conf: serde_json::Value,
}

impl NewRun {
    /// A manual run at `now` covering the empty interval `[now, now)`.
    pub fn manual(dag_id: &str, conf: serde_json::Value, now: DateTime<Utc>) -> NewRun {
        NewRun {
            dag_id: dag_id.to_owned(),
            run_id: Self::default_run_id(RunType::Manual, now),
            run_type: RunType::Manual,
            logical_date: now,
            data_interval_start: now,
            data_interval_end: now,
            conf,
        }
    }

    /// Airflow-style run id: `manual__2026-12-03T20:00:00.123456+00:00`.
    pub fn default_run_id(run_type: RunType, logical_date: DateTime<Utc>) -> String {
        format!(
            "{}__{}",
            run_type.as_str(),
            logical_date.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        )
    }
}

/// A task as a run's task instance is made from it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The task's id.
    pub task_id: String,
    /// Its job kind.
    pub kind: String,
    /// First try plus retries.
    pub max_tries: i32,
    /// The pool whose slots it takes while queued or running.
    pub pool: Option<String>,
    /// How many of them.
    pub pool_slots: i32,
}

impl TaskSpec {
    /// The spec of `task` in `dag`, with its effective retries.
    pub fn of(dag: &crate::dag::Dag, task: &crate::dag::Task) -> TaskSpec {
        let retries = dag.task_args(task).retries.unwrap_or(0);
        TaskSpec {
            task_id: task.id.clone(),
            kind: task.kind.clone(),
            max_tries: i32::try_from(retries).unwrap_or(i32::MAX - 1) + 1,
            pool: task.pool.clone(),
            pool_slots: i32::try_from(task.pool_slots).unwrap_or(i32::MAX),
        }
    }

    /// A spec with no pool, for tests and tools.
    pub fn new(task_id: &str, kind: &str, max_tries: i32) -> TaskSpec {
        TaskSpec {
            task_id: task_id.to_owned(),
            kind: kind.to_owned(),
            max_tries,
            pool: None,
            pool_slots: 1,
        }
    }
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRow {
    /// Store key of the run.
    pub id: i64,
    /// The DAG.
    pub dag_id: String,
    /// The run id, unique within the DAG.
    pub run_id: String,
    /// Why it exists: `manual`, `scheduled` or `backfill`.
    pub run_type: String,
    /// Its state.
    pub state: RunState,
    /// The DAG version it runs.
    pub version_id: i64,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// Start of its data interval.
    pub data_interval_start: DateTime<Utc>,
    /// End (exclusive) of its data interval.
    pub data_interval_end: DateTime<Utc>,
    /// The trigger's configuration.
    pub conf: serde_json::Value,
    /// When it was created.
    pub queued_at: DateTime<Utc>,
    /// When the scheduler started it.
    pub start_date: Option<DateTime<Utc>>,
    /// When it finished.
    pub end_date: Option<DateTime<Utc>>,
    /// The backfill that created or last re-ran it.
    pub backfill_id: Option<i64>,
    /// When it was found unfinished past its DAG's deadline.
    pub deadline_missed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(super) struct RawRun {
    id: i64,
    dag_id: String,
    run_id: String,
    run_type: String,
    state: String,
    version_id: i64,
    logical_date: DateTime<Utc>,
    data_interval_start: DateTime<Utc>,
    data_interval_end: DateTime<Utc>,
    conf: Json<serde_json::Value>,
    queued_at: DateTime<Utc>,
    start_date: Option<DateTime<Utc>>,
    end_date: Option<DateTime<Utc>>,
    backfill_id: Option<i64>,
    deadline_missed_at: Option<DateTime<Utc>>,
}

impl TryFrom<RawRun> for RunRow {
    type Error = StoreError;

    fn try_from(raw: RawRun) -> Result<RunRow> {
        Ok(RunRow {
            id: raw.id,
            dag_id: raw.dag_id,
            run_id: raw.run_id,
            run_type: raw.run_type,
            state: parse_state(&raw.state)?,
            version_id: raw.version_id,
            logical_date: raw.logical_date,
            data_interval_start: raw.data_interval_start,
            data_interval_end: raw.data_interval_end,
            conf: raw.conf.0,
            queued_at: raw.queued_at,
            start_date: raw.start_date,
            end_date: raw.end_date,
            backfill_id: raw.backfill_id,
            deadline_missed_at: raw.deadline_missed_at,
        })
    }
}

macro_rules! run_columns {
    () => {
        "id, dag_id, run_id, run_type, state, version_id, logical_date, \
     data_interval_start, data_interval_end, conf, queued_at, start_date, end_date, backfill_id, \
     deadline_missed_at"
    };
}
pub(super) use run_columns;

/// Inserts a run unless one with its id or (for scheduled and backfill
/// runs) its logical date exists. Binds the columns in the order named.
pub(super) const INSERT_RUN: &str = "INSERT INTO dag_run (dag_id, run_id, run_type, state, \
     version_id, logical_date, data_interval_start, data_interval_end, conf, queued_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING";

/// Running runs of a DAG in one queue (`$2`: the backfill, or NULL for the
/// DAG's own runs); the backends spell NULL-safe equality differently.
const COUNT_RUNNING_PG: &str = "SELECT COUNT(*) FROM dag_run WHERE dag_id = $1 \
     AND state = 'running' AND backfill_id IS NOT DISTINCT FROM $2";
const COUNT_RUNNING_SQLITE: &str = "SELECT COUNT(*) FROM dag_run WHERE dag_id = $1 \
     AND state = 'running' AND backfill_id IS $2";

/// Inside the transaction `$tx`, moves a queued run to `running` and counts
/// the running runs of its queue with `$count`. Evaluates to whether it
/// started within `$limit`; when it did not, the caller returns and the
/// dropped transaction rolls back.
macro_rules! start_within_limit {
    ($tx:ident, $run:expr, $limit:expr, $count:expr, $now:expr) => {{
        let started = sqlx::query(
            "UPDATE dag_run SET state = 'running', start_date = $2 \
             WHERE id = $1 AND state = 'queued'",
        )
        .bind($run.id)
        .bind($now)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1;
        match $limit {
            Some(limit) if started => {
                let (running,): (i64,) = sqlx::query_as($count)
                    .bind(&$run.dag_id)
                    .bind($run.backfill_id)
                    .fetch_one(&mut *$tx)
                    .await?;
                running <= limit
            }
            _ => started,
        }
    }};
}

pub(super) fn convert(rows: Vec<RawRun>) -> Result<Vec<RunRow>> {
    rows.into_iter().map(RunRow::try_from).collect()
}

impl Store {
    /// Creates a run in state `queued` on the DAG's current version.
    ///
    /// Fails with [`StoreError::DagNotFound`] for an unknown or inactive DAG
    /// and [`StoreError::RunExists`] when the run id, or for a scheduled or backfill run
    /// its logical date, is taken.
    pub async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> Result<RunRow> {
        let dag = self.dag(&run.dag_id).await?;
        if !dag.is_active {
            return Err(StoreError::DagNotFound(run.dag_id.clone()));
        }
        let sql = format!(concat!("{} RETURNING ", run_columns!()), INSERT_RUN);
        let raw: Option<RawRun> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&run.dag_id)
                .bind(&run.run_id)
                .bind(run.run_type.as_str())
                .bind(RunState::Queued.as_str())
                .bind(dag.version_id)
                .bind(run.logical_date)
                .bind(run.data_interval_start)
                .bind(run.data_interval_end)
                .bind(Json(&run.conf))
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        let row = raw.ok_or_else(|| StoreError::RunExists {
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
        })?;
        let row = RunRow::try_from(row)?;
        self.announce("run_created").await?;
        Ok(row)
    }

    /// One run by its store key.
    pub async fn run(&self, id: i64) -> Result<RunRow> {
        let sql: &str = concat!("SELECT ", run_columns!(), " FROM dag_run WHERE id = $1");
        let raw: Option<RawRun> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await?);
        raw.ok_or_else(|| StoreError::RunNotFound(id.to_string()))?
            .try_into()
    }

    /// Runs whose run id is `run_id`, in any DAG.
    pub async fn runs_by_run_id(&self, run_id: &str) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE run_id = $1 ORDER BY dag_id"
        );
        convert(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql).bind(run_id).fetch_all(pool).await?
        }))
    }

    /// The most recent runs of a DAG, newest logical date first.
    pub async fn list_runs(&self, dag_id: &str, limit: i64) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE dag_id = $1 \
             ORDER BY logical_date DESC, id DESC LIMIT $2"
        );
        convert(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(dag_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// The runs of a backfill, in logical-date order.
    pub async fn backfill_runs(&self, backfill_id: i64) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE backfill_id = $1 ORDER BY logical_date, id"
        );
        convert(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(backfill_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Runs in a state, oldest first.
    pub async fn runs_in_state(&self, state: RunState) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE state = $1 ORDER BY logical_date, id"
        );
        convert(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(state.as_str())
                .fetch_all(pool)
                .await?
        }))
    }

    /// Queued runs that may start: those of active, unpaused DAGs, at most
    /// `per_queue` from each end of each DAG's own queue and of each
    /// backfill's (oldest and newest by logical date, so both directions of
    /// backfill find theirs). A scheduler starts far fewer than that in one
    /// pass, so a long backfill costs a pass no more than a short one.
    pub async fn startable_runs(&self, per_queue: i64) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM (SELECT r.*, \
               row_number() OVER (PARTITION BY r.dag_id, r.backfill_id \
                 ORDER BY r.logical_date, r.id) AS oldest, \
               row_number() OVER (PARTITION BY r.dag_id, r.backfill_id \
                 ORDER BY r.logical_date DESC, r.id DESC) AS newest \
             FROM dag_run r JOIN dag d ON d.dag_id = r.dag_id \
             WHERE r.state = 'queued' AND d.is_active AND NOT d.is_paused) AS q \
             WHERE oldest <= $1 OR newest <= $1 ORDER BY logical_date, id"
        );
        convert(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql).bind(per_queue).fetch_all(pool).await?
        }))
    }

    /// How many runs of a DAG are `running`, not counting those of
    /// backfills, or only those of one backfill.
    pub async fn count_running_runs(&self, dag_id: &str, backfill_id: Option<i64>) -> Result<i64> {
        let sql = match self.pool {
            Pool::Postgres(_) => COUNT_RUNNING_PG,
            Pool::Sqlite(_) => COUNT_RUNNING_SQLITE,
        };
        let (n,): (i64,) = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(dag_id)
                .bind(backfill_id)
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Starts a queued run: gives it one task instance per task (state
    /// `none`) and moves it to `running`. A run that ran before (cleared or
    /// re-run by a backfill) keeps its task instances and their tries; those
    /// waiting in `none` get `max_tries` more tries from their current one.
    /// Does nothing when another scheduler started it first, or when
    /// starting it would make more than `limit` runs of its queue (the DAG's
    /// own runs, or its backfill's) run at once; returns whether this call
    /// started it. Schedulers that start runs of one DAG at the same time
    /// take turns (a row lock on the DAG on PostgreSQL; SQLite has one
    /// writer), so the limit holds across schedulers.
    pub async fn start_run(
        &self,
        run: &RunRow,
        tasks: &[TaskSpec],
        limit: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        const UPSERT: &str = "ON CONFLICT (run_pk, task_id) DO UPDATE \
             SET max_tries = task_instance.try_number + excluded.max_tries, \
             kind = excluded.kind, pool = excluded.pool, pool_slots = excluded.pool_slots \
             WHERE task_instance.state = 'none'";
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if limit.is_some() {
                    sqlx::query("SELECT 1 FROM dag WHERE dag_id = $1 FOR UPDATE")
                        .bind(&run.dag_id)
                        .execute(&mut *tx)
                        .await?;
                }
                if !start_within_limit!(tx, run, limit, COUNT_RUNNING_PG, now) {
                    return Ok(false);
                }
                let ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
                let kinds: Vec<&str> = tasks.iter().map(|t| t.kind.as_str()).collect();
                let tries: Vec<i32> = tasks.iter().map(|t| t.max_tries).collect();
                let pools: Vec<Option<&str>> = tasks.iter().map(|t| t.pool.as_deref()).collect();
                let slots: Vec<i32> = tasks.iter().map(|t| t.pool_slots).collect();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO task_instance (run_pk, dag_id, task_id, kind, state, max_tries, \
                     pool, pool_slots) \
                     SELECT $1, $2, t.id, t.kind, 'none', t.tries, t.pool, t.slots \
                     FROM unnest($3::text[], $4::text[], $5::int[], $6::text[], $7::int[]) \
                     AS t(id, kind, tries, pool, slots) {UPSERT}"
                )))
                .bind(run.id)
                .bind(&run.dag_id)
                .bind(&ids)
                .bind(&kinds)
                .bind(&tries)
                .bind(&pools)
                .bind(&slots)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Pool::Sqlite(pool) => {
                // The update takes SQLite's write lock before the count.
                let mut tx = pool.begin().await?;
                if !start_within_limit!(tx, run, limit, COUNT_RUNNING_SQLITE, now) {
                    return Ok(false);
                }
                for task in tasks {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "INSERT INTO task_instance (run_pk, dag_id, task_id, kind, state, \
                         max_tries, pool, pool_slots) VALUES ($1, $2, $3, $4, 'none', $5, $6, $7) \
                         {UPSERT}"
                    )))
                    .bind(run.id)
                    .bind(&run.dag_id)
                    .bind(&task.task_id)
                    .bind(&task.kind)
                    .bind(task.max_tries)
                    .bind(&task.pool)
                    .bind(task.pool_slots)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(true)
    }

    /// Records, on the DAG's runs still queued or running whose data
    /// interval ended at or before `due_before`, that they missed their
    /// deadline. Returns the run ids it marked.
    pub async fn record_missed_deadlines(
        &self,
        dag_id: &str,
        due_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let sql = "UPDATE dag_run SET deadline_missed_at = $3 WHERE dag_id = $1 \
                   AND state IN ('queued', 'running') AND deadline_missed_at IS NULL \
                   AND data_interval_end <= $2 RETURNING run_id";
        let rows: Vec<(String,)> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(dag_id)
                .bind(due_before)
                .bind(now)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Finishes a running run. Returns whether this call did.
    pub async fn finish_run(
        &self,
        run_pk: i64,
        state: RunState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sql =
            "UPDATE dag_run SET state = $2, end_date = $3 WHERE id = $1 AND state = 'running'";
        let n = on_pool!(&self.pool, |pool| {
            sqlx::query(sql)
                .bind(run_pk)
                .bind(state.as_str())
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n > 0 {
            self.announce("run_finished").await?;
        }
        Ok(n > 0)
    }
}
