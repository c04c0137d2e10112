//! The store methods behind the web UI, on both backends: users, sessions
//! and API tokens; the history searches (task instances, runs, the grid,
//! each DAG's latest runs); and alerts, one firing per fingerprint.

use std::collections::HashSet;
use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rtmas_scheduler::dag::{AnyKind, LoadedDag, parse_dag};
use rtmas_scheduler::on_both_backends;
use rtmas_scheduler::state::{RunState, TaskState};
use rtmas_scheduler::store::{
    AlertFilter, NewAlert, NewRun, Role, RunFilter, RunRow, RunType, Store, StoreError,
    TaskInstanceFilter, TaskSpec, TryOutcome,
};

on_both_backends!(
    a_taken_username_is_refused,
    users_are_listed_by_name_and_change_role_and_password,
    an_expired_session_or_disabled_user_is_not_found,
    an_api_token_finds_its_user_and_records_its_use,
    history_filters_combine_and_pages_do_not_overlap,
    filter_menus_list_each_kind_and_worker_once,
    runs_search_filters_by_state_and_type,
    grid_returns_the_latest_runs_with_their_task_instances,
    recent_runs_by_dag_keeps_the_newest_per_dag,
    raising_a_firing_alert_again_updates_it_and_after_resolving_a_new_one_starts,
    alerts_are_listed_newest_first_by_filter_and_page,
    concurrent_raisers_of_one_fingerprint_make_one_alert,
);

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 4, 5, 0, 0)
        .single()
        .expect("valid date")
}

fn hours(n: i64) -> DateTime<Utc> {
    t0() + Duration::hours(n)
}

/// Syncs the DAG folder: DAGs given as (DAG id, tasks), each task
/// depending on the one before.
async fn synced(store: &Store, dags: &[(&str, &[&str])]) {
    let loaded: Vec<LoadedDag> = dags
        .iter()
        .map(|(dag_id, tasks)| {
            let mut source = format!("dag_id: {dag_id}\ntasks:\n");
            for (i, task) in tasks.iter().enumerate() {
                source.push_str(&format!("  - id: {task}\n    kind: noop\n"));
                if i > 0 {
                    source.push_str(&format!("    depends_on: [{}]\n", tasks[i - 1]));
                }
            }
            let path = PathBuf::from(format!("dags/{dag_id}.yaml"));
            let dag = parse_dag(&path, &source, &AnyKind).expect("test DAG is valid");
            LoadedDag {
                path,
                hash: format!("{dag_id}-{}", source.len()),
                source,
                dag,
            }
        })
        .collect();
    store.sync_dags(&loaded, &[], t0()).await.expect("sync");
}

/// A run of `dag_id` with this type, run id and logical date.
async fn run_at(
    store: &Store,
    dag_id: &str,
    run_type: RunType,
    run_id: &str,
    at: DateTime<Utc>,
) -> RunRow {
    let run = NewRun {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
        run_type,
        logical_date: at,
        data_interval_start: at,
        data_interval_end: at,
        conf: serde_json::json!({}),
    };
    store.create_run(&run, at).await.expect("create run")
}

/// Starts `run` with tasks given as (task id, kind).
async fn start(store: &Store, run: &RunRow, tasks: &[(&str, &str)]) {
    let specs: Vec<_> = tasks
        .iter()
        .map(|(task, kind)| TaskSpec::new(task, kind, 1))
        .collect();
    assert!(
        store
            .start_run(run, &specs, None, run.logical_date)
            .await
            .expect("start")
    );
}

/// Runs one try of a task instance on `worker`, started at `at`.
async fn run_try(store: &Store, ti_id: i64, worker: &str, at: DateTime<Utc>, ok: bool) {
    let job = store
        .enqueue(&[(ti_id, TaskState::None)], at)
        .await
        .expect("enqueue")[0];
    let claim = store
        .claim(job, "host", worker, at)
        .await
        .expect("claim")
        .expect("claimed");
    let outcome = if ok {
        TryOutcome::Success(None)
    } else {
        TryOutcome::Failed {
            error: "boom".to_owned(),
            retry_at: None,
        }
    };
    store
        .finish_try(&claim, &outcome, at + Duration::seconds(10))
        .await
        .expect("finish");
}

