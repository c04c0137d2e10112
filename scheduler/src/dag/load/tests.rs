//! Tests of DAG file loading: what is accepted, and every way a file can be
//! wrong with the position it is reported at.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::DateTime;
use serde_json::{Value, json};

use super::*;
use crate::dag::model::{DEFAULT_MAX_ACTIVE_RUNS, Schedule, Task, TaskArgs, TriggerRule};
use crate::dag::template::{RunContext, render_params};
use crate::dag::{
    CRON_PRESETS, ScheduleError, parse_cron, parse_duration, parse_start_date, parse_timezone,
};

/// The kinds the worker ships with, checked the way it checks them.
struct TestKinds;

impl KindCatalog for TestKinds {
    fn is_known(&self, kind: &str) -> bool {
        matches!(kind, "command" | "noop")
    }

    fn kinds(&self) -> Vec<String> {
        vec!["noop".to_owned(), "command".to_owned()]
    }

    fn check_params(&self, kind: &str, params: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        match kind {
            "command" => {
                let command = params.get("command").and_then(Value::as_array);
                let valid =
                    command.is_some_and(|c| !c.is_empty() && c.iter().all(Value::is_string));
                if !valid {
                    problems.push("`command` must be a non-empty list of strings".to_owned());
                }
            }
            _ => {
                if params.as_object().is_some_and(|p| !p.is_empty()) {
                    problems.push("`noop` takes no params".to_owned());
                }
            }
        }
        problems
    }
}

fn parse(source: &str) -> Dag {
    match parse_dag(Path::new("dags/x.yaml"), source, &TestKinds) {
        Ok(dag) => dag,
        Err(errors) => panic!("expected a valid DAG, got {}", render(&errors)),
    }
}

fn errors(source: &str) -> Vec<String> {
    match parse_dag(Path::new("dags/x.yaml"), source, &TestKinds) {
        Ok(dag) => panic!("expected errors, got {dag:?}"),
        Err(errors) => {
            assert!(!errors.is_empty(), "an invalid DAG has at least one error");
            errors.iter().map(ToString::to_string).collect()
        }
    }
}

