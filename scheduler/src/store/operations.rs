//! What operators do to runs by hand: clear task instances so they run
//! again, and mark task instances or whole runs as succeeded or failed.
//!
//! NOTE: marking a running task instance does not stop its process: the
//! worker runs the try to its end and its outcome is then discarded, since
//! the task instance is no longer running.

use chrono::{DateTime, Utc};

use super::{Result, Store, StoreError, on_pool};
use crate::state::{RunState, TaskState};
use crate::store::TaskSpec;

impl Store {
    /// Clears the task instances of a run named in `tasks` (with each task's
    /// tries per run) so they run again: each goes back to `none` with that
    /// many more tries, keeping its earlier ones. Queued and running ones are
    /// left alone. A finished run goes back to `queued`. Returns how many
    /// task instances were cleared.
    pub async fn clear_task_instances(
        &self,
        run_pk: i64,
        tasks: &[TaskSpec],
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let cleared = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            let mut cleared = 0;
            for task in tasks {
                cleared += sqlx::query(
                    "UPDATE task_instance SET state = 'none', end_date = NULL, \
                     next_try_at = NULL, error = NULL, max_tries = try_number + $3 \
                     WHERE run_pk = $1 AND task_id = $2 AND state NOT IN ('queued', 'running')",
                )
                .bind(run_pk)
                .bind(&task.task_id)
                .bind(task.max_tries)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            if cleared > 0 {
                sqlx::query(
                    "UPDATE dag_run SET state = 'queued', start_date = NULL, end_date = NULL, \
                     queued_at = $2 WHERE id = $1 AND state IN ('success', 'failed')",
                )
                .bind(run_pk)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            cleared
        });
        if cleared > 0 {
            self.announce("task_cleared").await?;
        }
        Ok(cleared)
    }

    /// Marks a task instance `success` or `failed` whatever it was doing;
    /// its downstream tasks follow as if it had ended so. Returns whether it
    /// changed (`false` when it was in that state already).
    ///
    /// Fails with [`StoreError::Corrupt`] when asked for another state.
    pub async fn mark_task_instance(
        &self,
        ti_id: i64,
        state: TaskState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        if !matches!(state, TaskState::Success | TaskState::Failed) {
            return Err(StoreError::Corrupt(format!(
                "a task instance can be marked success or failed, not {state}"
            )));
        }
        let sql = "UPDATE task_instance SET state = $2, end_date = $3, next_try_at = NULL \
                   WHERE id = $1 AND state <> $2";
        let n = on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(ti_id)
            .bind(state.as_str())
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        if n > 0 {
            // Its run may have finished, or may have to run again.
            self.reopen_run_of(ti_id, now).await?;
            self.announce("task_marked").await?;
        }
        Ok(n > 0)
    }

    /// Marks a run `success` or `failed`. Marked success, its unfinished task
    /// instances succeed too; marked failed, its queued and running ones
    /// fail and those not started are skipped. Returns whether the run
    /// changed.
    pub async fn mark_run(&self, run_pk: i64, state: RunState, now: DateTime<Utc>) -> Result<bool> {
        if !state.is_finished() {
            return Err(StoreError::Corrupt(format!(
                "a run can be marked success or failed, not {state}"
            )));
        }
        let unfinished = "('none', 'scheduled', 'queued', 'running', 'up_for_retry')";
        let updates: Vec<String> = match state {
            RunState::Success => vec![format!(
                "UPDATE task_instance SET state = 'success', end_date = $2 \
                 WHERE run_pk = $1 AND state IN {unfinished}"
            )],
            _ => vec![
                "UPDATE task_instance SET state = 'failed', end_date = $2 \
                 WHERE run_pk = $1 AND state IN ('queued', 'running')"
                    .to_owned(),
                "UPDATE task_instance SET state = 'skipped', end_date = $2 \
                 WHERE run_pk = $1 AND state IN ('none', 'scheduled', 'up_for_retry')"
                    .to_owned(),
            ],
        };
        let changed = on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            for sql in &updates {
                sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                    .bind(run_pk)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let n = sqlx::query(
                "UPDATE dag_run SET state = $2, end_date = $3, \
                 start_date = COALESCE(start_date, $3) WHERE id = $1 AND state <> $2",
            )
            .bind(run_pk)
            .bind(state.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n > 0
        });
        if changed {
            self.announce("run_marked").await?;
        }
        Ok(changed)
    }

    /// Puts the finished run of a task instance back to `running`, so the
    /// scheduler decides it again after a task instance changed by hand.
    async fn reopen_run_of(&self, ti_id: i64, now: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE dag_run SET state = 'running', end_date = NULL, \
                   start_date = COALESCE(start_date, $2) \
                   WHERE id = (SELECT run_pk FROM task_instance WHERE id = $1) \
                   AND state IN ('success', 'failed')";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(ti_id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }
}
