//! `rtmas standalone`: scheduler and worker in one process on a SQLite file,
//! for a first look and for development.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rtmas_jobs::{Registry, run_worker};
use rtmas_scheduler::clock::SystemClock;
use rtmas_scheduler::scheduler::Scheduler;
use tokio::sync::watch;

use crate::cli::{connect, scheduler_config, shutdown_signal, worker_config};
use crate::config::Config;

/// Runs scheduler and worker together until SIGTERM or Ctrl-C.
pub async fn run(mut config: Config, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create data folder {}", data_dir.display()))?;
    let db = data_dir.join("rtmas.db");
    config.database_url = Some(format!("sqlite:{}", db.display()));
    // One process: the worker may poll its local file often at little cost.
    config.worker.poll_interval = config
        .worker
        .poll_interval
        .min(std::time::Duration::from_millis(100));
    let store = connect(&config).await?;
    tracing::info!(database = %db.display(), dags_dir = %config.dags_dir.display(), "standalone started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let scheduler = Scheduler::new(
        store.clone(),
        Arc::new(Registry::builtin()),
        Arc::new(SystemClock),
        scheduler_config(&config),
    );
    let scheduler = tokio::spawn(scheduler.run(stopped(stop_rx.clone())));
    let worker = tokio::spawn(run_worker(
        store,
        Registry::builtin(),
        worker_config(&config, None, Some("standalone".to_owned())),
        stopped(stop_rx),
    ));

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    scheduler
        .await
        .context("scheduler task panicked")?
        .context("scheduler failed")?;
    worker
        .await
        .context("worker task panicked")?
        .context("worker failed")?;
    Ok(())
}