async fn a_taken_username_is_refused(store: Store) {
    let alice = store
        .create_user("alice", "hash-1", Role::Operator, t0())
        .await
        .expect("create");
    assert_eq!(
        (alice.username.as_str(), alice.role, alice.disabled),
        ("alice", Role::Operator, false)
    );

    let err = store
        .create_user("alice", "hash-2", Role::Admin, t0())
        .await;
    assert!(
        matches!(&err, Err(StoreError::UserExists(name)) if name == "alice"),
        "{err:?}"
    );
    assert_eq!(store.count_users().await.expect("count"), 1);
    let kept = store
        .user_by_name("alice")
        .await
        .expect("find")
        .expect("alice");
    assert_eq!(
        (kept.password_hash.as_str(), kept.role),
        ("hash-1", Role::Operator),
        "the refused create changed nothing"
    );
}

async fn users_are_listed_by_name_and_change_role_and_password(store: Store) {
    for (name, role) in [
        ("carol", Role::Viewer),
        ("alice", Role::Admin),
        ("bob", Role::Viewer),
    ] {
        store
            .create_user(name, "h", role, t0())
            .await
            .expect("create");
    }
    store.set_role("carol", Role::Operator).await.expect("role");
    store
        .set_password("bob", "new-hash")
        .await
        .expect("password");

    let users = store.list_users().await.expect("list");
    assert_eq!(
        users
            .iter()
            .map(|u| (u.username.as_str(), u.role, u.password_hash.as_str()))
            .collect::<Vec<_>>(),
        [
            ("alice", Role::Admin, "h"),
            ("bob", Role::Viewer, "new-hash"),
            ("carol", Role::Operator, "h")
        ]
    );
    let shown = serde_json::to_value(&users[0]).expect("serialise");
    assert_eq!(shown["role"], "admin");
    assert!(
        shown.get("password_hash").is_none(),
        "a password hash is never serialised: {shown}"
    );
    assert!(matches!(
        store.set_role("nobody", Role::Admin).await,
        Err(StoreError::UserNotFound(_))
    ));
    assert!(matches!(
        store.set_password("nobody", "x").await,
        Err(StoreError::UserNotFound(_))
    ));
    assert!(store.user_by_name("nobody").await.expect("find").is_none());
}

async fn an_expired_session_or_disabled_user_is_not_found(store: Store) {
    let alice = store
        .create_user("alice", "h", Role::Viewer, t0())
        .await
        .expect("create");
    store
        .create_session("s1", alice.id, "csrf-1", t0(), hours(1))
        .await
        .expect("session");
    store
        .create_session("s2", alice.id, "csrf-2", t0(), hours(3))
        .await
        .expect("session");

    let found = store
        .session("s1", hours(1) - Duration::seconds(1))
        .await
        .expect("session")
        .expect("live session");
    assert_eq!(
        (found.user.id, found.csrf_token.as_str(), found.expires_at),
        (alice.id, "csrf-1", hours(1))
    );
    assert!(
        store
            .session("s1", hours(1))
            .await
            .expect("session")
            .is_none(),
        "a session has expired at its expiry time"
    );
    assert!(
        store
            .session("nope", t0())
            .await
            .expect("session")
            .is_none()
    );

    store.set_disabled("alice", true).await.expect("disable");
    assert!(store.session("s2", t0()).await.expect("session").is_none());
    store.set_disabled("alice", false).await.expect("enable");
    assert!(store.session("s2", t0()).await.expect("session").is_some());

    assert_eq!(
        store
            .delete_expired_sessions(hours(2))
            .await
            .expect("expire"),
        1
    );
    assert!(
        store
            .session("s2", hours(2))
            .await
            .expect("session")
            .is_some()
    );
    store.delete_session("s2").await.expect("sign out");
    assert!(
        store
            .session("s2", hours(2))
            .await
            .expect("session")
            .is_none()
    );
}

