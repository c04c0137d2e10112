//! The scheduling loop: syncs the DAG folder, starts queued runs, queues
//! ready task instances, settles those that can never run, and finishes
//! runs.
//!
//! The loop sleeps until something changes: a finished task or a new run
//! announces itself (Postgres NOTIFY across processes, an in-process signal
//! within one), and a poll interval is only the fallback. Each run's
//! decisions come from [`rules::decide`].
//!
//! Scheduled runs are created when their data interval ends (see
//! [`crate::timetable`]); the loop also wakes for that moment and for
//! retries that come due.
//!
//! Several schedulers may run against one PostgreSQL database at once, for
//! availability: every change they make is conditional on the state they
//! saw (a run is started, a try queued, a task instance settled only if it
//! is still as seen), scheduled runs are created by compare-and-set on the
//! DAG's place in its timetable, and starting a run takes a row lock on its
//! DAG so `max_active_runs` holds across them.

mod orphans;
pub mod rules;
mod scheduled;
mod timeouts;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::Clock;
use crate::dag::{Dag, KindCatalog, load_dag_folder};
use crate::state::RunState;
use crate::store::{
    BackfillRow, EVENTS_CHANNEL, Pool, ReadyTi, RunRow, Store, StoreError, SyncReport,
    TASK_FINISHED, TaskInstanceRow, TaskSpec,
};
use crate::timetable::Timetable;

/// How often running tries are checked for a dead worker. With workers
/// beating every 2 s and the default 10 s worker timeout, a dead worker's
/// tries are failed within 14 s.
const REAP_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// How often, and after how long, finished jobs leave the job queue.
const PRUNE_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// How many queued runs of each DAG, and of each backfill, one pass looks
/// at; see [`Store::startable_runs`].
const STARTABLE_PER_QUEUE: i64 = 64;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The folder of DAG files, e.g. `dags/`.
    pub dags_dir: PathBuf,
    /// How often the DAG folder is read again, e.g. 30 s.
    pub dag_sync_interval: Duration,
    /// The longest the loop sleeps without being woken, e.g. 1 s.
    pub poll_interval: Duration,
    /// How long a worker may go without a heartbeat before its running
    /// tries are failed (and retried when tries are left), e.g. 10 s.
    pub worker_timeout: Duration,
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The metadata store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The DAG folder could not be read.
    #[error("cannot read DAG folder {path}: {source}")]
    DagFolder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What one scheduling pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Runs moved from queued to running.
    pub runs_started: usize,
    /// Task tries put on the queue.
    pub tries_queued: usize,
    /// Task instances settled without running.
    pub settled: usize,
    /// Runs finished.
    pub runs_finished: usize,
    /// Scheduled runs created.
    pub runs_created: usize,
    /// Backfills whose last run finished.
    pub backfills_completed: usize,
    /// Running tries failed because their worker was gone.
    pub tries_orphaned: usize,
}

/// The scheduler: one per database (see the module docs).
pub struct Scheduler {
    store: Store,
    kinds: Arc<dyn KindCatalog + Send + Sync>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    versions: HashMap<i64, Arc<Dag>>,
    timetables: HashMap<i64, Arc<Timetable>>,
    /// The earliest moment a scheduled run or a retry comes due.
    next_due: Option<DateTime<Utc>>,
    /// When the schedules are looked at next; `None` means at once.
    scan_schedules_at: Option<DateTime<Utc>>,
    /// Whether queued runs are looked at in the next pass: only something
    /// other than a finished task can let one start.
    check_queued: bool,
    /// When tries of dead workers are looked for next; `None` means at once.
    reap_at: Option<DateTime<Utc>>,
    /// When the job queue's finished jobs are pruned next.
    prune_at: Option<DateTime<Utc>>,
}

impl Scheduler {
    /// A scheduler over `store` that validates task kinds against `kinds`.
    pub fn new(
        store: Store,
        kinds: Arc<dyn KindCatalog + Send + Sync>,
        clock: Arc<dyn Clock>,
        config: SchedulerConfig,
    ) -> Scheduler {
        Scheduler {
            store,
            kinds,
            clock,
            config,
            versions: HashMap::new(),
            timetables: HashMap::new(),
            next_due: None,
            scan_schedules_at: None,
            check_queued: true,
            reap_at: None,
            prune_at: None,
        }
    }

    /// Reads the DAG folder and records it in the store. Broken files are
    /// recorded as import errors and leave the other DAGs running.
    pub async fn sync_dags(&mut self) -> Result<SyncReport, SchedulerError> {
        let dir = &self.config.dags_dir;
        let folder = load_dag_folder(dir, self.kinds.as_ref()).map_err(|source| {
            SchedulerError::DagFolder {
                path: dir.clone(),
                source,
            }
        })?;
        for file in &folder.errors {
            for err in &file.errors {
                warn!(file = %file.path.display(), error = %err, "DAG file is invalid");
            }
        }
        let report = self
            .store
            .sync_dags(&folder.dags, &folder.errors, self.clock.now())
            .await?;
        // A new version may have a new schedule.
        self.scan_schedules_at = None;
        if !report.new_versions.is_empty() || !report.deactivated.is_empty() {
            info!(
                new_versions = ?report.new_versions,
                deactivated = ?report.deactivated,
                import_errors = report.import_errors,
                "DAG folder synced"
            );
        }
        Ok(report)
    }

