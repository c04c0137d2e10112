//! Runs that take too long: a run past its DAG's `dagrun_timeout` fails
//! (its running tasks fail, those not started are skipped), and a run still
//! unfinished `deadline` after its data interval ended is recorded as having
//! missed it.

use chrono::{DateTime, TimeDelta, Utc};
use tracing::warn;

use super::{Scheduler, SchedulerError};
use crate::dag::Dag;
use crate::state::RunState;
use crate::store::RunRow;

impl Scheduler {
    /// Fails `run` when it has run past its DAG's `dagrun_timeout`, or asks
    /// to be woken when it will. Returns whether it failed the run.
    pub(super) async fn enforce_run_timeout(
        &mut self,
        dag: &Dag,
        run: &RunRow,
        now: DateTime<Utc>,
    ) -> Result<bool, SchedulerError> {
        let (Some(limit), Some(started)) = (dag.dagrun_timeout, run.start_date) else {
            return Ok(false);
        };
        let limit = TimeDelta::from_std(limit).unwrap_or(TimeDelta::MAX);
        let Some(ends) = started.checked_add_signed(limit) else {
            return Ok(false);
        };
        if ends > now {
            self.due_at(ends);
            return Ok(false);
        }
        let failed = self.store.mark_run(run.id, RunState::Failed, now).await?;
        if failed {
            warn!(
                dag_id = %run.dag_id,
                run_id = %run.run_id,
                dagrun_timeout = %humantime::format_duration(dag.dagrun_timeout.unwrap_or_default()),
                "run timed out; failed"
            );
        }
        Ok(failed)
    }

    /// Records the runs of every DAG with a deadline that are still going
    /// past it.
    pub(super) async fn record_missed_deadlines(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<(), SchedulerError> {
        for row in self.store.list_dags().await? {
            if !row.is_active {
                continue;
            }
            let dag = self.version(row.version_id).await?;
            let Some(deadline) = dag.deadline else {
                continue;
            };
            let deadline = TimeDelta::from_std(deadline).unwrap_or(TimeDelta::MAX);
            let Some(due_before) = now.checked_sub_signed(deadline) else {
                continue;
            };
            for run_id in self
                .store
                .record_missed_deadlines(&row.dag_id, due_before, now)
                .await?
            {
                warn!(
                    dag_id = %row.dag_id,
                    run_id = %run_id,
                    deadline = %humantime::format_duration(dag.deadline.unwrap_or_default()),
                    "run missed its deadline"
                );
            }
        }
        Ok(())
    }
}