fn render(errors: &[DagError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

/// Asserts that exactly one error was found and that it starts with `prefix`.
fn assert_one_error(source: &str, prefix: &str) {
    let found = errors(source);
    assert_eq!(found.len(), 1, "expected one error, got {found:#?}");
    assert!(
        found[0].starts_with(prefix),
        "expected `{prefix}...`, got `{}`",
        found[0]
    );
}

fn with_task(task: &str) -> String {
    format!("dag_id: x\ntasks:\n{task}")
}

#[test]
fn full_dag_loads_every_key() {
    let dag = parse(
        r#"dag_id: log_pipeline
description: Consume and alert
schedule:
  cron: "*/5 * * * *"
  timezone: Europe/Paris
start_date: 2024-01-31
catchup: true
max_active_runs: 2
max_active_tasks: 8
dagrun_timeout: 2h
deadline: 30m
default_args:
  retries: 3
  retry_delay: 30s
  retry_exponential_backoff: true
  max_retry_delay: 10m
  timeout: 1h 30m
  retry_jitter: true
params:
  greeting: hello
  count: 3
  ratio: 0.5
  quoted: "42"
  nothing: ~
  nested: {a: [1, true]}
tags: [logs, alerts]
tasks:
  - id: extract
    kind: command
    params:
      command: [echo, "{{params.greeting}}"]
      env: {A: b}
    retries: 0
    timeout: 45
    pool: kafka
    pool_slots: 2
  - id: load
    kind: noop
    depends_on: extract
    trigger_rule: all_done
"#,
    );

    let at = DateTime::parse_from_rfc3339("2024-01-31T00:00:00Z").map(|d| d.to_utc());
    let expected = Dag {
        dag_id: "log_pipeline".to_owned(),
        description: Some("Consume and alert".to_owned()),
        schedule: Some(Schedule::Cron {
            expr: "*/5 * * * *".to_owned(),
            timezone: Some("Europe/Paris".to_owned()),
        }),
        start_date: at.ok(),
        catchup: true,
        max_active_runs: 2,
        max_active_tasks: Some(8),
        dagrun_timeout: Some(Duration::from_secs(7200)),
        deadline: Some(Duration::from_secs(1800)),
        default_args: TaskArgs {
            retries: Some(3),
            retry_delay: Some(Duration::from_secs(30)),
            retry_exponential_backoff: Some(true),
            max_retry_delay: Some(Duration::from_secs(600)),
            timeout: Some(Duration::from_secs(5400)),
            retry_jitter: Some(true),
        },
        params: BTreeMap::from([
            ("greeting".to_owned(), json!("hello")),
            ("count".to_owned(), json!(3)),
            ("ratio".to_owned(), json!(0.5)),
            ("quoted".to_owned(), json!("42")),
            ("nothing".to_owned(), Value::Null),
            ("nested".to_owned(), json!({"a": [1, true]})),
        ]),
        tags: vec!["logs".to_owned(), "alerts".to_owned()],
        tasks: vec![
            Task {
                id: "extract".to_owned(),
                kind: "command".to_owned(),
                params: json!({"command": ["echo", "{{params.greeting}}"], "env": {"A": "b"}}),
                depends_on: vec![],
                trigger_rule: TriggerRule::AllSuccess,
                args: TaskArgs {
                    retries: Some(0),
                    timeout: Some(Duration::from_secs(45)),
                    ..TaskArgs::default()
                },
                pool: Some("kafka".to_owned()),
                pool_slots: 2,
            },
            Task {
                id: "load".to_owned(),
                kind: "noop".to_owned(),
                params: json!({}),
                depends_on: vec!["extract".to_owned()],
                trigger_rule: TriggerRule::AllDone,
                args: TaskArgs::default(),
                pool: None,
                pool_slots: 1,
            },
        ],
    };
    assert_eq!(dag, expected);

    let stored = serde_json::to_string(&dag).expect("a DAG serialises");
    let restored: Dag = serde_json::from_str(&stored).expect("a stored DAG deserialises");
    assert_eq!(restored, dag);
}

#[test]
fn minimal_dag_gets_defaults() {
    let dag = parse("dag_id: x\ntasks:\n  - {id: a, kind: noop}\n");
    assert_eq!(dag.schedule, None);
    assert_eq!(dag.start_date, None);
    assert!(!dag.catchup);
    assert_eq!(dag.max_active_runs, DEFAULT_MAX_ACTIVE_RUNS);
    assert_eq!(dag.default_args, TaskArgs::default());
    assert!(dag.params.is_empty() && dag.tags.is_empty());
    assert_eq!(dag.tasks[0].params, json!({}));
}

#[test]
fn unknown_key_is_reported_with_a_did_you_mean_hint() {
    let source = with_task("  - id: a\n    kind: noop\n    retrys: 2\n");
    assert_eq!(
        errors(&source),
        [
            "dags/x.yaml:5:5: error: unknown key `retrys` in task `a` (hint: did you mean `retries`?)"
        ]
    );
}

#[test]
fn unknown_keys_are_reported_at_every_level() {
    let source = r#"dag_id: x
owner: me
shedule: "@daily"
default_args:
  retires: 1
schedule: {cron: "@daily", tz: UTC}
tasks:
  - {id: a, kind: noop, dependson: b}
"#;
    assert_eq!(
        errors(source),
        [
            "dags/x.yaml:2:1: error: unknown key `owner` in the DAG",
            "dags/x.yaml:3:1: error: unknown key `shedule` in the DAG (hint: did you mean `schedule`?)",
            "dags/x.yaml:5:3: error: unknown key `retires` in `default_args` (hint: did you mean `retries`?)",
            "dags/x.yaml:6:28: error: unknown key `tz` in `schedule`",
            "dags/x.yaml:8:25: error: unknown key `dependson` in task `a` (hint: did you mean `depends_on`?)",
        ]
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let source = r#"dag_id: x
catchup: yes
max_active_runs: 0
default_args: [1]
params: [a]
tags: logs
tasks:
  - id: a
    kind: noop
    retries: -1
    retry_exponential_backoff: "true"
    depends_on: {b: c}
    params: "x"
"#;
    assert_eq!(
        errors(source),
        [
            "dags/x.yaml:2:10: error: `catchup` must be `true` or `false`, found `yes`",
            "dags/x.yaml:3:18: error: `max_active_runs` must be a positive integer, found `0`",
            "dags/x.yaml:4:15: error: `default_args` must be a mapping of retry and timeout \
             settings, found a list",
            "dags/x.yaml:5:9: error: `params` must be a mapping of param names to default values, \
             found a list",
            "dags/x.yaml:6:7: error: `tags` must be a list of strings, found `logs`",
            "dags/x.yaml:10:14: error: `retries` must be a non-negative integer, found `-1`",
            "dags/x.yaml:11:32: error: `retry_exponential_backoff` must be `true` or `false`, \
             found the string `\"true\"`",
            "dags/x.yaml:12:18: error: `depends_on` must be a string or a list of strings, \
             found a mapping",
            "dags/x.yaml:13:13: error: `params` must be a mapping, found the string `\"x\"`",
        ]
    );
}

#[test]
fn missing_required_keys_are_reported() {
    let found = errors("description: nothing\n");
    assert_eq!(
        found,
        [
            "dags/x.yaml:1:1: error: missing required key `dag_id` in the DAG",
            "dags/x.yaml:1:1: error: missing required key `tasks` in the DAG",
        ]
    );
    assert_one_error(
        &with_task("  - id: a\n"),
        "dags/x.yaml:3:5: error: missing required key `kind` in task `a`",
    );
    assert_one_error(
        &with_task("  - kind: noop\n"),
        "dags/x.yaml:3:5: error: missing required key `id` in task #1",
    );
    assert_one_error(
        "dag_id:\ntasks: [{id: a, kind: noop}]\n",
        "dags/x.yaml:1:1: error: `dag_id` in the DAG must not",
    );
}

#[test]
fn empty_or_malformed_task_lists_are_rejected() {
    assert_one_error(
        "dag_id: x\ntasks: []\n",
        "dags/x.yaml:2:8: error: `tasks` must list at least",
    );
    assert_one_error(
        "dag_id: x\ntasks: a\n",
        "dags/x.yaml:2:8: error: `tasks` must be a list",
    );
    assert_one_error(
        &with_task("  - a\n"),
        "dags/x.yaml:3:5: error: task #1 must be a mapping",
    );
}

#[test]
fn invalid_ids_are_rejected() {
    assert_one_error(
        "dag_id: my dag\ntasks:\n  - {id: a, kind: noop}\n",
        "dags/x.yaml:1:9: error: invalid DAG id `my dag` (hint: use only letters",
    );
    assert_one_error(
        &with_task("  - {id: a/b, kind: noop}\n"),
        "dags/x.yaml:3:10: error: invalid task id `a/b`",
    );
}

#[test]
fn duplicate_task_id_is_reported_at_the_second() {
    let source =
        with_task("  - {id: a, kind: noop}\n  - {id: b, kind: noop}\n  - {id: a, kind: noop}\n");
    assert_eq!(
        errors(&source),
        ["dags/x.yaml:5:10: error: duplicate task id `a`, first declared on line 3"]
    );
}

#[test]
fn dependency_on_missing_task_is_reported_with_closest_id() {
    let source = with_task(
        "  - {id: extract, kind: noop}\n  - {id: load, kind: noop, depends_on: [extrct]}\n",
    );
    assert_eq!(
        errors(&source),
        [
            "dags/x.yaml:4:41: error: task `load` depends on unknown task `extrct` \
             (hint: did you mean `extract`?)"
        ]
    );
}

#[test]
fn self_dependency_is_rejected() {
    assert_one_error(
        &with_task("  - {id: a, kind: noop, depends_on: a}\n"),
        "dags/x.yaml:3:37: error: task `a` depends on itself",
    );
}

#[test]
fn dependency_listed_twice_is_rejected() {
    assert_one_error(
        &with_task("  - {id: a, kind: noop}\n  - {id: b, kind: noop, depends_on: [a, a]}\n"),
        "dags/x.yaml:4:41: error: task `a` is listed twice in `depends_on` of `b`",
    );
}

#[test]
fn cycle_is_reported_with_its_path_at_its_first_task() {
    let source = r#"dag_id: x
tasks:
  - {id: start, kind: noop}
  - {id: a, kind: noop, depends_on: [start, c]}
  - {id: b, kind: noop, depends_on: a}
  - {id: c, kind: noop, depends_on: b}
  - {id: d, kind: noop, depends_on: e}
  - {id: e, kind: noop, depends_on: d}
"#;
    let hint = "(hint: `a -> b` means `b` depends on `a`; remove one of these dependencies)";
    assert_eq!(
        errors(source),
        [
            format!("dags/x.yaml:4:10: error: dependency cycle: a -> b -> c -> a {hint}"),
            format!("dags/x.yaml:7:10: error: dependency cycle: d -> e -> d {hint}"),
        ]
    );
}

#[test]
fn long_chain_without_cycle_is_accepted() {
    let mut source = String::from("dag_id: chain\ntasks:\n  - {id: t0, kind: noop}\n");
    for i in 1..5000 {
        source.push_str(&format!(
            "  - {{id: t{i}, kind: noop, depends_on: t{}}}\n",
            i - 1
        ));
    }
    assert_eq!(parse(&source).tasks.len(), 5000);
}

#[test]
fn unknown_kind_hints_the_closest_or_lists_all() {
    assert_one_error(
        &with_task("  - {id: a, kind: comand}\n"),
        "dags/x.yaml:3:19: error: unknown task kind `comand` (hint: did you mean `command`?)",
    );
    assert_one_error(
        &with_task("  - {id: a, kind: spark}\n"),
        "dags/x.yaml:3:19: error: unknown task kind `spark` (hint: known kinds are `command`, `noop`)",
    );
}

#[test]
fn kind_param_problems_are_reported_at_the_params() {
    assert_one_error(
        &with_task("  - id: a\n    kind: command\n    params:\n      command: []\n"),
        "dags/x.yaml:6:7: error: invalid params for kind `command`: `command` must be a non-empty",
    );
    // Absent params are checked as `{}`, at the task.
    assert_one_error(
        &with_task("  - id: a\n    kind: command\n"),
        "dags/x.yaml:3:5: error: invalid params for kind `command`",
    );
}

#[test]
fn unknown_trigger_rule_is_rejected() {
    assert_one_error(
        &with_task("  - {id: a, kind: noop, trigger_rule: all_sucess}\n"),
        "dags/x.yaml:3:39: error: unknown trigger rule `all_sucess` (hint: did you mean `all_success`?)",
    );
    assert_one_error(
        &with_task("  - {id: a, kind: noop, trigger_rule: whenever}\n"),
        "dags/x.yaml:3:39: error: unknown trigger rule `whenever` (hint: trigger rules are `all_success`",
    );
}

#[test]
fn every_trigger_rule_name_is_accepted() {
    for (name, rule) in TriggerRule::ALL {
        let dag = parse(&with_task(&format!(
            "  - {{id: a, kind: noop, trigger_rule: {name}}}\n"
        )));
        assert_eq!(dag.tasks[0].trigger_rule, rule);
    }
}

fn schedule_of(schedule: &str) -> Option<Schedule> {
    parse(&format!(
        "dag_id: x\nschedule: {schedule}\ntasks:\n  - {{id: a, kind: noop}}\n"
    ))
    .schedule
}

fn schedule_error(schedule: &str) -> String {
    let found = errors(&format!(
        "dag_id: x\nschedule: {schedule}\ntasks:\n  - {{id: a, kind: noop}}\n"
    ));
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0].clone()
}

fn cron(expr: &str, timezone: Option<&str>) -> Option<Schedule> {
    Some(Schedule::Cron {
        expr: expr.to_owned(),
        timezone: timezone.map(str::to_owned),
    })
}

#[test]
fn five_and_six_field_crons_are_accepted() {
    assert_eq!(schedule_of("\"*/5 * * * *\""), cron("*/5 * * * *", None));
    assert_eq!(
        schedule_of("'*/10 * * * * *'"),
        cron("*/10 * * * * *", None)
    );
    assert_eq!(
        schedule_of("0 6 * * MON-FRI"),
        cron("0 6 * * MON-FRI", None)
    );
}

#[test]
fn six_field_cron_has_seconds_first() {
    let every_ten_seconds = parse_cron("*/10 * * * * *").expect("valid");
    let at = DateTime::parse_from_rfc3339("2024-01-01T00:00:01Z")
        .map(|d| d.to_utc())
        .expect("valid");
    let next = every_ten_seconds
        .find_next_occurrence(&at, false)
        .expect("has a next time");
    assert_eq!(next.to_rfc3339(), "2024-01-01T00:00:10+00:00");
}

#[test]
fn presets_are_accepted() {
    for (preset, _) in CRON_PRESETS {
        assert_eq!(
            schedule_of(&format!("\"{preset}\"")),
            cron(preset, None),
            "{preset}"
        );
        assert!(parse_cron(preset).is_ok(), "{preset}");
    }
    let midnight = parse_cron("@midnight").expect("valid");
    let daily = parse_cron("@daily").expect("valid");
    assert_eq!(midnight.pattern.to_string(), daily.pattern.to_string());
}

#[test]
fn cron_with_timezone_and_every_are_accepted() {
    assert_eq!(
        schedule_of("{cron: '0 6 * * *', timezone: Europe/Paris}"),
        cron("0 6 * * *", Some("Europe/Paris"))
    );
    assert_eq!(
        schedule_of("{every: 10s}"),
        Some(Schedule::Every {
            interval: Duration::from_secs(10)
        })
    );
    assert_eq!(
        schedule_of("{every: 90}"),
        Some(Schedule::Every {
            interval: Duration::from_secs(90)
        })
    );
    assert_eq!(schedule_of("null"), None);
}

#[test]
fn invalid_crons_are_rejected_with_the_reason() {
    let out_of_range = schedule_error("\"61 * * * *\"");
    assert!(
        out_of_range.starts_with(
            "dags/x.yaml:2:11: error: invalid cron expression `61 * * * *`: minute field `61`:"
        ),
        "{out_of_range}"
    );
    let too_few = schedule_error("\"* * *\"");
    assert!(
        too_few.starts_with("dags/x.yaml:2:11: error: cron expression `* * *` has 3 fields"),
        "{too_few}"
    );
    let with_years = schedule_error("\"0 0 0 1 1 * 2030\"");
    assert!(with_years.contains("has 7 fields"), "{with_years}");
    let never = schedule_error("\"0 0 30 2 *\"");
    assert!(never.contains("never matches any date"), "{never}");
    let preset = schedule_error("\"@dayly\"");
    assert!(
        preset.ends_with("unknown cron preset `@dayly` (hint: did you mean `@daily`?)"),
        "{preset}"
    );
    let words = schedule_error("\"every day\"");
    assert!(words.contains("`every day` has 2 fields"), "{words}");
    let junk = schedule_error("\"a b c d e\"");
    assert!(
        junk.contains("invalid cron expression `a b c d e`: minute field `a`"),
        "{junk}"
    );
}

#[test]
fn invalid_schedule_mappings_are_rejected() {
    let zone = schedule_error("{cron: '@daily', timezone: Europe/Pariss}");
    assert!(
        zone.ends_with("unknown time zone `Europe/Pariss` (hint: did you mean `Europe/Paris`?)"),
        "{zone}"
    );
    assert!(schedule_error("{every: 0s}").ends_with("`every` must be longer than zero"));
    assert!(schedule_error("{every: 5 parsecs}").contains("invalid duration `5 parsecs`"));
    assert!(schedule_error("{cron: '@daily', every: 1m}").contains("not both"));
    assert!(schedule_error("{timezone: UTC}").contains("needs a `cron` or an `every`"));
    assert!(schedule_error("{every: 1m, timezone: UTC}").contains("applies to `cron`"));
    assert!(schedule_error("[1]").contains("must be a cron expression"));
}

#[test]
fn invalid_durations_and_dates_are_rejected() {
    let source = r#"dag_id: x
start_date: 31/01/2024
default_args:
  retry_delay: soon
  timeout: 0
tasks:
  - {id: a, kind: noop, max_retry_delay: [1]}
"#;
    let found = errors(source);
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("dags/x.yaml:2:13: error: invalid date `31/01/2024`"));
    assert!(
        found[1].starts_with("dags/x.yaml:4:16: error: `retry_delay`: invalid duration `soon`")
    );
    assert!(found[1].ends_with(
        "(hint: write a number of seconds or a duration such as `30s`, `5m` or `1h 30m`)"
    ));
    assert_eq!(
        found[2],
        "dags/x.yaml:5:12: error: `timeout` must be longer than zero"
    );
    assert!(found[3].starts_with("dags/x.yaml:7:42: error: `max_retry_delay` must be a duration"));
}

#[test]
fn start_date_accepts_rfc3339_and_plain_dates() {
    let at = |s: &str| parse_start_date(s).map(|d| d.to_rfc3339());
    assert_eq!(at("2024-01-31"), Ok("2024-01-31T00:00:00+00:00".to_owned()));
    assert_eq!(
        at("2024-01-31T06:30:00+02:00"),
        Ok("2024-01-31T04:30:00+00:00".to_owned())
    );
    assert!(matches!(
        at("2024-02-30"),
        Err(ScheduleError::InvalidDate(_))
    ));
}

#[test]
fn helpers_parse_durations_and_timezones() {
    assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
    assert!(matches!(
        parse_duration("-1s"),
        Err(ScheduleError::InvalidDuration { .. })
    ));
    assert!(matches!(
        parse_duration("1000000000y"),
        Err(ScheduleError::DurationTooLong(_))
    ));
    assert_eq!(parse_timezone("Europe/Paris"), Ok(chrono_tz::Europe::Paris));
    assert!(parse_timezone("Mars/Olympus").is_err());
}

#[test]
fn several_errors_in_one_file_are_all_reported_in_order() {
    let source = r#"dag_id: etl
schedule: "@hourly"
catchup: maybe
tasks:
  - id: extract
    kind: comand
  - id: transform
    kind: noop
    depends_on: [extract, clean]
    retrys: 2
  - id: load
    kind: noop
    depends_on: transform
    trigger_rule: sometimes
"#;
    let found = errors(source);
    let positions: Vec<&str> = found
        .iter()
        .map(|e| e.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        positions,
        [
            "dags/x.yaml:3:10",
            "dags/x.yaml:6:11",
            "dags/x.yaml:9:27",
            "dags/x.yaml:10:5",
            "dags/x.yaml:14:19"
        ],
        "{found:#?}"
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let found = errors("dag_id: x\ntasks:\n  - {id: a, kind: noop\n");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("dags/x.yaml:4:1: error: invalid YAML:"),
        "{}",
        found[0]
    );

    assert_one_error(
        "dag_id: x\ndag_id: y\n",
        "dags/x.yaml:2:1: error: duplicate key `dag_id`, first set on line 1",
    );
    assert_one_error(
        "- a\n- b\n",
        "dags/x.yaml:1:1: error: a DAG file must be a mapping",
    );
    assert_one_error(
        "dag_id: &id x\n",
        "dags/x.yaml:1:13: error: YAML anchors and aliases",
    );
    assert_one_error(
        "dag_id: !!str x\n",
        "dags/x.yaml:1:15: error: YAML tags are not supported",
    );
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    let block = format!("dag_id: x\nparams:\n  p:\n    {}x\n", "- ".repeat(100_000));
    assert_eq!(
        errors(&block),
        ["dags/x.yaml:4:1: error: line 4 is indented or nested more than 128 columns deep"]
    );

    let flow = format!(
        "dag_id: x\nparams:\n  p: {}{}\n",
        "[".repeat(200),
        "]".repeat(200)
    );
    let found = errors(&flow);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].contains("YAML nests deeper than 64 levels"),
        "{}",
        found[0]
    );

    let mixed = format!("p:\n  {}{}\n", "- ".repeat(60), "[".repeat(250));
    assert_eq!(errors(&mixed).len(), 1);
}

