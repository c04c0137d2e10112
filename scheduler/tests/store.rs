//! The store test suite: every test runs on PostgreSQL and on SQLite, each
//! on a fresh database.

use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rtmas_scheduler::dag::{AnyKind, LoadedDag, parse_dag};
use rtmas_scheduler::queue::TaskJob;
use rtmas_scheduler::state::{RunState, TaskState};
use rtmas_scheduler::store::{LogLine, NewRun, Pool, Store, StoreError, TaskSpec, TryOutcome};

use rtmas_scheduler::on_both_backends;

on_both_backends!(
    sync_records_a_version_per_content_hash,
    sync_records_and_replaces_import_errors,
    sync_deactivates_dags_whose_file_is_gone,
    create_run_refuses_a_duplicate_run_id,
    create_run_refuses_an_unknown_dag,
    start_run_creates_one_task_instance_per_task_once,
    enqueue_moves_to_queued_and_counts_tries,
    claim_starts_a_try_only_once,
    finish_try_records_success_retry_and_failure,
    settle_only_moves_task_instances_still_in_the_seen_state,
    task_log_keeps_lines_in_order,
    finish_run_happens_once,
    prune_queue_deletes_only_jobs_finished_long_ago,
    claim_many_and_finish_many_answer_each_try_in_order,
    a_stale_job_of_an_earlier_try_in_the_same_batch_takes_nothing,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .expect("valid date")
}

fn dag_file(dag_id: &str, tasks: &[&str]) -> LoadedDag {
    let mut source = format!("dag_id: {dag_id}\ntasks:\n");
    for (i, task) in tasks.iter().enumerate() {
        source.push_str(&format!("  - id: {task}\n    kind: noop\n"));
        if i > 0 {
            source.push_str(&format!("    depends_on: [{}]\n", tasks[i - 1]));
        }
    }
    let path = PathBuf::from(format!("dags/{dag_id}.yaml"));
    let dag = parse_dag(&path, &source, &AnyKind).expect("test DAG is valid");
    let hash = format!("{:x}", md5_like(&source));
    LoadedDag {
        path,
        source,
        hash,
        dag,
    }
}

/// A stand-in content hash for tests; the loader uses SHA-256.
fn md5_like(s: &str) -> u64 {
    s.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    })
}

async fn synced(store: &Store, dag_id: &str, tasks: &[&str]) {
    store
        .sync_dags(&[dag_file(dag_id, tasks)], &[], t0())
        .await
        .expect("sync");
}

async fn running_run(store: &Store, dag_id: &str, tasks: &[&str]) -> i64 {
    synced(store, dag_id, tasks).await;
    let run = store
        .create_run(&NewRun::manual(dag_id, serde_json::json!({}), t0()), t0())
        .await
        .expect("run");
    let specs: Vec<_> = tasks.iter().map(|t| TaskSpec::new(t, "noop", 2)).collect();
    assert!(
        store
            .start_run(&run, &specs, None, t0())
            .await
            .expect("start")
    );
    run.id
}

async fn sync_records_a_version_per_content_hash(store: Store) {
    let first = dag_file("etl", &["a", "b"]);
    let report = store
        .sync_dags(std::slice::from_ref(&first), &[], t0())
        .await
        .expect("sync");
    assert_eq!(report.new_versions, vec!["etl".to_owned()]);
    let v1 = store.dag("etl").await.expect("dag").version_id;

    let again = store
        .sync_dags(&[first], &[], t0())
        .await
        .expect("sync again");
    assert!(
        again.new_versions.is_empty(),
        "unchanged file must not make a version"
    );
    assert_eq!(store.dag("etl").await.expect("dag").version_id, v1);

    let run1 = store
        .create_run(&NewRun::manual("etl", serde_json::json!({}), t0()), t0())
        .await
        .expect("run");
    store
        .sync_dags(&[dag_file("etl", &["a", "b", "c"])], &[], t0())
        .await
        .expect("sync changed");
    let v2 = store.dag("etl").await.expect("dag").version_id;
    assert_ne!(v1, v2);
    let later = t0() + Duration::seconds(1);
    let run2 = store
        .create_run(&NewRun::manual("etl", serde_json::json!({}), later), later)
        .await
        .expect("run");
    assert_eq!(
        run1.version_id, v1,
        "a run keeps the version it was created on"
    );
    assert_eq!(run2.version_id, v2);
    assert_eq!(store.dag_version(v2).await.expect("version").tasks.len(), 3);
}

