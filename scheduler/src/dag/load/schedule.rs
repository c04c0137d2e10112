//! Schedules, durations and dates as DAG files write them: parsing shared by
//! the loader and by the code that computes when runs are due.
//!
//! Cron expressions have 5 fields, or 6 with seconds first; croner would also
//! take a 7th field for years, which DAG files do not allow.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use marked_yaml::Node;

use super::node::{Diag, Field, Fields, closest, describe, duration, string};
use crate::dag::model::Schedule;

/// The cron presets DAG files may use, with the expression each stands for.
pub const CRON_PRESETS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Names of cron fields, for a 6-field expression.
const CRON_FIELDS: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// Why a schedule, duration, date or time zone is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `@something` that is not one of [`CRON_PRESETS`].
    #[error("unknown cron preset `{0}`")]
    UnknownPreset(String),
    /// Neither 5 nor 6 fields.
    #[error(
        "cron expression `{expr}` has {found} fields; expected 5 (minute hour day-of-month \
         month day-of-week) or 6 (second first)"
    )]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },
    /// croner refused the expression.
    #[error("invalid cron expression `{expr}`: {reason}")]
    InvalidCron {
        /// The expression as written.
        expr: String,
        /// croner's reason, with the field at fault when it can be found.
        reason: String,
    },
    /// A valid expression that no date satisfies, e.g. `0 0 30 2 *`.
    #[error("cron expression `{0}` never matches any date")]
    NeverMatches(String),
    /// Not an IANA time zone name.
    #[error("unknown time zone `{0}`")]
    UnknownTimezone(String),
    /// Text that humantime cannot read as a duration.
    #[error("invalid duration `{input}`: {reason}")]
    InvalidDuration {
        /// The text as written.
        input: String,
        /// humantime's reason.
        reason: String,
    },
    /// A duration too long to compute dates with.
    #[error("duration `{0}` is too long")]
    DurationTooLong(String),
    /// Neither RFC 3339 nor `YYYY-MM-DD`.
    #[error("invalid date `{0}`: expected RFC 3339 such as `2024-01-31T06:00:00Z` or YYYY-MM-DD")]
    InvalidDate(String),
}

/// Parses a cron expression (5 fields, or 6 with seconds first) or a preset
/// such as `@daily` into a croner schedule.
///
/// Fails when the expression is malformed, has another number of fields, or
/// never matches any date.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let trimmed = expr.trim();
    let pattern = if trimmed.starts_with('@') {
        CRON_PRESETS
            .iter()
            .find(|(name, _)| *name == trimmed)
            .map(|(_, pattern)| *pattern)
            .ok_or_else(|| ScheduleError::UnknownPreset(trimmed.to_owned()))?
    } else {
        trimmed
    };

    let fields: Vec<&str> = pattern.split_whitespace().collect();
    if !(5..=6).contains(&fields.len()) {
        return Err(ScheduleError::FieldCount {
            expr: expr.to_owned(),
            found: fields.len(),
        });
    }

    let cron = croner::Cron::from_str(pattern).map_err(|err| ScheduleError::InvalidCron {
        expr: expr.to_owned(),
        reason: explain_cron_error(&fields, &err),
    })?;

    // croner accepts dates that do not exist, such as February 30th, and
    // would then search in vain every time a run is due.
    let epoch = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    if cron.find_next_occurrence(&epoch, true).is_err() {
        return Err(ScheduleError::NeverMatches(expr.to_owned()));
    }
    Ok(cron)
}

/// croner's reason for refusing `fields`, naming the field at fault when
/// parsing it alone, among wildcards, also fails.
fn explain_cron_error(fields: &[&str], err: &croner::errors::CronError) -> String {
    let names = &CRON_FIELDS[CRON_FIELDS.len() - fields.len()..];
    for (i, (field, name)) in fields.iter().zip(names).enumerate() {
        let mut alone = vec!["*"; fields.len()];
        alone[i] = field;
        if croner::Cron::from_str(&alone.join(" ")).is_err() {
            return format!("{name} field `{field}`: {err}");
        }
    }
    err.to_string()
}

/// Looks up an IANA time zone such as `Europe/Paris`.
///
/// Fails when the name is not in the time zone database.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, ScheduleError> {
    chrono_tz::Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimezone(name.to_owned()))
}

