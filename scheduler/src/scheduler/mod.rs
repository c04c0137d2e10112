//! The scheduling loop: syncs the DAG folder, starts queued runs, queues
//! ready task instances, settles those that can never run, and finishes
//! runs.
//!
//! The loop sleeps until something changes: a finished task or a new run
//! announces itself (Postgres NOTIFY across processes, an in-process signal
//! within one), and a poll interval is only the fallback. Each run's
//! decisions come from [`rules::decide`].
//!
//! NOTE: one scheduler per database is assumed for now. State changes are
//! conditional on the state the scheduler saw, so a second scheduler would
//! not corrupt a run, but it could start a queued run past
//! `max_active_runs`.

pub mod rules;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::clock::Clock;
use crate::dag::{Dag, KindCatalog, load_dag_folder};
use crate::state::RunState;
use crate::store::{EVENTS_CHANNEL, Pool, RunRow, Store, StoreError, SyncReport};

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The folder of DAG files, e.g. `dags/`.
    pub dags_dir: PathBuf,
    /// How often the DAG folder is read again, e.g. 30 s.
    pub dag_sync_interval: Duration,
    /// The longest the loop sleeps without being woken, e.g. 1 s.
    pub poll_interval: Duration,
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
}

/// The scheduler: one per database (see the module docs).
pub struct Scheduler {
    store: Store,
    kinds: Arc<dyn KindCatalog + Send + Sync>,
    clock: Arc<dyn Clock>,
    config: SchedulerConfig,
    versions: HashMap<i64, Arc<Dag>>,
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
        }
    }

    /// Reads the DAG folder and records it in the store. Broken files are
    /// recorded as import errors and leave the other DAGs running.
    pub async fn sync_dags(&self) -> Result<SyncReport, SchedulerError> {
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

            let sleep = tokio::time::sleep(self.config.poll_interval);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = local.notified() => {}
                _ = sleep => {}
                event = next_event(&mut listener) => {
                    if let Err(err) = event {
                        warn!(error = %err, "lost the Postgres listener; polling until it is back");
                        listener = self.listen().await;
                    }
                }
            }
            // Coalesce the burst of events that woke us into one pass.
            if let Some(listener) = listener.as_mut() {
                while listener.next_buffered().is_some() {}
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

    /// One scheduling pass over every queued and running run.
    pub async fn run_once(&mut self) -> Result<PassReport, SchedulerError> {
        let mut report = PassReport::default();
        self.start_queued_runs(&mut report).await?;
        for run in self.store.runs_in_state(RunState::Running).await? {
            let span = info_span!("run", dag_id = %run.dag_id, run_id = %run.run_id);
            self.schedule_run(&run, &mut report)
                .instrument(span)
                .await?;
        }
        Ok(report)
    }

    async fn start_queued_runs(&mut self, report: &mut PassReport) -> Result<(), SchedulerError> {
        let queued = self.store.runs_in_state(RunState::Queued).await?;
        let mut running: HashMap<String, i64> = HashMap::new();
        for run in queued {
            let dag = self.version(run.version_id).await?;
            let active = match running.get(&run.dag_id) {
                Some(n) => *n,
                None => self.store.count_running_runs(&run.dag_id).await?,
            };
            if active >= i64::from(dag.max_active_runs) {
                running.insert(run.dag_id.clone(), active);
                continue;
            }
            let tasks: Vec<(String, String, i32)> = dag
                .tasks
                .iter()
                .map(|task| {
                    let retries = dag.task_args(task).retries.unwrap_or(0);
                    let max_tries = i32::try_from(retries).unwrap_or(i32::MAX - 1) + 1;
                    (task.id.clone(), task.kind.clone(), max_tries)
                })
                .collect();
            if self.store.start_run(&run, &tasks, self.clock.now()).await? {
                info!(dag_id = %run.dag_id, run_id = %run.run_id, "run started");
                report.runs_started += 1;
                running.insert(run.dag_id.clone(), active + 1);
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
        let tis = self.store.task_instances(run.id).await?;
        let decisions = rules::decide(&dag, &tis, now);

        if !decisions.settle.is_empty() {
            report.settled += self
                .store
                .settle_task_instances(&decisions.settle, now)
                .await? as usize;
        }
        if !decisions.ready.is_empty() {
            let jobs = self.store.enqueue(&decisions.ready, now).await?;
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

async fn next_event(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(listener) => listener.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}
