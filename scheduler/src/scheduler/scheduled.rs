//! Creating scheduled runs: each unpaused DAG with a schedule gets a run
//! for every data interval that has ended, in order when it catches up,
//! within its `max_active_runs`.

use std::sync::Arc;

use tracing::{info, warn};

use super::{PassReport, Scheduler, SchedulerError};
use crate::dag::Dag;
use crate::timetable::Timetable;

impl Scheduler {
    pub(super) async fn create_scheduled_runs(
        &mut self,
        report: &mut PassReport,
    ) -> Result<(), SchedulerError> {
        let now = self.clock.now();
        // Look again at the latest after one poll interval, so runs freed
        // by other schedulers and changed flags are seen.
        let poll = chrono::TimeDelta::from_std(self.config.poll_interval)
            .unwrap_or(chrono::TimeDelta::seconds(1));
        self.scan_schedules_at = Some(now + poll);

        for mut dag in self.store.scheduled_dags().await? {
            if dag.is_paused {
                continue;
            }
            let definition = self.version(dag.version_id).await?;
            let Some(timetable) = self.timetable(dag.version_id, &definition) else {
                continue;
            };
            let limit = i64::from(definition.max_active_runs);
            let mut active = self.store.count_active_runs(&dag.dag_id).await?;
            loop {
                let last = dag.last_scheduled();
                let Some(next) = timetable.next_run(last.as_ref(), definition.catchup, now) else {
                    break;
                };
                if next.end > now {
                    self.due_at(next.end);
                    break;
                }
                if active >= limit {
                    break;
                }
                if !self.store.create_scheduled_run(&dag, &next, now).await? {
                    // Another scheduler moved this DAG on; it is theirs now.
                    break;
                }
                info!(
                    dag_id = %dag.dag_id,
                    logical_date = %next.start,
                    data_interval_end = %next.end,
                    "scheduled run created"
                );
                report.runs_created += 1;
                active += 1;
                dag.last_scheduled_start = Some(next.start);
                dag.last_scheduled_end = Some(next.end);
            }
        }
        if let Some(due) = self.next_due {
            self.scan_schedules_at = self.scan_schedules_at.map(|at| at.min(due));
        }
        Ok(())
    }

    /// The timetable of a DAG version; `None` (with a warning) when the
    /// version has no schedule or its schedule no longer parses.
    fn timetable(&mut self, version_id: i64, dag: &Dag) -> Option<Arc<Timetable>> {
        if let Some(timetable) = self.timetables.get(&version_id) {
            return Some(timetable.clone());
        }
        let schedule = dag.schedule.as_ref()?;
        match Timetable::new(schedule, dag.start_date) {
            Ok(timetable) => {
                let timetable = Arc::new(timetable);
                self.timetables.insert(version_id, timetable.clone());
                Some(timetable)
            }
            Err(err) => {
                warn!(dag_id = %dag.dag_id, error = %err, "stored schedule is invalid; not scheduling");
                None
            }
        }
    }
}
