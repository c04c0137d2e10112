//! The worker runtime: takes task tries off the apalis queue, claims each in
//! the store (so no try runs twice), runs its kind under the task's timeout,
//! and records the outcome, the log and a retry time when tries are left.
//!
//! A worker asks the queue for jobs when the scheduler announces new ones
//! (PostgreSQL NOTIFY, or an in-process signal in standalone mode), when one
//! of its own tries ends and frees a slot, and on a poll interval as the
//! fallback.
//!
//! The wake-ups go through [`Wakeups`], which keeps every source armed
//! (apalis' own combination could lose them after a burst of work).
//!
//! NOTE: the queue backend's heartbeat is set to one second instead of the
//! default thirty; it also re-arms a worker that sat idle, and costs one
//! small query per second per worker.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::BackendExt;
use apalis::prelude::{BoxDynError, Data, Strategy, WorkerBuilder, WorkerBuilderExt};
use chrono::Utc;
use futures::{StreamExt, stream};
use rtmas_scheduler::dag::template::{RunContext, render_params};
use rtmas_scheduler::dag::{Dag, TaskArgs};
use rtmas_scheduler::queue::{QUEUE_NAME, TaskJob};
use rtmas_scheduler::store::{Claim, Pool, Store, StoreError, TryOutcome};
use tokio::sync::{OnceCell, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::batch::{Batcher, SharedError};
use crate::registry::{JobContext, JobError, Registry};
use crate::tasklog::TaskLog;
use crate::wakeups::Wakeups;

/// How often the queue backend beats; the module docs say why it is short.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// The first and the longest wait between attempts of a failing store step.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's name, unique among workers, e.g. `host-1234`.
    pub name: String,
    /// The host it runs on, recorded on each try.
    pub hostname: String,
    /// How many tries it runs at once, e.g. 8.
    pub concurrency: usize,
    /// How long running tries may take to finish after a stop is asked.
    pub grace_period: Duration,
    /// How often the queue is polled when no event says a job is waiting.
    pub poll_interval: Duration,
    /// How often the worker records that it is alive, e.g. 2 s; the
    /// scheduler fails the running tries of a worker that stops.
    pub heartbeat_interval: Duration,
}

/// Errors that stop a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The queue failed.
    #[error("job queue error: {0}")]
    Queue(String),
    /// The worker could not register in the store.
    #[error("cannot register the worker: {0}")]
    Register(#[from] StoreError),
}

struct Runtime {
    store: Store,
    /// Asks the queue for more work: raised when a try ends and frees a slot.
    wake: futures::channel::mpsc::UnboundedSender<()>,
    registry: Registry,
    config: WorkerConfig,
    versions: Mutex<HashMap<i64, Arc<OnceCell<Arc<Dag>>>>>,
    /// Claims and endings of tries, batched.
    batcher: Batcher,
}