async fn an_api_token_finds_its_user_and_records_its_use(store: Store) {
    let alice = store
        .create_user("alice", "h", Role::Operator, t0())
        .await
        .expect("create");
    let bob = store
        .create_user("bob", "h", Role::Viewer, t0())
        .await
        .expect("create");
    let token = store
        .create_api_token(alice.id, "ci", "tok-hash", t0())
        .await
        .expect("token");
    assert_eq!(
        (token.user_id, token.name.as_str(), token.last_used_at),
        (alice.id, "ci", None)
    );

    let user = store
        .user_by_api_token("tok-hash", hours(1))
        .await
        .expect("lookup")
        .expect("alice's token");
    assert_eq!(user.username, "alice");
    let tokens = store.list_api_tokens(alice.id).await.expect("list");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].last_used_at, Some(hours(1)));
    // Uses are recorded to the minute.
    store
        .user_by_api_token("tok-hash", hours(1) + Duration::seconds(30))
        .await
        .expect("lookup")
        .expect("alice's token");
    assert_eq!(
        store.list_api_tokens(alice.id).await.expect("list")[0].last_used_at,
        Some(hours(1))
    );
    assert!(
        store
            .list_api_tokens(bob.id)
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .user_by_api_token("other", hours(1))
            .await
            .expect("lookup")
            .is_none()
    );

    store.set_disabled("alice", true).await.expect("disable");
    assert!(
        store
            .user_by_api_token("tok-hash", hours(2))
            .await
            .expect("lookup")
            .is_none()
    );
    store.set_disabled("alice", false).await.expect("enable");
    assert_eq!(
        store.list_api_tokens(alice.id).await.expect("list")[0].last_used_at,
        Some(hours(1)),
        "a refused lookup does not count as a use"
    );

    assert!(
        !store
            .revoke_api_token(bob.id, token.id)
            .await
            .expect("revoke"),
        "another user's token is not revoked"
    );
    assert!(
        store
            .revoke_api_token(alice.id, token.id)
            .await
            .expect("revoke")
    );
    assert!(
        store
            .user_by_api_token("tok-hash", hours(3))
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(matches!(
        store.create_api_token(9999, "x", "y", t0()).await,
        Err(StoreError::UserNotFound(_))
    ));
}

/// Three runs of `etl` (a: sql on w1 succeeds, b: http on w2 fails, c: sql
/// never runs) and three of `report` (x: sql on w1 succeeds, y: noop never
/// runs), an hour apart, `report`'s half an hour after `etl`'s. Returns the
/// runs.
async fn history(store: &Store) -> Vec<RunRow> {
    synced(store, &[("etl", &["a", "b", "c"]), ("report", &["x", "y"])]).await;
    let mut runs = Vec::new();
    for i in 0..3 {
        let at = hours(i);
        let etl = run_at(store, "etl", RunType::Manual, &format!("etl-{i}"), at).await;
        start(store, &etl, &[("a", "sql"), ("b", "http"), ("c", "sql")]).await;
        let tis = store.task_instances(etl.id).await.expect("tis");
        run_try(store, tis[0].id, "w1", at + Duration::minutes(1), true).await;
        run_try(store, tis[1].id, "w2", at + Duration::minutes(2), false).await;

        let at = at + Duration::minutes(30);
        let report = run_at(store, "report", RunType::Manual, &format!("report-{i}"), at).await;
        start(store, &report, &[("x", "sql"), ("y", "noop")]).await;
        let tis = store.task_instances(report.id).await.expect("tis");
        run_try(store, tis[0].id, "w1", at + Duration::minutes(1), true).await;
        runs.push(etl);
        runs.push(report);
    }
    runs
}

