//! Running `rtmas` processes for end-to-end tests: a scheduler and two
//! workers on a fresh database, stopped when the test ends. Their output is
//! kept under `target/test-artifacts/` for post-mortems. `web` runs
//! `rtmas standalone` with its web UI for the browser tests.

#![allow(dead_code)]

pub mod kafka;
pub mod s3;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use rtmas_scheduler::store::{RunRow, Store};
use tokio::process::{Child, Command};

/// How long a condition may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// A scheduler and two workers over one database.
pub struct System {
    pub store: Store,
    pub url: String,
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    env: Vec<(String, String)>,
}

/// The `rtmas` binary under test.
pub fn rtmas() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rtmas"))
}

/// The lines of a marks file, in order.
pub fn marks(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Extension for reading a child's output.
pub trait OutputText {
    fn stderr_text(&self) -> String;
    fn stdout_text(&self) -> String;
}

impl OutputText for Output {
    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl System {
    /// On a fresh PostgreSQL database, with two workers of two slots each.
    pub async fn postgres(label: &str) -> System {
        System::postgres_with_workers(label, &[("worker-1", 2), ("worker-2", 2)]).await
    }

    /// On a fresh PostgreSQL database, with the given workers (name, slots).
    pub async fn postgres_with_workers(label: &str, workers: &[(&str, u32)]) -> System {
        System::postgres_with_env(label, workers, Vec::new()).await
    }

    /// On a fresh PostgreSQL database, with the given workers, every
    /// process started with `env` added to its environment.
    pub async fn postgres_with_env(
        label: &str,
        workers: &[(&str, u32)],
        env: Vec<(String, String)>,
    ) -> System {
        let url = rtmas_scheduler::testing::fresh_postgres_url(label).await;
        System::start(url, tempfile::tempdir().expect("temp dir"), workers, env).await
    }

    /// On a fresh SQLite file, with two workers of two slots each.
    pub async fn sqlite() -> System {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("rtmas.db").display());
        System::start(url, dir, &[("worker-1", 2), ("worker-2", 2)], Vec::new()).await
    }

    async fn start(
        url: String,
        dir: tempfile::TempDir,
        workers: &[(&str, u32)],
        env: Vec<(String, String)>,
    ) -> System {
        std::fs::create_dir_all(dir.path().join("dags")).expect("dags dir");
        let mut system = System {
            store: connect(&url).await,
            url,
            dir,
            children: Vec::new(),
            env,
        };
        let migrate = system
            .command(&["db", "migrate"])
            .output()
            .await
            .expect("run migrate");
        assert!(
            migrate.status.success(),
            "migrate failed: {}",
            migrate.stderr_text()
        );
        system.spawn("scheduler", &["scheduler"]);
        for (name, slots) in workers {
            system.spawn_worker(name, *slots);
        }
        system
    }

    /// Starts one more scheduler process.
    pub fn spawn_scheduler(&mut self, name: &str) {
        self.spawn(name, &["scheduler"]);
    }

    /// Starts one more worker process.
    pub fn spawn_worker(&mut self, name: &str, slots: u32) {
        let slots = slots.to_string();
        self.spawn(name, &["worker", "--concurrency", &slots, "--name", name]);
    }

    /// Sends a signal to one of the system's processes.
    pub fn signal(&self, name: &str, signal: nix::sys::signal::Signal) {
        let pid = self.child(name).id().expect("process is running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .expect("send signal");
    }

    /// Waits for one of the system's processes to exit, bounded by
    /// [`PATIENCE`].
    pub async fn wait_exit(&mut self, name: &str) -> std::process::ExitStatus {
        let child = self.child_mut(name);
        tokio::time::timeout(PATIENCE, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit within {PATIENCE:?}"))
            .expect("wait for process")
    }

    fn child(&self, name: &str) -> &Child {
        let found = self.children.iter().find(|(n, _)| n == name);
        &found.unwrap_or_else(|| panic!("no process {name}")).1
    }

    fn child_mut(&mut self, name: &str) -> &mut Child {
        let found = self.children.iter_mut().find(|(n, _)| n == name);
        &mut found.unwrap_or_else(|| panic!("no process {name}")).1
    }

    /// A `rtmas` command on this system's database and DAG folder.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = rtmas();
        cmd.args(args)
            .env("DATABASE_URL", &self.url)
            .env("RTMAS_DAGS_DIR", self.dir.path().join("dags"))
            .env("RTMAS_SCHEDULER__DAG_SYNC_INTERVAL", "200ms")
            .env("RTMAS_SCHEDULER__POLL_INTERVAL", "200ms")
            .env("RTMAS_WORKER__POLL_INTERVAL", "100ms")
            .env("RTMAS_WORKER__GRACE_PERIOD", "5s")
            .env("RUST_LOG", "info,rtmas_scheduler=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = self.log_path(name);
        let file = std::fs::File::create(&log).expect("artifact log file");
        let child = self
            .command(args)
            .stdout(file.try_clone().expect("clone log file"))
            .stderr(file)
            .spawn()
            .expect("spawn rtmas");
        self.children.push((name.to_owned(), child));
    }

    /// The file a process's output goes to.
    pub fn log_path(&self, name: &str) -> PathBuf {
        artifact_dir().join(format!("{}-{name}.log", self.label()))
    }

    fn label(&self) -> String {
        self.dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Path of a file tasks can append marks to.
    pub fn marks_path(&self) -> String {
        self.dir.path().join("marks").display().to_string()
    }

    /// The folder the scheduler reads DAGs from.
    pub fn dags_dir(&self) -> PathBuf {
        self.dir.path().join("dags")
    }

    /// Writes a DAG file into the DAG folder.
    pub fn write_dag(&self, file: &str, yaml: &str) {
        std::fs::write(self.dags_dir().join(file), yaml).expect("write DAG file");
    }

    /// Waits until the scheduler has synced the DAG.
    pub async fn wait_for_dag(&self, dag_id: &str) {
        wait_until(&format!("DAG {dag_id} synced"), || async {
            self.store.dag(dag_id).await.is_ok()
        })
        .await;
    }

    /// `rtmas dags trigger DAG`, returning the new run.
    pub async fn trigger(&self, dag_id: &str) -> RunRow {
        let out = self
            .command(&["dags", "trigger", dag_id, "--json"])
            .output()
            .await
            .expect("run rtmas dags trigger");
        assert!(
            out.status.success(),
            "trigger failed: {}",
            out.stderr_text()
        );
        let run: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("trigger prints JSON");
        let id = run["id"].as_i64().expect("trigger prints the run's id");
        self.store.run(id).await.expect("triggered run")
    }

    /// Waits until a run has finished, returning it. On a timeout the
    /// panic tells the run's task instances, their tries and the end of
    /// every process's log, so a failure on CI can be read from its output.
    pub async fn wait_run_finished(&self, id: i64) -> RunRow {
        let finished = poll_until(PATIENCE, || async {
            self.store.run(id).await.expect("run").end_date.is_some()
        })
        .await;
        if !finished {
            panic!(
                "timed out waiting for run {id} to finish\n{}",
                self.post_mortem(id).await
            );
        }
        self.store.run(id).await.expect("run")
    }

    /// A run's task instances with their tries, and the last lines of
    /// every process's log.
    pub async fn post_mortem(&self, run_id: i64) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let run = self.store.run(run_id).await;
        let _ = writeln!(out, "run: {run:?}");
        for ti in self.store.task_instances(run_id).await.unwrap_or_default() {
            let _ = writeln!(out, "task instance: {ti:?}");
            for t in self.store.task_tries(ti.id).await.unwrap_or_default() {
                let _ = writeln!(out, "  try: {t:?}");
            }
        }
        for (name, _) in &self.children {
            let log = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let _ = writeln!(out, "--- last lines of {name}'s log ---");
            for line in &lines[lines.len().saturating_sub(40)..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    /// `rtmas dags trigger DAG --wait`, bounded by [`PATIENCE`].
    pub async fn trigger_wait(&self, dag_id: &str) -> Output {
        let run = self
            .command(&["dags", "trigger", dag_id, "--wait"])
            .output();
        tokio::time::timeout(PATIENCE, run)
            .await
            .unwrap_or_else(|_| panic!("run of {dag_id} did not finish within {PATIENCE:?}"))
            .expect("run rtmas dags trigger")
    }

    /// The newest run of a DAG.
    pub async fn last_run(&self, dag_id: &str) -> RunRow {
        self.store
            .list_runs(dag_id, 1)
            .await
            .expect("list runs")
            .remove(0)
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Some(pid) = child.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        // kill_on_drop reaps whatever did not stop on SIGTERM.
    }
}

async fn connect(url: &str) -> Store {
    let store = Store::connect(url).await.expect("connect to test database");
    store.migrate().await.expect("migrate test database");
    store
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Where test processes' logs are kept.
pub fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    dir
}

/// Polls `check` until it holds, panicking after [`PATIENCE`].
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_until_within(what, PATIENCE, check).await;
}

/// Polls `check` until it holds, failing the test after `patience`.
pub async fn wait_until_within<F, Fut>(what: &str, patience: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        poll_until(patience, check).await,
        "timed out waiting for {what}"
    );
}

/// Polls `check` until it holds (true) or `patience` is over (false).
pub async fn poll_until<F, Fut>(patience: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + patience;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}
