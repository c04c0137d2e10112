//! `rtmas bench web`: how long the web UI's heaviest pages take on a
//! database with a realistic history.
//!
//! It creates a fresh PostgreSQL database, syncs a few DAGs of ten tasks,
//! and seeds 100,000 runs and 1,000,000 task instances (with their tries)
//! in three set-based statements (`web_bench/*.sql`). Then it builds the
//! web app in-process, signs in as an admin and sends requests to the
//! router without a socket, timing each from the request going in to the
//! last byte of the body coming out: a DAG's page (grid, graph, first page
//! of runs), random run pages, and three job-history searches (failed task
//! instances of a DAG, one job kind over a day, and the second page of the
//! first). Every response must be a 200 that shows what was asked for. The
//! database is dropped at the end unless `--keep` is given.

use std::str::FromStr;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rtmas_scheduler::dag::{AnyKind, load_dag_folder};
use rtmas_scheduler::state::TaskState;
use rtmas_scheduler::store::{Pool, Role, Store, TaskInstanceFilter};
use rtmas_web::auth::{hash_password, new_secret, secret_hash};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tower::ServiceExt;

use super::{percentile, round};

/// What `rtmas bench web` was asked to do.
pub struct WebBenchOptions {
    /// Where to create and drop the bench database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: String,
    /// DAGs to spread the runs over.
    pub dags: usize,
    /// Runs to seed; each has one task instance per task.
    pub runs: i64,
    /// Timed requests per page, after the warm-up.
    pub requests: usize,
    /// Untimed requests per page first.
    pub warmup: usize,
    /// Keep the database afterwards.
    pub keep: bool,
}

/// The p99 each page should stay within, in milliseconds.
const TARGET_P99_MS: f64 = 100.0;
/// Rows of a job-history page (`rtmas_web`'s page size).
const HISTORY_ROWS: usize = 50;
/// Time between a DAG's runs.
const RUN_EVERY_SECONDS: f64 = 600.0;
/// Time from one layer of a run's tasks being queued to the next.
const LAYER_SECONDS: f64 = 100.0;
/// Share of finished runs that failed.
const FAILED_SHARE: f64 = 0.04;
/// Share of succeeded task instances that needed a second try.
const RETRIED_SHARE: f64 = 0.03;
/// Workers that ran the task instances, named `worker-N` on `bench-host-N`.
const WORKERS: usize = 4;

/// The tasks of every bench DAG: (task id, kind, layer, typical duration in
/// ms). Each task depends on every task of the layer before.
const TASKS: [(&str, &str, i32, f64); 10] = [
    ("extract", "kafka_consume", 1, 40_000.0),
    ("parse_a", "command", 2, 8_000.0),
    ("parse_b", "command", 2, 8_000.0),
    ("parse_c", "command", 2, 8_000.0),
    ("enrich_a", "command", 3, 12_000.0),
    ("enrich_b", "command", 3, 12_000.0),
    ("enrich_c", "noop", 3, 50.0),
    ("aggregate", "compact", 4, 60_000.0),
    ("index", "command", 4, 20_000.0),
    ("publish", "noop", 5, 50.0),
];
/// The layers of [`TASKS`].
const LAYERS: i32 = 5;

/// The runs, `$1..=$2`, oldest first and interleaved across the DAGs
/// (`$3`, on versions `$4`), one every `$6` seconds per DAG up to `$5`.
/// Each DAG's newest run is running; of the others, a share `$7` failed,
/// and each ended `$8` seconds after it started.
const SEED_RUNS: &str = include_str!("web_bench/seed_runs.sql");

/// One task instance per run and task (`$1..$6`: DAG, task, kind, layer,
/// position and typical duration of every task), in run and task order.
/// A failed run failed at its task `1 + id % 10` (the layers by position
/// are `$7`), and what comes after it did not run; a running run is in its
/// layer `1 + id % $12`. Tries ran on workers `$8` on hosts `$9`; a share
/// `$11` of succeeded ones needed a second try.
const SEED_TASK_INSTANCES: &str = include_str!("web_bench/seed_task_instances.sql");

/// A try for each try number up to each task instance's; earlier tries
/// failed and ended `$1` seconds before the next began.
const SEED_TRIES: &str = include_str!("web_bench/seed_tries.sql");

