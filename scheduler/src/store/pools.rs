//! Pools: named numbers of slots that tasks take while queued or running,
//! to cap how much of something runs at once across DAGs (for example
//! Kafka consumers, or queries against one database).

use chrono::{DateTime, Utc};

use super::{Result, Store, StoreError, on_pool};

/// A pool and how much of it is in use.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct PoolRow {
    /// Its name, as tasks write it in `pool:`.
    pub name: String,
    /// Slots in all.
    pub slots: i64,
    /// What it is for.
    pub description: Option<String>,
    /// Slots taken by queued task instances.
    pub queued_slots: i64,
    /// Slots taken by running task instances.
    pub running_slots: i64,
}

impl Store {
    /// Creates a pool or changes its slots and description. Fewer slots than
    /// are in use take effect as tries end.
    pub async fn set_pool(
        &self,
        name: &str,
        slots: u32,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO pool (name, slots, description, updated_at) VALUES ($1, $2, $3, $4) \
                   ON CONFLICT (name) DO UPDATE SET slots = excluded.slots, \
                   description = COALESCE(excluded.description, pool.description), \
                   updated_at = excluded.updated_at";
        let slots = i32::try_from(slots).unwrap_or(i32::MAX);
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(name)
            .bind(slots)
            .bind(description)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        // Freed slots may let waiting tasks run.
        self.announce("pool_changed").await
    }

    /// Deletes a pool; tasks that name it wait until it exists again.
    ///
    /// Fails with [`StoreError::PoolNotFound`] when there is no such pool.
    pub async fn delete_pool(&self, name: &str) -> Result<()> {
        let n = on_pool!(&self.pool, |pool| sqlx::query(
            "DELETE FROM pool WHERE name = $1"
        )
        .bind(name)
        .execute(pool)
        .await?
        .rows_affected());
        if n == 0 {
            return Err(StoreError::PoolNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Every pool with its use, by name.
    pub async fn list_pools(&self) -> Result<Vec<PoolRow>> {
        let sql = "SELECT p.name, CAST(p.slots AS BIGINT) AS slots, p.description, \
                   CAST(COALESCE(SUM(CASE WHEN ti.state = 'queued' THEN ti.pool_slots END), 0) \
                   AS BIGINT) AS queued_slots, \
                   CAST(COALESCE(SUM(CASE WHEN ti.state = 'running' THEN ti.pool_slots END), 0) \
                   AS BIGINT) AS running_slots \
                   FROM pool p LEFT JOIN task_instance ti ON ti.pool = p.name \
                   AND ti.state IN ('queued', 'running') \
                   GROUP BY p.name, p.slots, p.description ORDER BY p.name";
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?))
    }
}
