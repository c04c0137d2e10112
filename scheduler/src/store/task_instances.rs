//! Task instances: listed for a run, settled and queued by the scheduler.
//! Their tries, as workers see them, are in `tries`.

use chrono::{DateTime, Utc};

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
    /// The pool whose slots it takes while queued or running.
    pub pool: Option<String>,
    /// How many of them.
    pub pool_slots: i32,
}

#[derive(sqlx::FromRow)]
pub(super) struct RawTi {
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
    pool: Option<String>,
    pool_slots: i32,
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
            pool: r.pool,
            pool_slots: r.pool_slots,
        })
    }
}

macro_rules! ti_columns {
    () => {
        "id, run_pk, dag_id, task_id, kind, state, try_number, max_tries, \
     hostname, worker, queued_at, start_date, end_date, duration_ms, next_try_at, error, \
     pool, pool_slots"
    };
}
pub(super) use ti_columns;

/// One try as a worker recorded it.
/// The columns a queued try resets; binds the queue time as `$3`.
macro_rules! enqueue_set {
    () => {
        "state = 'queued', try_number = try_number + 1, queued_at = $3, next_try_at = NULL, \
         hostname = NULL, worker = NULL, start_date = NULL, end_date = NULL, duration_ms = NULL"
    };
}

/// A task instance the scheduler found ready, with what it takes of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadyTi {
    /// The task instance.
    pub id: i64,
    /// The state it was seen in.
    pub state: TaskState,
    /// Its pool, if any.
    pub pool: Option<String>,
    /// The pool slots it takes.
    pub pool_slots: i32,
}

/// The ready task instances of `$ready` that fit, inside the transaction
/// `$tx`: see [`Store::enqueue_limited`]. Evaluates to their ids and seen
/// states, in order.
macro_rules! within_limits {
    ($tx:expr, $ready:expr, $pools:expr, $max_active_tasks:expr) => {{
        let mut allowance = match $max_active_tasks {
            Some((dag_id, max)) => {
                let (active,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM task_instance \
                     WHERE dag_id = $1 AND state IN ('queued', 'running')",
                )
                .bind(dag_id)
                .fetch_one(&mut *$tx)
                .await?;
                max - active
            }
            None => i64::MAX,
        };
        // Free slots of each pool; a pool that does not exist has none.
        let mut free: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for name in $pools.iter() {
            let slots: Option<(i64,)> =
                sqlx::query_as("SELECT CAST(slots AS BIGINT) FROM pool WHERE name = $1")
                    .bind(*name)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let (used,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(pool_slots), 0) AS BIGINT) FROM task_instance \
                 WHERE pool = $1 AND state IN ('queued', 'running')",
            )
            .bind(*name)
            .fetch_one(&mut *$tx)
            .await?;
            free.insert(*name, slots.map_or(0, |(slots,)| slots - used));
        }
        let mut chosen: Vec<(i64, TaskState)> = Vec::new();
        for ti in $ready.iter() {
            if allowance <= 0 {
                break;
            }
            if let Some(name) = ti.pool.as_deref() {
                let left = free.entry(name).or_insert(0);
                if *left < i64::from(ti.pool_slots) {
                    continue;
                }
                *left -= i64::from(ti.pool_slots);
            }
            allowance -= 1;
            chosen.push((ti.id, ti.state));
        }
        chosen
    }};
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

    /// Whether a run has task instances waiting for a decision (`none`,
    /// `scheduled`, `up_for_retry`) and whether it has some in flight
    /// (`queued`, `running`). Two index probes, however large the run.
    pub async fn run_activity(&self, run_pk: i64) -> Result<(bool, bool)> {
        let sql = "SELECT \
            EXISTS (SELECT 1 FROM task_instance WHERE run_pk = $1 \
                    AND state IN ('none', 'scheduled', 'up_for_retry')), \
            EXISTS (SELECT 1 FROM task_instance WHERE run_pk = $1 \
                    AND state IN ('queued', 'running'))";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(run_pk)
            .fetch_one(pool)
            .await?))
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
        let ready: Vec<ReadyTi> = tis
            .iter()
            .map(|(id, state)| ReadyTi {
                id: *id,
                state: *state,
                pool: None,
                pool_slots: 1,
            })
            .collect();
        self.enqueue_limited(&ready, None, now).await
    }

    /// As [`Store::enqueue`], but queues task instances, in the order given,
    /// only while they fit: at most `max_active_tasks` of the DAG's task
    /// instances queued or running (when given), and no pool over its
    /// slots. A task instance whose pool does not exist waits. Schedulers
    /// that queue at the same time take turns (row locks on the DAG and the
    /// pools on PostgreSQL; SQLite has one writer), so the limits hold
    /// across schedulers.
    pub async fn enqueue_limited(
        &self,
        ready: &[ReadyTi],
        max_active_tasks: Option<(&str, i64)>,
        now: DateTime<Utc>,
    ) -> Result<Vec<TaskJob>> {
        let limited = max_active_tasks.is_some() || ready.iter().any(|t| t.pool.is_some());
        let mut pools: Vec<&str> = ready.iter().filter_map(|t| t.pool.as_deref()).collect();
        pools.sort_unstable();
        pools.dedup();
        let update = concat!(
            "UPDATE task_instance SET ",
            enqueue_set!(),
            " WHERE id = $1 AND state = $2 RETURNING try_number"
        );
        let jobs = match &self.pool {
            // One statement for the whole batch: a wide DAG queues hundreds
            // of tasks at once.
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let tis = if limited {
                    if let Some((dag_id, _)) = max_active_tasks {
                        sqlx::query("SELECT 1 FROM dag WHERE dag_id = $1 FOR UPDATE")
                            .bind(dag_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    for name in &pools {
                        sqlx::query("SELECT 1 FROM pool WHERE name = $1 FOR UPDATE")
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                    }
                    within_limits!(tx, ready, &pools, max_active_tasks)
                } else {
                    ready.iter().map(|t| (t.id, t.state)).collect()
                };
                let ids: Vec<i64> = tis.iter().map(|(id, _)| *id).collect();
                let states: Vec<&str> = tis.iter().map(|(_, state)| state.as_str()).collect();
                let rows: Vec<(i64, i32)> = sqlx::query_as(concat!(
                    "UPDATE task_instance ti SET ",
                    enqueue_set!(),
                    " FROM unnest($1::bigint[], $2::text[]) AS want(id, state) \
                     WHERE ti.id = want.id AND ti.state = want.state \
                     RETURNING ti.id, ti.try_number",
                ))
                .bind(&ids)
                .bind(&states)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                let jobs: Vec<TaskJob> = rows
                    .into_iter()
                    .map(|(ti_id, try_number)| TaskJob { ti_id, try_number })
                    .collect();
                let tasks = jobs.iter().map(|job| job.to_apalis()).collect();
                apalis_postgres::queries::push_tasks(&mut *tx, QUEUE_NAME, tasks)
                    .await
                    .map_err(|err| StoreError::Queue(err.to_string()))?;
                tx.commit().await?;
                jobs
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let tis = if limited {
                    within_limits!(tx, ready, &pools, max_active_tasks)
                } else {
                    ready.iter().map(|t| (t.id, t.state)).collect()
                };
                let mut jobs = Vec::with_capacity(tis.len());
                for (ti_id, from) in &tis {
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
}