/// Creates the bench database, runs the bench on it and drops it (unless
/// kept), whether the bench succeeded or not.
///
/// Fails when there are fewer than 5,000 runs per DAG, the server cannot be
/// reached, seeding fails, or a page is not a 200 showing what it should.
pub async fn web_bench(options: &WebBenchOptions) -> anyhow::Result<serde_json::Value> {
    // Enough for two full pages of each DAG's failed task instances.
    anyhow::ensure!(
        options.runs >= 5_000 * options.dags as i64,
        "the bench needs at least 5,000 runs per DAG"
    );
    let name = format!("rtmas_bench_web_{}", std::process::id());
    let mut url = url::Url::parse(&options.admin_url)
        .with_context(|| format!("`{}` is not a database URL", options.admin_url))?;
    url.set_path(&format!("/{name}"));

    // The name is made here of letters, digits and underscores; a database
    // name cannot be a bound parameter.
    admin(&options.admin_url, &format!("CREATE DATABASE \"{name}\"")).await?;
    eprintln!("created database {name}");
    let outcome = bench_on(url.as_str(), options).await;
    if options.keep {
        eprintln!("kept database {url}");
    } else {
        admin(
            &options.admin_url,
            &format!("DROP DATABASE \"{name}\" WITH (FORCE)"),
        )
        .await?;
    }
    outcome
}

async fn admin(admin_url: &str, statement: &str) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("failed to connect to {admin_url}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut conn)
        .await
        .with_context(|| format!("failed to run `{statement}`"))?;
    conn.close().await?;
    Ok(())
}

async fn bench_on(url: &str, options: &WebBenchOptions) -> anyhow::Result<serde_json::Value> {
    let store = Store::connect(url)
        .await
        .context("failed to connect to the bench database")?;
    store.migrate().await?;
    let outcome = seed_and_time(&store, url, options).await;
    if let Pool::Postgres(pool) = store.pool() {
        pool.close().await;
    }
    outcome
}

async fn seed_and_time(
    store: &Store,
    url: &str,
    options: &WebBenchOptions,
) -> anyhow::Result<serde_json::Value> {
    let now = Utc::now();
    let dag_ids = sync_dags(store, options.dags, now).await?;
    // The newest runs' intervals ended at the last ten-minute mark, so they
    // started then and are still running.
    let newest = now.duration_trunc(TimeDelta::minutes(10))? - TimeDelta::minutes(10);
    let seeded = seed(store, url, &dag_ids, options.runs, newest).await?;

    let state = rtmas_web::AppState::new(store.clone(), rtmas_web::WebConfig::default())?;
    let client = Client {
        router: rtmas_web::router(state),
        cookie: sign_in(store, now).await?,
    };
    let pages = Pages::new(store, &dag_ids, newest, options.runs).await?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); PAGES.len()];
    let mut slowest: Vec<(f64, String)> = vec![(0.0, String::new()); PAGES.len()];
    let mut rng = SplitMix(0x5eed);
    for round in 0..options.warmup + options.requests {
        // Pages take turns, so a change in the machine's load falls on all.
        for (i, page) in PAGES.iter().enumerate() {
            let (path, expect) = pages.next(*page, &mut rng);
            let (status, body, ms) = client.get(&path).await?;
            anyhow::ensure!(status == StatusCode::OK, "GET {path} answered {status}");
            let expected = expect.resolve(store).await?;
            expected.check(&path, &body)?;
            if round >= options.warmup {
                samples[i].push(ms);
                if ms > slowest[i].0 {
                    slowest[i] = (ms, path);
                }
            }
        }
    }

    let mut figures = json!({
        "backend": "postgres",
        "dags": dag_ids.len(),
        "runs": seeded.runs,
        "task_instances": seeded.task_instances,
        "task_tries": seeded.tries,
        "seed_seconds": round(seeded.seconds),
        "vacuum_analyze_seconds": round(seeded.analyze_seconds),
        "requests": options.requests,
        "target_p99_ms": TARGET_P99_MS,
    });
    for ((page, values), (_, path)) in PAGES.iter().zip(samples.iter_mut()).zip(slowest) {
        figures[page.name()] = json!({
            "p50_ms": round(percentile(values, 50.0)),
            "p95_ms": round(percentile(values, 95.0)),
            "p99_ms": round(percentile(values, 99.0)),
            "max_ms": round(percentile(values, 100.0)),
            "slowest": path,
        });
    }
    Ok(figures)
}

