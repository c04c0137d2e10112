//! Backfills: stored requests to run a DAG over a past date range, with
//! the runs they created or re-ran, their progress and cancellation.
//!
//! A backfill's runs are created when the backfill is, in one transaction
//! (queued, tagged with the backfill); the scheduler then starts them in
//! order within the backfill's own `max_active_runs`.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::runs::{RawRun, convert, run_columns};
use super::{Result, Store, StoreError, on_pool};
use crate::state::RunState;
use crate::store::{NewRun, RunRow, RunType};
use crate::timetable::DataInterval;

/// Which existing runs a backfill runs again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reprocess {
    /// None: dates that have a run keep it (the default).
    #[default]
    None,
    /// Runs that failed are cleared and run again.
    Failed,
    /// Every finished run is cleared and run again.
    All,
}

impl Reprocess {
    /// The mode's name, as written on the command line and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Reprocess::None => "none",
            Reprocess::Failed => "failed",
            Reprocess::All => "all",
        }
    }
}

impl FromStr for Reprocess {
    type Err = String;

    fn from_str(s: &str) -> Result<Reprocess, String> {
        match s {
            "none" => Ok(Reprocess::None),
            "failed" => Ok(Reprocess::Failed),
            "all" => Ok(Reprocess::All),
            other => Err(format!(
                "unknown reprocess mode `{other}`: expected none, failed or all"
            )),
        }
    }
}

/// A backfill to create.
#[derive(Debug, Clone)]
pub struct NewBackfill {
    /// The DAG; it must have a schedule.
    pub dag_id: String,
    /// Runs whose logical date is at or after this.
    pub from: DateTime<Utc>,
    /// Runs whose logical date is at or before this.
    pub to: DateTime<Utc>,
    /// Which existing runs to run again.
    pub reprocess: Reprocess,
    /// Newest date first.
    pub backwards: bool,
    /// How many of its runs may be active at once, e.g. 4.
    pub max_active_runs: u32,
    /// Configuration every run gets.
    pub conf: serde_json::Value,
}

/// What a backfill does at one logical date.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum PlannedAction {
    /// Create a new run.
    Create,
    /// Clear the existing run and run it again.
    Rerun {
        /// The run's store key.
        run_pk: i64,
        /// Its state before.
        state: RunState,
    },
    /// Leave the existing run alone.
    Skip {
        /// The run's store key.
        run_pk: i64,
        /// Its state.
        state: RunState,
    },
}

/// One logical date of a backfill and what happens there.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedRun {
    /// The interval the run covers.
    pub interval: DataInterval,
    /// What the backfill does.
    #[serde(flatten)]
    pub action: PlannedAction,
}

/// A stored backfill.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct BackfillRow {
    /// Store key.
    pub id: i64,
    /// The DAG.
    pub dag_id: String,
    /// First logical date.
    pub from_date: DateTime<Utc>,
    /// Last logical date.
    pub to_date: DateTime<Utc>,
    /// `none`, `failed` or `all`.
    pub reprocess: String,
    /// Newest date first.
    pub backwards: bool,
    /// Its runs that may be active at once.
    pub max_active_runs: i32,
    /// Configuration its runs get.
    pub conf: Json<serde_json::Value>,
    /// `running`, `completed` or `cancelled`.
    pub state: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its last run finished, or it was cancelled.
    pub completed_at: Option<DateTime<Utc>>,
}

/// How far a backfill has come: its runs by state.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BackfillProgress {
    /// Runs that have not started.
    pub queued: i64,
    /// Runs that are running.
    pub running: i64,
    /// Runs that succeeded.
    pub success: i64,
    /// Runs that failed (or were cancelled before they started).
    pub failed: i64,
}

impl BackfillProgress {
    /// All its runs.
    pub fn total(&self) -> i64 {
        self.queued + self.running + self.success + self.failed
    }

    /// Its finished runs.
    pub fn done(&self) -> i64 {
        self.success + self.failed
    }
}

const BACKFILL_COLUMNS: &str = "id, dag_id, from_date, to_date, reprocess, backwards, \
     max_active_runs, conf, state, created_at, completed_at";

