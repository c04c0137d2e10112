//! A worker killed with SIGKILL mid-task: the scheduler notices the missing
//! heartbeats with its default settings and the try is retried by another
//! worker within 15 seconds, or fails with the reason when no try is left.

mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rtmas_scheduler::state::{RunState, TaskState};
use rtmas_scheduler::store::TaskInstanceRow;
use support::{System, marks, wait_until};

/// One task that marks each try's start and then works for a few seconds.
fn slow(marks: &str, retries: u32) -> String {
    format!(
        "dag_id: slow\ndefault_args: {{retries: {retries}, retry_delay: 0s}}\ntasks:\n\
         \x20 - {{id: work, kind: command, \
         params: {{command: [sh, -c, \"echo start >> {marks}; sleep 4\"]}}}}\n"
    )
}

/// Starts the DAG and waits until its task is running; returns it.
async fn running_task(system: &System) -> (i64, TaskInstanceRow) {
    system.wait_for_dag("slow").await;
    let run = system.trigger("slow").await;
    wait_until("the task is running", || async {
        let tis = system.store.task_instances(run.id).await.expect("tis");
        tis.first().is_some_and(|t| t.state == TaskState::Running)
    })
    .await;
    // Running in the store comes just before the process starts: wait for
    // the process to have left its mark, so the kill hits it mid-task.
    wait_until("the task's process started", || async {
        !marks(&system.marks_path()).is_empty()
    })
    .await;
    let ti = system
        .store
        .task_instances(run.id)
        .await
        .expect("tis")
        .remove(0);
    (run.id, ti)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_try_is_retried_by_another_within_15_seconds() {
    let system = System::postgres_with_workers("dead_retry", &[("w1", 2), ("w2", 2)]).await;
    system.write_dag("slow.yaml", &slow(&system.marks_path(), 1));
    let (run_id, ti) = running_task(&system).await;
    let victim = ti.worker.clone().expect("a running try has a worker");
    assert_eq!(ti.try_number, 1);

    system.signal(&victim, Signal::SIGKILL);
    let killed = Instant::now();
    wait_until("the try is retried", || async {
        let ti = system.store.task_instance(ti.id).await.expect("ti");
        ti.try_number == 2 && ti.state == TaskState::Running
    })
    .await;
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "the retry started {waited:?} after the kill"
    );

    let run = system.wait_run_finished(run_id).await;
    assert_eq!(run.state, RunState::Success);
    let ti = system.store.task_instance(ti.id).await.expect("ti");
    assert_ne!(ti.worker.as_deref(), Some(victim.as_str()));
    let tries = system.store.task_tries(ti.id).await.expect("tries");
    assert_eq!(tries.len(), 2);
    assert_eq!(tries[0].state, "failed");
    let reason = tries[0].error.as_deref().unwrap_or_default();
    assert!(
        reason.contains(&victim) && reason.contains("heartbeat"),
        "the first try records why it failed: {reason}"
    );
    assert_eq!(tries[1].state, "success");
    assert_eq!(marks(&system.marks_path()), ["start", "start"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_last_try_fails_with_the_reason() {
    let system = System::postgres_with_workers("dead_fail", &[("w1", 2)]).await;
    system.write_dag("slow.yaml", &slow(&system.marks_path(), 0));
    let (run_id, ti) = running_task(&system).await;
    system.signal("w1", Signal::SIGKILL);

    let run = system.wait_run_finished(run_id).await;
    assert_eq!(run.state, RunState::Failed);
    let ti = system.store.task_instance(ti.id).await.expect("ti");
    assert_eq!(ti.state, TaskState::Failed);
    let error = ti.error.unwrap_or_default();
    assert!(
        error.contains("w1") && error.contains("heartbeat"),
        "{error}"
    );
    let log = system.store.task_log(ti.id, 1).await.expect("log");
    assert!(
        log.iter()
            .any(|l| l.stream == "rtmas" && l.line.contains("heartbeat")),
        "the reason is in the try's log"
    );
}