#[test]
fn odd_inputs_give_errors_not_panics() {
    let inputs = [
        "",
        "~",
        "---\n",
        "--- \n...\n--- \n",
        "[]",
        "{}",
        "42",
        "\"dag_id\"",
        "dag_id: [",
        "dag_id: {a: b}",
        "dag_id: x\ntasks: [[]]",
        "dag_id: x\ntasks: [{}]",
        "dag_id: x\ntasks: [{id: [], kind: {}}]",
        "dag_id: x\ntasks: [{id: a, kind: noop, depends_on: [[], ~, {}]}]",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: {every: ''}",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: ''",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: {cron: '+0 * * * *'}",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: {cron: [1]}",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: '0 0 L * 5#9'",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: '*/0 * * * *'",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nschedule: '99-1 * * * *'",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nmax_active_runs: 99999999999999999999",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\ndefault_args: {timeout: 18446744073709551615}",
        "dag_id: x\ntasks: [{id: a, kind: noop}]\nstart_date: 99999-01-01",
        "? [a]\n: b\n",
        "a: *b\n",
        "\t\u{0}\u{feff}",
        "dag_id: \u{1F600}\ntasks: [{id: \u{1F600}, kind: \u{1F600}}]",
        &"[".repeat(300),
        &"{a: ".repeat(300),
    ];
    for input in inputs {
        if let Ok(dag) = parse_dag(Path::new("x.yaml"), input, &TestKinds) {
            panic!("{input:?} should not load, got {dag:?}");
        }
    }
}