impl Store {
    /// Scheduled and backfill runs of a DAG whose logical date lies in
    /// `[from, to]`, oldest first.
    pub async fn runs_between(
        &self,
        dag_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<RunRow>> {
        let sql: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM dag_run WHERE dag_id = $1 AND run_type <> 'manual' \
             AND logical_date >= $2 AND logical_date <= $3 ORDER BY logical_date"
        );
        let rows: Vec<RawRun> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(dag_id)
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await?
        });
        convert(rows)
    }

    /// Records a backfill and carries out its plan in one transaction: new
    /// runs are created queued on `version_id`, re-runs are cleared and
    /// queued again, both with the backfill's conf. A date that gained a run
    /// since the plan was made keeps it.
    pub async fn create_backfill(
        &self,
        new: &NewBackfill,
        version_id: i64,
        plan: &[PlannedRun],
        now: DateTime<Utc>,
    ) -> Result<BackfillRow> {
        let insert_backfill = format!(
            "INSERT INTO backfill (dag_id, from_date, to_date, reprocess, backwards, \
             max_active_runs, conf, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8) RETURNING {BACKFILL_COLUMNS}"
        );
        let max_active = i32::try_from(new.max_active_runs).unwrap_or(i32::MAX);
        let creates: Vec<&DataInterval> = plan
            .iter()
            .filter(|p| p.action == PlannedAction::Create)
            .map(|p| &p.interval)
            .collect();
        let reruns: Vec<i64> = plan
            .iter()
            .filter_map(|p| match p.action {
                PlannedAction::Rerun { run_pk, .. } => Some(run_pk),
                _ => None,
            })
            .collect();

        let row: BackfillRow = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let row: BackfillRow = sqlx::query_as(sqlx::AssertSqlSafe(insert_backfill))
                .bind(&new.dag_id)
                .bind(new.from)
                .bind(new.to)
                .bind(new.reprocess.as_str())
                .bind(new.backwards)
                .bind(max_active)
                .bind(Json(&new.conf))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let runs = BackfillRuns {
                new,
                backfill_id: row.id,
                version_id,
                intervals: &creates,
                now,
            };
            (*tx).insert_runs(&runs).await?;
            for run_pk in &reruns {
                let _rerun_queued = clear_run_in!(tx, *run_pk, Some(row.id), &new.conf, now);
            }
            tx.commit().await?;
            row
        });
        self.announce("backfill_created").await?;
        Ok(row)
    }

    /// One backfill by store key.
    pub async fn backfill(&self, id: i64) -> Result<BackfillRow> {
        let sql = format!("SELECT {BACKFILL_COLUMNS} FROM backfill WHERE id = $1");
        let row: Option<BackfillRow> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::BackfillNotFound(id))
    }

    /// Recent backfills, newest first, of one DAG or of all.
    pub async fn list_backfills(
        &self,
        dag_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BackfillRow>> {
        let sql = format!(
            "SELECT {BACKFILL_COLUMNS} FROM backfill WHERE ($1 IS NULL OR dag_id = $1) \
             ORDER BY id DESC LIMIT $2"
        );
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(dag_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Backfills whose runs are still being started.
    pub async fn running_backfills(&self) -> Result<Vec<BackfillRow>> {
        let sql = format!("SELECT {BACKFILL_COLUMNS} FROM backfill WHERE state = 'running'");
        Ok(on_pool!(&self.pool, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_all(pool)
                .await?
        }))
    }

    /// A backfill's runs by state.
    pub async fn backfill_progress(&self, id: i64) -> Result<BackfillProgress> {
        let sql = "SELECT state, COUNT(*) FROM dag_run WHERE backfill_id = $1 GROUP BY state";
        let rows: Vec<(String, i64)> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql).bind(id).fetch_all(pool).await?
        });
        let mut progress = BackfillProgress::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => progress.queued += n,
                "running" => progress.running += n,
                "success" => progress.success += n,
                _ => progress.failed += n,
            }
        }
        Ok(progress)
    }

    /// Cancels a running backfill: its runs that have not started are
    /// failed and no more start; running ones finish. Returns whether this
    /// call cancelled it (`false` when it had finished or was cancelled).
    pub async fn cancel_backfill(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let cancelled = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE backfill SET state = 'cancelled', completed_at = $2 \
                 WHERE id = $1 AND state = 'running'",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(
                    "UPDATE dag_run SET state = 'failed', end_date = $2 \
                     WHERE backfill_id = $1 AND state = 'queued'",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            n > 0
        });
        if !cancelled {
            self.backfill(id).await?;
        }
        Ok(cancelled)
    }

    /// Marks running backfills whose runs have all finished as completed.
    /// Returns how many it marked.
    pub async fn complete_finished_backfills(&self, now: DateTime<Utc>) -> Result<u64> {
        let sql = "UPDATE backfill SET state = 'completed', completed_at = $1 \
                   WHERE state = 'running' AND NOT EXISTS (SELECT 1 FROM dag_run r \
                   WHERE r.backfill_id = backfill.id AND r.state IN ('queued', 'running'))";
        Ok(on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()))
    }

    /// Clears a finished run so it runs again: its task instances go back to
    /// `none` (keeping their tries) and the run to `queued`. Running and
    /// queued task instances are left alone, and a backfill's run leaves its
    /// backfill. Returns whether the run was finished and is now queued.
    pub async fn clear_run(&self, run_pk: i64, now: DateTime<Utc>) -> Result<bool> {
        let run = self.run(run_pk).await?;
        let cleared = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            // Detached from its backfill, which may be over: the run is the
            // DAG's own again and starts under the DAG's `max_active_runs`.
            let cleared = clear_run_in!(tx, run_pk, None::<i64>, &run.conf, now);
            tx.commit().await?;
            cleared
        });
        if cleared {
            self.announce("run_cleared").await?;
        }
        Ok(cleared)
    }
}

