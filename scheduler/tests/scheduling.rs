//! Scheduling in time, driven by a manual clock: scheduled runs and their
//! data intervals, catchup, restarts after downtime, pausing, and
//! backfills. Every test runs on PostgreSQL and on SQLite.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rtmas_scheduler::backfill::{self, BackfillError};
use rtmas_scheduler::clock::ManualClock;
use rtmas_scheduler::dag::AnyKind;
use rtmas_scheduler::on_both_backends;
use rtmas_scheduler::queue::TaskJob;
use rtmas_scheduler::scheduler::{Scheduler, SchedulerConfig};
use rtmas_scheduler::state::{RunState, TaskState};
use rtmas_scheduler::store::{
    NewBackfill, NewRun, PlannedAction, Reprocess, RunRow, Store, TaskSpec, TryOutcome,
};
use serde_json::json;

on_both_backends!(
    a_scheduled_run_is_created_when_its_interval_ends,
    catchup_creates_missed_runs_in_order_within_max_active_runs,
    without_catchup_only_the_latest_interval_runs,
    a_restarted_scheduler_creates_exactly_the_missing_runs,
    a_paused_dag_gets_no_runs_until_unpaused,
    two_schedulers_never_create_a_run_twice,
    runs_in_a_time_zone_cover_local_days_across_dst,
    backfill_dry_run_lists_the_runs_and_creates_nothing,
    backfill_creates_runs_with_its_conf_and_runs_them_in_order,
    backfill_runs_backwards_newest_first,
    backfill_never_duplicates_an_existing_run,
    backfill_reprocess_modes_rerun_failed_or_all,
    cancelling_a_backfill_stops_new_runs,
    backfill_refuses_manual_dags_and_bad_ranges,
    a_pool_caps_queued_and_running_tasks_across_dags,
    a_task_waits_while_its_pool_does_not_exist,
    max_active_tasks_caps_a_dags_active_task_instances,
    clearing_a_task_with_its_downstream_runs_them_again,
    marking_a_task_failed_fails_its_downstream_and_its_run,
    marking_a_run_succeeded_finishes_its_task_instances,
    a_run_past_its_dagrun_timeout_fails,
    a_run_unfinished_past_its_deadline_is_recorded,
);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test times are RFC 3339")
        .to_utc()
}

/// A DAG folder with one file, and a scheduler over it on `clock`.
struct Fixture {
    store: Store,
    clock: ManualClock,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(store: Store, now: &str, dag_yaml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        write_dag(dir.path(), dag_yaml);
        Fixture {
            store,
            clock: ManualClock::new(at(now)),
            dir,
        }
    }

    async fn scheduler(&self) -> Scheduler {
        let mut scheduler = Scheduler::new(
            self.store.clone(),
            Arc::new(AnyKind),
            Arc::new(self.clock.clone()),
            SchedulerConfig {
                dags_dir: self.dir.path().to_owned(),
                dag_sync_interval: Duration::from_secs(3600),
                poll_interval: Duration::from_secs(1),
                worker_timeout: Duration::from_secs(10),
            },
        );
        scheduler.sync_dags().await.expect("sync");
        scheduler
    }

    /// Logical dates of the DAG's runs, oldest first.
    async fn logical_dates(&self, dag_id: &str) -> Vec<DateTime<Utc>> {
        let mut dates: Vec<_> = self
            .runs(dag_id)
            .await
            .iter()
            .map(|r| r.logical_date)
            .collect();
        dates.sort();
        dates
    }

    async fn runs(&self, dag_id: &str) -> Vec<RunRow> {
        self.store.list_runs(dag_id, 100_000).await.expect("runs")
    }

    /// Plays the worker: every queued try of every running run ends with
    /// `outcome`. Returns how many tries it ran.
    async fn work(&self, outcome: &TryOutcome) -> usize {
        let now = self.clock.now_utc();
        let mut ran = 0;
        for run in self
            .store
            .runs_in_state(RunState::Running)
            .await
            .expect("runs")
        {
            for ti in self.store.task_instances(run.id).await.expect("tis") {
                if ti.state != TaskState::Queued {
                    continue;
                }
                let job = TaskJob {
                    ti_id: ti.id,
                    try_number: ti.try_number,
                };
                let claim = self
                    .store
                    .claim(job, "test", "test-worker", now)
                    .await
                    .expect("claim")
                    .expect("queued try is claimable");
                self.store
                    .finish_try(&claim, outcome, now)
                    .await
                    .expect("finish");
                ran += 1;
            }
        }
        ran
    }