#[test]
fn folder_load_keeps_valid_dags_and_reports_broken_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("a.yaml", "dag_id: one\ntasks: [{id: t, kind: noop}]\n");
    write("b.yml", "dag_id: two\ntasks: [{id: t, kind: nope}]\n");
    write(
        "c.yaml",
        "# same id as a.yaml\ndag_id: one\ntasks: [{id: t, kind: noop}]\n",
    );
    write("d.txt", "not a dag");
    write(".hidden.yaml", "junk: [");
    std::fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");

    let load = load_dag_folder(dir.path(), &TestKinds).expect("folder is readable");

    assert_eq!(load.dags.len(), 1);
    let one = &load.dags[0];
    assert_eq!(one.dag.dag_id, "one");
    assert_eq!(one.path, dir.path().join("a.yaml"));
    assert_eq!(one.hash, hex::encode(Sha256::digest(one.source.as_bytes())));
    assert_eq!(one.hash.len(), 64);

    let broken: Vec<_> = load.errors.iter().map(|f| f.path.file_name()).collect();
    assert_eq!(broken, [Some("b.yml".as_ref()), Some("c.yaml".as_ref())]);
    let duplicate = load.errors[1].errors[0].to_string();
    let expected = format!(
        "{}:2:9: error: DAG id `one` is already declared in",
        dir.path().join("c.yaml").display()
    );
    assert!(duplicate.starts_with(&expected), "{duplicate}");
}