/// The figures of [`web_bench`] as a table.
pub fn table(figures: &serde_json::Value) -> String {
    let mut out = format!(
        "{} runs, {} task instances, {} tries seeded in {:.1} s (VACUUM ANALYZE {:.1} s); \
         {} requests per page\n\n{:<16} {:>8} {:>8} {:>8} {:>8}  p99 ≤ {} ms\n",
        figures["runs"],
        figures["task_instances"],
        figures["task_tries"],
        figures["seed_seconds"].as_f64().unwrap_or(f64::NAN),
        figures["vacuum_analyze_seconds"]
            .as_f64()
            .unwrap_or(f64::NAN),
        figures["requests"],
        "page",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        TARGET_P99_MS
    );
    for page in PAGES {
        let f = &figures[page.name()];
        let ms = |key: &str| f[key].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "{:<16} {:>8.1} {:>8.1} {:>8.1} {:>8.1}  {}\n",
            page.name(),
            ms("p50_ms"),
            ms("p95_ms"),
            ms("p99_ms"),
            ms("max_ms"),
            if ms("p99_ms") <= TARGET_P99_MS {
                "yes"
            } else {
                "MISSED"
            }
        ));
    }
    out.push_str("\nslowest request of each page:\n");
    for page in PAGES {
        let slowest = figures[page.name()]["slowest"].as_str().unwrap_or("");
        out.push_str(&format!("{:<16} GET {slowest}\n", page.name()));
    }
    out
}

/// Writes the bench DAGs to a folder, loads it as the scheduler does and
/// syncs it; returns the DAG ids.
async fn sync_dags(store: &Store, dags: usize, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let dir = tempfile::tempdir().context("failed to make a temporary folder")?;
    for i in 0..dags {
        let dag_id = format!("bench_dag_{i}");
        std::fs::write(dir.path().join(format!("{dag_id}.yaml")), dag_yaml(&dag_id))?;
    }
    let folder = load_dag_folder(dir.path(), &AnyKind)?;
    anyhow::ensure!(
        folder.errors.is_empty(),
        "bench DAGs do not load: {:?}",
        folder.errors
    );
    store.sync_dags(&folder.dags, &[], now).await?;
    Ok(folder.dags.into_iter().map(|d| d.dag.dag_id).collect())
}

fn dag_yaml(dag_id: &str) -> String {
    let mut yaml = format!(
        "dag_id: {dag_id}\ndescription: A DAG of rtmas bench web\n\
         schedule: {{every: 10m}}\nstart_date: 2020-01-01T00:00:00Z\ncatchup: false\n\
         default_args:\n  retries: 1\n  retry_delay: 30s\ntags: [bench]\ntasks:\n"
    );
    for (task_id, kind, layer, _) in TASKS {
        yaml.push_str(&format!("  - id: {task_id}\n    kind: {kind}\n"));
        let upstream: Vec<&str> = TASKS
            .iter()
            .filter(|t| t.2 == layer - 1)
            .map(|t| t.0)
            .collect();
        if !upstream.is_empty() {
            yaml.push_str(&format!("    depends_on: [{}]\n", upstream.join(", ")));
        }
    }
    yaml
}

/// What seeding made and how long it took.
struct Seeded {
    runs: u64,
    task_instances: u64,
    tries: u64,
    seconds: f64,
    analyze_seconds: f64,
}