async fn sync_records_and_replaces_import_errors(store: Store) {
    let broken = rtmas_scheduler::dag::FileErrors {
        path: PathBuf::from("dags/broken.yaml"),
        errors: parse_dag(
            std::path::Path::new("dags/broken.yaml"),
            "dag_id: x\ntasks: 3\n",
            &AnyKind,
        )
        .expect_err("invalid"),
    };
    store.sync_dags(&[], &[broken], t0()).await.expect("sync");
    let errors = store.import_errors().await.expect("errors");
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("dags/broken.yaml:2:"),
        "{}",
        errors[0].message
    );

    store.sync_dags(&[], &[], t0()).await.expect("sync fixed");
    assert!(store.import_errors().await.expect("errors").is_empty());
}

async fn sync_deactivates_dags_whose_file_is_gone(store: Store) {
    store
        .sync_dags(&[dag_file("a", &["t"]), dag_file("b", &["t"])], &[], t0())
        .await
        .expect("sync");
    let report = store
        .sync_dags(&[dag_file("a", &["t"])], &[], t0())
        .await
        .expect("sync");
    assert_eq!(report.deactivated, vec!["b".to_owned()]);
    assert!(!store.dag("b").await.expect("dag").is_active);
    let err = store
        .create_run(&NewRun::manual("b", serde_json::json!({}), t0()), t0())
        .await;
    assert!(matches!(err, Err(StoreError::DagNotFound(_))), "{err:?}");
}

async fn create_run_refuses_a_duplicate_run_id(store: Store) {
    synced(&store, "etl", &["a"]).await;
    let run = NewRun::manual("etl", serde_json::json!({"k": 1}), t0());
    let row = store.create_run(&run, t0()).await.expect("first");
    assert_eq!(row.state, RunState::Queued);
    assert_eq!(row.conf, serde_json::json!({"k": 1}));
    let err = store.create_run(&run, t0()).await;
    assert!(matches!(err, Err(StoreError::RunExists { .. })), "{err:?}");
}

async fn create_run_refuses_an_unknown_dag(store: Store) {
    let err = store
        .create_run(&NewRun::manual("nope", serde_json::json!({}), t0()), t0())
        .await;
    assert!(matches!(err, Err(StoreError::DagNotFound(_))), "{err:?}");
}

async fn start_run_creates_one_task_instance_per_task_once(store: Store) {
    synced(&store, "etl", &["a", "b"]).await;
    let run = store
        .create_run(&NewRun::manual("etl", serde_json::json!({}), t0()), t0())
        .await
        .expect("run");
    let specs = vec![TaskSpec::new("a", "noop", 1), TaskSpec::new("b", "noop", 3)];
    assert!(
        store
            .start_run(&run, &specs, None, t0())
            .await
            .expect("start")
    );
    assert!(
        !store
            .start_run(&run, &specs, None, t0())
            .await
            .expect("second start"),
        "a run starts once"
    );
    let tis = store.task_instances(run.id).await.expect("tis");
    assert_eq!(
        tis.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        tis.iter()
            .all(|t| t.state == TaskState::None && t.try_number == 0)
    );
    assert_eq!(tis[1].max_tries, 3);
    assert_eq!(
        store.run(run.id).await.expect("run").state,
        RunState::Running
    );
}

