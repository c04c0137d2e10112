//! The web UI in a real browser: `rtmas standalone` over the DAGs of
//! `tests/browser/dags/`, driven by `tests/browser/ui.test.mjs` in headless
//! Chromium through playwright-core. The scenarios are in that script; this
//! test starts the system, adds a viewer, runs the script and fails with
//! its output when any scenario fails.
//!
//! It needs Node.js, Debian's Chromium and the script's Node packages, which
//! the test command (`scripts/test`) installs; without them it fails.
//! Screenshots of every scenario land in `target/screenshots/browser/`.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::web::Standalone;
use tokio::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";
const VIEWER_PASSWORD: &str = "viewer-password-1";
/// The whole script, six scenarios, on a loaded machine.
const SCRIPT_PATIENCE: Duration = Duration::from_secs(600);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Fails, saying how to get it, when a piece the script needs is missing.
async fn require_tools() {
    let fix = "run `scripts/test` (it installs Chromium and the browser tests' Node packages)";
    let node = Command::new("node").arg("--version").output().await;
    assert!(
        node.is_ok_and(|out| out.status.success()),
        "the browser tests need Node.js (`node` on PATH): install Node 20 or later, then {fix}"
    );
    assert!(
        Path::new(CHROMIUM).exists(),
        "the browser tests need {CHROMIUM}: {fix}"
    );
    let playwright = browser_dir().join("node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "the browser tests need {}: {fix}",
        playwright.display()
    );
}

/// The DAG folder: the files of `tests/browser/dags/`, the daily one
/// starting a week ago so that the days before yesterday can be
/// backfilled.
fn dag_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp DAG folder");
    let source = browser_dir().join("dags");
    let week_ago = (chrono::Utc::now() - chrono::TimeDelta::days(7)).format("%Y-%m-%d");
    for entry in std::fs::read_dir(&source).expect("read tests/browser/dags") {
        let path = entry.expect("DAG file").path();
        let mut yaml = std::fs::read_to_string(&path).expect("read DAG file");
        if path.file_name().is_some_and(|n| n == "ui_daily.yaml") {
            let placeholder = "\nstart_date: 2024-01-01\n";
            assert!(
                yaml.contains(placeholder),
                "ui_daily.yaml has no {placeholder:?}"
            );
            yaml = yaml.replace(placeholder, &format!("\nstart_date: {week_ago}\n"));
        }
        let name = path.file_name().expect("file name");
        std::fs::write(dir.path().join(name), yaml).expect("write DAG file");
    }
    dir
}

/// An hour of per-minute metrics of two services, as the log pipeline
/// records them, for the metrics page to chart.
async fn record_metrics(store: &rtmas_scheduler::store::Store) {
    use rtmas_scheduler::store::{MinuteMetrics, NewBatch, new_sketch};
    let now = chrono::Utc::now();
    let hour_ago = now - chrono::TimeDelta::hours(1);
    let mut metrics = Vec::new();
    for minute in 0..60 {
        let at = hour_ago + chrono::TimeDelta::minutes(minute);
        let at = at - chrono::TimeDelta::seconds(i64::from(chrono::Timelike::second(&at)));
        for (service, errors) in [("api", minute % 7), ("checkout", 1)] {
            let mut m = MinuteMetrics::new(at, service.to_owned());
            m.levels[2] = 100 + minute;
            m.levels[4] = errors;
            let mut sketch = new_sketch();
            for ms in 1..=50 {
                sketch.add(f64::from(ms as u32) * 2.0);
            }
            m.latency = sketch;
            metrics.push(m);
        }
    }
    let batch = NewBatch {
        topic: "logs".to_owned(),
        partition: 0,
        first_offset: 0,
        last_offset: 0,
        object: None,
        records: 0,
        bytes: 0,
        hours: Vec::new(),
        quarantined: Vec::new(),
        metrics,
        templates: Vec::new(),
    };
    assert!(
        store
            .record_batch(&batch, now)
            .await
            .expect("record metrics"),
        "the metrics are recorded"
    );
}

#[tokio::test]
async fn web_ui_scenarios_pass_in_headless_chromium() {
    require_tools().await;
    let dags = dag_folder();
    let system = Standalone::start(dags.path()).await;
    system
        .create_user("viewer", "viewer", VIEWER_PASSWORD)
        .await;
    for dag_id in ["ui_params", "ui_daily", "ui_xss"] {
        system.wait_for_dag(dag_id).await;
    }
    record_metrics(&system.store).await;

    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots/browser");
    // Screenshots of an earlier run, a FAILED-… one above all, would mislead.
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("screenshot dir");

    let started = Instant::now();
    let run = Command::new("node")
        .arg("ui.test.mjs")
        .current_dir(browser_dir())
        .env("RTMAS_URL", &system.url)
        .env("RTMAS_ADMIN_PASSWORD", &system.admin_password)
        .env("RTMAS_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("SCREENSHOT_DIR", &screenshots)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(SCRIPT_PATIENCE, run)
        .await
        .unwrap_or_else(|_| panic!("ui.test.mjs did not finish within {SCRIPT_PATIENCE:?}"))
        .expect("run node ui.test.mjs");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    println!(
        "browser scenarios took {:.1} s; screenshots in {}",
        took.as_secs_f64(),
        screenshots.display()
    );
    assert!(
        out.status.success(),
        "ui.test.mjs failed ({}); its output is above, screenshots in {}\n{}",
        out.status,
        screenshots.display(),
        system.log_tail()
    );

    let status = system.stop().await;
    assert!(status.success(), "rtmas standalone exited with {status}");
}
