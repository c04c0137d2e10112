//! Timetables: which data intervals a schedule produces, and which one is
//! due next.
//!
//! A scheduled run covers a data interval `[start, end)`: for a cron
//! schedule, from one tick to the next; for `every: D`, a slice of length
//! `D` aligned on the DAG's `start_date` (or on the Unix epoch when it has
//! none). The run's logical date is the interval's start, and the run is
//! created once the interval has ended, as in Airflow.
//!
//! Cron expressions are evaluated in the schedule's time zone, so `0 0 * *
//! *` in `Europe/Paris` ticks at local midnight and the interval spanning a
//! daylight-saving change is 23 or 25 hours long. croner decides what a
//! tick inside a skipped or repeated hour means (a fixed time in a skipped
//! hour runs right after the gap; one in a repeated hour runs once).

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::dag::{Schedule, ScheduleError, parse_cron, parse_timezone};

/// A half-open span of time `[start, end)` that one run processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct DataInterval {
    /// First instant covered; also the run's logical date.
    pub start: DateTime<Utc>,
    /// First instant not covered; the run is due from then on.
    pub end: DateTime<Utc>,
}

/// The intervals of one DAG's schedule.
#[derive(Debug, Clone)]
pub struct Timetable {
    kind: Kind,
    start_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron { cron: Box<croner::Cron>, tz: Tz },
    Every { interval: TimeDelta },
}

/// How far a cron search may look for a tick before giving up: a valid
/// expression ticks at least once in any four years (29 February).
const MAX_SEARCH: TimeDelta = TimeDelta::days(366 * 5);

impl Timetable {
    /// The timetable of `schedule`, whose intervals start no earlier than
    /// `start_date` when one is given.
    ///
    /// Fails when the schedule does not parse; the DAG loader has checked
    /// it, so this only fails on a definition stored by another version.
    pub fn new(
        schedule: &Schedule,
        start_date: Option<DateTime<Utc>>,
    ) -> Result<Timetable, ScheduleError> {
        let kind = match schedule {
            Schedule::Cron { expr, timezone } => Kind::Cron {
                cron: Box::new(parse_cron(expr)?),
                tz: match timezone {
                    Some(name) => parse_timezone(name)?,
                    None => Tz::UTC,
                },
            },
            Schedule::Every { interval } => {
                let interval = TimeDelta::from_std(*interval)
                    .ok()
                    .filter(|d| *d > TimeDelta::zero())
                    .ok_or_else(|| {
                        ScheduleError::DurationTooLong(format!("{}ms", interval.as_millis()))
                    })?;
                Kind::Every { interval }
            }
        };
        Ok(Timetable { kind, start_date })
    }

    /// The interval that starts at the first schedule tick at or after `at`.
    pub fn interval_from(&self, at: DateTime<Utc>) -> Option<DataInterval> {
        let start = self.tick_at_or_after(at)?;
        let end = self.tick_after(start)?;
        Some(DataInterval { start, end })
    }

    /// The interval right after `prev`.
    pub fn next_after(&self, prev: &DataInterval) -> Option<DataInterval> {
        self.interval_from(prev.end)
    }

    /// The latest interval that has ended at or before `now`, not starting
    /// before `start_date`.
    pub fn latest_complete(&self, now: DateTime<Utc>) -> Option<DataInterval> {
        let end = self.tick_at_or_before(now)?;
        let start = self.tick_before(end)?;
        let interval = DataInterval { start, end };
        match self.start_date {
            Some(first) if interval.start < first => None,
            _ => Some(interval),
        }
    }

    /// The interval the next scheduled run should cover, given the last
    /// scheduled run's interval, whether missed intervals are caught up,
    /// and the time now. The run is due once the interval's end has come:
    /// see [`DataInterval::end`]. `None` when the schedule has no further
    /// tick.
    ///
    /// With `catchup`, each interval follows the last one (from the first
    /// at or after `start_date`), so a scheduler that was down resumes
    /// where it stopped. Without it, the intervals missed while nobody ran
    /// are skipped for the latest complete one.
    pub fn next_run(
        &self,
        last: Option<&DataInterval>,
        catchup: bool,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        let following = match last {
            Some(last) => self.next_after(last),
            None => match self.start_date {
                Some(first) => self.interval_from(first),
                None => None,
            },
        };
        if catchup && following.is_some() {
            return following;
        }
        let latest = self.latest_complete(now);
        match (following, latest) {
            (Some(next), Some(latest)) if latest.start > next.start => Some(latest),
            (Some(next), _) => Some(next),
            // No start date and no run yet: the latest complete interval,
            // else the first one still to come.
            (None, Some(latest)) => Some(latest),
            (None, None) => self.interval_from(now),
        }
    }

    /// Every interval whose start lies in `[from, to]`, oldest first: the
    /// runs a backfill over that range creates.
    pub fn intervals_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DataInterval> {
        let mut intervals = Vec::new();
        let mut next = self.interval_from(from);
        while let Some(interval) = next {
            if interval.start > to {
                break;
            }
            intervals.push(interval);
            next = self.next_after(&interval);
        }
        intervals
    }

    fn tick_at_or_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = match self.start_date {
            Some(first) if at < first => first,
            _ => at,
        };
        match &self.kind {
            Kind::Cron { .. } => self.cron_tick(at, true, true),
            Kind::Every { interval } => {
                let floor = self.every_floor(at, *interval)?;
                if floor == at {
                    Some(at)
                } else {
                    floor.checked_add_signed(*interval)
                }
            }
        }
    }

    fn tick_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron { .. } => self.cron_tick(at, true, false),
            Kind::Every { interval } => self
                .every_floor(at, *interval)?
                .checked_add_signed(*interval),
        }
    }

    fn tick_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron { .. } => self.cron_tick(at, false, true),
            Kind::Every { interval } => self.every_floor(at, *interval),
        }
    }

    fn tick_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Cron { .. } => self.cron_tick(at, false, false),
            Kind::Every { interval } => {
                let floor = self.every_floor(at, *interval)?;
                if floor == at {
                    at.checked_sub_signed(*interval)
                } else {
                    Some(floor)
                }
            }
        }
    }

    /// The cron tick nearest `at` forwards or backwards, `at` itself
    /// included when `inclusive`; `None` past [`MAX_SEARCH`].
    fn cron_tick(
        &self,
        at: DateTime<Utc>,
        forward: bool,
        inclusive: bool,
    ) -> Option<DateTime<Utc>> {
        let Kind::Cron { cron, tz } = &self.kind else {
            return None;
        };
        let local = at.with_timezone(tz);
        let tick = if forward {
            cron.find_next_occurrence(&local, inclusive).ok()?
        } else {
            cron.find_previous_occurrence(&local, inclusive).ok()?
        };
        let tick = tick.to_utc();
        ((tick - at).abs() <= MAX_SEARCH).then_some(tick)
    }

    /// The latest `every` tick at or before `at`: the anchor (the start
    /// date, else the Unix epoch) plus a whole number of intervals.
    fn every_floor(&self, at: DateTime<Utc>, interval: TimeDelta) -> Option<DateTime<Utc>> {
        let anchor = self.start_date.unwrap_or(DateTime::UNIX_EPOCH);
        let (offset, step) = (
            (at - anchor).num_nanoseconds()?,
            interval.num_nanoseconds()?,
        );
        let floor = offset.div_euclid(step).checked_mul(step)?;
        anchor.checked_add_signed(TimeDelta::nanoseconds(floor))
    }
}

#[cfg(test)]
mod tests;