    /// Runs until `shutdown` completes: syncs DAGs periodically and
    /// schedules whenever woken.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), SchedulerError> {
        let mut shutdown = pin!(shutdown);
        let local = self.store.local_events();
        let mut listener = self.listen().await;
        let mut last_sync = None::<tokio::time::Instant>;
        info!(dags_dir = %self.config.dags_dir.display(), "scheduler started");

        loop {
            if last_sync.is_none_or(|t| t.elapsed() >= self.config.dag_sync_interval) {
                if let Err(err) = self.sync_dags().await {
                    warn!(error = %err, "DAG sync failed; retrying at the next interval");
                }
                last_sync = Some(tokio::time::Instant::now());
            }

            let report = match self.run_once().await {
                Ok(report) => report,
                Err(err) => {
                    warn!(error = %err, "scheduling pass failed; retrying");
                    PassReport::default()
                }
            };
            if report != PassReport::default() {
                debug!(?report, "scheduling pass");
                // Settling or finishing may have made more work ready.
                continue;
            }

            let sleep = tokio::time::sleep(self.sleep_time());
            tokio::select! {
                _ = &mut shutdown => break,
                _ = local.notified() => {}
                // The fallback: look at everything.
                _ = sleep => self.check_queued = true,
                event = next_event(&mut listener) => match event {
                    Ok(payload) => self.note_event(&payload),
                    Err(err) => {
                        warn!(error = %err, "lost the Postgres listener; polling until it is back");
                        listener = self.listen().await;
                        self.check_queued = true;
                    }
                },
            }
            // Coalesce the burst of events that woke us into one pass.
            if let Some(listener) = listener.as_mut() {
                while let Some(notification) = listener.next_buffered() {
                    self.note_event(notification.payload());
                }
            }
        }
        info!("scheduler stopped");
        Ok(())
    }

    async fn listen(&self) -> Option<PgListener> {
        let Pool::Postgres(pool) = self.store.pool() else {
            return None;
        };
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(err) => {
                warn!(error = %err, "cannot listen for events; polling instead");
                return None;
            }
        };
        match listener.listen(EVENTS_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(err) => {
                warn!(error = %err, "cannot listen for events; polling instead");
                None
            }
        }
    }

    /// One scheduling pass: creates the scheduled runs that are due,
    /// starts queued runs, and schedules the task instances of every
    /// running run.
    pub async fn run_once(&mut self) -> Result<PassReport, SchedulerError> {
        let mut report = PassReport::default();
        let now = self.clock.now();
        self.next_due = None;
        if self.scan_schedules_at.is_none_or(|at| at <= now) {
            self.create_scheduled_runs(&mut report).await?;
        }
        let take = self.store.take_runs_changed();
        if std::mem::take(&mut self.check_queued) || take || report.runs_created > 0 {
            self.start_queued_runs(&mut report).await?;
        }
        if self.reap_at.is_none_or(|at| at <= now) {
            self.reap_at = Some(now + REAP_INTERVAL);
            self.fail_orphaned_tries(&mut report).await?;
            self.record_missed_deadlines(now).await?;
        }
        if self.prune_at.is_none_or(|at| at <= now) {
            self.prune_at = Some(now + PRUNE_INTERVAL);
            let pruned = self.store.prune_queue(now - PRUNE_INTERVAL).await?;
            if pruned > 0 {
                debug!(pruned, "finished jobs pruned from the queue");
            }
        }
        for run in self.store.runs_in_state(RunState::Running).await? {
            let span = info_span!("run", dag_id = %run.dag_id, run_id = %run.run_id);
            self.schedule_run(&run, &mut report)
                .instrument(span)
                .await?;
        }
        if report.runs_finished > 0 {
            // A finished run frees a place under `max_active_runs`.
            self.scan_schedules_at = None;
            self.check_queued = true;
            report.backfills_completed =
                self.store.complete_finished_backfills(now).await? as usize;
        }
        Ok(report)
    }

    /// Notes an announcement from another process.
    fn note_event(&mut self, payload: &str) {
        if payload != TASK_FINISHED {
            self.check_queued = true;
        }
    }

    /// How long the loop may sleep: until the next due run or retry, and
    /// never longer than the poll interval.
    fn sleep_time(&self) -> Duration {
        let poll = self.config.poll_interval;
        let wake = [self.next_due, self.scan_schedules_at, self.reap_at]
            .into_iter()
            .flatten()
            .min();
        match wake {
            Some(at) => (at - self.clock.now())
                .to_std()
                .unwrap_or_default()
                .min(poll),
            None => poll,
        }
    }

    fn due_at(&mut self, at: DateTime<Utc>) {
        self.next_due = Some(self.next_due.map_or(at, |t| t.min(at)));
    }

    /// Starts queued runs, oldest logical date first (newest first for a
    /// backwards backfill), within `max_active_runs`: the DAG's for its own
    /// runs, each backfill's for the backfill's. Runs of paused DAGs wait.
    async fn start_queued_runs(&mut self, report: &mut PassReport) -> Result<(), SchedulerError> {
        let mut queued = self.store.startable_runs(STARTABLE_PER_QUEUE).await?;
        if queued.is_empty() {
            return Ok(());
        }
        let backfills: HashMap<i64, BackfillRow> = if queued.iter().any(|r| r.backfill_id.is_some())
        {
            let rows = self.store.running_backfills().await?;
            rows.into_iter().map(|b| (b.id, b)).collect()
        } else {
            HashMap::new()
        };
        // Runs come oldest first; a backwards backfill takes its newest first.
        queued.sort_by_key(|run| {
            let backwards = run
                .backfill_id
                .and_then(|id| backfills.get(&id))
                .is_some_and(|b| b.backwards);
            let key = run.logical_date.timestamp_micros();
            (run.backfill_id, if backwards { -key } else { key })
        });

        let mut running: HashMap<(String, Option<i64>), i64> = HashMap::new();
        for run in queued {
            let dag = self.version(run.version_id).await?;
            let limit = match run.backfill_id {
                None => i64::from(dag.max_active_runs),
                Some(id) => match backfills.get(&id) {
                    Some(backfill) => i64::from(backfill.max_active_runs),
                    // Cancelled: its runs do not start.
                    None => continue,
                },
            };
            let key = (run.dag_id.clone(), run.backfill_id);
            let active = match running.get(&key) {
                Some(n) => *n,
                None => {
                    self.store
                        .count_running_runs(&run.dag_id, run.backfill_id)
                        .await?
                }
            };
            if active >= limit {
                running.insert(key, active);
                continue;
            }
            let tasks: Vec<TaskSpec> = dag.tasks.iter().map(|t| TaskSpec::of(&dag, t)).collect();
            if self
                .store
                .start_run(&run, &tasks, Some(limit), self.clock.now())
                .await?
            {
                info!(dag_id = %run.dag_id, run_id = %run.run_id, "run started");
                report.runs_started += 1;
                running.insert(key, active + 1);
            }
        }
        Ok(())
    }

    async fn schedule_run(
        &mut self,
        run: &RunRow,
        report: &mut PassReport,
    ) -> Result<(), SchedulerError> {
        let dag = self.version(run.version_id).await?;
        let now = self.clock.now();
        if self.enforce_run_timeout(&dag, run, now).await? {
            report.runs_finished += 1;
            return Ok(());
        }
        // Nothing can be decided while every unfinished task instance is in
        // flight: only a try's end changes that, and it wakes us again.
        let (waiting, in_flight) = self.store.run_activity(run.id).await?;
        if !waiting && in_flight {
            return Ok(());
        }
        let tis = self.store.task_instances(run.id).await?;
        let decisions = rules::decide(&dag, &tis, now);
        if let Some(at) = decisions.next_retry {
            self.due_at(at);
        }

        if !decisions.settle.is_empty() {
            report.settled += self
                .store
                .settle_task_instances(&decisions.settle, now)
                .await? as usize;
        }
        if !decisions.ready.is_empty() {
            let by_id: HashMap<i64, &TaskInstanceRow> = tis.iter().map(|t| (t.id, t)).collect();
            let ready: Vec<ReadyTi> = decisions
                .ready
                .iter()
                .map(|(id, state)| ReadyTi {
                    id: *id,
                    state: *state,
                    pool: by_id.get(id).and_then(|t| t.pool.clone()),
                    pool_slots: by_id.get(id).map_or(1, |t| t.pool_slots),
                })
                .collect();
            let limit = dag
                .max_active_tasks
                .map(|max| (run.dag_id.as_str(), i64::from(max)));
            let jobs = self.store.enqueue_limited(&ready, limit, now).await?;
            for job in &jobs {
                debug!(ti_id = job.ti_id, try_number = job.try_number, "try queued");
            }
            report.tries_queued += jobs.len();
        }
        if let Some(state) = decisions.run_state
            && self.store.finish_run(run.id, state, now).await?
        {
            info!(state = %state, "run finished");
            report.runs_finished += 1;
        }
        Ok(())
    }

    async fn version(&mut self, version_id: i64) -> Result<Arc<Dag>, SchedulerError> {
        if let Some(dag) = self.versions.get(&version_id) {
            return Ok(dag.clone());
        }
        let dag = Arc::new(self.store.dag_version(version_id).await?);
        self.versions.insert(version_id, dag.clone());
        Ok(dag)
    }
}

async fn next_event(listener: &mut Option<PgListener>) -> Result<String, sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(|n| n.payload().to_owned()),
        None => std::future::pending().await,
    }
}