/// Runs a worker until `shutdown` completes, then lets running tries finish
/// within the grace period.
///
/// Fails when the queue cannot be read.
pub async fn run_worker(
    store: Store,
    registry: Registry,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let grace = config.grace_period;
    let concurrency = config.concurrency.max(1);
    let poll = config.poll_interval;
    let name = config.name.clone();
    let (wake, woken) = futures::channel::mpsc::unbounded::<()>();
    let (queued_tx, queued) = futures::channel::mpsc::unbounded::<()>();
    let local_jobs = store.local_jobs();
    tokio::spawn(async move {
        loop {
            local_jobs.notified().await;
            if queued_tx.unbounded_send(()).is_err() {
                break;
            }
        }
    });
    let batcher = Batcher::start(store.clone(), config.hostname.clone(), config.name.clone());
    let runtime = Arc::new(Runtime {
        store: store.clone(),
        wake,
        registry,
        config,
        versions: Mutex::default(),
        batcher,
    });
    // Registered before it takes any job, so every try it claims belongs to
    // a worker the scheduler can watch.
    let hostname = runtime.config.hostname.clone();
    store
        .register_worker(&name, &hostname, concurrency as i32, Utc::now())
        .await?;
    let heartbeat = tokio::spawn(beat(
        store.clone(),
        name.clone(),
        runtime.config.heartbeat_interval,
    ));
    info!(worker = %name, concurrency, "worker started");

    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = wait_for(stop_rx.clone());
    let result = match store.pool() {
        Pool::Postgres(pool) => {
            let config = apalis_postgres::Config::default()
                .queue(QUEUE_NAME)
                .batch_size(concurrency)
                .heartbeat_interval(HEARTBEAT);
            let pubsub = apalis_postgres::Pubsub::new(pool.clone(), QUEUE_NAME.to_owned());
            let backend = apalis_postgres::PostgresStorage::<TaskJob>::new(pool)
                .with_config(config)
                .poll_with_strategy(Strategy::new().apply(Wakeups::new(
                    stream::select(pubsub.map(|_| ()), stream::select(woken, queued)),
                    poll,
                )));
            let worker = WorkerBuilder::new(name.as_str())
                .backend(backend)
                .data(runtime)
                .concurrency(concurrency)
                .build(handle);
            run_with_grace(worker.run_until(stopped), stop_rx, grace).await
        }
        Pool::Sqlite(pool) => {
            let config = apalis_sqlite::Config::default()
                .queue(QUEUE_NAME)
                .batch_size(concurrency)
                .heartbeat_interval(HEARTBEAT);
            let backend = apalis_sqlite::SqliteStorage::<TaskJob>::new(pool)
                .with_config(config)
                .poll_with_strategy(
                    Strategy::new().apply(Wakeups::new(stream::select(woken, queued), poll)),
                );
            let worker = WorkerBuilder::new(name.as_str())
                .backend(backend)
                .data(runtime)
                .concurrency(concurrency)
                .build(handle);
            run_with_grace(worker.run_until(stopped), stop_rx, grace).await
        }
    };
    heartbeat.abort();
    if let Err(err) = store.worker_stopped(&name, Utc::now()).await {
        warn!(worker = %name, error = %err, "cannot record that the worker stopped");
    }
    info!(worker = %name, "worker stopped");
    result
}

/// Records the worker's heartbeat every `interval`, until aborted. A failed
/// beat is retried at the next one: the scheduler allows several to go
/// missing before it calls the worker dead.
async fn beat(store: Store, name: String, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(100)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = store.worker_heartbeat(&name, Utc::now()).await {
            warn!(worker = %name, error = %err, "heartbeat failed");
        }
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) -> Result<(), std::io::Error> {
    let _ = rx.wait_for(|stop| *stop).await;
    Ok(())
}

