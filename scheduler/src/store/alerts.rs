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

/// An alert's start or end, to be sent to the notification channels.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AlertEvent {
    /// Store key of the event.
    pub event_id: i64,
    /// `firing` or `resolved`.
    pub event: String,
    /// When it happened (the alert's data time).
    pub created_at: DateTime<Utc>,
    /// The channels that have it.
    #[sqlx(json)]
    pub delivered: Vec<String>,
    /// Rounds of sending that failed on some channel.
    pub attempts: i32,
    /// The last failure.
    pub last_error: Option<String>,
    /// The alert, as it stands now.
    #[sqlx(flatten)]
    pub alert: AlertRow,
}

/// Adds an alert's event unless it has one of the kind already.
async fn add_event<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    alert_id: i64,
    event: &str,
    now: DateTime<Utc>,
) -> Result<()>
where
    DB: sqlx::Database,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    for<'e> &'e mut <DB as sqlx::Database>::Connection: sqlx::Executor<'e, Database = DB>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    DateTime<Utc>: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    for<'q> &'q str: sqlx::Type<DB> + sqlx::Encode<'q, DB>,
{
    sqlx::query(
        "INSERT INTO alert_event (alert_id, event, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (alert_id, event) DO NOTHING",
    )
    .bind(alert_id)
    .bind(event)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const ALERT_COLUMNS: &str = "id, fingerprint, kind, service, severity, state, summary, details, \
     first_seen, last_seen, resolved_at";

impl Store {
    /// Raises an alert at `now`: when one with its fingerprint is firing,
    /// updates its last_seen, summary, severity and details; otherwise
    /// inserts a new firing alert first and last seen at `now`. Returns the
    /// alert as stored.
    ///
    /// One upsert on the partial unique index of firing alerts, so two
    /// raisers of one fingerprint at once make one alert. A new alert gets
    /// its `firing` event for notifications in the same transaction (one
    /// per alert, whoever raised it).
    pub async fn raise_alert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<AlertRow> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO alert (fingerprint, kind, service, severity, state, summary, details, \
             first_seen, last_seen) VALUES ($1, $2, $3, $4, 'firing', $5, $6, $7, $7) \
             ON CONFLICT (fingerprint) WHERE state = 'firing' DO UPDATE SET \
             last_seen = excluded.last_seen, summary = excluded.summary, \
             severity = excluded.severity, details = excluded.details \
             RETURNING {ALERT_COLUMNS}"
        ));
        let row = in_transaction!(&self.pool, |tx| {
            let row: AlertRow = sqlx::query_as(sql)
                .bind(&alert.fingerprint)
                .bind(&alert.kind)
                .bind(&alert.service)
                .bind(&alert.severity)
                .bind(&alert.summary)
                .bind(Json(&alert.details))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            add_event(&mut tx, row.id, "firing", now).await?;
            row
        });
        Ok(row)
    }

    /// Resolves the firing alert with this fingerprint at `now`, with its
    /// `resolved` event for notifications. Returns false when none is
    /// firing.
    pub async fn resolve_alert(&self, fingerprint: &str, now: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE alert SET state = 'resolved', resolved_at = $2 \
                   WHERE fingerprint = $1 AND state = 'firing' RETURNING id";
        let resolved = in_transaction!(&self.pool, |tx| {
            let id: Option<(i64,)> = sqlx::query_as(sql)
                .bind(fingerprint)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some((id,)) = id {
                add_event(&mut tx, id, "resolved", now).await?;
            }
            id.is_some()
        });
        Ok(resolved)
    }

    /// Alert events not yet sent to every channel nor given up, oldest
    /// first, with their alerts as they stand now.
    pub async fn pending_alert_events(&self, limit: i64) -> Result<Vec<AlertEvent>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT e.id AS event_id, e.event, e.created_at, e.delivered, e.attempts, \
             e.last_error, {} FROM alert_event e JOIN alert a ON a.id = e.alert_id \
             WHERE e.done_at IS NULL ORDER BY e.id LIMIT $1",
            ALERT_COLUMNS
                .split(", ")
                .map(|c| format!("a.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(limit)
            .fetch_all(pool)
            .await?))
    }

    /// Records what one round of sending an event came to: the channels
    /// that have it now, the error of one that failed (counting an
    /// attempt), and whether it is done (every channel has it, or it was
    /// given up) at `now`.
    pub async fn alert_event_sent(
        &self,
        event_id: i64,
        delivered: &[String],
        error: Option<&str>,
        done: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE alert_event SET delivered = $2, \
                   attempts = attempts + CASE WHEN CAST($3 AS TEXT) IS NULL THEN 0 ELSE 1 END, \
                   last_error = COALESCE(CAST($3 AS TEXT), last_error), \
                   done_at = CASE WHEN CAST($4 AS BOOLEAN) THEN $5 ELSE NULL END WHERE id = $1";
        on_pool!(&self.pool, |pool| sqlx::query(sql)
            .bind(event_id)
            .bind(Json(delivered))
            .bind(error)
            .bind(done)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())?);
        Ok(())
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

    /// Alerts that fired at some time in `[from, to)`: first seen before
    /// `to` and not resolved before `from`; oldest first, at most `limit`.
    pub async fn alerts_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<AlertRow>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ALERT_COLUMNS} FROM alert WHERE first_seen < $2 \
             AND (resolved_at IS NULL OR resolved_at >= $1) ORDER BY first_seen, id LIMIT $3"
        ));
        Ok(on_pool!(&self.pool, |pool| sqlx::query_as(sql)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await?))
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