    /// Runs passes and plays the worker until nothing changes.
    async fn settle(&self, scheduler: &mut Scheduler, outcome: &TryOutcome) {
        for _ in 0..1000 {
            let report = scheduler.run_once().await.expect("pass");
            let ran = self.work(outcome).await;
            if ran == 0 && report == Default::default() {
                return;
            }
        }
        panic!("scheduling did not settle in 1000 passes");
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for ManualClock {
    fn now_utc(&self) -> DateTime<Utc> {
        rtmas_scheduler::clock::Clock::now(self)
    }
}

fn write_dag(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("dag.yaml"), yaml).expect("write DAG file");
}

fn hourly(catchup: bool, max_active_runs: u32) -> String {
    format!(
        "dag_id: hourly\nschedule: '@hourly'\nstart_date: '2026-01-01T00:00:00Z'\n\
         catchup: {catchup}\nmax_active_runs: {max_active_runs}\n\
         tasks:\n  - {{id: a, kind: noop}}\n  - {{id: b, kind: noop, depends_on: [a]}}\n"
    )
}

const SUCCESS: TryOutcome = TryOutcome::Success(None);

fn failure() -> TryOutcome {
    TryOutcome::Failed {
        error: "boom".to_owned(),
        retry_at: None,
    }
}

async fn a_scheduled_run_is_created_when_its_interval_ends(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:30:00Z", &hourly(false, 16));
    let mut scheduler = f.scheduler().await;

    scheduler.run_once().await.expect("pass");
    assert!(
        f.runs("hourly").await.is_empty(),
        "no interval has ended yet"
    );

    f.clock.set(at("2026-01-01T01:00:00Z"));
    scheduler.run_once().await.expect("pass");
    let runs = f.runs("hourly").await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.run_type, "scheduled");
    assert_eq!(run.logical_date, at("2026-01-01T00:00:00Z"));
    assert_eq!(run.data_interval_start, at("2026-01-01T00:00:00Z"));
    assert_eq!(run.data_interval_end, at("2026-01-01T01:00:00Z"));
    assert_eq!(run.run_id, "scheduled__2026-01-01T00:00:00.000000+00:00");

    // The same moment again creates nothing more.
    scheduler.run_once().await.expect("pass");
    assert_eq!(f.runs("hourly").await.len(), 1);

    f.settle(&mut scheduler, &SUCCESS).await;
    let run = f.store.run(run.id).await.expect("run");
    assert_eq!(run.state, RunState::Success);
}

async fn catchup_creates_missed_runs_in_order_within_max_active_runs(store: Store) {
    let f = Fixture::new(store, "2026-01-01T05:10:00Z", &hourly(true, 2));
    let mut scheduler = f.scheduler().await;

    scheduler.run_once().await.expect("pass");
    assert_eq!(
        f.logical_dates("hourly").await,
        vec![at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z")],
        "catchup is bounded by max_active_runs"
    );

    f.settle(&mut scheduler, &SUCCESS).await;
    let want: Vec<_> = (0..5)
        .map(|h| at(&format!("2026-01-01T0{h}:00:00Z")))
        .collect();
    assert_eq!(f.logical_dates("hourly").await, want);
    for run in f.runs("hourly").await {
        assert_eq!(run.state, RunState::Success, "{}", run.run_id);
    }
}

async fn without_catchup_only_the_latest_interval_runs(store: Store) {
    let f = Fixture::new(store, "2026-01-01T05:10:00Z", &hourly(false, 16));
    let mut scheduler = f.scheduler().await;
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.logical_dates("hourly").await,
        vec![at("2026-01-01T04:00:00Z")]
    );

    // Down for three hours: again only the latest.
    f.clock.set(at("2026-01-01T08:30:00Z"));
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.logical_dates("hourly").await,
        vec![at("2026-01-01T04:00:00Z"), at("2026-01-01T07:00:00Z")]
    );
}

async fn a_restarted_scheduler_creates_exactly_the_missing_runs(store: Store) {
    let f = Fixture::new(store, "2026-01-01T02:00:00Z", &hourly(true, 16));
    let mut first = f.scheduler().await;
    f.settle(&mut first, &SUCCESS).await;
    assert_eq!(f.logical_dates("hourly").await.len(), 2);
    drop(first);

    // The scheduler is down from 02:00 to 06:20.
    f.clock.set(at("2026-01-01T06:20:00Z"));
    let mut second = f.scheduler().await;
    f.settle(&mut second, &SUCCESS).await;
    let want: Vec<_> = (0..6)
        .map(|h| at(&format!("2026-01-01T0{h}:00:00Z")))
        .collect();
    assert_eq!(f.logical_dates("hourly").await, want);
}

