//! Alerts: raised by the jobs that watch the logs, resolved when the
//! condition clears, listed by the UI.
//!
//! An alert is known by its fingerprint (what is wrong and where, e.g. an
//! error-rate spike of one service). While one with a fingerprint fires,
//! raising it again updates that alert; once resolved, the next raise
//! starts a new one. A partial unique index keeps it at one firing alert
//! per fingerprint even when two jobs raise at once.

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use super::search::{Conditions, bind_params, distinct_values_sql};
use super::{Result, Store, on_pool};

/// An alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlert {
    /// What identifies the condition, e.g. `error_rate_spike:checkout`.
    pub fingerprint: String,
    /// The kind of condition, e.g. `error_rate_spike`.
    pub kind: String,
    /// The service it concerns.
    pub service: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// Whatever the raiser found, for the alert's page.
    pub details: serde_json::Value,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct AlertRow {
    /// Store key.
    pub id: i64,
    /// What identifies the condition.
    pub fingerprint: String,
    /// The kind of condition.
    pub kind: String,
    /// The service it concerns.
    pub service: String,
    /// `critical`, `warning` or `info`, as last raised.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// One line for people, as last raised.
    pub summary: String,
    /// What the raiser found, as last raised.
    #[sqlx(json)]
    pub details: serde_json::Value,
    /// When it was first raised.
    pub first_seen: DateTime<Utc>,
    /// When it was last raised.
    pub last_seen: DateTime<Utc>,
    /// When it was resolved; `None` while firing.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which alerts to list; a `None` filter does not constrain.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// `firing` or `resolved`.
    pub state: Option<String>,
    /// `critical`, `warning` or `info`.
    pub severity: Option<String>,
    /// One service's alerts.
    pub service: Option<String>,
    /// Only alerts older than this key: the last key of the previous page.
    pub before_id: Option<i64>,
    /// At most this many alerts (none when 0).
    pub limit: i64,
}

const ALERT_COLUMNS: &str = "id, fingerprint, kind, service, severity, state, summary, details, \
     first_seen, last_seen, resolved_at";

impl Store {
    /// Raises an alert at `now`: when one with its fingerprint is firing,
    /// updates its last_seen, summary, severity and details; otherwise
    /// inserts a new firing alert first and last seen at `now`. Returns the
    /// alert as stored.
    ///
    /// One statement (an upsert on the partial unique index of firing
    /// alerts), so two raisers of one fingerprint at once make one alert.
    pub async fn raise_alert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<AlertRow> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO alert (fingerprint, kind, service, severity, state, summary, details, \
             first_seen, last_seen) VALUES ($1, $2, $3, $4, 'firing', $5, $6, $7, $7) \
             ON CONFLICT (fingerprint) WHERE state = 'firing' DO UPDATE SET \
             last_seen = excluded.last_seen, summary = excluded.summary, \
             severity = excluded.severity, details = excluded.details \
             RETURNING {ALERT_COLUMNS}"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(&alert.fingerprint)
            .bind(&alert.kind)
            .bind(&alert.service)
            .bind(&alert.severity)
            .bind(&alert.summary)
            .bind(Json(&alert.details))
            .bind(now)
            .fetch_one(pool)
            .await?))
    }

    /// Resolves the firing alert with this fingerprint at `now`. Returns
    /// false when none is firing.
    pub async fn resolve_alert(&self, fingerprint: &str, now: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE alert SET state = 'resolved', resolved_at = $2 \
                   WHERE fingerprint = $1 AND state = 'firing'";
        let n = on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(fingerprint)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    /// Alerts matching `filter`, newest first, a page of at most
    /// `filter.limit` after `filter.before_id`.
    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRow>> {
        let mut conditions = Conditions::default();
        if let Some(state) = &filter.state {
            conditions.compare("state", "=", state.as_str());
        }
        if let Some(severity) = &filter.severity {
            conditions.compare("severity", "=", severity.as_str());
        }
        if let Some(service) = &filter.service {
            conditions.compare("service", "=", service.as_str());
        }
        if let Some(before_id) = filter.before_id {
            conditions.compare("id", "<", before_id);
        }
        let limit = conditions.bind(filter.limit.max(0));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alert {} ORDER BY id DESC LIMIT {limit}",
            conditions.where_clause()
        );

        // The text is fixed fragments and placeholders (see `search`).
        Ok(on_pool!(&self.pool, |pool| {
            bind_params!(
                sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false),
                conditions.params()
            )
            .fetch_all(pool)
            .await?
        }))
    }

    /// The services that have alerts, sorted, for the UI's filter menu.
    pub async fn alert_services(&self) -> Result<Vec<String>> {
        let sql = sqlx::AssertSqlSafe(distinct_values_sql("alert", "service"));
        let rows: Vec<(String,)> = on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(|(service,)| service).collect())
    }
}
