use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{DataInterval, Timetable};
use crate::dag::Schedule;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test times are RFC 3339")
        .to_utc()
}

fn cron(expr: &str, timezone: Option<&str>, start: Option<&str>) -> Timetable {
    let schedule = Schedule::Cron {
        expr: expr.to_owned(),
        timezone: timezone.map(str::to_owned),
    };
    Timetable::new(&schedule, start.map(at)).expect("test schedules are valid")
}

fn every(seconds: u64, start: Option<&str>) -> Timetable {
    let schedule = Schedule::Every {
        interval: Duration::from_secs(seconds),
    };
    Timetable::new(&schedule, start.map(at)).expect("test schedules are valid")
}

fn iv(start: &str, end: &str) -> DataInterval {
    DataInterval {
        start: at(start),
        end: at(end),
    }
}

#[test]
fn hourly_cron_intervals_run_from_tick_to_tick() {
    let t = cron("0 * * * *", None, None);
    assert_eq!(
        t.interval_from(at("2026-01-01T10:30:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        t.interval_from(at("2026-01-01T11:00:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        t.latest_complete(at("2026-01-01T12:30:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
    assert_eq!(
        t.latest_complete(at("2026-01-01T12:00:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
}

#[test]
fn six_field_cron_counts_seconds_first() {
    let t = cron("*/10 * * * * *", None, None);
    assert_eq!(
        t.interval_from(at("2026-01-01T10:00:01Z")),
        Some(iv("2026-01-01T10:00:10Z", "2026-01-01T10:00:20Z"))
    );
}

#[test]
fn presets_stand_for_their_cron_expressions() {
    let daily = cron("@daily", None, None);
    assert_eq!(
        daily.latest_complete(at("2026-03-05T07:00:00Z")),
        Some(iv("2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z"))
    );
    let weekly = cron("@weekly", None, None);
    // 2026-03-01 is a Sunday.
    assert_eq!(
        weekly.interval_from(at("2026-02-27T00:00:00Z")),
        Some(iv("2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"))
    );
}

#[test]
fn every_intervals_align_on_the_start_date_or_the_epoch() {
    let t = every(10, Some("2026-01-01T00:00:05Z"));
    assert_eq!(
        t.interval_from(at("2026-01-01T00:00:06Z")),
        Some(iv("2026-01-01T00:00:15Z", "2026-01-01T00:00:25Z"))
    );
    assert_eq!(
        t.latest_complete(at("2026-01-01T00:00:30Z")),
        Some(iv("2026-01-01T00:00:15Z", "2026-01-01T00:00:25Z"))
    );
    let t = every(3600, None);
    assert_eq!(
        t.interval_from(at("2026-01-01T10:20:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
}

#[test]
fn nothing_starts_before_the_start_date() {
    let t = cron("0 * * * *", None, Some("2026-01-01T10:30:00Z"));
    assert_eq!(
        t.interval_from(at("2026-01-01T00:00:00Z")),
        Some(iv("2026-01-01T11:00:00Z", "2026-01-01T12:00:00Z"))
    );
    assert_eq!(t.latest_complete(at("2026-01-01T11:59:00Z")), None);
}

#[test]
fn daily_cron_in_a_time_zone_spans_daylight_saving_changes() {
    let t = cron("0 0 * * *", Some("Europe/Paris"), None);
    // Spring forward on 2024-03-31: the local day lasts 23 hours.
    assert_eq!(
        t.interval_from(at("2024-03-30T22:00:00Z")),
        Some(iv("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"))
    );
    // Fall back on 2024-10-27: the local day lasts 25 hours.
    assert_eq!(
        t.interval_from(at("2024-10-26T21:00:00Z")),
        Some(iv("2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"))
    );
}

#[test]
fn a_fixed_time_in_a_skipped_hour_runs_right_after_the_gap() {
    // 02:30 does not exist in Paris on 2024-03-31; clocks jump to 03:00.
    let t = cron("30 2 * * *", Some("Europe/Paris"), None);
    let interval = t
        .interval_from(at("2024-03-30T12:00:00Z"))
        .expect("ticks daily");
    assert_eq!(interval.start, at("2024-03-31T01:00:00Z"));
    assert_eq!(interval.end, at("2024-04-01T00:30:00Z"));
}

#[test]
fn a_fixed_time_in_a_repeated_hour_runs_once() {
    // 02:30 happens twice in Paris on 2024-10-27.
    let t = cron("30 2 * * *", Some("Europe/Paris"), None);
    let ticks = t.intervals_between(at("2024-10-26T12:00:00Z"), at("2024-10-28T12:00:00Z"));
    let starts: Vec<_> = ticks.iter().map(|i| i.start).collect();
    assert_eq!(
        starts,
        vec![at("2024-10-27T00:30:00Z"), at("2024-10-28T01:30:00Z")]
    );
}

#[test]
fn catchup_follows_the_last_run_and_starts_at_the_start_date() {
    let t = cron("0 * * * *", None, Some("2026-01-01T00:00:00Z"));
    let now = at("2026-01-01T05:10:00Z");
    let first = t.next_run(None, true, now).expect("a first interval");
    assert_eq!(first, iv("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z"));
    let second = t
        .next_run(Some(&first), true, now)
        .expect("a next interval");
    assert_eq!(second, iv("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z"));
}

#[test]
fn without_catchup_only_the_latest_interval_runs() {
    let t = cron("0 * * * *", None, Some("2026-01-01T00:00:00Z"));
    let now = at("2026-01-01T05:10:00Z");
    let latest = iv("2026-01-01T04:00:00Z", "2026-01-01T05:00:00Z");
    assert_eq!(t.next_run(None, false, now), Some(latest));
    let old = iv("2026-01-01T01:00:00Z", "2026-01-01T02:00:00Z");
    assert_eq!(t.next_run(Some(&old), false, now), Some(latest));
    // Caught up: the next one is the interval still running.
    assert_eq!(
        t.next_run(Some(&latest), false, now),
        Some(iv("2026-01-01T05:00:00Z", "2026-01-01T06:00:00Z"))
    );
}

#[test]
fn without_a_start_date_or_a_run_the_latest_interval_runs_first() {
    let t = every(60, None);
    assert_eq!(
        t.next_run(None, true, at("2026-01-01T00:10:30Z")),
        Some(iv("2026-01-01T00:09:00Z", "2026-01-01T00:10:00Z"))
    );
}

#[test]
fn a_restart_after_downtime_yields_exactly_the_missing_intervals() {
    let t = cron("*/15 * * * *", None, Some("2026-01-01T00:00:00Z"));
    let last = iv("2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z");
    let now = at("2026-01-01T02:05:00Z");
    let mut due = Vec::new();
    let mut prev = last;
    while let Some(next) = t.next_run(Some(&prev), true, now) {
        if next.end > now {
            break;
        }
        due.push(next.start);
        prev = next;
    }
    let want: Vec<_> = ["00:45", "01:00", "01:15", "01:30", "01:45"]
        .iter()
        .map(|hm| at(&format!("2026-01-01T{hm}:00Z")))
        .collect();
    assert_eq!(due, want);
}

#[test]
fn intervals_between_covers_starts_in_the_closed_range() {
    let t = cron("@daily", None, None);
    let days = t.intervals_between(at("2026-02-01T00:00:00Z"), at("2026-02-03T00:00:00Z"));
    let starts: Vec<_> = days
        .iter()
        .map(|i| i.start.format("%F").to_string())
        .collect();
    assert_eq!(starts, ["2026-02-01", "2026-02-02", "2026-02-03"]);
}