async fn a_paused_dag_gets_no_runs_until_unpaused(store: Store) {
    let f = Fixture::new(store, "2026-01-01T03:00:00Z", &hourly(true, 16));
    let mut scheduler = f.scheduler().await;
    f.store.set_paused("hourly", true).await.expect("pause");
    f.settle(&mut scheduler, &SUCCESS).await;
    assert!(f.runs("hourly").await.is_empty());

    f.store.set_paused("hourly", false).await.expect("unpause");
    // Unpausing is seen within one poll interval.
    f.clock.set(at("2026-01-01T03:00:01Z"));
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(f.logical_dates("hourly").await.len(), 3);
}

async fn two_schedulers_never_create_a_run_twice(store: Store) {
    let yaml = "dag_id: fast\nschedule: {every: 1m}\nstart_date: '2026-01-01T00:00:00Z'\n\
                catchup: true\nmax_active_runs: 1000\ntasks:\n  - {id: a, kind: noop}\n";
    let f = Fixture::new(store, "2026-01-01T05:00:00Z", yaml);
    let mut one = f.scheduler().await;
    let mut two = f.scheduler().await;
    for _ in 0..20 {
        let (a, b) = tokio::join!(one.run_once(), two.run_once());
        a.expect("first scheduler's pass");
        b.expect("second scheduler's pass");
    }
    let dates = f.logical_dates("fast").await;
    let mut unique = dates.clone();
    unique.dedup();
    assert_eq!(dates, unique, "a logical date got two runs");
    assert_eq!(dates.len(), 300, "five hours of one-minute intervals");
}

async fn runs_in_a_time_zone_cover_local_days_across_dst(store: Store) {
    let yaml = "dag_id: paris\nschedule: {cron: '0 0 * * *', timezone: Europe/Paris}\n\
                start_date: '2024-03-29T23:00:00Z'\ncatchup: true\n\
                tasks:\n  - {id: a, kind: noop}\n";
    let f = Fixture::new(store, "2024-04-01T12:00:00Z", yaml);
    let mut scheduler = f.scheduler().await;
    f.settle(&mut scheduler, &SUCCESS).await;
    let mut runs = f.runs("paris").await;
    runs.sort_by_key(|r| r.logical_date);
    let hours: Vec<i64> = runs
        .iter()
        .map(|r| (r.data_interval_end - r.data_interval_start).num_hours())
        .collect();
    // 30 March, 31 March (clocks go forward), then no full 1 April yet.
    assert_eq!(hours, vec![24, 23]);
    assert_eq!(runs[1].data_interval_start, at("2024-03-30T23:00:00Z"));
}

fn daily_dag() -> &'static str {
    "dag_id: daily\nschedule: '@daily'\nstart_date: '2026-01-01'\ncatchup: false\n\
     params: {region: eu}\ntasks:\n  - {id: a, kind: noop}\n"
}

fn new_backfill(from: &str, to: &str, reprocess: Reprocess) -> NewBackfill {
    NewBackfill {
        dag_id: "daily".to_owned(),
        from: at(from),
        to: at(to),
        reprocess,
        backwards: false,
        max_active_runs: 10,
        conf: json!({"region": "us"}),
    }
}

