//! The UI's searches of run and task history: task instances across DAGs,
//! a DAG's runs, the grid of a DAG's latest runs, and the latest runs of
//! every DAG.
//!
//! Searches are newest first and paged by keyset (the last row of a page
//! is where the next starts), so a page costs the same however deep it is.
//! Each optional filter adds its condition only when given, and searches
//! run as one-off statements, so PostgreSQL plans each with the values
//! bound rather than a generic plan that cannot tell which index fits.
//!
//! A search with a start time window reads along the start time index
//! (newest start first) and stops at its page, so an old window costs what
//! a recent one does.
//!
//! NOTE: on PostgreSQL a task instance search without a window reads newest
//! first along the index of a filter's column and stops at its page, a few
//! milliseconds on a million rows, except when the filters together match
//! nothing: the planner, assuming matches are spread evenly over the keys,
//! then reads back through every row, about 200 ms per million task
//! instances.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::runs::{RawRun, convert, run_columns};
use super::search::{Conditions, bind_params, distinct_values_sql};
use super::task_instances::{RawTi, ti_columns};
use super::{Pool, Result, RunRow, RunType, Store, TaskInstanceRow, on_pool, parse_state};
use crate::state::{RunState, TaskState};

/// Which task instances to find; a `None` filter does not constrain.
#[derive(Debug, Clone, Default)]
pub struct TaskInstanceFilter {
    /// One DAG's task instances.
    pub dag_id: Option<String>,
    /// Those in this state.
    pub state: Option<TaskState>,
    /// Those of this job kind, e.g. `sql`.
    pub kind: Option<String>,
    /// Those whose current try ran on this worker.
    pub worker: Option<String>,
    /// Those whose current try started at or after this time.
    pub started_from: Option<DateTime<Utc>>,
    /// Those whose current try started before this time.
    pub started_before: Option<DateTime<Utc>>,
    /// Only keys below this one: the last key of the previous page.
    pub before_id: Option<i64>,
    /// With a start time window, pages go by start time: only those that
    /// started before this, or at this time with a key below `before_id`
    /// (the last row of the previous page).
    pub before_start: Option<DateTime<Utc>>,
    /// At most this many (none when 0).
    pub limit: i64,
}

impl TaskInstanceFilter {
    /// Whether a start time window is set, so that rows come newest start
    /// first rather than newest key first.
    pub fn is_windowed(&self) -> bool {
        self.started_from.is_some() || self.started_before.is_some()
    }
}

/// A task instance found by [`Store::search_task_instances`], with the run
/// it belongs to.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryRow {
    /// The task instance.
    #[serde(flatten)]
    pub ti: TaskInstanceRow,
    /// The run id of its run.
    pub run_id: String,
    /// The logical date of its run.
    pub logical_date: DateTime<Utc>,
}

/// Which of a DAG's runs to find; a `None` filter does not constrain.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// The DAG.
    pub dag_id: String,
    /// Runs in this state.
    pub state: Option<RunState>,
    /// Runs of this type.
    pub run_type: Option<RunType>,
    /// Only runs before this (logical date, key) in the order of the
    /// search: the last run of the previous page.
    pub before: Option<(DateTime<Utc>, i64)>,
    /// At most this many (none when 0).
    pub limit: i64,
}

/// A run as the DAGs page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunSummary {
    /// Store key of the run.
    pub id: i64,
    /// The run id.
    pub run_id: String,
    /// Its state.
    pub state: RunState,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct RawHistory {
    #[sqlx(flatten)]
    ti: RawTi,
    run_id: String,
    logical_date: DateTime<Utc>,
}

