//! End-to-end: `rtmas dags backfill` against a scheduler and workers running
//! as separate processes, on PostgreSQL and on SQLite.

mod support;

use rtmas_scheduler::state::RunState;
use support::{OutputText, PATIENCE, System, marks};

/// A daily DAG whose one task appends its run's `ds` and conf to a file.
/// Without catchup, its schedule also makes one run, for yesterday.
fn daily(marks: &str) -> String {
    format!(
        "dag_id: daily\nschedule: '@daily'\nstart_date: '2025-12-01'\n\
         params: {{who: nobody}}\ntasks:\n\
         \x20 - id: mark\n    kind: command\n    \
         params: {{command: [sh, -c, \"echo {{{{ds}}}} {{{{params.who}}}} >> {marks}\"]}}\n"
    )
}

async fn backfill_runs_each_day_once_with_its_conf(system: System) {
    system.write_dag("daily.yaml", &daily(&system.marks_path()));
    system.wait_for_dag("daily").await;
    let range = ["--from", "2026-01-01", "--to", "2026-01-03"];

    let mut args = vec!["dags", "backfill", "daily"];
    args.extend(range);
    args.push("--dry-run");
    let dry = system.command(&args).output().await.expect("dry run");
    assert!(
        dry.status.success(),
        "dry run failed: {}",
        dry.stderr_text()
    );
    let listed = dry.stdout_text();
    for day in ["2026-01-01", "2026-01-02", "2026-01-03"] {
        assert!(listed.contains(&format!("{day}T00:00:00")), "{listed}");
    }
    let backfilled = || async {
        let runs = system.store.list_runs("daily", 10).await.expect("runs");
        runs.into_iter()
            .filter(|r| r.run_type == "backfill")
            .collect::<Vec<_>>()
    };
    assert!(backfilled().await.is_empty(), "a dry run creates nothing");

    let mut args = vec!["dags", "backfill", "daily"];
    args.extend(range);
    args.extend(["--conf", r#"{"who": "ops"}"#, "--wait"]);
    let run = system.command(&args).output();
    let out = tokio::time::timeout(PATIENCE, run)
        .await
        .expect("backfill finished in time")
        .expect("run backfill");
    assert!(
        out.status.success(),
        "backfill failed: {}",
        out.stderr_text()
    );

    let runs = backfilled().await;
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.state == RunState::Success));
    let mut lines: Vec<_> = marks(&system.marks_path())
        .into_iter()
        .filter(|line| line.starts_with("2026-01-"))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["2026-01-01 ops", "2026-01-02 ops", "2026-01-03 ops"],
        "each day ran once, with the backfill's conf"
    );

    // Running it again creates nothing: every date has its run.
    let mut args = vec!["dags", "backfill", "daily"];
    args.extend(range);
    args.push("--json");
    let again = system.command(&args).output().await.expect("again");
    assert!(again.status.success(), "{}", again.stderr_text());
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("JSON");
    let actions: Vec<_> = report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(actions, ["skip", "skip", "skip"]);

    let list = system
        .command(&["backfills", "list", "daily", "--json"])
        .output()
        .await
        .expect("list");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn backfill_on_postgres() {
    backfill_runs_each_day_once_with_its_conf(System::postgres("backfill").await).await;
}

#[tokio::test]
async fn backfill_on_sqlite() {
    backfill_runs_each_day_once_with_its_conf(System::sqlite().await).await;
}