async fn backfill_dry_run_lists_the_runs_and_creates_nothing(store: Store) {
    let f = Fixture::new(store, "2026-02-01T06:00:00Z", daily_dag());
    let _scheduler = f.scheduler().await;
    let new = new_backfill(
        "2026-01-10T00:00:00Z",
        "2026-01-12T00:00:00Z",
        Reprocess::None,
    );
    let plan = backfill::preview(&f.store, &new, f.clock.now_utc())
        .await
        .expect("preview");
    let starts: Vec<_> = plan.iter().map(|p| p.interval.start).collect();
    assert_eq!(
        starts,
        vec![
            at("2026-01-10T00:00:00Z"),
            at("2026-01-11T00:00:00Z"),
            at("2026-01-12T00:00:00Z")
        ]
    );
    assert!(plan.iter().all(|p| p.action == PlannedAction::Create));
    assert!(f.runs("daily").await.is_empty(), "a dry run creates no run");
    assert!(
        f.store
            .list_backfills(None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

async fn backfill_creates_runs_with_its_conf_and_runs_them_in_order(store: Store) {
    let f = Fixture::new(store, "2026-02-01T06:00:00Z", daily_dag());
    let mut scheduler = f.scheduler().await;
    let mut new = new_backfill(
        "2026-01-10T00:00:00Z",
        "2026-01-14T00:00:00Z",
        Reprocess::None,
    );
    new.max_active_runs = 2;
    let (row, plan) = backfill::create(&f.store, &new, f.clock.now_utc())
        .await
        .expect("create");
    assert_eq!(plan.len(), 5);
    assert_eq!(row.state, "running");

    // The scheduler starts two at a time, oldest first.
    scheduler.run_once().await.expect("pass");
    let mut running: Vec<_> = f
        .runs("daily")
        .await
        .into_iter()
        .filter(|r| r.backfill_id == Some(row.id) && r.state == RunState::Running)
        .map(|r| r.logical_date)
        .collect();
    running.sort();
    assert_eq!(
        running,
        vec![at("2026-01-10T00:00:00Z"), at("2026-01-11T00:00:00Z")]
    );

    f.settle(&mut scheduler, &SUCCESS).await;
    let runs = f.runs("daily").await;
    let backfilled: Vec<_> = runs.iter().filter(|r| r.run_type == "backfill").collect();
    assert_eq!(backfilled.len(), 5);
    for run in &backfilled {
        assert_eq!(run.state, RunState::Success);
        assert_eq!(run.conf, json!({"region": "us"}));
        assert_eq!(run.backfill_id, Some(row.id));
    }
    let done = f.store.backfill(row.id).await.expect("backfill");
    assert_eq!(done.state, "completed");
    let progress = f.store.backfill_progress(row.id).await.expect("progress");
    assert_eq!((progress.done(), progress.total()), (5, 5));

    // A run cleared after its backfill completed runs again on its own.
    let again = backfilled[0].id;
    assert!(
        f.store
            .clear_run(again, f.clock.now_utc())
            .await
            .expect("clear")
    );
    f.settle(&mut scheduler, &SUCCESS).await;
    let run = f.store.run(again).await.expect("run");
    assert_eq!((run.state, run.backfill_id), (RunState::Success, None));
    let ti = &f.store.task_instances(again).await.expect("tis")[0];
    assert_eq!(ti.try_number, 2);
}

async fn backfill_runs_backwards_newest_first(store: Store) {
    let f = Fixture::new(store, "2026-02-01T06:00:00Z", daily_dag());
    let mut scheduler = f.scheduler().await;
    let mut new = new_backfill(
        "2026-01-10T00:00:00Z",
        "2026-01-14T00:00:00Z",
        Reprocess::None,
    );
    new.backwards = true;
    new.max_active_runs = 1;
    let (row, plan) = backfill::create(&f.store, &new, f.clock.now_utc())
        .await
        .expect("create");
    assert_eq!(plan[0].interval.start, at("2026-01-14T00:00:00Z"));

    let mut order = Vec::new();
    for _ in 0..5 {
        scheduler.run_once().await.expect("pass");
        let running: Vec<_> = f
            .store
            .runs_in_state(RunState::Running)
            .await
            .expect("running")
            .into_iter()
            .filter(|r| r.backfill_id == Some(row.id))
            .collect();
        assert_eq!(running.len(), 1, "max_active_runs is 1");
        order.push(running[0].logical_date);
        f.work(&SUCCESS).await;
        scheduler.run_once().await.expect("pass");
    }
    let want: Vec<_> = (10..=14)
        .rev()
        .map(|d| at(&format!("2026-01-{d}T00:00:00Z")))
        .collect();
    assert_eq!(order, want);
}

async fn backfill_never_duplicates_an_existing_run(store: Store) {
    let f = Fixture::new(store, "2026-01-13T06:00:00Z", daily_dag());
    let mut scheduler = f.scheduler().await;
    // The schedule made the 12 January run (catchup is off).
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.logical_dates("daily").await,
        vec![at("2026-01-12T00:00:00Z")]
    );

    let new = new_backfill(
        "2026-01-10T00:00:00Z",
        "2026-01-12T00:00:00Z",
        Reprocess::None,
    );
    let (_, plan) = backfill::create(&f.store, &new, f.clock.now_utc())
        .await
        .expect("create");
    assert!(matches!(plan[2].action, PlannedAction::Skip { .. }));
    // Creating the same backfill twice adds nothing either.
    backfill::create(&f.store, &new, f.clock.now_utc())
        .await
        .expect("create again");
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.logical_dates("daily").await,
        vec![
            at("2026-01-10T00:00:00Z"),
            at("2026-01-11T00:00:00Z"),
            at("2026-01-12T00:00:00Z")
        ]
    );
}

async fn backfill_reprocess_modes_rerun_failed_or_all(store: Store) {
    let f = Fixture::new(store, "2026-02-01T06:00:00Z", daily_dag());
    let mut scheduler = f.scheduler().await;
    let now = f.clock.now_utc();
    // 10 January fails, 11 January succeeds.
    let first = new_backfill(
        "2026-01-10T00:00:00Z",
        "2026-01-10T00:00:00Z",
        Reprocess::None,
    );
    backfill::create(&f.store, &first, now)
        .await
        .expect("create");
    f.settle(&mut scheduler, &failure()).await;
    let second = new_backfill(
        "2026-01-11T00:00:00Z",
        "2026-01-11T00:00:00Z",
        Reprocess::None,
    );
    backfill::create(&f.store, &second, now)
        .await
        .expect("create");
    f.settle(&mut scheduler, &SUCCESS).await;

    let range = ("2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z");
    let actions = |plan: &[rtmas_scheduler::store::PlannedRun]| -> Vec<&'static str> {
        plan.iter()
            .map(|p| match p.action {
                PlannedAction::Create => "create",
                PlannedAction::Rerun { .. } => "rerun",
                PlannedAction::Skip { .. } => "skip",
            })
            .collect()
    };
    let none = backfill::preview(
        &f.store,
        &new_backfill(range.0, range.1, Reprocess::None),
        now,
    )
    .await
    .expect("none");
    assert_eq!(actions(&none), ["skip", "skip", "create"]);
    let all = backfill::preview(
        &f.store,
        &new_backfill(range.0, range.1, Reprocess::All),
        now,
    )
    .await
    .expect("all");
    assert_eq!(actions(&all), ["rerun", "rerun", "create"]);

    let failed = new_backfill(range.0, range.1, Reprocess::Failed);
    let (row, plan) = backfill::create(&f.store, &failed, now)
        .await
        .expect("failed");
    assert_eq!(actions(&plan), ["rerun", "skip", "create"]);
    f.settle(&mut scheduler, &SUCCESS).await;
    // The schedule's own run for 31 January is not part of this.
    let runs: Vec<_> = f
        .runs("daily")
        .await
        .into_iter()
        .filter(|r| r.run_type == "backfill")
        .collect();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.state == RunState::Success));
    let rerun = runs
        .iter()
        .find(|r| r.logical_date == at("2026-01-10T00:00:00Z"))
        .expect("10 January");
    assert_eq!(rerun.backfill_id, Some(row.id));
    let ti = &f.store.task_instances(rerun.id).await.expect("tis")[0];
    assert_eq!(ti.state, TaskState::Success);
    assert_eq!(ti.try_number, 2, "the re-run is the task's second try");
}