/// Clears a finished run inside the transaction `$tx`; see
/// [`Store::clear_run`]. Evaluates to whether the run was cleared.
macro_rules! clear_run_in {
    ($tx:expr, $run_pk:expr, $backfill_id:expr, $conf:expr, $now:expr) => {{
        let queued = sqlx::query(
            "UPDATE dag_run SET state = 'queued', start_date = NULL, end_date = NULL, \
             queued_at = $2, backfill_id = $3, conf = $4 \
             WHERE id = $1 AND state IN ('success', 'failed')",
        )
        .bind($run_pk)
        .bind($now)
        .bind($backfill_id)
        .bind(Json($conf))
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if queued > 0 {
            sqlx::query(
                "UPDATE task_instance SET state = 'none', end_date = NULL, next_try_at = NULL, \
                 error = NULL WHERE run_pk = $1 AND state NOT IN ('queued', 'running')",
            )
            .bind($run_pk)
            .execute(&mut *$tx)
            .await?;
        }
        queued > 0
    }};
}
use clear_run_in;

/// The new runs of a backfill, as inserted by [`InsertRuns`].
struct BackfillRuns<'a> {
    new: &'a NewBackfill,
    backfill_id: i64,
    version_id: i64,
    intervals: &'a [&'a DataInterval],
    now: DateTime<Utc>,
}

/// Inserts a backfill's new runs, skipping dates that have a run: one
/// statement on PostgreSQL (a backfill may hold thousands of dates), one
/// per run on SQLite.
trait InsertRuns {
    async fn insert_runs(&mut self, runs: &BackfillRuns<'_>) -> Result<()>;
}

const INSERT_BACKFILL_RUN: &str = "INSERT INTO dag_run (dag_id, run_id, run_type, state, \
     version_id, logical_date, data_interval_start, data_interval_end, conf, queued_at, \
     backfill_id) VALUES ($1, $2, 'backfill', 'queued', $3, $4, $4, $5, $6, $7, $8) \
     ON CONFLICT DO NOTHING";

impl InsertRuns for sqlx::PgConnection {
    async fn insert_runs(&mut self, runs: &BackfillRuns<'_>) -> Result<()> {
        let run_ids: Vec<String> = runs
            .intervals
            .iter()
            .map(|i| NewRun::default_run_id(RunType::Backfill, i.start))
            .collect();
        let starts: Vec<DateTime<Utc>> = runs.intervals.iter().map(|i| i.start).collect();
        let ends: Vec<DateTime<Utc>> = runs.intervals.iter().map(|i| i.end).collect();
        sqlx::query(
            "INSERT INTO dag_run (dag_id, run_id, run_type, state, version_id, logical_date, \
             data_interval_start, data_interval_end, conf, queued_at, backfill_id) \
             SELECT $1, t.run_id, 'backfill', 'queued', $2, t.start, t.start, t.end_, $3, $4, $5 \
             FROM unnest($6::text[], $7::timestamptz[], $8::timestamptz[]) \
             AS t(run_id, start, end_) ON CONFLICT DO NOTHING",
        )
        .bind(&runs.new.dag_id)
        .bind(runs.version_id)
        .bind(Json(&runs.new.conf))
        .bind(runs.now)
        .bind(runs.backfill_id)
        .bind(&run_ids)
        .bind(&starts)
        .bind(&ends)
        .execute(self)
        .await?;
        Ok(())
    }
}

impl InsertRuns for sqlx::SqliteConnection {
    async fn insert_runs(&mut self, runs: &BackfillRuns<'_>) -> Result<()> {
        for interval in runs.intervals {
            sqlx::query(INSERT_BACKFILL_RUN)
                .bind(&runs.new.dag_id)
                .bind(NewRun::default_run_id(RunType::Backfill, interval.start))
                .bind(runs.version_id)
                .bind(interval.start)
                .bind(interval.end)
                .bind(Json(&runs.new.conf))
                .bind(runs.now)
                .bind(runs.backfill_id)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }
}