async fn history_filters_combine_and_pages_do_not_overlap(store: Store) {
    let runs = history(&store).await;
    let mut all = Vec::new();
    for run in &runs {
        for ti in store.task_instances(run.id).await.expect("tis") {
            all.push((ti, run.clone()));
        }
    }
    all.sort_by_key(|(ti, _)| std::cmp::Reverse(ti.id));
    assert_eq!(all.len(), 15);

    // Every filter, and some combinations, against the same choice made
    // here from every task instance.
    let cases = [
        TaskInstanceFilter::default(),
        TaskInstanceFilter {
            dag_id: Some("etl".into()),
            ..Default::default()
        },
        TaskInstanceFilter {
            state: Some(TaskState::Failed),
            ..Default::default()
        },
        TaskInstanceFilter {
            dag_id: Some("etl".into()),
            kind: Some("sql".into()),
            ..Default::default()
        },
        TaskInstanceFilter {
            dag_id: Some("report".into()),
            worker: Some("w1".into()),
            ..Default::default()
        },
        TaskInstanceFilter {
            started_from: Some(hours(1)),
            started_before: Some(hours(2)),
            ..Default::default()
        },
        TaskInstanceFilter {
            state: Some(TaskState::Success),
            started_from: Some(hours(1)),
            ..Default::default()
        },
        TaskInstanceFilter {
            worker: Some("w9".into()),
            ..Default::default()
        },
    ];
    let expected_sizes = [15, 9, 3, 6, 3, 3, 4, 0];
    for (filter, size) in cases.into_iter().zip(expected_sizes) {
        let expected: Vec<i64> = all
            .iter()
            .filter(|(ti, _)| {
                filter.dag_id.as_ref().is_none_or(|d| &ti.dag_id == d)
                    && filter.state.is_none_or(|s| ti.state == s)
                    && filter.kind.as_ref().is_none_or(|k| &ti.kind == k)
                    && filter
                        .worker
                        .as_ref()
                        .is_none_or(|w| ti.worker.as_ref() == Some(w))
                    && filter
                        .started_from
                        .is_none_or(|f| ti.start_date.is_some_and(|s| s >= f))
                    && filter
                        .started_before
                        .is_none_or(|b| ti.start_date.is_some_and(|s| s < b))
            })
            .map(|(ti, _)| ti.id)
            .collect();
        assert_eq!(expected.len(), size, "the fixture for {filter:?}");
        // A window is listed newest start first, then newest key.
        let mut expected = expected;
        if filter.is_windowed() {
            let start = |id: i64| all.iter().find(|(ti, _)| ti.id == id).unwrap().0.start_date;
            expected.sort_by_key(|id| std::cmp::Reverse((start(*id), *id)));
        }

        // Pages of 2 until a short page: each row exactly once, in order.
        let mut paged = Vec::new();
        let (mut before_id, mut before_start) = (None, None);
        loop {
            let page = store
                .search_task_instances(&TaskInstanceFilter {
                    before_id,
                    before_start,
                    limit: 2,
                    ..filter.clone()
                })
                .await
                .expect("search");
            paged.extend(page.iter().map(|row| row.ti.id));
            match page.last() {
                Some(last) if page.len() == 2 => {
                    before_id = Some(last.ti.id);
                    before_start = last.ti.start_date;
                }
                _ => break,
            }
        }
        assert_eq!(paged, expected, "pages of {filter:?}");
    }

    // Each row carries its run's id and logical date.
    let rows = store
        .search_task_instances(&TaskInstanceFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("search");
    assert_eq!(rows.len(), 15);
    for (row, (ti, run)) in rows.iter().zip(&all) {
        assert_eq!(&row.ti, ti);
        assert_eq!(
            (&row.run_id, row.logical_date),
            (&run.run_id, run.logical_date)
        );
    }
    let shown = serde_json::to_value(&rows[0]).expect("serialise");
    assert!(
        shown["task_id"].is_string() && shown["run_id"].is_string(),
        "the task instance's fields are flattened beside the run's: {shown}"
    );
}

async fn filter_menus_list_each_kind_and_worker_once(store: Store) {
    assert!(store.task_kinds().await.expect("kinds").is_empty());
    history(&store).await;
    assert_eq!(
        store.task_kinds().await.expect("kinds"),
        ["http", "noop", "sql"]
    );
    assert_eq!(store.task_workers().await.expect("workers"), ["w1", "w2"]);
}

async fn runs_search_filters_by_state_and_type(store: Store) {
    synced(&store, &[("etl", &["a"]), ("other", &["a"])]).await;
    // Runs 0..6 an hour apart, scheduled when even and manual when odd;
    // 1 and 4 fail. Two more manual runs share the logical date of run 5.
    let mut runs = Vec::new();
    for i in 0..6 {
        let run_type = if i % 2 == 0 {
            RunType::Scheduled
        } else {
            RunType::Manual
        };
        let run = run_at(&store, "etl", run_type, &format!("r{i}"), hours(i)).await;
        if i == 1 || i == 4 {
            start(&store, &run, &[("a", "noop")]).await;
            assert!(
                store
                    .finish_run(run.id, RunState::Failed, hours(i))
                    .await
                    .expect("finish")
            );
        }
        runs.push(run);
    }
    let twin_a = run_at(&store, "etl", RunType::Manual, "twin-a", hours(5)).await;
    let twin_b = run_at(&store, "etl", RunType::Manual, "twin-b", hours(5)).await;
    run_at(&store, "other", RunType::Manual, "elsewhere", hours(9)).await;

    let search = |state, run_type| RunFilter {
        dag_id: "etl".into(),
        state,
        run_type,
        before: None,
        limit: 100,
    };
    let run_ids = |found: Vec<RunRow>| found.into_iter().map(|r| r.run_id).collect::<Vec<_>>();

    let failed = store
        .search_runs(&search(Some(RunState::Failed), None))
        .await
        .expect("search");
    assert_eq!(run_ids(failed), ["r4", "r1"]);
    let manual = store
        .search_runs(&search(None, Some(RunType::Manual)))
        .await
        .expect("search");
    assert_eq!(run_ids(manual), ["twin-b", "twin-a", "r5", "r3", "r1"]);
    let both = store
        .search_runs(&search(Some(RunState::Failed), Some(RunType::Manual)))
        .await
        .expect("search");
    assert_eq!(run_ids(both), ["r1"]);
    let scheduled_queued = store
        .search_runs(&search(Some(RunState::Queued), Some(RunType::Scheduled)))
        .await
        .expect("search");
    assert_eq!(run_ids(scheduled_queued), ["r2", "r0"]);

    // Pages of one through the runs sharing a logical date lose none.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .search_runs(&RunFilter {
                before,
                limit: 1,
                ..search(None, None)
            })
            .await
            .expect("search");
        let Some(last) = page.last() else { break };
        before = Some((last.logical_date, last.id));
        paged.extend(run_ids(page));
    }
    assert_eq!(
        paged,
        ["twin-b", "twin-a", "r5", "r4", "r3", "r2", "r1", "r0"]
    );
    assert!(twin_b.id > twin_a.id && twin_a.id > runs[5].id);
}

