//! Deciding, from the states of a run's task instances, which are ready to
//! queue, which can never run, and whether the run is over.
//!
//! This is a pure function of the DAG and the states, so it is tested on its
//! own; the loop in the parent module only applies its decisions.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::dag::{Dag, TriggerRule};
use crate::state::{RunState, TaskState};
use crate::store::TaskInstanceRow;

/// What to do with one run, as decided from a snapshot of its task states.
#[derive(Debug, Default, PartialEq)]
pub struct Decisions {
    /// Task instances to queue, with the state they were seen in.
    pub ready: Vec<(i64, TaskState)>,
    /// Task instances to move to a final state without running.
    pub settle: Vec<(i64, TaskState, TaskState)>,
    /// The run's final state, when every task instance has finished.
    pub run_state: Option<RunState>,
    /// The earliest time a retry becomes due, to wake up for it.
    pub next_retry: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Upstream {
    total: usize,
    success: usize,
    failed: usize,
    skipped: usize,
    done: usize,
}

/// Decides what happens next in a run. `now` decides which retries are due.
pub fn decide(dag: &Dag, tis: &[TaskInstanceRow], now: DateTime<Utc>) -> Decisions {
    let state: HashMap<&str, TaskState> = tis
        .iter()
        .map(|ti| (ti.task_id.as_str(), ti.state))
        .collect();
    let mut decisions = Decisions::default();

    for ti in tis {
        match ti.state {
            TaskState::UpForRetry => match ti.next_try_at {
                Some(at) if at > now => {
                    decisions.next_retry = Some(decisions.next_retry.map_or(at, |t| t.min(at)));
                }
                _ => decisions.ready.push((ti.id, ti.state)),
            },
            TaskState::None | TaskState::Scheduled => {
                let Some(task) = dag.task(&ti.task_id) else {
                    decisions.settle.push((ti.id, ti.state, TaskState::Removed));
                    continue;
                };
                let mut up = Upstream::default();
                for dep in &task.depends_on {
                    up.total += 1;
                    match state
                        .get(dep.as_str())
                        .copied()
                        .unwrap_or(TaskState::Removed)
                    {
                        TaskState::Success => up.success += 1,
                        TaskState::Failed | TaskState::UpstreamFailed => up.failed += 1,
                        TaskState::Skipped | TaskState::Removed => up.skipped += 1,
                        _ => {}
                    }
                }
                up.done = up.success + up.failed + up.skipped;
                match evaluate(task.trigger_rule, &up) {
                    Verdict::Run => decisions.ready.push((ti.id, ti.state)),
                    Verdict::Settle(to) => decisions.settle.push((ti.id, ti.state, to)),
                    Verdict::Wait => {}
                }
            }
            _ => {}
        }
    }

    if decisions.ready.is_empty()
        && decisions.settle.is_empty()
        && tis.iter().all(|ti| ti.state.is_finished())
    {
        decisions.run_state = Some(run_outcome(dag, tis));
    }
    decisions
}

enum Verdict {
    Run,
    Settle(TaskState),
    Wait,
}

fn evaluate(rule: TriggerRule, up: &Upstream) -> Verdict {
    let all_done = up.done == up.total;
    match rule {
        TriggerRule::AllSuccess => {
            if up.failed > 0 {
                Verdict::Settle(TaskState::UpstreamFailed)
            } else if up.skipped > 0 {
                Verdict::Settle(TaskState::Skipped)
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::AllDone => {
            if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::AllFailed => {
            if up.success > 0 || up.skipped > 0 {
                Verdict::Settle(TaskState::Skipped)
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::OneSuccess => {
            if up.success > 0 || up.total == 0 {
                Verdict::Run
            } else if all_done && up.skipped == up.total {
                Verdict::Settle(TaskState::Skipped)
            } else if all_done {
                Verdict::Settle(TaskState::UpstreamFailed)
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::OneFailed => {
            if up.failed > 0 || up.total == 0 {
                Verdict::Run
            } else if all_done {
                Verdict::Settle(TaskState::Skipped)
            } else {
                Verdict::Wait
            }
        }
        TriggerRule::NoneFailed => {
            if up.failed > 0 {
                Verdict::Settle(TaskState::UpstreamFailed)
            } else if all_done {
                Verdict::Run
            } else {
                Verdict::Wait
            }
        }
    }
}

/// A finished run failed when one of its leaves (tasks nothing depends on)
/// failed or was upstream_failed, as in Airflow; otherwise it succeeded.
fn run_outcome(dag: &Dag, tis: &[TaskInstanceRow]) -> RunState {
    let is_leaf = |task_id: &str| {
        !dag.tasks
            .iter()
            .any(|t| t.depends_on.iter().any(|d| d == task_id))
    };
    let failed_leaf = tis.iter().any(|ti| {
        is_leaf(&ti.task_id) && matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
    });
    if failed_leaf {
        RunState::Failed
    } else {
        RunState::Success
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{AnyKind, parse_dag};

    fn dag(yaml: &str) -> Dag {
        parse_dag(std::path::Path::new("t.yaml"), yaml, &AnyKind).expect("test DAG is valid")
    }

    /// A join task `j` under the rule, after upstreams `u1` and `u2`.
    fn join(rule: &str) -> Dag {
        dag(&format!(
            "dag_id: t\ntasks:\n  - {{id: u1, kind: noop}}\n  - {{id: u2, kind: noop}}\n  \
             - {{id: j, kind: noop, depends_on: [u1, u2], trigger_rule: {rule}}}\n"
        ))
    }

    fn tis(states: &[(&str, TaskState)]) -> Vec<TaskInstanceRow> {
        states
            .iter()
            .enumerate()
            .map(|(i, (task_id, state))| TaskInstanceRow {
                id: i as i64 + 1,
                run_pk: 1,
                dag_id: "t".into(),
                task_id: (*task_id).into(),
                kind: "noop".into(),
                state: *state,
                try_number: 0,
                max_tries: 1,
                hostname: None,
                worker: None,
                queued_at: None,
                start_date: None,
                end_date: None,
                duration_ms: None,
                next_try_at: None,
                error: None,
                pool: None,
                pool_slots: 1,
            })
            .collect()
    }

    /// What happens to `j` when the upstreams are in `u1` and `u2`.
    fn verdict(rule: &str, u1: TaskState, u2: TaskState) -> &'static str {
        let d = decide(
            &join(rule),
            &tis(&[("u1", u1), ("u2", u2), ("j", TaskState::None)]),
            Utc::now(),
        );
        if d.ready.contains(&(3, TaskState::None)) {
            return "run";
        }
        match d.settle.iter().find(|(id, _, _)| *id == 3) {
            Some((_, _, TaskState::Skipped)) => "skipped",
            Some((_, _, TaskState::UpstreamFailed)) => "upstream_failed",
            Some(_) => "other",
            None => "wait",
        }
    }

    use TaskState::{Failed as F, Running as R, Skipped as K, Success as S, UpstreamFailed as U};

    #[test]
    fn all_success_waits_for_every_upstream_and_propagates_failure() {
        assert_eq!(verdict("all_success", S, S), "run");
        assert_eq!(verdict("all_success", S, R), "wait");
        assert_eq!(verdict("all_success", F, R), "upstream_failed");
        assert_eq!(verdict("all_success", U, S), "upstream_failed");
        assert_eq!(verdict("all_success", K, S), "skipped");
    }

    #[test]
    fn all_done_runs_once_every_upstream_finished() {
        assert_eq!(verdict("all_done", F, S), "run");
        assert_eq!(verdict("all_done", K, U), "run");
        assert_eq!(verdict("all_done", F, R), "wait");
    }

    #[test]
    fn all_failed_runs_only_when_every_upstream_failed() {
        assert_eq!(verdict("all_failed", F, U), "run");
        assert_eq!(verdict("all_failed", F, R), "wait");
        assert_eq!(verdict("all_failed", F, S), "skipped");
    }

    #[test]
    fn one_success_fires_on_the_first_success() {
        assert_eq!(verdict("one_success", S, R), "run");
        assert_eq!(verdict("one_success", F, R), "wait");
        assert_eq!(verdict("one_success", F, U), "upstream_failed");
        assert_eq!(verdict("one_success", K, K), "skipped");
    }

    #[test]
    fn one_failed_fires_on_the_first_failure() {
        assert_eq!(verdict("one_failed", F, R), "run");
        assert_eq!(verdict("one_failed", S, R), "wait");
        assert_eq!(verdict("one_failed", S, S), "skipped");
    }

    #[test]
    fn none_failed_accepts_skips_but_not_failures() {
        assert_eq!(verdict("none_failed", S, K), "run");
        assert_eq!(verdict("none_failed", S, R), "wait");
        assert_eq!(verdict("none_failed", U, S), "upstream_failed");
    }

    #[test]
    fn tasks_without_upstreams_are_ready_at_once() {
        let d = decide(
            &join("all_success"),
            &tis(&[
                ("u1", TaskState::None),
                ("u2", TaskState::None),
                ("j", TaskState::None),
            ]),
            Utc::now(),
        );
        assert_eq!(d.ready, vec![(1, TaskState::None), (2, TaskState::None)]);
        assert_eq!(d.run_state, None);
    }

    #[test]
    fn retries_are_queued_only_when_due() {
        let now = Utc::now();
        let mut rows = tis(&[
            ("u1", TaskState::UpForRetry),
            ("u2", TaskState::UpForRetry),
            ("j", TaskState::None),
        ]);
        rows[0].next_try_at = Some(now - chrono::Duration::seconds(1));
        rows[1].next_try_at = Some(now + chrono::Duration::seconds(5));
        let d = decide(&join("all_success"), &rows, now);
        assert_eq!(d.ready, vec![(1, TaskState::UpForRetry)]);
        assert_eq!(d.next_retry, rows[1].next_try_at);
    }

    #[test]
    fn a_run_fails_when_a_leaf_failed_and_succeeds_otherwise() {
        let finished = |j| {
            decide(
                &join("all_done"),
                &tis(&[("u1", F), ("u2", S), ("j", j)]),
                Utc::now(),
            )
        };
        assert_eq!(finished(S).run_state, Some(RunState::Success));
        assert_eq!(finished(F).run_state, Some(RunState::Failed));
        let running = decide(
            &join("all_done"),
            &tis(&[("u1", F), ("u2", S), ("j", R)]),
            Utc::now(),
        );
        assert_eq!(running.run_state, None);
    }
}
