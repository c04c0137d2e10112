//! `rtmas standalone`: scheduler, worker and web server in one process on a
//! SQLite file, with alert emails written to an outbox folder, for a first
//! look and for development.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rtmas_scheduler::clock::SystemClock;
use rtmas_scheduler::scheduler::Scheduler;

use crate::cli::{connect, scheduler_config, shutdown_signal, worker_config};
use crate::config::Config;
use crate::services::Services;

/// Runs scheduler, worker and web server together until SIGTERM or Ctrl-C.
/// On first start it creates an admin user and prints its password.
pub async fn run(mut config: Config, data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create data folder {}", data_dir.display()))?;
    let db = data_dir.join("rtmas.db");
    config.database_url = Some(format!("sqlite:{}", db.display()));
    if config.store_url.is_none() {
        let folder = data_dir
            .canonicalize()
            .with_context(|| format!("cannot read data folder {}", data_dir.display()))?
            .join("store");
        let url = url::Url::from_directory_path(&folder)
            .map_err(|()| anyhow::anyhow!("{} is not an absolute path", folder.display()))?;
        config.store_url = Some(url.to_string());
    }
    // Alert emails go to an outbox folder unless a mail server is set.
    if config.notify.smtp_url.is_none() && config.notify.email_outbox.is_none() {
        config.notify.email_outbox = Some(data_dir.join("outbox"));
        if config.notify.email_to.is_empty() {
            config.notify.email_to = vec!["admin@localhost".to_owned()];
        }
    }
    let store = connect(&config).await?;
    crate::users::ensure_first_admin(&store).await?;
    let listener = crate::users::bind(&config).await?;
    tracing::info!(database = %db.display(), dags_dir = %config.dags_dir.display(), "standalone started");

    let mut services = Services::new();
    services.spawn_scheduler(Scheduler::new(
        store.clone(),
        Arc::new(config.registry()?),
        Arc::new(SystemClock),
        scheduler_config(&config),
    ));
    services.spawn_web(
        listener,
        rtmas_web::AppState::new(store.clone(), config.web_config())?,
    );
    services.spawn_worker(
        store,
        config.registry()?,
        worker_config(&config, None, Some("standalone".to_owned())),
    );
    shutdown_signal().await;
    services.shutdown().await
}