/// Each DAG's latest `$1` runs. PostgreSQL probes each DAG's runs through
/// a lateral join; SQLite, which has none, through a correlated `IN`.
/// Either reads only the rows it returns (a window function over all runs
/// reads every run).
const RECENT_RUNS_PG: &str = "SELECT r.dag_id, r.id, r.run_id, r.state, r.logical_date \
     FROM dag d CROSS JOIN LATERAL (SELECT x.dag_id, x.id, x.run_id, x.state, x.logical_date \
       FROM dag_run x WHERE x.dag_id = d.dag_id \
       ORDER BY x.logical_date DESC, x.id DESC LIMIT $1) r \
     ORDER BY r.dag_id, r.logical_date DESC, r.id DESC";
const RECENT_RUNS_SQLITE: &str = "SELECT r.dag_id, r.id, r.run_id, r.state, r.logical_date \
     FROM dag d JOIN dag_run r ON r.id IN (SELECT x.id FROM dag_run x \
       WHERE x.dag_id = d.dag_id ORDER BY x.logical_date DESC, x.id DESC LIMIT $1) \
     ORDER BY r.dag_id, r.logical_date DESC, r.id DESC";

impl Store {
    /// Task instances across DAGs matching `filter`, newest first (by key;
    /// by start time, then key, when a start time window is set), a page of
    /// at most `filter.limit` after the cursor, each with its run's id and
    /// logical date.
    pub async fn search_task_instances(
        &self,
        filter: &TaskInstanceFilter,
    ) -> Result<Vec<HistoryRow>> {
        let mut conditions = Conditions::default();
        if let Some(dag_id) = &filter.dag_id {
            conditions.compare("dag_id", "=", dag_id.as_str());
        }
        if let Some(state) = filter.state {
            conditions.compare("state", "=", state.as_str());
        }
        if let Some(kind) = &filter.kind {
            conditions.compare("kind", "=", kind.as_str());
        }
        if let Some(worker) = &filter.worker {
            conditions.compare("worker", "=", worker.as_str());
        }
        if let Some(from) = filter.started_from {
            conditions.compare("start_date", ">=", from);
        }
        if let Some(before) = filter.started_before {
            conditions.compare("start_date", "<", before);
        }
        // A window is read along the start time index, newest first: by
        // key, the planner would walk back through every newer row to
        // reach an old window.
        let windowed = filter.is_windowed();
        match (filter.before_id, filter.before_start) {
            (Some(id), Some(at)) if windowed => {
                let at = conditions.bind(at);
                let id = conditions.bind(id);
                conditions.push(format!(
                    "start_date <= {at} AND (start_date < {at} OR id < {id})"
                ));
            }
            (Some(id), _) => conditions.compare("id", "<", id),
            (None, _) => {}
        }
        let order = if windowed {
            "start_date DESC, id DESC"
        } else {
            "id DESC"
        };
        let limit = conditions.bind(filter.limit.max(0));
        // The page is cut from task_instance alone, then joined to its runs.
        let sql = format!(
            concat!(
                "SELECT t.*, r.run_id AS run_id, r.logical_date AS logical_date FROM (SELECT ",
                ti_columns!(),
                " FROM task_instance {where_clause} ORDER BY {order} LIMIT {limit}) t \
                 JOIN dag_run r ON r.id = t.run_pk ORDER BY t.{order_outer}"
            ),
            where_clause = conditions.where_clause(),
            order = order,
            limit = limit,
            order_outer = order.replace(", id", ", t.id"),
        );

        // The text is fixed fragments and placeholders (see `search`).
        let rows: Vec<RawHistory> = on_pool!(&self.pool, |pool| {
            bind_params!(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false),
                conditions.params()
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|raw| {
                Ok(HistoryRow {
                    ti: raw.ti.try_into()?,
                    run_id: raw.run_id,
                    logical_date: raw.logical_date,
                })
            })
            .collect()
    }

    /// A DAG's runs matching `filter`, newest logical date first, a page of
    /// at most `filter.limit` after `filter.before`.
    pub async fn search_runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>> {
        let mut conditions = Conditions::default();
        conditions.compare("dag_id", "=", filter.dag_id.as_str());
        if let Some(state) = filter.state {
            conditions.compare("state", "=", state.as_str());
        }
        if let Some(run_type) = filter.run_type {
            conditions.compare("run_type", "=", run_type.as_str());
        }
        if let Some((date, id)) = filter.before {
            // (logical_date, id) < (date, id), spelt so the date bounds an
            // index range.
            let date = conditions.bind(date);
            let id = conditions.bind(id);
            conditions.push(format!(
                "logical_date <= {date} AND (logical_date < {date} OR id < {id})"
            ));
        }
        let limit = conditions.bind(filter.limit.max(0));
        let sql = format!(
            concat!(
                "SELECT ",
                run_columns!(),
                " FROM dag_run {} ORDER BY logical_date DESC, id DESC LIMIT {}"
            ),
            conditions.where_clause(),
            limit
        );

        // The text is fixed fragments and placeholders (see `search`).
        let rows: Vec<RawRun> = on_pool!(&self.pool, |pool| {
            bind_params!(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false),
                conditions.params()
            )
            .fetch_all(pool)
            .await?
        });
        convert(rows)
    }

