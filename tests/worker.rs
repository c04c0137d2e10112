//! End-to-end worker behaviour with real `rtmas` processes on PostgreSQL:
//! retries, timeouts that kill the whole process group, the concurrency
//! limit, graceful stop on SIGTERM, and no double runs under load.

mod support;

use std::collections::HashMap;

use nix::sys::signal::Signal;
use rtmas_scheduler::state::{RunState, TaskState};
use support::{System, marks, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_try_is_retried_after_its_delay() {
    let system = System::postgres("retry").await;
    let flag = system.marks_path() + ".flag";
    system.write_dag(
        "flaky.yaml",
        &format!(
            "dag_id: flaky\ntasks:\n  - id: flaky\n    kind: command\n    retries: 2\n    \
             retry_delay: 1s\n    params:\n      command: [sh, -c, \
             \"if [ -e {flag} ]; then echo second; else touch {flag}; exit 1; fi\"]\n"
        ),
    );
    system.wait_for_dag("flaky").await;

    let out = system.trigger_wait("flaky").await;
    assert!(out.status.success(), "the retry should succeed");
    let run = system.last_run("flaky").await;
    let ti = &system.store.task_instances(run.id).await.expect("tis")[0];
    assert_eq!((ti.state, ti.try_number), (TaskState::Success, 2));

    let tries = system.store.task_tries(ti.id).await.expect("tries");
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[0].state, "failed");
    assert_eq!(tries[1].state, "success");
    let first_end = tries[0].end_date.expect("first try ended");
    let second_start = tries[1].start_date;
    assert!(
        second_start - first_end >= chrono::Duration::seconds(1),
        "retry started {} after the failure, before its 1 s delay",
        second_start - first_end
    );
    let log = system.store.task_log(ti.id, 1).await.expect("log");
    assert!(
        log.iter().any(|l| l.line.contains("retry at")),
        "the first try's log says when the retry comes: {log:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_whole_process_group() {
    let system = System::postgres("timeout").await;
    let pid_file = system.marks_path() + ".pid";
    // The shell starts a grandchild, records its pid and waits for it: a
    // timeout that killed only the shell would leave `sleep` running.
    system.write_dag(
        "slow.yaml",
        &format!(
            "dag_id: slow\ntasks:\n  - id: slow\n    kind: command\n    timeout: 1s\n    \
             params:\n      command: [sh, -c, \"sleep 300 & echo $! > {pid_file}; wait\"]\n"
        ),
    );
    system.wait_for_dag("slow").await;

    let out = system.trigger_wait("slow").await;
    assert!(!out.status.success(), "a timed-out task fails its run");
    let run = system.last_run("slow").await;
    assert_eq!(run.state, RunState::Failed);
    let ti = &system.store.task_instances(run.id).await.expect("tis")[0];
    assert_eq!(ti.state, TaskState::Failed);
    assert!(
        ti.error
            .as_deref()
            .unwrap_or("")
            .contains("timed out after 1s"),
        "{:?}",
        ti.error
    );

    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the task recorded its child's pid")
        .trim()
        .parse()
        .expect("pid");
    wait_until("the timed-out task's grandchild is gone", || async {
        !process_alive(pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_never_runs_more_tries_than_its_slots() {
    let system = System::postgres_with_workers("slots", &[("only", 2)]).await;
    let mut yaml = "dag_id: wide\ntasks:\n".to_owned();
    for i in 0..6 {
        yaml.push_str(&format!(
            "  - {{id: t{i}, kind: command, params: {{command: [sleep, \"0.4\"]}}}}\n"
        ));
    }
    system.write_dag("wide.yaml", &yaml);
    system.wait_for_dag("wide").await;

    let out = system.trigger_wait("wide").await;
    assert!(out.status.success());
    let run = system.last_run("wide").await;
    let tis = system.store.task_instances(run.id).await.expect("tis");
    let mut edges: Vec<(chrono::DateTime<chrono::Utc>, i32)> = Vec::new();
    for ti in &tis {
        edges.push((ti.start_date.expect("started"), 1));
        edges.push((ti.end_date.expect("ended"), -1));
    }
    // Ends sort before starts at the same instant: a slot freed and taken
    // in the same microsecond is not an overlap.
    edges.sort();
    let (mut running, mut most) = (0, 0);
    for (_, step) in edges {
        running += step;
        most = most.max(running);
    }
    assert_eq!(
        most, 2,
        "two slots: at most two tries at once, and both used"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_try_finish_and_takes_no_more() {
    let mut system = System::postgres_with_workers("sigterm", &[("first", 2)]).await;
    let marks_path = system.marks_path();
    system.write_dag(
        "drain.yaml",
        &format!(
            "dag_id: drain\ntasks:\n\
             \x20 - {{id: long, kind: command, params: {{command: [sh, -c, \
             \"echo started >> {marks_path}; sleep 2; echo finished >> {marks_path}\"]}}}}\n\
             \x20 - {{id: next, kind: noop, depends_on: [long]}}\n"
        ),
    );
    system.wait_for_dag("drain").await;
    let run = system.trigger("drain").await;
    wait_until("the long task started", || async {
        marks(&marks_path).contains(&"started".to_owned())
    })
    .await;

    system.signal("first", Signal::SIGTERM);
    let status = system.wait_exit("first").await;
    assert!(status.success(), "a drained worker exits cleanly: {status}");
    assert_eq!(marks(&marks_path), ["started", "finished"]);
    let tis = system.store.task_instances(run.id).await.expect("tis");
    let state: HashMap<&str, TaskState> =
        tis.iter().map(|t| (t.task_id.as_str(), t.state)).collect();
    assert_eq!(state["long"], TaskState::Success);
    assert!(
        matches!(state["next"], TaskState::None | TaskState::Queued),
        "the stopping worker took no new try: {:?}",
        state["next"]
    );

    system.spawn_worker("second", 2);
    let run = system.wait_run_finished(run.id).await;
    assert_eq!(run.state, RunState::Success);
    let tis = system.store.task_instances(run.id).await.expect("tis");
    let next = tis.iter().find(|t| t.task_id == "next").expect("next");
    assert_eq!(next.worker.as_deref(), Some("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_one_try_twice() {
    let system = System::postgres_with_workers("twice", &[("a", 8), ("b", 8)]).await;
    let marks_path = system.marks_path();
    let mut yaml = "dag_id: many\ntasks:\n".to_owned();
    for i in 0..60 {
        yaml.push_str(&format!(
            "  - {{id: t{i}, kind: command, params: {{command: [sh, -c, \
             \"echo t{i} >> {marks_path}\"]}}}}\n"
        ));
    }
    system.write_dag("many.yaml", &yaml);
    system.wait_for_dag("many").await;

    for _ in 0..3 {
        let out = system.trigger_wait("many").await;
        assert!(out.status.success());
    }
    let ran = marks(&marks_path);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for mark in &ran {
        *counts.entry(mark).or_default() += 1;
    }
    assert_eq!(counts.len(), 60);
    assert!(
        counts.values().all(|&n| n == 3),
        "each task ran once per run: {counts:?}"
    );
    let mut workers = std::collections::HashSet::new();
    for run in system.store.list_runs("many", 3).await.expect("runs") {
        let tis = system.store.task_instances(run.id).await.expect("tis");
        workers.extend(tis.into_iter().filter_map(|t| t.worker));
    }
    assert_eq!(workers.len(), 2, "both workers took tries: {workers:?}");
}

/// Whether a process exists and is not a zombie waiting to be reaped.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}
