//! DAGs synced from files, their versions, and files that failed to load.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::{Result, Store, StoreError, on_pool};
use crate::dag::{Dag, FileErrors, LoadedDag, Schedule};

/// A DAG as stored: the latest synced version and its flags.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct DagRow {
    /// The DAG's id.
    pub dag_id: String,
    /// The file it was loaded from.
    pub fileloc: String,
    /// The current version (a `dag_version` key).
    pub version_id: i64,
    /// Its description.
    pub description: Option<String>,
    /// The schedule as a human-readable string, `None` for manual-only.
    pub schedule: Option<String>,
    /// Its tags.
    pub tags: Json<Vec<String>>,
    /// Whether the scheduler creates scheduled runs for it.
    pub is_paused: bool,
    /// False when its file is gone from the DAG folder.
    pub is_active: bool,
    /// When it was last synced with a change.
    pub updated_at: DateTime<Utc>,
}

/// The source of one version of a DAG.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct DagSource {
    /// The version's store key.
    pub id: i64,
    /// The DAG.
    pub dag_id: String,
    /// SHA-256 of the file's content, hex.
    pub hash: String,
    /// The file's text.
    pub source: String,
    /// When this version was first synced.
    pub created_at: DateTime<Utc>,
}

/// A DAG file that could not be loaded.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct ImportErrorRow {
    /// The file.
    pub fileloc: String,
    /// Every error found in it, one per line, `file:line:col: message`.
    pub message: String,
    /// When the error was recorded.
    pub updated_at: DateTime<Utc>,
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SyncReport {
    /// DAGs whose content changed or that are new.
    pub new_versions: Vec<String>,
    /// DAGs whose file is gone and that were deactivated.
    pub deactivated: Vec<String>,
    /// Files that failed to load.
    pub import_errors: usize,
}

/// Shows a schedule the way a user wrote it.
pub fn describe_schedule(schedule: &Option<Schedule>) -> Option<String> {
    schedule.as_ref().map(|s| match s {
        Schedule::Cron {
            expr,
            timezone: Some(tz),
        } => format!("{expr} ({tz})"),
        Schedule::Cron {
            expr,
            timezone: None,
        } => expr.clone(),
        Schedule::Every { interval } => {
            format!("every {}", humantime::format_duration(*interval))
        }
    })
}

