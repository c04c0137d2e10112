//! Two `rtmas scheduler` processes on one PostgreSQL database, catching up
//! 1,200 scheduled runs together with two workers: no run is created twice,
//! no try is queued or run twice, and `max_active_runs` holds.

mod support;

use std::time::Duration;

use chrono::{DurationRound, TimeDelta, Utc};
use rtmas_scheduler::state::RunState;
use sqlx::postgres::PgPool;
use support::{System, wait_until_within};

const RUNS: i64 = 1200;
const MAX_ACTIVE_RUNS: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_duplicate_a_run_or_a_try() {
    let mut system = System::postgres_with_workers("ha", &[("w1", 8), ("w2", 8)]).await;
    system.spawn_scheduler("scheduler-2");

    // One-minute intervals, the first RUNS minutes ago (aligned on the
    // minute, so exactly RUNS intervals have ended).
    let start = (Utc::now() - TimeDelta::minutes(RUNS))
        .duration_trunc(TimeDelta::minutes(1))
        .expect("a minute divides any time");
    let start = start.format("%Y-%m-%dT%H:%M:%SZ");
    system.write_dag(
        "ha.yaml",
        &format!(
            "dag_id: ha\nschedule: {{every: 1m}}\nstart_date: '{start}'\ncatchup: true\n\
             max_active_runs: {MAX_ACTIVE_RUNS}\ntasks:\n  - {{id: a, kind: noop}}\n  \
             - {{id: b, kind: noop, depends_on: [a]}}\n"
        ),
    );
    system.wait_for_dag("ha").await;

    let pool = PgPool::connect(&system.url).await.expect("connect");
    wait_until_within("1,200 runs succeeded", Duration::from_secs(300), || async {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM dag_run WHERE dag_id = 'ha' AND state = 'success'",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        n >= RUNS
    })
    .await;

    let (runs, dates): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT logical_date) FROM dag_run WHERE dag_id = 'ha'",
    )
    .fetch_one(&pool)
    .await
    .expect("runs");
    assert_eq!(runs, dates, "a logical date got two runs");
    assert!(runs >= RUNS);

    // Every task instance ran exactly one try, and each try was put on the
    // queue once.
    let (tis, tried_once): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE try_number = 1 AND state = 'success') \
         FROM task_instance WHERE dag_id = 'ha'",
    )
    .fetch_one(&pool)
    .await
    .expect("task instances");
    assert_eq!(tis, tried_once, "some try ran more than once");
    let (tries,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM task_try t JOIN task_instance ti ON ti.id = t.ti_id \
         WHERE ti.dag_id = 'ha'",
    )
    .fetch_one(&pool)
    .await
    .expect("tries");
    assert_eq!(tries, tis);
    let (jobs, distinct_jobs): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT idempotency_key) FROM apalis.jobs")
            .fetch_one(&pool)
            .await
            .expect("jobs");
    assert_eq!(jobs, distinct_jobs, "a try was queued twice");
    assert!(jobs >= tis, "every try went through the queue");

    // At no moment did more than MAX_ACTIVE_RUNS runs run.
    let (peak,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(MAX(n), 0) FROM (SELECT (SELECT COUNT(*) FROM dag_run o \
         WHERE o.dag_id = 'ha' AND o.start_date <= r.start_date AND o.end_date > r.start_date) \
         AS n FROM dag_run r WHERE r.dag_id = 'ha') AS concurrent",
    )
    .fetch_one(&pool)
    .await
    .expect("peak");
    assert!(peak <= MAX_ACTIVE_RUNS, "{peak} runs ran at once");

    let failed = system
        .store
        .list_runs("ha", 10_000)
        .await
        .expect("runs")
        .iter()
        .filter(|r| r.state == RunState::Failed)
        .count();
    assert_eq!(failed, 0);

    // Both schedulers did part of the work.
    for name in ["scheduler", "scheduler-2"] {
        let log = std::fs::read_to_string(system.log_path(name)).expect("scheduler log");
        assert!(log.contains("run started"), "{name} started no run");
    }
}