async fn cancelling_a_backfill_stops_new_runs(store: Store) {
    let f = Fixture::new(store, "2026-02-01T06:00:00Z", daily_dag());
    let mut scheduler = f.scheduler().await;
    let mut new = new_backfill(
        "2026-01-01T00:00:00Z",
        "2026-01-10T00:00:00Z",
        Reprocess::None,
    );
    new.max_active_runs = 2;
    let (row, _) = backfill::create(&f.store, &new, f.clock.now_utc())
        .await
        .expect("create");
    scheduler.run_once().await.expect("pass");
    assert!(
        f.store
            .cancel_backfill(row.id, f.clock.now_utc())
            .await
            .expect("cancel")
    );
    assert!(
        !f.store
            .cancel_backfill(row.id, f.clock.now_utc())
            .await
            .expect("again")
    );

    f.settle(&mut scheduler, &SUCCESS).await;
    let runs: Vec<_> = f
        .runs("daily")
        .await
        .into_iter()
        .filter(|r| r.backfill_id == Some(row.id))
        .collect();
    let started = runs.iter().filter(|r| r.start_date.is_some()).count();
    assert_eq!(started, 2, "only the runs started before the cancel ran");
    assert_eq!(
        runs.iter().filter(|r| r.state == RunState::Success).count(),
        2
    );
    assert_eq!(
        runs.iter().filter(|r| r.state == RunState::Failed).count(),
        8
    );
    assert_eq!(
        f.store.backfill(row.id).await.expect("row").state,
        "cancelled"
    );
}