#[test]
fn missing_folder_is_an_io_error() {
    assert!(load_dag_folder(Path::new("/nonexistent/rtmas/dags"), &AnyKind).is_err());
}

#[test]
fn any_kind_accepts_every_kind() {
    let dag = parse_dag(
        Path::new("x.yaml"),
        "dag_id: x\ntasks: [{id: a, kind: spark, params: {x: 1}}]\n",
        &AnyKind,
    )
    .expect("any kind is known");
    assert_eq!(dag.tasks[0].kind, "spark");
}

#[test]
fn example_dags_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags");
    // The job kinds live in the jobs crate; `rtmas dags validate` checks
    // the examples against them (tests/cli.rs).
    let load = load_dag_folder(&dir, &AnyKind).expect("dags folder is readable");
    let problems: Vec<String> = load
        .errors
        .iter()
        .flat_map(|f| f.errors.iter().map(ToString::to_string))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    let ids: Vec<&str> = load.dags.iter().map(|l| l.dag.dag_id.as_str()).collect();
    for id in ["example_diamond", "example_noop_chain", "example_retries"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }

    // Their templates render with nothing but the DAG's own param defaults.
    let at = parse_start_date("2024-01-31").expect("valid date");
    for loaded in &load.dags {
        let ctx = RunContext {
            dag_id: loaded.dag.dag_id.clone(),
            run_id: "manual__2024-01-31T00:00:00+00:00".to_owned(),
            logical_date: at,
            data_interval_start: at,
            data_interval_end: at,
            params: RunContext::merge_params(&loaded.dag.params, &Value::Null),
            conf: Value::Null,
        };
        for task in &loaded.dag.tasks {
            if let Err(err) = render_params(&task.params, &ctx) {
                panic!("{} task {}: {err}", loaded.dag.dag_id, task.id);
            }
        }
    }
    let diamond = load.dags.iter().find(|l| l.dag.dag_id == "example_diamond");
    let extract = diamond
        .and_then(|l| l.dag.task("extract"))
        .expect("diamond has extract");
    let ctx = RunContext {
        dag_id: "example_diamond".to_owned(),
        run_id: "r".to_owned(),
        logical_date: at,
        data_interval_start: at,
        data_interval_end: at,
        params: RunContext::merge_params(&BTreeMap::new(), &json!({"greeting": "hi"})),
        conf: json!({"greeting": "hi"}),
    };
    let rendered = render_params(&extract.params, &ctx).expect("renders");
    assert_eq!(
        rendered["command"],
        json!(["echo", "hi from extract for 2024-01-31"])
    );
}