impl Store {
    /// Records the DAGs of a folder load: a new version for each changed
    /// file, the current version on each DAG, deactivation of DAGs whose
    /// file is gone, and the folder's import errors (replacing older ones).
    ///
    /// A DAG whose file has an error keeps its last good version active.
    pub async fn sync_dags(
        &self,
        loaded: &[LoadedDag],
        errors: &[FileErrors],
        now: DateTime<Utc>,
    ) -> Result<SyncReport> {
        let mut report = SyncReport {
            import_errors: errors.len(),
            ..SyncReport::default()
        };
        on_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            for item in loaded {
                let definition = Json(&item.dag);
                let inserted = sqlx::query(
                    "INSERT INTO dag_version (dag_id, hash, source, definition, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dag_id, hash) DO NOTHING",
                )
                .bind(&item.dag.dag_id)
                .bind(&item.hash)
                .bind(&item.source)
                .bind(definition)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let (version_id,): (i64,) =
                    sqlx::query_as("SELECT id FROM dag_version WHERE dag_id = $1 AND hash = $2")
                        .bind(&item.dag.dag_id)
                        .bind(&item.hash)
                        .fetch_one(&mut *tx)
                        .await?;
                let changed = sqlx::query(
                    "INSERT INTO dag (dag_id, fileloc, version_id, description, schedule, tags, \
                     is_active, updated_at) VALUES ($1, $2, $3, $4, $5, $6, TRUE, $7) \
                     ON CONFLICT (dag_id) DO UPDATE SET fileloc = excluded.fileloc, \
                     version_id = excluded.version_id, description = excluded.description, \
                     schedule = excluded.schedule, tags = excluded.tags, is_active = TRUE, \
                     updated_at = excluded.updated_at \
                     WHERE dag.version_id <> excluded.version_id OR NOT dag.is_active \
                     OR dag.fileloc <> excluded.fileloc",
                )
                .bind(&item.dag.dag_id)
                .bind(item.path.display().to_string())
                .bind(version_id)
                .bind(&item.dag.description)
                .bind(describe_schedule(&item.dag.schedule))
                .bind(Json(&item.dag.tags))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted > 0 || changed > 0 {
                    report.new_versions.push(item.dag.dag_id.clone());
                }
            }

            // A file with errors may still hold a DAG we know: keep it.
            let active: Vec<String> = sqlx::query_as::<_, (String, String)>(
                "SELECT dag_id, fileloc FROM dag WHERE is_active",
            )
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|(dag_id, fileloc)| {
                !loaded.iter().any(|l| &l.dag.dag_id == dag_id)
                    && !errors
                        .iter()
                        .any(|e| &e.path.display().to_string() == fileloc)
            })
            .map(|(dag_id, _)| dag_id)
            .collect();
            for dag_id in &active {
                sqlx::query("UPDATE dag SET is_active = FALSE, updated_at = $2 WHERE dag_id = $1")
                    .bind(dag_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            report.deactivated = active;

            sqlx::query("DELETE FROM import_error")
                .execute(&mut *tx)
                .await?;
            for file in errors {
                let message = file
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n");
                sqlx::query(
                    "INSERT INTO import_error (fileloc, message, updated_at) VALUES ($1, $2, $3)",
                )
                .bind(file.path.display().to_string())
                .bind(message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(report)
        })
    }

    /// Every DAG, active or not, by id.
    pub async fn list_dags(&self) -> Result<Vec<DagRow>> {
        let sql = "SELECT dag_id, fileloc, version_id, description, schedule, tags, is_paused, \
                   is_active, updated_at FROM dag ORDER BY dag_id";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// One DAG; fails with [`StoreError::DagNotFound`] when it is unknown.
    pub async fn dag(&self, dag_id: &str) -> Result<DagRow> {
        let sql = "SELECT dag_id, fileloc, version_id, description, schedule, tags, is_paused, \
                   is_active, updated_at FROM dag WHERE dag_id = $1";
        let row: Option<DagRow> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(dag_id)
            .fetch_optional(pool)
            .await?);
        row.ok_or_else(|| StoreError::DagNotFound(dag_id.to_owned()))
    }

    /// The DAG definition of a stored version.
    pub async fn dag_version(&self, version_id: i64) -> Result<Dag> {
        let sql = "SELECT definition FROM dag_version WHERE id = $1";
        let row: Option<(Json<Dag>,)> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(version_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(|(Json(dag),)| dag)
            .ok_or_else(|| StoreError::Corrupt(format!("DAG version {version_id} is missing")))
    }

    /// The YAML source of a stored version, as it was read from its file,
    /// with the version's content hash and when it was first seen.
    ///
    /// Fails with [`StoreError::Corrupt`] when the version is missing.
    pub async fn dag_source(&self, version_id: i64) -> Result<DagSource> {
        let sql = "SELECT id, dag_id, hash, source, created_at FROM dag_version WHERE id = $1";
        let row: Option<DagSource> = on_pool!(&self.pool, |pool| {
            sqlx::query_as(sql)
                .bind(version_id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| StoreError::Corrupt(format!("DAG version {version_id} is missing")))
    }

    /// Files of the DAG folder that failed to load, as of the last sync.
    pub async fn import_errors(&self) -> Result<Vec<ImportErrorRow>> {
        let sql = "SELECT fileloc, message, updated_at FROM import_error ORDER BY fileloc";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }

    /// Pauses or unpauses a DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<()> {
        let sql = "UPDATE dag SET is_paused = $2 WHERE dag_id = $1";
        let n = on_pool!(&self.pool, |pool| {
            sqlx::query(sql)
                .bind(dag_id)
                .bind(paused)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::DagNotFound(dag_id.to_owned()));
        }
        self.announce(if paused { "dag_paused" } else { "dag_unpaused" })
            .await
    }
}