async fn enqueue_moves_to_queued_and_counts_tries(store: Store) {
    let run = running_run(&store, "etl", &["a", "b"]).await;
    let tis = store.task_instances(run).await.expect("tis");
    let jobs = store
        .enqueue(&[(tis[0].id, TaskState::None)], t0())
        .await
        .expect("enqueue");
    assert_eq!(
        jobs,
        vec![TaskJob {
            ti_id: tis[0].id,
            try_number: 1
        }]
    );
    let again = store
        .enqueue(&[(tis[0].id, TaskState::None)], t0())
        .await
        .expect("enqueue again");
    assert!(
        again.is_empty(),
        "a task instance no longer in the seen state is not queued"
    );
    let ti = store.task_instance(tis[0].id).await.expect("ti");
    assert_eq!((ti.state, ti.try_number), (TaskState::Queued, 1));
}

async fn claim_starts_a_try_only_once(store: Store) {
    let run = running_run(&store, "etl", &["a"]).await;
    let ti = store.task_instances(run).await.expect("tis")[0].id;
    let job = store
        .enqueue(&[(ti, TaskState::None)], t0())
        .await
        .expect("enqueue")[0];
    let claim = store
        .claim(job, "host", "w1", t0())
        .await
        .expect("claim")
        .expect("first claim wins");
    assert_eq!((claim.task_id.as_str(), claim.try_number), ("a", 1));
    assert!(
        store
            .claim(job, "host", "w2", t0())
            .await
            .expect("claim")
            .is_none()
    );
    let stale = TaskJob {
        try_number: 7,
        ..job
    };
    assert!(
        store
            .claim(stale, "host", "w2", t0())
            .await
            .expect("claim")
            .is_none()
    );
    let tries = store.task_tries(ti).await.expect("tries");
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].worker, "w1");
}

async fn finish_try_records_success_retry_and_failure(store: Store) {
    let run = running_run(&store, "etl", &["a", "b"]).await;
    let tis = store.task_instances(run).await.expect("tis");
    let jobs = store
        .enqueue(
            &[(tis[0].id, TaskState::None), (tis[1].id, TaskState::None)],
            t0(),
        )
        .await
        .expect("enqueue");
    let a = store
        .claim(jobs[0], "h", "w", t0())
        .await
        .expect("claim")
        .expect("claimed");
    let b = store
        .claim(jobs[1], "h", "w", t0())
        .await
        .expect("claim")
        .expect("claimed");
    let end = t0() + Duration::milliseconds(1500);

    let state = store
        .finish_try(&a, &TryOutcome::Success(None), end)
        .await
        .expect("finish");
    assert_eq!(state, Some(TaskState::Success));
    let ti = store.task_instance(a.ti_id).await.expect("ti");
    assert_eq!(ti.duration_ms, Some(1500));

    let retry_at = end + Duration::seconds(30);
    let failed = TryOutcome::Failed {
        error: "boom".into(),
        retry_at: Some(retry_at),
    };
    assert_eq!(
        store.finish_try(&b, &failed, end).await.expect("finish"),
        Some(TaskState::UpForRetry)
    );
    let ti = store.task_instance(b.ti_id).await.expect("ti");
    assert_eq!(
        (ti.next_try_at, ti.error.as_deref()),
        (Some(retry_at), Some("boom"))
    );
    assert_eq!(
        store
            .finish_try(&b, &failed, end)
            .await
            .expect("finish twice"),
        None
    );

    let job = store
        .enqueue(&[(b.ti_id, TaskState::UpForRetry)], end)
        .await
        .expect("requeue")[0];
    assert_eq!(job.try_number, 2);
    let b2 = store
        .claim(job, "h", "w", end)
        .await
        .expect("claim")
        .expect("claimed");
    let last = TryOutcome::Failed {
        error: "boom again".into(),
        retry_at: None,
    };
    assert_eq!(
        store.finish_try(&b2, &last, end).await.expect("finish"),
        Some(TaskState::Failed)
    );
    let tries = store.task_tries(b.ti_id).await.expect("tries");
    assert_eq!(
        tries.iter().map(|t| t.state.as_str()).collect::<Vec<_>>(),
        ["failed", "failed"]
    );
}

