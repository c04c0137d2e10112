//! Tries whose worker died: found by the worker's missing heartbeat (or
//! its record of having stopped), failed with the reason, and retried by
//! the usual rules when tries are left.

use tracing::warn;

use super::{PassReport, Scheduler, SchedulerError};
use crate::store::OrphanedTry;

impl Scheduler {
    pub(super) async fn fail_orphaned_tries(
        &mut self,
        report: &mut PassReport,
    ) -> Result<(), SchedulerError> {
        let now = self.clock.now();
        let timeout = chrono::TimeDelta::from_std(self.config.worker_timeout)
            .unwrap_or(chrono::TimeDelta::seconds(10));
        for orphan in self.store.orphaned_tries(now - timeout).await? {
            let dag = self.version(orphan.version_id).await?;
            let args = match dag.task(&orphan.task_id) {
                Some(task) => dag.task_args(task),
                None => dag.default_args.clone(),
            };
            let retry_at = (orphan.try_number < orphan.max_tries)
                .then(|| now + args.retry_delay_after(orphan.ti_id, orphan.try_number));
            let reason = reason(&orphan, now);
            if self
                .store
                .fail_orphaned_try(&orphan, &reason, retry_at, now)
                .await?
            {
                warn!(
                    ti_id = orphan.ti_id,
                    task_id = %orphan.task_id,
                    try_number = orphan.try_number,
                    worker = %orphan.worker,
                    retry = retry_at.is_some(),
                    error = %reason,
                    "try failed: its worker is gone"
                );
                report.tries_orphaned += 1;
            }
        }
        Ok(())
    }
}

fn reason(orphan: &OrphanedTry, now: chrono::DateTime<chrono::Utc>) -> String {
    let host = orphan.hostname.as_deref().unwrap_or("an unknown host");
    match (orphan.stopped_at, orphan.last_heartbeat) {
        (Some(at), _) => format!(
            "worker {} on {host} exited at {} with the try still running",
            orphan.worker,
            at.to_rfc3339()
        ),
        (None, Some(beat)) => format!(
            "worker {} on {host} stopped heartbeating: last heartbeat {} ({} s before it was \
             declared dead)",
            orphan.worker,
            beat.to_rfc3339(),
            (now - beat).num_seconds()
        ),
        (None, None) => format!("worker {} on {host} is not registered", orphan.worker),
    }
}