async fn seed(
    store: &Store,
    url: &str,
    dag_ids: &[String],
    runs: i64,
    newest: DateTime<Utc>,
) -> anyhow::Result<Seeded> {
    let mut versions = Vec::new();
    for dag_id in dag_ids {
        versions.push(store.dag(dag_id).await?.version_id);
    }
    let mut task_dags = Vec::new();
    let (mut ids, mut kinds, mut layers, mut positions, mut typical) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for dag_id in dag_ids {
        for (position, (task_id, kind, layer, ms)) in TASKS.iter().enumerate() {
            task_dags.push(dag_id.clone());
            ids.push(task_id.to_string());
            kinds.push(kind.to_string());
            layers.push(*layer);
            positions.push(position as i32 + 1);
            typical.push(*ms);
        }
    }
    let layer_by_position: Vec<i32> = TASKS.iter().map(|t| t.2).collect();
    let workers: Vec<String> = (1..=WORKERS).map(|i| format!("worker-{i}")).collect();
    let hosts: Vec<String> = (1..=WORKERS).map(|i| format!("bench-host-{i}")).collect();
    for (worker, host) in workers.iter().zip(&hosts) {
        store.register_worker(worker, host, 8, newest).await?;
    }

    eprintln!(
        "seeding {runs} runs and {} task instances…",
        runs * TASKS.len() as i64
    );
    // A connection of its own, which does not warn of the slow statements
    // it is about to run.
    let mut conn = PgConnectOptions::from_str(url)?
        .disable_statement_logging()
        .connect()
        .await
        .context("failed to connect to the bench database")?;
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    // One sort of a million rows in memory rather than on disk; a fixed
    // seed, so every bench seeds the same history.
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT setseed($1)")
        .bind(0.42_f64)
        .execute(&mut *tx)
        .await?;
    let run_rows = sqlx::query(SEED_RUNS)
        .bind(1_i64)
        .bind(runs)
        .bind(dag_ids)
        .bind(&versions)
        .bind(newest)
        .bind(RUN_EVERY_SECONDS)
        .bind(FAILED_SHARE)
        .bind(LAYER_SECONDS * f64::from(LAYERS))
        .execute(&mut *tx)
        .await
        .context("failed to seed runs")?
        .rows_affected();
    let ti_rows = sqlx::query(SEED_TASK_INSTANCES)
        .bind(&task_dags)
        .bind(&ids)
        .bind(&kinds)
        .bind(&layers)
        .bind(&positions)
        .bind(&typical)
        .bind(&layer_by_position)
        .bind(&workers)
        .bind(&hosts)
        .bind(LAYER_SECONDS)
        .bind(RETRIED_SHARE)
        .bind(LAYERS)
        .execute(&mut *tx)
        .await
        .context("failed to seed task instances")?
        .rows_affected();
    let try_rows = sqlx::query(SEED_TRIES)
        .bind(30.0_f64)
        .execute(&mut *tx)
        .await
        .context("failed to seed tries")?
        .rows_affected();
    tx.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {run_rows} runs, {ti_rows} task instances and {try_rows} tries in {seconds:.1} s"
    );

    // Statistics for the planner, and the visibility map a long-lived
    // database has from autovacuum (index-only scans rely on it); doing it
    // now also keeps autovacuum from starting in the middle of the timing.
    let started = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) dag_run, task_instance, task_try")
        .execute(&mut conn)
        .await
        .context("failed to vacuum and analyze")?;
    conn.close().await?;
    let analyze_seconds = started.elapsed().as_secs_f64();
    eprintln!("VACUUM ANALYZE took {analyze_seconds:.1} s");
    Ok(Seeded {
        runs: run_rows,
        task_instances: ti_rows,
        tries: try_rows,
        seconds,
        analyze_seconds,
    })
}

/// An admin with a session; returns the cookie that carries it.
async fn sign_in(store: &Store, now: DateTime<Utc>) -> anyhow::Result<String> {
    let user = store
        .create_user("bench", &hash_password(&new_secret())?, Role::Admin, now)
        .await?;
    let secret = new_secret();
    store
        .create_session(
            &secret_hash(&secret),
            user.id,
            &new_secret(),
            now,
            now + TimeDelta::days(1),
        )
        .await?;
    Ok(format!("rtmas_session={secret}"))
}

/// The web app, asked in-process with a session cookie.
struct Client {
    router: Router,
    cookie: String,
}

impl Client {
    /// GETs `path`; returns the status, the whole body and the time from
    /// the request going in to the body's last byte, in milliseconds.
    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, String, f64)> {
        let request = Request::builder()
            .uri(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())?;
        let started = Instant::now();
        let response = self.router.clone().oneshot(request).await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((status, String::from_utf8_lossy(&body).into_owned(), ms))
    }
}

/// The pages timed, in the order of the figures.
#[derive(Debug, Clone, Copy)]
enum Page {
    Dag,
    Run,
    HistoryFailed,
    HistoryWindow,
    HistoryNext,
}

const PAGES: [Page; 5] = [
    Page::Dag,
    Page::Run,
    Page::HistoryFailed,
    Page::HistoryWindow,
    Page::HistoryNext,
];

impl Page {
    fn name(self) -> &'static str {
        match self {
            Page::Dag => "dag_page",
            Page::Run => "run_page",
            Page::HistoryFailed => "history_failed",
            Page::HistoryWindow => "history_window",
            Page::HistoryNext => "history_page2",
        }
    }
}

/// What a page must show; the run page's run id is looked up after the
/// request, so that looking it up warms nothing the request reads.
enum Expect {
    Ready(Expected),
    RunPage(i64),
}

impl Expect {
    async fn resolve(self, store: &Store) -> anyhow::Result<Expected> {
        Ok(match self {
            Expect::Ready(expected) => expected,
            Expect::RunPage(pk) => Expected::Contains(vec![
                store.run(pk).await?.run_id,
                format!("/runs/{pk}/tasks/"),
            ]),
        })
    }
}

enum Expected {
    /// Each of these strings.
    Contains(Vec<String>),
    /// After `marker`, `needle` exactly `n` times: a full page of rows.
    Rows {
        marker: &'static str,
        needle: String,
        n: usize,
    },
}