async fn backfill_refuses_manual_dags_and_bad_ranges(store: Store) {
    let f = Fixture::new(
        store,
        "2026-02-01T06:00:00Z",
        "dag_id: manual\ntasks:\n  - {id: a, kind: noop}\n",
    );
    let _scheduler = f.scheduler().await;
    let mut new = new_backfill(
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z",
        Reprocess::None,
    );
    new.dag_id = "manual".to_owned();
    let err = backfill::preview(&f.store, &new, f.clock.now_utc())
        .await
        .expect_err("manual DAGs have no intervals");
    assert!(matches!(err, BackfillError::NoSchedule(_)), "{err}");

    new.from = at("2026-01-03T00:00:00Z");
    let err = backfill::preview(&f.store, &new, f.clock.now_utc())
        .await
        .expect_err("range ends before it starts");
    assert!(matches!(err, BackfillError::BadRange { .. }), "{err}");
}

/// `n` independent noop tasks, each taking `slots` of `pool`.
fn pooled(dag_id: &str, n: usize, pool: &str, slots: u32) -> String {
    let mut yaml = format!("dag_id: {dag_id}\ntasks:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{id: t{i}, kind: noop, pool: {pool}, pool_slots: {slots}}}\n"
        ));
    }
    yaml
}

/// Task instances of every run that are queued.
async fn queued(store: &Store) -> Vec<(String, String)> {
    let mut queued = Vec::new();
    for run in store.runs_in_state(RunState::Running).await.expect("runs") {
        for ti in store.task_instances(run.id).await.expect("tis") {
            if ti.state == TaskState::Queued {
                queued.push((ti.dag_id.clone(), ti.task_id.clone()));
            }
        }
    }
    queued
}

async fn a_pool_caps_queued_and_running_tasks_across_dags(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", &pooled("one", 4, "kafka", 1));
    std::fs::write(f.dir.path().join("two.yaml"), pooled("two", 4, "kafka", 2)).expect("write");
    f.store
        .set_pool("kafka", 3, Some("consumers"), f.clock.now_utc())
        .await
        .expect("pool");
    let mut scheduler = f.scheduler().await;
    let now = f.clock.now_utc();
    for dag_id in ["one", "two"] {
        f.store
            .create_run(&NewRun::manual(dag_id, json!({}), now), now)
            .await
            .expect("run");
    }

    let mut seen_one = 0;
    let mut seen_two = 0;
    for _ in 0..20 {
        scheduler.run_once().await.expect("pass");
        let queued = queued(&f.store).await;
        let used: u32 = queued
            .iter()
            .map(|(dag, _)| if dag == "one" { 1 } else { 2 })
            .sum();
        assert!(used <= 3, "pool over its slots: {queued:?}");
        let pools = f.store.list_pools().await.expect("pools");
        assert_eq!(
            i64::from(used),
            pools[0].queued_slots + pools[0].running_slots
        );
        seen_one += queued.iter().filter(|(d, _)| d == "one").count();
        seen_two += queued.iter().filter(|(d, _)| d == "two").count();
        f.work(&SUCCESS).await;
    }
    assert_eq!((seen_one, seen_two), (4, 4), "every task ran once");
    for dag_id in ["one", "two"] {
        assert_eq!(f.runs(dag_id).await[0].state, RunState::Success);
    }
}

async fn a_task_waits_while_its_pool_does_not_exist(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", &pooled("one", 2, "db", 1));
    let mut scheduler = f.scheduler().await;
    let now = f.clock.now_utc();
    f.store
        .create_run(&NewRun::manual("one", json!({}), now), now)
        .await
        .expect("run");
    scheduler.run_once().await.expect("pass");
    scheduler.run_once().await.expect("pass");
    assert!(queued(&f.store).await.is_empty(), "no pool, no slots");

    f.store.set_pool("db", 1, None, now).await.expect("pool");
    scheduler.run_once().await.expect("pass");
    assert_eq!(queued(&f.store).await.len(), 1);
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(f.runs("one").await[0].state, RunState::Success);
}