async fn settle_only_moves_task_instances_still_in_the_seen_state(store: Store) {
    let run = running_run(&store, "etl", &["a", "b"]).await;
    let tis = store.task_instances(run).await.expect("tis");
    store
        .enqueue(&[(tis[0].id, TaskState::None)], t0())
        .await
        .expect("enqueue");
    let moved = store
        .settle_task_instances(
            &[
                (tis[0].id, TaskState::None, TaskState::Skipped),
                (tis[1].id, TaskState::None, TaskState::UpstreamFailed),
            ],
            t0(),
        )
        .await
        .expect("settle");
    assert_eq!(moved, 1);
    let after = store.task_instances(run).await.expect("tis");
    assert_eq!(
        (after[0].state, after[1].state),
        (TaskState::Queued, TaskState::UpstreamFailed)
    );
}

async fn task_log_keeps_lines_in_order(store: Store) {
    let run = running_run(&store, "etl", &["a"]).await;
    let ti = store.task_instances(run).await.expect("tis")[0].id;
    let lines: Vec<LogLine> = (0..50)
        .map(|i| LogLine {
            ts: t0(),
            stream: "stdout".into(),
            line: format!("line {i} <script>"),
        })
        .collect();
    store.append_log(ti, 1, &lines[..20]).await.expect("append");
    store.append_log(ti, 1, &lines[20..]).await.expect("append");
    assert_eq!(store.task_log(ti, 1).await.expect("log"), lines);
    assert!(store.task_log(ti, 2).await.expect("log").is_empty());
}

async fn finish_run_happens_once(store: Store) {
    let run = running_run(&store, "etl", &["a"]).await;
    assert!(
        store
            .finish_run(run, RunState::Failed, t0())
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_run(run, RunState::Success, t0())
            .await
            .expect("finish again")
    );
    assert_eq!(store.run(run).await.expect("run").state, RunState::Failed);
}

async fn prune_queue_deletes_only_jobs_finished_long_ago(store: Store) {
    let run = running_run(&store, "etl", &["a", "b"]).await;
    let tis = store.task_instances(run).await.expect("tis");
    store
        .enqueue(
            &[(tis[0].id, TaskState::None), (tis[1].id, TaskState::None)],
            t0(),
        )
        .await
        .expect("enqueue");
    let later = t0() + Duration::hours(1);
    assert_eq!(
        store.prune_queue(later).await.expect("prune"),
        0,
        "pending jobs stay"
    );

    // As the queue records a finished job: one long ago, one just now.
    let key = format!("ti{}-try1", tis[0].id);
    match store.pool() {
        Pool::Postgres(pool) => {
            sqlx::query("UPDATE apalis.jobs SET status = 'Done', done_at = $1")
                .bind(t0())
                .execute(pool)
                .await
                .expect("finish jobs");
            sqlx::query("UPDATE apalis.jobs SET done_at = $1 WHERE idempotency_key = $2")
                .bind(later)
                .bind(&key)
                .execute(pool)
                .await
                .expect("finish one later");
        }
        Pool::Sqlite(pool) => {
            sqlx::query("UPDATE Jobs SET status = 'Done', done_at = $1")
                .bind(t0().timestamp())
                .execute(pool)
                .await
                .expect("finish jobs");
            sqlx::query("UPDATE Jobs SET done_at = $1 WHERE idempotency_key = $2")
                .bind(later.timestamp())
                .bind(&key)
                .execute(pool)
                .await
                .expect("finish one later");
        }
    }
    assert_eq!(store.prune_queue(later).await.expect("prune"), 1);
    assert_eq!(store.prune_queue(later).await.expect("prune again"), 0);
}

