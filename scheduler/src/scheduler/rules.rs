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
    let state: HashMap<&str, TaskState> = tis.iter().map(|ti| (ti.task_id.as_str(), ti.state)).collect();
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
                    match state.get(dep.as_str()).copied().unwrap_or(TaskState::Removed) {
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
    let is_leaf = |task_id: &str| !dag.tasks.iter().any(|t| t.depends_on.iter().any(|d| d == task_id));
    let failed_leaf = tis.iter().any(|ti| {
        is_leaf(&ti.task_id) && matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed)
    });
    if failed_leaf { RunState::Failed } else { RunState::Success }
}