async fn run_with_grace<E: std::fmt::Display>(
    worker: impl Future<Output = Result<(), E>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<(), WorkerError> {
    let deadline = async {
        let _ = stop.wait_for(|stop| *stop).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = worker => result.map_err(|err| WorkerError::Queue(err.to_string())),
        _ = deadline => {
            warn!(grace_period = ?grace, "grace period over; abandoning running tries");
            Ok(())
        }
    }
}

async fn handle(job: TaskJob, runtime: Data<Arc<Runtime>>) -> Result<(), BoxDynError> {
    let runtime = runtime.0.clone();
    run_try(&runtime, job).await;
    // A slot is free: look for more work now rather than at the next poll.
    let _ = runtime.wake.unbounded_send(());
    Ok(())
}

async fn run_try(runtime: &Runtime, job: TaskJob) {
    let store = &runtime.store;
    let Some(claim) = until_stored("the claim of a try", || runtime.batcher.claim(job)).await
    else {
        debug!(
            ti_id = job.ti_id,
            try_number = job.try_number,
            "try is not queued any more"
        );
        return;
    };
    let span = info_span!(
        "task",
        dag_id = %claim.dag_id,
        run_id = %claim.run_id,
        task_id = %claim.task_id,
        try_number = claim.try_number,
    );
    async {
        info!("try started");
        let (log, writer) = TaskLog::start(store.clone(), claim.ti_id, claim.try_number);
        let (result, args) = execute(runtime, &claim, log.clone()).await;
        let now = Utc::now();
        let outcome = match result {
            Ok(value) => TryOutcome::Success(value),
            Err(err) => {
                let retry_at = (claim.try_number < claim.max_tries)
                    .then(|| now + args.retry_delay_after(claim.ti_id, claim.try_number));
                match retry_at {
                    Some(at) => log.line("rtmas", format!("try failed: {err}; retry at {at}")),
                    None => log.line("rtmas", format!("try failed: {err}")),
                }
                TryOutcome::Failed {
                    error: err.to_string(),
                    retry_at,
                }
            }
        };
        drop(log);
        writer.finish().await;
        let state = until_stored("the end of the try", || {
            runtime.batcher.finish(claim.clone(), outcome.clone(), now)
        })
        .await;
        info!(state = ?state, "try finished");
    }
    .instrument(span)
    .await
}

/// Runs a store step until it succeeds, waiting longer after each
/// failure. Claims and endings go through it: a claim is the only delivery
/// of its try (a try left `queued` would wait forever), and an outcome
/// exists only in this worker (a try left `running` by a live worker would
/// never be retried). Both steps are safe to repeat: each changes a try
/// only from the state it expects.
///
/// NOTE: a claim that committed but whose answer was lost is seen, when
/// repeated, as a try taken by someone else; the try then waits for this
/// worker to stop before it is failed as an orphan and retried.
async fn until_stored<T, F, Fut>(what: &str, mut step: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SharedError>>,
{
    let mut delay = STORE_RETRY_FIRST;
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        match step().await {
            Ok(value) => return value,
            Err(err) => {
                warn!(attempt, retry_in = ?delay, error = %err, "cannot record {what}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(STORE_RETRY_MAX);
            }
        }
    }
}

/// Runs the claimed try's kind, returning its result and the task's
/// effective args (for the retry decision).
async fn execute(
    runtime: &Runtime,
    claim: &Claim,
    log: TaskLog,
) -> (Result<Option<serde_json::Value>, JobError>, TaskArgs) {
    let dag = match version(runtime, claim.version_id).await {
        Ok(dag) => dag,
        Err(err) => return (Err(JobError::Failed(err.to_string())), TaskArgs::default()),
    };
    let Some(task) = dag.task(&claim.task_id) else {
        let err = format!(
            "task `{}` is not in the DAG version of this run",
            claim.task_id
        );
        return (Err(JobError::Failed(err)), dag.default_args.clone());
    };
    let args = dag.task_args(task);
    let Some(kind) = runtime.registry.get(&claim.kind) else {
        let err = format!("this worker does not know the job kind `{}`", claim.kind);
        return (Err(JobError::Failed(err)), args);
    };

    let context = RunContext {
        dag_id: claim.dag_id.clone(),
        run_id: claim.run_id.clone(),
        logical_date: claim.logical_date,
        data_interval_start: claim.data_interval_start,
        data_interval_end: claim.data_interval_end,
        params: RunContext::merge_params(&dag.params, &claim.conf),
        conf: claim.conf.clone(),
    };
    let rendered = match render_params(&task.params, &context) {
        Ok(rendered) => rendered,
        Err(err) => return (Err(JobError::Params(err.to_string())), args),
    };

    let run = kind.run(JobContext {
        params: rendered,
        log,
        store: runtime.store.clone(),
    });
    let result = match args.timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Failed(format!(
                "timed out after {}",
                humantime::format_duration(limit)
            ))),
        },
        None => run.await,
    };
    (result, args)
}

/// The DAG version a try runs, read once per worker: the tries that start
/// together on a new version wait for one read rather than each reading and
/// decoding it (a wide DAG's definition is large).
async fn version(runtime: &Runtime, version_id: i64) -> Result<Arc<Dag>, StoreError> {
    let cell = runtime
        .versions
        .lock()
        .expect("version cache lock is never poisoned: holders do not panic")
        .entry(version_id)
        .or_default()
        .clone();
    let dag = cell
        .get_or_try_init(|| async {
            Ok::<_, StoreError>(Arc::new(runtime.store.dag_version(version_id).await?))
        })
        .await?;
    Ok(dag.clone())
}