async fn claim_many_and_finish_many_answer_each_try_in_order(store: Store) {
    let run = running_run(&store, "etl", &["a", "b", "c"]).await;
    let tis = store.task_instances(run).await.expect("tis");
    let jobs = store
        .enqueue(
            &[
                (tis[0].id, TaskState::None),
                (tis[1].id, TaskState::None),
                (tis[2].id, TaskState::None),
            ],
            t0(),
        )
        .await
        .expect("enqueue");
    // b is taken by another worker first.
    store
        .claim(jobs[1], "host", "other", t0())
        .await
        .expect("claim")
        .expect("b is queued");

    let claims = store
        .claim_many(&[jobs[2], jobs[1], jobs[0]], "host", "w1", t0())
        .await
        .expect("claim many");
    let got: Vec<Option<&str>> = claims
        .iter()
        .map(|c| c.as_ref().map(|c| c.task_id.as_str()))
        .collect();
    assert_eq!(got, [Some("c"), None, Some("a")]);

    let c = claims[0].clone().expect("c");
    let a = claims[2].clone().expect("a");
    let end = t0() + Duration::seconds(3);
    let failed = TryOutcome::Failed {
        error: "exit status 1".to_owned(),
        retry_at: None,
    };
    let ok = TryOutcome::Success(Some(serde_json::json!({"rows": 3})));
    let states = store
        .finish_many(&[(&a, &failed, end), (&c, &ok, end), (&a, &ok, end)])
        .await
        .expect("finish many");
    assert_eq!(
        states,
        [Some(TaskState::Failed), Some(TaskState::Success), None],
        "a try ends once; a second ending of it in the same batch changes nothing"
    );
    let a_row = store.task_instance(a.ti_id).await.expect("a");
    assert_eq!(a_row.state, TaskState::Failed);
    assert_eq!(a_row.error.as_deref(), Some("exit status 1"));
    assert_eq!(a_row.duration_ms, Some(3000));
    let c_tries = store.task_tries(c.ti_id).await.expect("c tries");
    assert_eq!(
        (c_tries[0].state.as_str(), c_tries[0].worker.as_str()),
        ("success", "w1")
    );
    // Ending them again (a late duplicate) changes nothing.
    let again = store
        .finish_many(&[(&c, &failed, end)])
        .await
        .expect("again");
    assert_eq!(again, [None]);
}

/// The queue may deliver the job of a try that has since failed (a dead
/// worker's job, handed out again) in the same batch as the job of the
/// try that replaced it: each job gets only its own try.
async fn a_stale_job_of_an_earlier_try_in_the_same_batch_takes_nothing(store: Store) {
    let run = running_run(&store, "etl", &["a"]).await;
    let ti = store.task_instances(run).await.expect("tis")[0].id;
    let first = store
        .enqueue(&[(ti, TaskState::None)], t0())
        .await
        .expect("enqueue")[0];
    let try1 = store
        .claim(first, "host", "w1", t0())
        .await
        .expect("claim")
        .expect("queued");
    let retry = TryOutcome::Failed {
        error: "worker w1 stopped heartbeating".to_owned(),
        retry_at: Some(t0()),
    };
    store
        .finish_try(&try1, &retry, t0())
        .await
        .expect("fail try 1");
    let second = store
        .enqueue(&[(ti, TaskState::UpForRetry)], t0())
        .await
        .expect("requeue")[0];
    assert_eq!(second.try_number, 2);

    let claims = store
        .claim_many(&[first, second], "host", "w2", t0())
        .await
        .expect("claim many");
    assert_eq!(claims[0], None, "the stale job starts nothing");
    let try2 = claims[1].clone().expect("the current job claims try 2");
    assert_eq!(try2.try_number, 2);

    let end = t0() + Duration::seconds(4);
    let ok = TryOutcome::Success(None);
    let states = store
        .finish_many(&[(&try1, &ok, end), (&try2, &ok, end)])
        .await
        .expect("finish many");
    assert_eq!(states, [None, Some(TaskState::Success)]);
    let tries = store.task_tries(ti).await.expect("tries");
    assert_eq!(
        tries.iter().map(|t| t.state.as_str()).collect::<Vec<_>>(),
        ["failed", "success"],
        "the stale ending leaves try 1's record alone"
    );
    assert_eq!(
        store.task_instance(ti).await.expect("ti").state,
        TaskState::Success
    );
}
