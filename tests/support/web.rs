//! `rtmas standalone` of a test's own: scheduler, worker and web UI over a
//! fresh SQLite file in a temporary data folder, the UI on a free loopback
//! port. It is stopped when the test ends; its log is kept under
//! `target/test-artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rtmas_scheduler::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

use super::{OutputText, PATIENCE, artifact_dir, free_port, rtmas, wait_until};

/// What standalone prints, once, on its first start.
const FIRST_ADMIN: &str = "created the first user: admin, password ";

/// A running `rtmas standalone`.
pub struct Standalone {
    /// Where the web UI answers: `http://127.0.0.1:PORT`.
    pub url: String,
    /// The password of `admin`, the first user standalone creates.
    pub admin_password: String,
    /// The system's metadata store, for waiting on what the UI cannot show.
    pub store: Store,
    address: String,
    data_dir: tempfile::TempDir,
    child: Child,
    log: PathBuf,
}

impl Standalone {
    /// Starts standalone over the DAG folder `dags`, and waits until it has
    /// printed the admin's password and its web UI answers.
    ///
    /// # Panics
    ///
    /// When it does not start, prints no password or does not answer
    /// within [`PATIENCE`]; the panic shows the end of its log.
    pub async fn start(dags: &Path) -> Standalone {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let address = format!("127.0.0.1:{}", free_port());
        let label = data_dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = artifact_dir().join(format!("{label}-standalone.log"));
        let file = std::fs::File::create(&log).expect("artifact log file");
        let mut child = rtmas()
            .arg("standalone")
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--dags")
            .arg(dags)
            .env("RTMAS_WEB__LISTEN", &address)
            .env("RTMAS_SCHEDULER__DAG_SYNC_INTERVAL", "200ms")
            .env("RTMAS_SCHEDULER__POLL_INTERVAL", "200ms")
            .env("RTMAS_WORKER__POLL_INTERVAL", "100ms")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rtmas standalone");

        // The password is on stdout, the log on stderr. What follows the
        // password is drained so that the pipe never fills.
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let password = tokio::time::timeout(PATIENCE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(password) = line.strip_prefix(FIRST_ADMIN) {
                    return Some(password.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(admin_password) = password.filter(|p| !p.is_empty()) else {
            panic!(
                "rtmas standalone printed no `{FIRST_ADMIN}…` line within {PATIENCE:?}\n{}",
                log_tail(&log)
            );
        };
        let mut rest = lines.into_inner();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
        });

        let database = format!("sqlite:{}", data_dir.path().join("rtmas.db").display());
        let store = Store::connect(&database)
            .await
            .expect("connect to standalone's database");
        let standalone = Standalone {
            url: format!("http://{address}"),
            admin_password,
            store,
            address,
            data_dir,
            child,
            log,
        };
        let answered = super::poll_until(PATIENCE, || async {
            http_status(&standalone.address, "/login").await == Some(200)
        })
        .await;
        assert!(
            answered,
            "the web UI did not answer GET /login with 200 on {} within {PATIENCE:?}\n{}",
            standalone.address,
            log_tail(&standalone.log)
        );
        standalone
    }

    /// The URL of its SQLite database, for `rtmas … --database-url`.
    pub fn database_url(&self) -> String {
        format!("sqlite:{}", self.data_dir.path().join("rtmas.db").display())
    }

    /// Creates a user with `rtmas users create NAME --role ROLE
    /// --password-stdin` on its database.
    pub async fn create_user(&self, username: &str, role: &str, password: &str) {
        let mut child = rtmas()
            .args([
                "users",
                "create",
                username,
                "--role",
                role,
                "--password-stdin",
            ])
            .args(["--database-url", &self.database_url()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rtmas users create");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .await
            .expect("write the password");
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .expect("run rtmas users create");
        assert!(
            out.status.success(),
            "rtmas users create {username} failed: {}{}",
            out.stdout_text(),
            out.stderr_text()
        );
    }

    /// Waits until the scheduler has synced the DAG.
    pub async fn wait_for_dag(&self, dag_id: &str) {
        wait_until(&format!("DAG {dag_id} synced"), || async {
            self.store.dag(dag_id).await.is_ok()
        })
        .await;
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// Stops it with SIGTERM and waits for it to exit, bounded by
    /// [`PATIENCE`].
    pub async fn stop(mut self) -> ExitStatus {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("rtmas standalone did not stop within {PATIENCE:?}"))
            .expect("wait for rtmas standalone")
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
        // kill_on_drop reaps it if SIGTERM was not enough.
    }
}

/// The status of `GET path` on `address`, or `None` when nothing answers.
async fn http_status(address: &str, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        // "HTTP/1.1 200"
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", log.display())
}