async fn grid_returns_the_latest_runs_with_their_task_instances(store: Store) {
    synced(&store, &[("etl", &["a", "b"]), ("other", &["a"])]).await;
    let mut runs = Vec::new();
    for i in 0..4 {
        let run = run_at(
            &store,
            "etl",
            RunType::Scheduled,
            &format!("r{i}"),
            hours(i),
        )
        .await;
        // The newest run is still queued: it has no task instances yet.
        if i < 3 {
            start(&store, &run, &[("a", "noop"), ("b", "noop")]).await;
        }
        runs.push(run);
    }
    let other = run_at(&store, "other", RunType::Manual, "o", hours(9)).await;
    start(&store, &other, &[("a", "noop")]).await;

    let (grid_runs, tis) = store.grid("etl", 3).await.expect("grid");
    assert_eq!(
        grid_runs
            .iter()
            .map(|r| r.run_id.as_str())
            .collect::<Vec<_>>(),
        ["r3", "r2", "r1"]
    );
    assert_eq!(
        tis.iter()
            .map(|ti| (ti.run_pk, ti.task_id.as_str()))
            .collect::<Vec<_>>(),
        [
            (runs[1].id, "a"),
            (runs[1].id, "b"),
            (runs[2].id, "a"),
            (runs[2].id, "b")
        ]
    );

    let (none, no_tis) = store.grid("missing", 3).await.expect("grid");
    assert!(none.is_empty() && no_tis.is_empty());
}

async fn recent_runs_by_dag_keeps_the_newest_per_dag(store: Store) {
    synced(&store, &[("a", &["t"]), ("b", &["t"]), ("idle", &["t"])]).await;
    // Created out of date order, so keys and dates disagree.
    for i in [3, 0, 4, 1, 2] {
        run_at(&store, "a", RunType::Scheduled, &format!("a{i}"), hours(i)).await;
    }
    let b1 = run_at(&store, "b", RunType::Manual, "b1", hours(1)).await;
    start(&store, &b1, &[("t", "noop")]).await;
    run_at(&store, "b", RunType::Manual, "b0", hours(0)).await;

    let recent = store.recent_runs_by_dag(3).await.expect("recent");
    let ids = |dag: &str| {
        recent[dag]
            .iter()
            .map(|r| (r.run_id.as_str(), r.logical_date))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids("a"),
        [("a4", hours(4)), ("a3", hours(3)), ("a2", hours(2))]
    );
    assert_eq!(ids("b"), [("b1", hours(1)), ("b0", hours(0))]);
    assert_eq!(recent["b"][0].state, RunState::Running);
    assert_eq!(recent["b"][0].id, b1.id);
    assert!(!recent.contains_key("idle"), "a DAG without runs is absent");
    assert_eq!(recent.len(), 2);
}

fn spike(service: &str, severity: &str, summary: &str) -> NewAlert {
    NewAlert {
        fingerprint: format!("error_rate_spike:{service}"),
        kind: "error_rate_spike".to_owned(),
        service: service.to_owned(),
        severity: severity.to_owned(),
        summary: summary.to_owned(),
        details: serde_json::json!({ "summary": summary }),
    }
}