/// Parses a duration written for humantime (`30s`, `5m`, `1h 30m`) or as a
/// bare number of seconds.
///
/// Fails on other text and on durations too long for date arithmetic.
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    let text = text.trim();
    let value = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            humantime::parse_duration(text).map_err(|err| ScheduleError::InvalidDuration {
                input: text.to_owned(),
                reason: err.to_string(),
            })?
        }
    };
    if chrono::TimeDelta::from_std(value).is_err() {
        return Err(ScheduleError::DurationTooLong(text.to_owned()));
    }
    Ok(value)
}

/// Parses a start date: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
///
/// Fails on any other text.
pub fn parse_start_date(text: &str) -> Result<DateTime<Utc>, ScheduleError> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| ScheduleError::InvalidDate(text.to_owned()))
}

/// Parses a schedule written as one string, a cron expression or preset,
/// into a [`Schedule::Cron`] evaluated in UTC.
///
/// Fails as [`parse_cron`] does.
pub fn parse_schedule_str(text: &str) -> Result<Schedule, ScheduleError> {
    parse_cron(text)?;
    Ok(Schedule::Cron {
        expr: text.trim().to_owned(),
        timezone: None,
    })
}

/// Decodes the `schedule` key: a cron string, or a mapping with `cron` (and
/// maybe `timezone`) or `every`.
pub(super) fn decode(d: &mut Diag, field: Field) -> Option<Schedule> {
    match field.value {
        Node::Scalar(s) => match parse_schedule_str(s.as_str()) {
            Ok(schedule) => Some(schedule),
            Err(err) => {
                cron_error(d, field, err);
                None
            }
        },
        Node::Mapping(map) => {
            let fields = Fields::check(d, map, &["cron", "timezone", "every"], "in `schedule`");
            decode_mapping(d, field, &fields)
        }
        Node::Sequence(_) => {
            d.error(
                field.pos(),
                format!(
                    "`schedule` must be a cron expression, a preset such as `@daily`, or a \
                     mapping with `cron` or `every`; found {}",
                    describe(field.value)
                ),
            );
            None
        }
    }
}

fn decode_mapping(d: &mut Diag, field: Field, fields: &Fields) -> Option<Schedule> {
    let cron = fields.get("cron");
    let every = fields.get("every");
    let timezone = fields.get("timezone");
    match (cron, every) {
        (Some(cron), None) => {
            let expr = string(d, cron)?;
            if let Err(err) = parse_cron(expr) {
                cron_error(d, cron, err);
                return None;
            }
            let timezone = match timezone {
                Some(tz) => Some(decode_timezone(d, tz)?),
                None => None,
            };
            Some(Schedule::Cron {
                expr: expr.trim().to_owned(),
                timezone,
            })
        }
        (None, Some(every)) => {
            if let Some(tz) = timezone {
                d.error(
                    tz.key_pos(),
                    "`timezone` applies to `cron` schedules, not `every`",
                );
            }
            let interval = duration(d, every, true)?;
            Some(Schedule::Every { interval })
        }
        (Some(_), Some(every)) => {
            d.error(
                every.key_pos(),
                "`schedule` takes `cron` or `every`, not both",
            );
            None
        }
        (None, None) => {
            d.error(
                field.pos(),
                "`schedule` mapping needs a `cron` or an `every` key",
            );
            None
        }
    }
}

fn decode_timezone(d: &mut Diag, field: Field) -> Option<String> {
    let name = string(d, field)?;
    match parse_timezone(name) {
        Ok(_) => Some(name.to_owned()),
        Err(err) => {
            let hint = closest(name, chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()))
                .map(|tz| format!("did you mean `{tz}`?"))
                .or_else(|| Some("use an IANA name such as `Europe/Paris` or `UTC`".to_owned()));
            d.error_hint(field.pos(), err.to_string(), hint);
            None
        }
    }
}

fn cron_error(d: &mut Diag, field: Field, err: ScheduleError) {
    let hint = match &err {
        ScheduleError::UnknownPreset(preset) => {
            let names = CRON_PRESETS.iter().map(|(name, _)| *name);
            Some(match closest(preset, names) {
                Some(name) => format!("did you mean `{name}`?"),
                None => format!("presets are {}", preset_list()),
            })
        }
        ScheduleError::FieldCount { .. } => Some(format!(
            "for example `*/15 * * * *` runs every 15 minutes; presets are {}",
            preset_list()
        )),
        _ => None,
    };
    d.error_hint(field.pos(), err.to_string(), hint);
}

fn preset_list() -> String {
    CRON_PRESETS
        .iter()
        .map(|(name, _)| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