/// A small deterministic generator, so the mutation test needs no extra crate
/// and fails the same way every time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(self.0 >> 33).unwrap_or(0) % n.max(1)
    }
}

#[test]
fn mutated_dag_files_give_errors_not_panics() {
    let seeds = [
        include_str!("../../../../dags/example_diamond.yaml"),
        include_str!("../../../../dags/example_retries.yaml"),
        include_str!("../../../../dags/example_noop_chain.yaml"),
    ];
    let inserts = [
        "[", "]", "{", "}", ":", "- ", "? ", "&a ", "*a", "!!", "\"", "'", "#", "\n", "  ", "\t",
        "|", ">", ",", "@", "~", "L", "#5", "/0", "99", "\u{0}", "\u{feff}", "---\n",
    ];
    let mut rng = Lcg(0x5eed);
    for _ in 0..2000 {
        let mut text: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
        for _ in 0..=rng.below(4) {
            let at = rng.below(text.len() + 1);
            let end = (at + rng.below(20)).min(text.len());
            if rng.below(2) == 0 {
                text.splice(at..at, inserts[rng.below(inserts.len())].chars());
            } else {
                text.drain(at..end);
            }
        }
        let input: String = text.into_iter().collect();
        let outcome =
            std::panic::catch_unwind(|| parse_dag(Path::new("fuzz.yaml"), &input, &TestKinds));
        assert!(outcome.is_ok(), "parse_dag panicked on {input:?}");
    }
}