async fn raising_a_firing_alert_again_updates_it_and_after_resolving_a_new_one_starts(
    store: Store,
) {
    let first = store
        .raise_alert(&spike("api", "warning", "5% errors"), t0())
        .await
        .expect("raise");
    assert_eq!(
        (first.state.as_str(), first.first_seen, first.last_seen),
        ("firing", t0(), t0())
    );
    assert_eq!(first.resolved_at, None);

    let later = t0() + Duration::minutes(5);
    let again = store
        .raise_alert(&spike("api", "critical", "20% errors"), later)
        .await
        .expect("raise again");
    assert_eq!(
        again.id, first.id,
        "a firing alert is updated, not repeated"
    );
    assert_eq!(
        (again.first_seen, again.last_seen, again.severity.as_str()),
        (t0(), later, "critical")
    );
    assert_eq!(
        (again.summary.as_str(), &again.details),
        (
            "20% errors",
            &serde_json::json!({ "summary": "20% errors" })
        )
    );

    let resolved_at = t0() + Duration::minutes(7);
    assert!(
        store
            .resolve_alert("error_rate_spike:api", resolved_at)
            .await
            .expect("resolve")
    );
    assert!(
        !store
            .resolve_alert("error_rate_spike:api", resolved_at)
            .await
            .expect("resolve again"),
        "nothing is firing any more"
    );

    let next = t0() + Duration::minutes(10);
    let new = store
        .raise_alert(&spike("api", "warning", "6% errors"), next)
        .await
        .expect("raise after resolving");
    assert_ne!(new.id, first.id);
    assert_eq!((new.first_seen, new.state.as_str()), (next, "firing"));

    let all = store
        .list_alerts(&AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(
        (
            all[1].id,
            all[1].state.as_str(),
            all[1].resolved_at,
            all[1].last_seen
        ),
        (first.id, "resolved", Some(resolved_at), later)
    );
}

async fn alerts_are_listed_newest_first_by_filter_and_page(store: Store) {
    let mut ids = Vec::new();
    for (i, (service, severity)) in [
        ("api", "warning"),
        ("db", "critical"),
        ("web", "info"),
        ("db", "warning"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut alert = spike(service, severity, "x");
        alert.fingerprint = format!("fp-{i}");
        ids.push(store.raise_alert(&alert, t0()).await.expect("raise").id);
    }
    assert!(
        store
            .resolve_alert("fp-1", hours(1))
            .await
            .expect("resolve")
    );

    let list = |filter: AlertFilter| {
        let store = store.clone();
        async move {
            store
                .list_alerts(&AlertFilter {
                    limit: 10,
                    ..filter
                })
                .await
                .expect("list")
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(AlertFilter::default()).await,
        [ids[3], ids[2], ids[1], ids[0]]
    );
    let db = AlertFilter {
        service: Some("db".into()),
        ..Default::default()
    };
    assert_eq!(list(db.clone()).await, [ids[3], ids[1]]);
    assert_eq!(
        list(AlertFilter {
            state: Some("firing".into()),
            ..db.clone()
        })
        .await,
        [ids[3]]
    );
    assert_eq!(
        list(AlertFilter {
            severity: Some("warning".into()),
            ..Default::default()
        })
        .await,
        [ids[3], ids[0]]
    );
    assert_eq!(
        list(AlertFilter {
            before_id: Some(ids[2]),
            ..Default::default()
        })
        .await,
        [ids[1], ids[0]]
    );
    let page = store
        .list_alerts(&AlertFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(page.iter().map(|a| a.id).collect::<Vec<_>>(), [ids[3]]);
    assert_eq!(
        store.alert_services().await.expect("services"),
        ["api", "db", "web"]
    );
}

async fn concurrent_raisers_of_one_fingerprint_make_one_alert(store: Store) {
    let raisers = (0..8).map(|i| {
        let store = store.clone();
        async move {
            let at = t0() + Duration::seconds(i);
            store
                .raise_alert(&spike("api", "warning", &format!("raiser {i}")), at)
                .await
                .expect("raise")
        }
    });
    let raised = futures::future::join_all(raisers).await;
    let ids: HashSet<i64> = raised.iter().map(|a| a.id).collect();
    assert_eq!(
        ids.len(),
        1,
        "every raiser found the same alert: {raised:?}"
    );
    let all = store
        .list_alerts(&AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
}
