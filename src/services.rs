//! Long-running parts (scheduler, workers, the web server) run as
//! tasks of one process, stopped together.

use std::future::Future;

use anyhow::Context;
use rtmas_jobs::{Registry, WorkerConfig, run_worker};
use rtmas_scheduler::scheduler::Scheduler;
use rtmas_scheduler::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The tasks of one process that share a stop signal.
pub struct Services {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl Services {
    pub fn new() -> Self {
        Services {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// A future that completes once [`Services::shutdown`] is called.
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    pub fn spawn_scheduler(&mut self, scheduler: Scheduler) {
        let stop = self.stopped();
        self.tasks.push((
            "scheduler",
            tokio::spawn(async move { scheduler.run(stop).await.map_err(anyhow::Error::from) }),
        ));
    }

    pub fn spawn_worker(&mut self, store: Store, registry: Registry, config: WorkerConfig) {
        let stop = self.stopped();
        self.tasks.push((
            "worker",
            tokio::spawn(async move {
                run_worker(store, registry, config, stop)
                    .await
                    .map_err(anyhow::Error::from)
            }),
        ));
    }

    pub fn spawn_web(&mut self, listener: tokio::net::TcpListener, state: rtmas_web::AppState) {
        let stop = self.stopped();
        self.tasks.push((
            "web server",
            tokio::spawn(async move {
                rtmas_web::serve(listener, state, stop)
                    .await
                    .map_err(anyhow::Error::from)
            }),
        ));
    }

    /// Signals every task to stop and waits for each, reporting the first
    /// failure.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            let result = task
                .await
                .with_context(|| format!("{name} task panicked"))
                .and_then(|r| r.with_context(|| format!("{name} failed")));
            if let Err(err) = result {
                tracing::error!(error = format!("{err:#}"), "{name} stopped with an error");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
