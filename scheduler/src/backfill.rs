//! Backfills: planning which runs a date range needs, and creating them.
//!
//! A plan lists every complete data interval of the DAG's schedule whose
//! logical date lies in the range, with what happens there: a new run, a
//! re-run of an existing one (by the reprocess mode), or nothing because a
//! run exists. `--dry-run` shows the plan; creating carries it out in one
//! transaction, and the scheduler then starts the runs, in the plan's
//! order, within the backfill's `max_active_runs`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::dag::ScheduleError;
use crate::state::RunState;
use crate::store::{
    BackfillRow, NewBackfill, PlannedAction, PlannedRun, Reprocess, RunRow, Store, StoreError,
};
use crate::timetable::{DataInterval, Timetable};

/// Why a backfill cannot be planned or created.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// Backfills follow the schedule's intervals; a manual-only DAG has none.
    #[error("DAG `{0}` has no schedule, so it has no intervals to backfill")]
    NoSchedule(String),
    /// The range is upside down.
    #[error("the backfill range ends ({to}) before it starts ({from})")]
    BadRange {
        /// Start of the range.
        from: DateTime<Utc>,
        /// End of the range.
        to: DateTime<Utc>,
    },
    /// `max_active_runs` of 0 would never start a run.
    #[error("max active runs must be at least 1")]
    NoActiveRuns,
    /// The stored schedule no longer parses.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The store failed, or the DAG is unknown.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a backfill over `intervals` does, given the runs that exist at
/// those logical dates. Runs that are queued or running are never touched.
pub fn plan(
    intervals: &[DataInterval],
    existing: &[RunRow],
    reprocess: Reprocess,
    backwards: bool,
) -> Vec<PlannedRun> {
    let by_date: HashMap<DateTime<Utc>, &RunRow> =
        existing.iter().map(|run| (run.logical_date, run)).collect();
    let mut planned: Vec<PlannedRun> = intervals
        .iter()
        .map(|interval| {
            let action = match by_date.get(&interval.start) {
                None => PlannedAction::Create,
                Some(run) => {
                    let rerun = match reprocess {
                        Reprocess::None => false,
                        Reprocess::Failed => run.state == RunState::Failed,
                        Reprocess::All => run.state.is_finished(),
                    };
                    if rerun {
                        PlannedAction::Rerun {
                            run_pk: run.id,
                            state: run.state,
                        }
                    } else {
                        PlannedAction::Skip {
                            run_pk: run.id,
                            state: run.state,
                        }
                    }
                }
            };
            PlannedRun {
                interval: *interval,
                action,
            }
        })
        .collect();
    if backwards {
        planned.reverse();
    }
    planned
}

/// The plan of `new` as of `now`, changing nothing: the dry run.
///
/// Fails when the DAG is unknown or has no schedule, or the range is empty
/// of meaning (it ends before it starts).
pub async fn preview(
    store: &Store,
    new: &NewBackfill,
    now: DateTime<Utc>,
) -> Result<Vec<PlannedRun>, BackfillError> {
    Ok(planned(store, new, now).await?.1)
}

/// Plans `new` and carries the plan out; returns the stored backfill and
/// its plan. Fails as [`preview`] does, or when the store fails.
pub async fn create(
    store: &Store,
    new: &NewBackfill,
    now: DateTime<Utc>,
) -> Result<(BackfillRow, Vec<PlannedRun>), BackfillError> {
    let (version_id, plan) = planned(store, new, now).await?;
    let row = store.create_backfill(new, version_id, &plan, now).await?;
    Ok((row, plan))
}

async fn planned(
    store: &Store,
    new: &NewBackfill,
    now: DateTime<Utc>,
) -> Result<(i64, Vec<PlannedRun>), BackfillError> {
    if new.to < new.from {
        return Err(BackfillError::BadRange {
            from: new.from,
            to: new.to,
        });
    }
    if new.max_active_runs == 0 {
        return Err(BackfillError::NoActiveRuns);
    }
    let dag_row = store.dag(&new.dag_id).await?;
    if !dag_row.is_active {
        return Err(StoreError::DagNotFound(new.dag_id.clone()).into());
    }
    let dag = store.dag_version(dag_row.version_id).await?;
    let schedule = dag
        .schedule
        .as_ref()
        .ok_or_else(|| BackfillError::NoSchedule(new.dag_id.clone()))?;
    let timetable = Timetable::new(schedule, dag.start_date)?;
    // Only intervals that are over: their data is complete.
    let intervals: Vec<DataInterval> = timetable
        .intervals_between(new.from, new.to.min(now))
        .into_iter()
        .filter(|interval| interval.end <= now)
        .collect();
    let existing = store.runs_between(&new.dag_id, new.from, new.to).await?;
    Ok((
        dag_row.version_id,
        plan(&intervals, &existing, new.reprocess, new.backwards),
    ))
}