    /// The grid of a DAG: its latest `runs` runs, newest logical date
    /// first, and every task instance of them, by run key and then in
    /// creation (task file) order.
    pub async fn grid(
        &self,
        dag_id: &str,
        runs: i64,
    ) -> Result<(Vec<RunRow>, Vec<TaskInstanceRow>)> {
        let runs = self.list_runs(dag_id, runs.max(0)).await?;
        if runs.is_empty() {
            return Ok((runs, Vec::new()));
        }

        // The task instances of exactly these runs, whatever was created
        // since they were read.
        let mut conditions = Conditions::default();
        let keys: Vec<String> = runs.iter().map(|run| conditions.bind(run.id)).collect();
        let sql = format!(
            concat!(
                "SELECT ",
                ti_columns!(),
                " FROM task_instance WHERE run_pk IN ({}) ORDER BY run_pk, id"
            ),
            keys.join(", ")
        );
        let rows: Vec<RawTi> = on_pool!(&self.pool, |pool| {
            bind_params!(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false),
                conditions.params()
            )
            .fetch_all(pool)
            .await?
        });
        let tis = rows
            .into_iter()
            .map(TaskInstanceRow::try_from)
            .collect::<Result<_>>()?;
        Ok((runs, tis))
    }

    /// Each DAG's latest `per_dag` runs, newest logical date first, keyed
    /// by DAG id. DAGs without runs are absent.
    pub async fn recent_runs_by_dag(
        &self,
        per_dag: i64,
    ) -> Result<HashMap<String, Vec<RunSummary>>> {
        let sql = match self.pool {
            Pool::Postgres(_) => RECENT_RUNS_PG,
            Pool::Sqlite(_) => RECENT_RUNS_SQLITE,
        };
        let rows: Vec<(String, i64, String, String, DateTime<Utc>)> =
            on_pool!(&self.pool, |pool| sqlx::query_as(sql)
                .bind(per_dag.max(0))
                .fetch_all(pool)
                .await?);
        let mut by_dag: HashMap<String, Vec<RunSummary>> = HashMap::new();
        for (dag_id, id, run_id, state, logical_date) in rows {
            by_dag.entry(dag_id).or_default().push(RunSummary {
                id,
                run_id,
                state: parse_state(&state)?,
                logical_date,
            });
        }
        Ok(by_dag)
    }

    /// The distinct job kinds of task instances, sorted, for the UI's
    /// filter menu.
    pub async fn task_kinds(&self) -> Result<Vec<String>> {
        self.distinct_values("kind").await
    }

    /// The distinct names of workers that ran task instances, sorted, for
    /// the UI's filter menu.
    pub async fn task_workers(&self) -> Result<Vec<String>> {
        self.distinct_values("worker").await
    }

    async fn distinct_values(&self, column: &'static str) -> Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(distinct_values_sql("task_instance", column));
        let rows: Vec<(String,)> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(value,)| value).collect())
    }
}