impl Expected {
    fn check(&self, path: &str, body: &str) -> anyhow::Result<()> {
        match self {
            Expected::Contains(wanted) => {
                for w in wanted {
                    anyhow::ensure!(body.contains(w.as_str()), "GET {path} does not show `{w}`");
                }
            }
            Expected::Rows { marker, needle, n } => {
                let rows = body
                    .split_once(marker)
                    .map(|(_, rest)| rest.matches(needle.as_str()).count())
                    .unwrap_or(0);
                anyhow::ensure!(
                    rows == *n,
                    "GET {path} shows {rows} rows of `{needle}`, not {n}"
                );
            }
        }
        Ok(())
    }
}

/// How each request of a page is chosen.
struct Pages {
    dag_ids: Vec<String>,
    /// Each DAG's newest run, which its grid must show.
    latest: Vec<i64>,
    /// Each DAG's cursor to the second page of its failed task instances.
    failed_cursor: Vec<i64>,
    first_run: i64,
    last_run: i64,
    /// Start times of task instances lie in here, with a day to spare at
    /// both ends.
    oldest_day: DateTime<Utc>,
    days: u64,
}

impl Pages {
    async fn new(
        store: &Store,
        dag_ids: &[String],
        newest: DateTime<Utc>,
        runs: i64,
    ) -> anyhow::Result<Pages> {
        let mut latest = Vec::new();
        let mut failed_cursor = Vec::new();
        for dag_id in dag_ids {
            let run = store.list_runs(dag_id, 1).await?;
            latest.push(run.first().context("a bench DAG has runs")?.id);
            let page = store
                .search_task_instances(&TaskInstanceFilter {
                    dag_id: Some(dag_id.clone()),
                    state: Some(TaskState::Failed),
                    limit: HISTORY_ROWS as i64,
                    ..TaskInstanceFilter::default()
                })
                .await?;
            failed_cursor.push(page.last().context("a bench DAG has failures")?.ti.id);
        }
        let per_dag = runs / dag_ids.len() as i64;
        let span = TimeDelta::seconds((per_dag as f64 * RUN_EVERY_SECONDS) as i64);
        let days = (span.num_days() - 2).max(1) as u64;
        Ok(Pages {
            dag_ids: dag_ids.to_vec(),
            // Keys of a fresh database start at 1; the newest runs have the
            // highest.
            first_run: 1,
            last_run: latest.iter().copied().max().unwrap_or(1),
            latest,
            failed_cursor,
            oldest_day: newest - span + TimeDelta::days(1),
            days,
        })
    }

    /// The next path to ask for `page`, and what it must show.
    fn next(&self, page: Page, rng: &mut SplitMix) -> (String, Expect) {
        let d = rng.below(self.dag_ids.len() as u64) as usize;
        let dag_id = &self.dag_ids[d];
        let query = |pairs: &[(&str, &str)]| {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                q.append_pair(k, v);
            }
            format!("/history?{}", q.finish())
        };
        let failed_rows = Expected::Rows {
            marker: "id=\"history\"",
            needle: "badge state-failed".to_owned(),
            n: HISTORY_ROWS,
        };
        match page {
            Page::Dag => (
                format!("/dags/{dag_id}"),
                Expect::Ready(Expected::Contains(vec![
                    "id=\"grid\"".to_owned(),
                    "class=\"graph\"".to_owned(),
                    format!("href=\"/runs/{}\"", self.latest[d]),
                ])),
            ),
            Page::Run => {
                let span = (self.last_run - self.first_run + 1) as u64;
                let pk = self.first_run + rng.below(span) as i64;
                (format!("/runs/{pk}"), Expect::RunPage(pk))
            }
            Page::HistoryFailed => (
                query(&[("state", "failed"), ("dag_id", dag_id)]),
                Expect::Ready(failed_rows),
            ),
            Page::HistoryNext => (
                query(&[
                    ("state", "failed"),
                    ("dag_id", dag_id),
                    ("before", &self.failed_cursor[d].to_string()),
                ]),
                Expect::Ready(failed_rows),
            ),
            Page::HistoryWindow => {
                let kinds = ["kafka_consume", "command", "compact", "noop"];
                let kind = kinds[rng.below(kinds.len() as u64) as usize];
                let minutes = rng.below(self.days * 24 * 60) as i64;
                let from = self.oldest_day + TimeDelta::minutes(minutes);
                let to = from + TimeDelta::days(1);
                let at = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M").to_string();
                (
                    query(&[("kind", kind), ("from", &at(from)), ("to", &at(to))]),
                    Expect::Ready(Expected::Rows {
                        marker: "id=\"history\"",
                        needle: format!("<td>{kind}</td>"),
                        n: HISTORY_ROWS,
                    }),
                )
            }
        }
    }
}

/// A small deterministic generator (SplitMix64), so every bench asks for
/// the same pages.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n.max(1)
    }
}
