//! Scheduled runs: each DAG's place in its timetable, and the runs the
//! scheduler creates from it.
//!
//! The place is the last interval the scheduler handled, kept on the DAG
//! row and moved by compare-and-set in the same transaction that creates
//! the run, so two schedulers can never create the same run or skip one.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::runs::INSERT_RUN;
use super::{Pool, Result, Store};
use crate::state::RunState;
use crate::store::{NewRun, RunType};
use crate::timetable::DataInterval;

/// A DAG with a schedule, as the scheduler needs it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ScheduledDag {
    /// The DAG.
    pub dag_id: String,
    /// Its current version.
    pub version_id: i64,
    /// Whether scheduling is paused.
    pub is_paused: bool,
    /// Start of the last interval the scheduler handled.
    pub last_scheduled_start: Option<DateTime<Utc>>,
    /// End of that interval.
    pub last_scheduled_end: Option<DateTime<Utc>>,
}

impl ScheduledDag {
    /// The last interval the scheduler handled, if any.
    pub fn last_scheduled(&self) -> Option<DataInterval> {
        Some(DataInterval {
            start: self.last_scheduled_start?,
            end: self.last_scheduled_end?,
        })
    }
}

impl Store {
    /// Active DAGs that have a schedule, paused ones included.
    pub async fn scheduled_dags(&self) -> Result<Vec<ScheduledDag>> {
        let sql = "SELECT dag_id, version_id, is_paused, last_scheduled_start, last_scheduled_end \
                   FROM dag WHERE is_active AND schedule IS NOT NULL ORDER BY dag_id";
        Ok(super::on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// Queued and running runs of a DAG that count against its
    /// `max_active_runs`: every run but those of backfills, which have
    /// their own limit.
    pub async fn count_active_runs(&self, dag_id: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM dag_run WHERE dag_id = $1 \
                   AND state IN ('queued', 'running') AND backfill_id IS NULL";
        let (n,): (i64,) = super::on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql).bind(dag_id).fetch_one(pool).await?
        });
        Ok(n)
    }

    /// Moves a DAG's place in its timetable from `prev` to `next` and
    /// creates the scheduled run for `next` (queued, on `version_id`), in one
    /// transaction. When a run for that logical date exists already (a
    /// backfill made it), only the place moves.
    ///
    /// Returns `false`, changing nothing, when the place is no longer
    /// `prev`: another scheduler got there first.
    pub async fn create_scheduled_run(
        &self,
        dag: &ScheduledDag,
        next: &DataInterval,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let run = NewRun {
            dag_id: dag.dag_id.clone(),
            run_id: NewRun::default_run_id(RunType::Scheduled, next.start),
            run_type: RunType::Scheduled,
            logical_date: next.start,
            data_interval_start: next.start,
            data_interval_end: next.end,
            conf: serde_json::json!({}),
        };
        // NULL-safe equality is spelled differently by the two backends.
        let is_same = match &self.pool {
            Pool::Postgres(_) => "IS NOT DISTINCT FROM",
            Pool::Sqlite(_) => "IS",
        };
        let advance = format!(
            "UPDATE dag SET last_scheduled_start = $2, last_scheduled_end = $3 \
             WHERE dag_id = $1 AND last_scheduled_end {is_same} $4"
        );
        let prev_end = dag.last_scheduled_end;
        let moved = super::on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let moved = sqlx::query(sqlx::AssertSqlSafe(advance))
                .bind(&dag.dag_id)
                .bind(next.start)
                .bind(next.end)
                .bind(prev_end)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if moved == 1 {
                sqlx::query(INSERT_RUN)
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
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            moved == 1
        });
        if moved {
            self.announce("run_created").await?;
        }
        Ok(moved)
    }
}