async fn max_active_tasks_caps_a_dags_active_task_instances(store: Store) {
    let mut yaml = "dag_id: capped\nmax_active_tasks: 3\ntasks:\n".to_owned();
    for i in 0..7 {
        yaml.push_str(&format!("  - {{id: t{i}, kind: noop}}\n"));
    }
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", &yaml);
    let mut scheduler = f.scheduler().await;
    let now = f.clock.now_utc();
    for _ in 0..2 {
        let mut run = NewRun::manual("capped", json!({}), now);
        run.run_id = format!("{}-{}", run.run_id, f.runs("capped").await.len());
        f.store.create_run(&run, now).await.expect("run");
    }
    let mut total = 0;
    for _ in 0..20 {
        scheduler.run_once().await.expect("pass");
        let queued = queued(&f.store).await.len();
        assert!(queued <= 3, "{queued} task instances queued at once");
        total += queued;
        f.work(&SUCCESS).await;
    }
    assert_eq!(total, 14, "both runs' seven tasks ran");
}

const CHAIN: &str = "dag_id: chain\ntasks:\n  - {id: a, kind: noop}\n  \
                     - {id: b, kind: noop, depends_on: [a]}\n  \
                     - {id: c, kind: noop, depends_on: [b]}\n";

/// A manual run of the chain DAG; returns its key.
async fn chain_run(f: &Fixture) -> i64 {
    let now = f.clock.now_utc();
    f.store
        .create_run(&NewRun::manual("chain", json!({}), now), now)
        .await
        .expect("run")
        .id
}

/// (task id, state, try number) of a run's task instances.
async fn states(f: &Fixture, run_pk: i64) -> Vec<(String, TaskState, i32)> {
    f.store
        .task_instances(run_pk)
        .await
        .expect("tis")
        .into_iter()
        .map(|t| (t.task_id, t.state, t.try_number))
        .collect()
}

fn row(task: &str, state: TaskState, try_number: i32) -> (String, TaskState, i32) {
    (task.to_owned(), state, try_number)
}

async fn clearing_a_task_with_its_downstream_runs_them_again(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", CHAIN);
    let mut scheduler = f.scheduler().await;
    let run = chain_run(&f).await;
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.store.run(run).await.expect("run").state,
        RunState::Success
    );

    let dag = f.store.dag("chain").await.expect("dag");
    let definition = f.store.dag_version(dag.version_id).await.expect("version");
    let b = definition.task("b").expect("b");
    let mut specs = vec![TaskSpec::of(&definition, b)];
    specs.extend(
        definition
            .downstream_of("b")
            .into_iter()
            .map(|t| TaskSpec::of(&definition, t)),
    );
    let cleared = f
        .store
        .clear_task_instances(run, &specs, f.clock.now_utc())
        .await
        .expect("clear");
    assert_eq!(cleared, 2);
    assert_eq!(f.store.run(run).await.expect("run").state, RunState::Queued);

    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.store.run(run).await.expect("run").state,
        RunState::Success
    );
    assert_eq!(
        states(&f, run).await,
        [
            row("a", TaskState::Success, 1),
            row("b", TaskState::Success, 2),
            row("c", TaskState::Success, 2)
        ]
    );
}

async fn marking_a_task_failed_fails_its_downstream_and_its_run(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", CHAIN);
    let mut scheduler = f.scheduler().await;
    let run = chain_run(&f).await;
    scheduler.run_once().await.expect("pass");
    let a = f.store.task_instances(run).await.expect("tis")[0].clone();
    assert_eq!(a.state, TaskState::Queued);

    let now = f.clock.now_utc();
    assert!(
        f.store
            .mark_task_instance(a.id, TaskState::Failed, now)
            .await
            .expect("mark")
    );
    // The queued try can no longer start.
    assert_eq!(f.work(&SUCCESS).await, 0);
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(f.store.run(run).await.expect("run").state, RunState::Failed);
    assert_eq!(
        states(&f, run).await,
        [
            row("a", TaskState::Failed, 1),
            row("b", TaskState::UpstreamFailed, 0),
            row("c", TaskState::UpstreamFailed, 0)
        ]
    );

    // Marked success afterwards, the rest of the run goes ahead.
    assert!(
        f.store
            .mark_task_instance(a.id, TaskState::Success, now)
            .await
            .expect("mark")
    );
    let dag = f.store.dag("chain").await.expect("dag");
    let definition = f.store.dag_version(dag.version_id).await.expect("version");
    let specs: Vec<_> = definition
        .downstream_of("a")
        .into_iter()
        .map(|t| TaskSpec::of(&definition, t))
        .collect();
    f.store
        .clear_task_instances(run, &specs, now)
        .await
        .expect("clear");
    f.settle(&mut scheduler, &SUCCESS).await;
    assert_eq!(
        f.store.run(run).await.expect("run").state,
        RunState::Success
    );
}

