//! End-to-end: a scheduler and two workers as separate `rtmas` processes on
//! PostgreSQL and on SQLite, driven by `rtmas dags trigger --wait`.

mod support;

use std::collections::HashMap;

use rtmas_scheduler::state::{RunState, TaskState};
use support::{OutputText, System, marks};

/// extract → (left, right) → load; each task appends its name to a file,
/// so a try that ran twice shows up there whatever the store says.
fn diamond(marks: &str) -> String {
    let task = |id: &str, deps: &str| {
        format!(
            "  - id: {id}\n    kind: command\n    depends_on: {deps}\n    \
             params:\n      command: [sh, -c, \"echo {id} >> {marks}; sleep 0.3\"]\n"
        )
    };
    format!(
        "dag_id: diamond\ndescription: four command tasks in a diamond\ntasks:\n{}{}{}{}",
        task("extract", "[]"),
        task("left", "[extract]"),
        task("right", "[extract]"),
        task("load", "[left, right]"),
    )
}

/// ok → boom (exits 3) → after; `cleanup` runs whatever happens.
fn failing(marks: &str) -> String {
    format!(
        "dag_id: failing\ntasks:\n\
         \x20 - {{id: ok, kind: command, params: {{command: [sh, -c, \"echo ok >> {marks}\"]}}}}\n\
         \x20 - {{id: boom, kind: command, depends_on: [ok], \
         params: {{command: [sh, -c, \"echo boom >> {marks}; echo doomed >&2; exit 3\"]}}}}\n\
         \x20 - {{id: after, kind: command, depends_on: [boom], \
         params: {{command: [sh, -c, \"echo after >> {marks}\"]}}}}\n\
         \x20 - {{id: cleanup, kind: noop, depends_on: [boom], trigger_rule: all_done}}\n"
    )
}

async fn diamond_runs_every_task_after_its_upstreams(system: System) {
    let dag = diamond(&system.marks_path());
    system.write_dag("diamond.yaml", &dag);
    system.wait_for_dag("diamond").await;

    let out = system.trigger_wait("diamond").await;
    assert!(
        out.status.success(),
        "trigger --wait failed: {}",
        out.stderr_text()
    );
    let run = system.last_run("diamond").await;
    assert_eq!(run.state, RunState::Success);

    let tis = system
        .store
        .task_instances(run.id)
        .await
        .expect("task instances");
    let by_id: HashMap<&str, _> = tis.iter().map(|ti| (ti.task_id.as_str(), ti)).collect();
    for (task, upstreams) in [
        ("left", &["extract"][..]),
        ("right", &["extract"]),
        ("load", &["left", "right"]),
    ] {
        let start = by_id[task].start_date.expect("started");
        for up in upstreams {
            let end = by_id[up].end_date.expect("ended");
            assert!(
                start >= end,
                "{task} started at {start} before {up} ended at {end}"
            );
        }
    }
    for ti in &tis {
        assert_eq!(
            (ti.state, ti.try_number),
            (TaskState::Success, 1),
            "{}",
            ti.task_id
        );
        let log = system.store.task_log(ti.id, 1).await.expect("log");
        assert!(
            log.iter().any(|l| l.line.contains("started `sh -c")),
            "{} has no log",
            ti.task_id
        );
        assert_eq!(
            system.store.task_tries(ti.id).await.expect("tries").len(),
            1
        );
    }
    let ran = marks(&system.marks_path());
    assert_eq!(ran.len(), 4, "every task ran exactly once: {ran:?}");
    for task in ["extract", "left", "right", "load"] {
        assert_eq!(
            ran.iter().filter(|m| *m == task).count(),
            1,
            "{task}: {ran:?}"
        );
    }
    let workers: std::collections::HashSet<_> =
        tis.iter().filter_map(|t| t.worker.clone()).collect();
    assert!(!workers.is_empty());
}

async fn failure_marks_downstream_upstream_failed_and_fails_the_run(system: System) {
    system.write_dag("failing.yaml", &failing(&system.marks_path()));
    system.wait_for_dag("failing").await;

    let out = system.trigger_wait("failing").await;
    assert!(
        !out.status.success(),
        "trigger --wait must fail when the run fails"
    );
    let run = system.last_run("failing").await;
    assert_eq!(run.state, RunState::Failed);

    let tis = system
        .store
        .task_instances(run.id)
        .await
        .expect("task instances");
    let state: HashMap<&str, TaskState> =
        tis.iter().map(|t| (t.task_id.as_str(), t.state)).collect();
    assert_eq!(state["ok"], TaskState::Success);
    assert_eq!(state["boom"], TaskState::Failed);
    assert_eq!(state["after"], TaskState::UpstreamFailed);
    assert_eq!(state["cleanup"], TaskState::Success);
    let boom = tis.iter().find(|t| t.task_id == "boom").expect("boom");
    assert!(
        boom.error.as_deref().unwrap_or("").contains("status 3"),
        "{:?}",
        boom.error
    );
    let log = system.store.task_log(boom.id, 1).await.expect("log");
    assert!(
        log.iter()
            .any(|l| l.stream == "stderr" && l.line == "doomed"),
        "{log:?}"
    );
    assert_eq!(
        marks(&system.marks_path()),
        vec!["ok".to_owned(), "boom".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_on_postgres() {
    diamond_runs_every_task_after_its_upstreams(System::postgres("diamond").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diamond_on_sqlite() {
    diamond_runs_every_task_after_its_upstreams(System::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_on_postgres() {
    failure_marks_downstream_upstream_failed_and_fails_the_run(System::postgres("failing").await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_on_sqlite() {
    failure_marks_downstream_upstream_failed_and_fails_the_run(System::sqlite().await).await;
}
