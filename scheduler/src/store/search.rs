//! Pieces shared by the UI's searches: WHERE clauses assembled from the
//! filters a search was given, and the distinct values of a column read by
//! skipping through its index.
//!
//! A filter that is not given leaves its column out of the query (rather
//! than `($1 IS NULL OR col = $1)`), so the planner sees only the conditions
//! that apply and picks the index that fits them. The text is made of fixed
//! fragments and `$n` placeholders only; every value is bound.

use chrono::{DateTime, Utc};

/// A value bound to a placeholder of a [`Conditions`].
pub(super) enum Param {
    /// Text, e.g. a DAG id or a state name.
    Text(String),
    /// An integer, e.g. a key or a limit.
    Int(i64),
    /// A time.
    Time(DateTime<Utc>),
}

impl From<&str> for Param {
    fn from(value: &str) -> Param {
        Param::Text(value.to_owned())
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Param {
        Param::Int(value)
    }
}

impl From<DateTime<Utc>> for Param {
    fn from(value: DateTime<Utc>) -> Param {
        Param::Time(value)
    }
}

/// The conditions of a search and the values they bind, in placeholder
/// order.
#[derive(Default)]
pub(super) struct Conditions {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// Binds `value` and returns its placeholder (`$1`, `$2`, …). A
    /// placeholder may appear more than once in the text.
    pub(super) fn bind(&mut self, value: impl Into<Param>) -> String {
        self.params.push(value.into());
        format!("${}", self.params.len())
    }

    /// Adds `column op value`, e.g. `("dag_id", "=", …)`. The column and
    /// operator are fixed text of the caller's.
    pub(super) fn compare(
        &mut self,
        column: &'static str,
        op: &'static str,
        value: impl Into<Param>,
    ) {
        let placeholder = self.bind(value);
        self.clauses.push(format!("{column} {op} {placeholder}"));
    }

    /// Adds a clause written by the caller from fixed text and placeholders
    /// returned by [`Conditions::bind`].
    pub(super) fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `WHERE a AND b …`, or nothing when no condition was added.
    pub(super) fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The bound values, in placeholder order.
    pub(super) fn params(&self) -> &[Param] {
        &self.params
    }
}

/// Binds the [`Param`]s of `$params` to the query `$query`, in order.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                $crate::store::search::Param::Text(v) => query.bind(v.as_str()),
                $crate::store::search::Param::Int(v) => query.bind(*v),
                $crate::store::search::Param::Time(v) => query.bind(*v),
            };
        }
        query
    }};
}
pub(super) use bind_params;

/// The distinct non-null values of `column` in `table`, sorted, found by
/// one index probe per value (a recursive "loose index scan") instead of
/// reading every row: `SELECT DISTINCT` reads all of a large table on
/// PostgreSQL. Needs an index that starts with `column`.
pub(super) fn distinct_values_sql(table: &'static str, column: &'static str) -> String {
    format!(
        "WITH RECURSIVE v (value) AS ( \
           SELECT MIN({column}) FROM {table} \
           UNION ALL \
           SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > v.value) \
           FROM v WHERE v.value IS NOT NULL) \
         SELECT value FROM v WHERE value IS NOT NULL ORDER BY value"
    )
}