async fn marking_a_run_succeeded_finishes_its_task_instances(store: Store) {
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", CHAIN);
    let mut scheduler = f.scheduler().await;
    let run = chain_run(&f).await;
    scheduler.run_once().await.expect("pass");
    let now = f.clock.now_utc();
    assert!(
        f.store
            .mark_run(run, RunState::Success, now)
            .await
            .expect("mark")
    );
    assert!(
        !f.store
            .mark_run(run, RunState::Success, now)
            .await
            .expect("again")
    );
    f.settle(&mut scheduler, &SUCCESS).await;
    let row_ = f.store.run(run).await.expect("run");
    assert_eq!(row_.state, RunState::Success);
    assert!(
        states(&f, run)
            .await
            .iter()
            .all(|(_, s, _)| *s == TaskState::Success)
    );

    f.clock.advance(chrono::TimeDelta::seconds(1));
    let failed = chain_run(&f).await;
    scheduler.run_once().await.expect("pass");
    assert!(
        f.store
            .mark_run(failed, RunState::Failed, now)
            .await
            .expect("mark")
    );
    assert_eq!(
        states(&f, failed).await,
        [
            row("a", TaskState::Failed, 1),
            row("b", TaskState::Skipped, 0),
            row("c", TaskState::Skipped, 0)
        ]
    );
}

async fn a_run_past_its_dagrun_timeout_fails(store: Store) {
    let yaml = CHAIN.replace("dag_id: chain\n", "dag_id: chain\ndagrun_timeout: 10m\n");
    let f = Fixture::new(store, "2026-01-01T00:00:00Z", &yaml);
    let mut scheduler = f.scheduler().await;
    let run = chain_run(&f).await;
    scheduler.run_once().await.expect("pass");
    f.clock.set(at("2026-01-01T00:09:59Z"));
    scheduler.run_once().await.expect("pass");
    assert_eq!(
        f.store.run(run).await.expect("run").state,
        RunState::Running
    );

    f.clock.set(at("2026-01-01T00:10:00Z"));
    scheduler.run_once().await.expect("pass");
    assert_eq!(f.store.run(run).await.expect("run").state, RunState::Failed);
    assert_eq!(
        states(&f, run).await,
        [
            row("a", TaskState::Failed, 1),
            row("b", TaskState::Skipped, 0),
            row("c", TaskState::Skipped, 0)
        ]
    );
}

async fn a_run_unfinished_past_its_deadline_is_recorded(store: Store) {
    let yaml = "dag_id: hourly\nschedule: '@hourly'\nstart_date: '2026-01-01T00:00:00Z'\n\
                catchup: true\ndeadline: 30m\nmax_active_runs: 1\n\
                tasks:\n  - {id: a, kind: noop}\n";
    let f = Fixture::new(store, "2026-01-01T01:00:00Z", yaml);
    let mut scheduler = f.scheduler().await;
    // The 00:00 run finishes in time; the 01:00 one does not.
    f.settle(&mut scheduler, &SUCCESS).await;
    f.clock.set(at("2026-01-01T02:00:00Z"));
    scheduler.run_once().await.expect("pass");
    f.clock.set(at("2026-01-01T02:29:00Z"));
    scheduler.run_once().await.expect("pass");
    let late = |runs: Vec<RunRow>| -> Vec<DateTime<Utc>> {
        let mut late: Vec<_> = runs
            .iter()
            .filter(|r| r.deadline_missed_at.is_some())
            .map(|r| r.logical_date)
            .collect();
        late.sort();
        late
    };
    assert!(late(f.runs("hourly").await).is_empty());

    f.clock.set(at("2026-01-01T02:30:00Z"));
    scheduler.run_once().await.expect("pass");
    assert_eq!(late(f.runs("hourly").await), [at("2026-01-01T01:00:00Z")]);
    f.settle(&mut scheduler, &SUCCESS).await;
    let runs = f.runs("hourly").await;
    assert!(runs.iter().all(|r| r.state == RunState::Success));
    assert_eq!(
        late(runs),
        [at("2026-01-01T01:00:00Z")],
        "finishing late stays recorded"
    );
}
