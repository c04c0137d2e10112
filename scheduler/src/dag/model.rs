//! The DAG model: what a DAG file declares once it has been validated.
//!
//! These types are serialised to JSON and stored with each DAG version, so a
//! worker runs a task exactly as the version its run was created from says.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default for `max_active_runs` when a DAG does not set it.
pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;

/// A validated DAG: an id, an optional schedule and a set of tasks with
/// dependencies that form no cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dag {
    /// Unique id, e.g. `log_pipeline`. Letters, digits, `_`, `-` and `.`.
    pub dag_id: String,
    /// Free text shown in the UI.
    pub description: Option<String>,
    /// When runs are created; `None` for manual-only DAGs.
    pub schedule: Option<Schedule>,
    /// First logical date a schedule may produce.
    pub start_date: Option<DateTime<Utc>>,
    /// Whether missed intervals since `start_date` are run.
    pub catchup: bool,
    /// How many runs of this DAG may be active at once.
    pub max_active_runs: u32,
    /// How many of its task instances may be queued or running at once,
    /// across its runs; `None` for no limit.
    #[serde(default)]
    pub max_active_tasks: Option<u32>,
    /// Longest a run may take from its start; past it the run fails and
    /// its unfinished tasks are failed or skipped.
    #[serde(with = "opt_duration_ms", default)]
    pub dagrun_timeout: Option<Duration>,
    /// How long after its data interval ends a run should have finished;
    /// a run still going then is recorded as having missed its deadline.
    #[serde(with = "opt_duration_ms", default)]
    pub deadline: Option<Duration>,
    /// Retry and timeout settings every task inherits.
    pub default_args: TaskArgs,
    /// DAG-level params with their defaults; a trigger's conf may override them.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Labels shown and filtered on in the UI.
    pub tags: Vec<String>,
    /// Tasks in file order.
    pub tasks: Vec<Task>,
}

/// When a scheduled DAG runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Schedule {
    /// A cron expression with 5 fields, or 6 with seconds first, or a preset
    /// such as `@hourly`, evaluated in `timezone` (UTC when absent).
    Cron {
        /// The expression as written in the file.
        expr: String,
        /// IANA time zone name, e.g. `Europe/Paris`.
        timezone: Option<String>,
    },
    /// A fixed interval, written `every: 10s`.
    Every {
        /// Length of each data interval.
        #[serde(with = "duration_ms")]
        interval: Duration,
    },
}

/// Retry and timeout settings; `None` means "inherit".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskArgs {
    /// How many times a failed try is retried.
    pub retries: Option<u32>,
    /// Wait before the first retry.
    #[serde(with = "opt_duration_ms", default)]
    pub retry_delay: Option<Duration>,
    /// Whether the delay doubles with each try.
    pub retry_exponential_backoff: Option<bool>,
    /// Cap on the delay between tries.
    #[serde(with = "opt_duration_ms", default)]
    pub max_retry_delay: Option<Duration>,
    /// Execution timeout of one try; the task is killed when it passes.
    #[serde(with = "opt_duration_ms", default)]
    pub timeout: Option<Duration>,
    /// Whether each retry delay is shortened by a random-looking part of up
    /// to half of it, so that tries failing together do not retry together.
    #[serde(default)]
    pub retry_jitter: Option<bool>,
}

impl TaskArgs {
    /// These args with every unset field taken from `defaults`.
    pub fn or(&self, defaults: &TaskArgs) -> TaskArgs {
        TaskArgs {
            retries: self.retries.or(defaults.retries),
            retry_delay: self.retry_delay.or(defaults.retry_delay),
            retry_exponential_backoff: self
                .retry_exponential_backoff
                .or(defaults.retry_exponential_backoff),
            max_retry_delay: self.max_retry_delay.or(defaults.max_retry_delay),
            timeout: self.timeout.or(defaults.timeout),
            retry_jitter: self.retry_jitter.or(defaults.retry_jitter),
        }
    }

    /// The wait before the try after `try_number` of task instance `ti_id`:
    /// the retry delay, doubled per try when backoff is exponential, capped
    /// at the maximum delay, and with jitter shortened by up to half. The
    /// jitter is a hash of the task instance and try, so it is the same
    /// whoever computes it.
    pub fn retry_delay_after(&self, ti_id: i64, try_number: i32) -> chrono::TimeDelta {
        let base = self.retry_delay.unwrap_or(DEFAULT_RETRY_DELAY);
        let cap = self.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY);
        let delay = if self.retry_exponential_backoff.unwrap_or(false) {
            let exponent = u32::try_from(try_number.saturating_sub(1))
                .unwrap_or(0)
                .min(30);
            base.saturating_mul(1 << exponent)
        } else {
            base
        };
        let mut delay = delay.min(cap);
        if self.retry_jitter.unwrap_or(false) {
            // A fraction in [0, 0.5) from a 64-bit mix of the ids.
            let mut x = (ti_id as u64) ^ ((try_number as u64) << 48) ^ 0x9e37_79b9_7f4a_7c15;
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            let fraction = (x >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
            delay = delay.mul_f64(1.0 - fraction);
        }
        chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::MAX)
    }
}

/// Airflow's default wait before a retry when a DAG sets none.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(300);
/// Cap on exponential backoff when a DAG sets none.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique within the DAG, e.g. `consume`.
    pub id: String,
    /// The job kind that runs it, e.g. `command` or `noop`.
    pub kind: String,
    /// Kind-specific parameters; string values are handlebars templates
    /// rendered from the run context when the task runs.
    pub params: serde_json::Value,
    /// Ids of the tasks this one waits for.
    pub depends_on: Vec<String>,
    /// When the task may run given its upstreams' states.
    pub trigger_rule: TriggerRule,
    /// Per-task overrides of the DAG's `default_args`.
    pub args: TaskArgs,
    /// The pool whose slots the task takes while queued or running.
    #[serde(default)]
    pub pool: Option<String>,
    /// How many of the pool's slots it takes.
    #[serde(default = "one")]
    pub pool_slots: u32,
}

fn one() -> u32 {
    1
}

/// Airflow's trigger rules: when a task may run given its upstreams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream succeeded (the default).
    #[default]
    AllSuccess,
    /// Every upstream finished, whatever its state.
    AllDone,
    /// Every upstream failed or was upstream_failed.
    AllFailed,
    /// At least one upstream succeeded; fires as soon as one has.
    OneSuccess,
    /// At least one upstream failed; fires as soon as one has.
    OneFailed,
    /// No upstream failed or was upstream_failed; skipped ones are fine.
    NoneFailed,
}

impl TriggerRule {
    /// Every rule with its name as written in YAML.
    pub const ALL: [(&'static str, TriggerRule); 6] = [
        ("all_success", TriggerRule::AllSuccess),
        ("all_done", TriggerRule::AllDone),
        ("all_failed", TriggerRule::AllFailed),
        ("one_success", TriggerRule::OneSuccess),
        ("one_failed", TriggerRule::OneFailed),
        ("none_failed", TriggerRule::NoneFailed),
    ];

    /// The rule's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, r)| *r == self)
            .map(|(n, _)| *n)
            .unwrap_or("all_success")
    }
}

impl Dag {
    /// The task with this id, if any.
    pub fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.iter().find(|t| t.id == task_id)
    }

    /// The tasks that depend on `task_id`, directly or through others, in
    /// file order.
    pub fn downstream_of(&self, task_id: &str) -> Vec<&Task> {
        let mut reached: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut frontier = vec![task_id];
        while let Some(id) = frontier.pop() {
            for task in &self.tasks {
                if task.depends_on.iter().any(|dep| dep == id) && reached.insert(&task.id) {
                    frontier.push(&task.id);
                }
            }
        }
        self.tasks
            .iter()
            .filter(|t| reached.contains(t.id.as_str()))
            .collect()
    }

    /// The effective retry and timeout settings of a task.
    pub fn task_args(&self, task: &Task) -> TaskArgs {
        task.args.or(&self.default_args)
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::TaskArgs;

    fn secs(args: &TaskArgs, ti_id: i64, try_number: i32) -> f64 {
        args.retry_delay_after(ti_id, try_number).as_seconds_f64()
    }

    #[test]
    fn fixed_retry_delay_is_the_same_for_every_try() {
        let args = TaskArgs {
            retry_delay: Some(Duration::from_secs(10)),
            ..TaskArgs::default()
        };
        assert_eq!(secs(&args, 1, 1), 10.0);
        assert_eq!(secs(&args, 1, 5), 10.0);
        assert_eq!(secs(&TaskArgs::default(), 1, 1), 300.0, "Airflow's default");
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap() {
        let args = TaskArgs {
            retry_delay: Some(Duration::from_secs(10)),
            retry_exponential_backoff: Some(true),
            max_retry_delay: Some(Duration::from_secs(60)),
            ..TaskArgs::default()
        };
        let delays: Vec<f64> = (1..=5).map(|t| secs(&args, 7, t)).collect();
        assert_eq!(delays, [10.0, 20.0, 40.0, 60.0, 60.0]);
    }

    #[test]
    fn jitter_shortens_by_up_to_half_and_is_repeatable() {
        let args = TaskArgs {
            retry_delay: Some(Duration::from_secs(100)),
            retry_jitter: Some(true),
            ..TaskArgs::default()
        };
        let delays: Vec<f64> = (0..200).map(|ti| secs(&args, ti, 1)).collect();
        assert!(
            delays.iter().all(|d| (50.0..=100.0).contains(d)),
            "{delays:?}"
        );
        let distinct = delays
            .iter()
            .map(|d| (d * 1000.0) as i64)
            .collect::<std::collections::HashSet<_>>();
        assert!(distinct.len() > 150, "tries failing together spread out");
        assert_eq!(secs(&args, 42, 3), secs(&args, 42, 3));
    }
}
