//! A web app over a fresh PostgreSQL database for handler tests: test DAGs
//! synced, one user per role, and requests sent to the router without a
//! socket.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{TimeDelta, Utc};
use http_body_util::BodyExt;
use rtmas_scheduler::dag::{AnyKind, load_dag_folder};
use rtmas_scheduler::state::TaskState;
use rtmas_scheduler::store::{LogLine, NewRun, Role, RunRow, Store, TaskSpec, TryOutcome};
use rtmas_scheduler::testing::fresh_postgres_url;
use rtmas_web::auth::{hash_password, new_secret, secret_hash};
use rtmas_web::{AppState, WebConfig, router};
use serde_json::Value;
use tower::ServiceExt;

/// What DAG descriptions and logs carry to prove that pages escape them.
pub const PAYLOAD: &str = "<script>alert('x')</script><img src=x onerror=alert(1)>";

/// Every user's password.
pub const PASSWORD: &str = "correct horse battery";

const PARAMS_DAG: &str = r#"dag_id: web_params
description: "Loads <script>alert('x')</script><img src=x onerror=alert(1)> rows"
tags: [web, "<b>tag</b>"]
params:
  days: 3
  name: logs
  dry: false
tasks:
  - id: extract
    kind: noop
  - id: load
    kind: noop
    depends_on: [extract]
  - id: report
    kind: noop
    depends_on: [load]
"#;

const DAILY_DAG: &str = r#"dag_id: web_daily
schedule: "@daily"
start_date: 2026-01-01
catchup: false
tasks:
  - id: a
    kind: noop
"#;

const BROKEN_DAG: &str = "dag_id: \"<script>broken</script>\"\ntasks:\n  - id: a\n    kind: noop\n";

/// The app under test.
pub struct TestApp {
    pub store: Store,
    router: Router,
    _dags: tempfile::TempDir,
}

/// A signed-in browser: its session cookie and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// How an API call proves who makes it.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// Nobody.
    Anonymous,
    /// An API token.
    Token(&'a str),
    /// A session cookie with its CSRF header.
    Session(&'a Session),
    /// A session cookie without the CSRF header.
    SessionWithoutCsrf(&'a Session),
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.body))
    }

    /// Where a redirect points.
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl TestApp {
    /// A fresh database with the test DAGs and users `viewer`, `operator`
    /// and `admin`.
    pub async fn new() -> TestApp {
        let store = Store::connect(&fresh_postgres_url("web").await)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let dags = tempfile::tempdir().expect("temp dir");
        for (name, text) in [
            ("web_params.yaml", PARAMS_DAG),
            ("web_daily.yaml", DAILY_DAG),
            ("broken.yaml", BROKEN_DAG),
        ] {
            std::fs::write(dags.path().join(name), text).expect("write DAG");
        }
        let folder = load_dag_folder(dags.path(), &AnyKind).expect("read DAG folder");
        assert_eq!(folder.dags.len(), 2, "both good test DAGs load");
        store
            .sync_dags(&folder.dags, &folder.errors, Utc::now())
            .await
            .expect("sync");
        // One hash for all: hashing is deliberately slow.
        let hash = hash_password(PASSWORD).expect("hash");
        for role in Role::ALL {
            store
                .create_user(role.as_str(), &hash, role, Utc::now())
                .await
                .expect("user");
        }
        let state = AppState::new(store.clone(), WebConfig::default()).expect("templates");
        TestApp {
            router: router(state),
            store,
            _dags: dags,
        }
    }

    /// The key of the user with `role`'s name.
    async fn user_id(&self, role: Role) -> i64 {
        self.store
            .user_by_name(role.as_str())
            .await
            .expect("user")
            .expect("exists")
            .id
    }

    /// A session of the user with `role`'s name.
    pub async fn session(&self, role: Role) -> Session {
        let user_id = self.user_id(role).await;
        let secret = new_secret();
        let csrf = new_secret();
        let now = Utc::now();
        self.store
            .create_session(
                &secret_hash(&secret),
                user_id,
                &csrf,
                now,
                now + TimeDelta::hours(1),
            )
            .await
            .expect("session");
        Session {
            cookie: format!("rtmas_session={secret}"),
            csrf,
        }
    }

    /// An API token of the user with `role`'s name.
    pub async fn token(&self, role: Role) -> String {
        let user_id = self.user_id(role).await;
        let secret = new_secret();
        self.store
            .create_api_token(user_id, "test", &secret_hash(&secret), Utc::now())
            .await
            .expect("token");
        secret
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// `GET path` as `session` (or nobody).
    pub async fn get(&self, path: &str, session: Option<&Session>) -> Reply {
        let mut request = Request::get(path);
        if let Some(session) = session {
            request = request.header(header::COOKIE, &session.cookie);
        }
        self.send(request.body(Body::empty()).expect("request"))
            .await
    }

    /// Posts a form as `session` (or nobody), with the session's CSRF token
    /// unless `fields` has one.
    pub async fn post_form(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        session: Option<&Session>,
    ) -> Reply {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(session) = session {
            request = request.header(header::COOKIE, &session.cookie);
            if !fields.iter().any(|(k, _)| *k == "csrf_token") {
                fields.push(("csrf_token", &session.csrf));
            }
        }
        let body = serde_urlencoded::to_string(&fields).expect("form");
        self.send(request.body(Body::from(body)).expect("request"))
            .await
    }

    /// An API call.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(path);
        match auth {
            Auth::Anonymous => {}
            Auth::Token(token) => {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            Auth::Session(session) => {
                request = request
                    .header(header::COOKIE, &session.cookie)
                    .header("x-csrf-token", &session.csrf);
            }
            Auth::SessionWithoutCsrf(session) => {
                request = request.header(header::COOKIE, &session.cookie);
            }
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).expect("request")).await
    }

    /// A started run of `web_params` whose first task succeeded with a
    /// log holding [`PAYLOAD`], and whose second failed.
    pub async fn finished_run(&self) -> RunRow {
        let store = &self.store;
        let row = store.dag("web_params").await.expect("dag");
        let dag = store.dag_version(row.version_id).await.expect("version");
        let now = Utc::now();
        let run = store
            .create_run(
                &NewRun::manual("web_params", serde_json::json!({"days": 5}), now),
                now,
            )
            .await
            .expect("run");
        let specs: Vec<TaskSpec> = dag.tasks.iter().map(|t| TaskSpec::of(&dag, t)).collect();
        assert!(
            store
                .start_run(&run, &specs, None, now)
                .await
                .expect("start")
        );
        let tis = store.task_instances(run.id).await.expect("tis");
        for (ti, outcome) in tis.iter().take(2).zip([
            TryOutcome::Success(None),
            TryOutcome::Failed {
                error: format!("exit 1 {PAYLOAD}"),
                retry_at: None,
            },
        ]) {
            let job = store
                .enqueue(&[(ti.id, TaskState::None)], now)
                .await
                .expect("enqueue")[0];
            let claim = store
                .claim(job, "host-1", "worker-1", now)
                .await
                .expect("claim")
                .expect("claimed");
            let lines: Vec<LogLine> = (0..3)
                .map(|i| LogLine {
                    ts: now,
                    stream: "stdout".to_owned(),
                    line: format!("line {i} of {} {PAYLOAD}", ti.task_id),
                })
                .collect();
            store
                .append_log(ti.id, claim.try_number, &lines)
                .await
                .expect("log");
            store
                .finish_try(&claim, &outcome, now + TimeDelta::seconds(2))
                .await
                .expect("finish");
        }
        store.run(run.id).await.expect("run")
    }
}

/// The keys the route tables fill in.
pub struct Fixture {
    pub run_pk: i64,
    pub backfill_id: i64,
    pub token_id: i64,
}

impl TestApp {
    /// A finished run, a backfill of `web_daily` and an admin's API token.
    pub async fn fixture(&self) -> Fixture {
        let run = self.finished_run().await;
        let now = Utc::now();
        let new = rtmas_scheduler::store::NewBackfill {
            dag_id: "web_daily".to_owned(),
            from: now - TimeDelta::days(3),
            to: now - TimeDelta::days(1),
            reprocess: rtmas_scheduler::store::Reprocess::None,
            backwards: false,
            max_active_runs: 2,
            conf: serde_json::json!({}),
        };
        let (backfill, _) = rtmas_scheduler::backfill::create(&self.store, &new, now)
            .await
            .expect("backfill");
        let admin = self
            .store
            .user_by_name("admin")
            .await
            .expect("user")
            .expect("admin");
        let token = self
            .store
            .create_api_token(admin.id, "fixture", &secret_hash("fixture-secret"), now)
            .await
            .expect("token");
        Fixture {
            run_pk: run.id,
            backfill_id: backfill.id,
            token_id: token.id,
        }
    }
}

/// Every page a signed-in user can open.
pub fn page_paths(f: &Fixture) -> Vec<String> {
    let run = f.run_pk;
    vec![
        "/dags".to_owned(),
        "/dags?tag=web".to_owned(),
        "/dags/web_params".to_owned(),
        "/dags/web_params?state=success&run_type=manual".to_owned(),
        "/dags/web_params/source".to_owned(),
        format!("/runs/{run}"),
        format!("/runs/{run}/tasks/extract"),
        format!("/runs/{run}/tasks/load?try=1"),
        "/history".to_owned(),
        "/history?state=failed&dag_id=web_params&from=2026-01-01".to_owned(),
        "/backfills".to_owned(),
        format!("/backfills/{}", f.backfill_id),
        "/metrics".to_owned(),
        "/metrics?service=api&hours=24".to_owned(),
        "/alerts".to_owned(),
        "/alerts?state=firing&severity=critical".to_owned(),
        "/account".to_owned(),
    ]
}

/// Pages only operators may open.
pub fn operator_pages() -> Vec<String> {
    vec![
        "/dags/web_params/trigger".to_owned(),
        "/dags/web_daily/backfill".to_owned(),
    ]
}

/// Every form post that changes something only operators may change, with
/// valid fields.
pub fn operator_posts(f: &Fixture) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    let run = f.run_pk;
    vec![
        (
            "/dags/web_params/pause".to_owned(),
            vec![("paused", "true")],
        ),
        (
            "/dags/web_params/trigger".to_owned(),
            vec![("param.days", "4")],
        ),
        (
            "/dags/web_daily/backfill".to_owned(),
            vec![
                ("from", "2026-11-01"),
                ("to", "2026-11-02"),
                ("action", "create"),
            ],
        ),
        (format!("/backfills/{}/cancel", f.backfill_id), vec![]),
        (format!("/runs/{run}/mark"), vec![("state", "success")]),
        (format!("/runs/{run}/clear"), vec![]),
        (
            format!("/runs/{run}/tasks/load/clear"),
            vec![("downstream", "true")],
        ),
        (
            format!("/runs/{run}/tasks/load/mark"),
            vec![("state", "success")],
        ),
    ]
}

/// Form posts any signed-in user may make.
pub fn own_posts(f: &Fixture) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    vec![
        ("/account/tokens".to_owned(), vec![("name", "laptop")]),
        (format!("/account/tokens/{}/revoke", f.token_id), vec![]),
        ("/logout".to_owned(), vec![]),
    ]
}

/// Every API read.
pub fn api_reads(f: &Fixture) -> Vec<String> {
    let run = f.run_pk;
    vec![
        "/api/v1/dags".to_owned(),
        "/api/v1/dags/web_params".to_owned(),
        "/api/v1/dags/web_params/grid".to_owned(),
        "/api/v1/dags/web_params/runs".to_owned(),
        "/api/v1/backfills".to_owned(),
        format!("/api/v1/backfills/{}", f.backfill_id),
        format!("/api/v1/runs/{run}"),
        format!("/api/v1/runs/{run}/tasks/extract"),
        format!("/api/v1/runs/{run}/tasks/extract/tries/1/log"),
        "/api/v1/task-instances".to_owned(),
        "/api/v1/metrics/logs".to_owned(),
        "/api/v1/alerts".to_owned(),
        "/api/v1/me".to_owned(),
        "/api/v1/tokens".to_owned(),
    ]
}

/// Every API call that changes something only operators may change.
pub fn api_operator_writes(f: &Fixture) -> Vec<(Method, String, Value)> {
    use serde_json::json;
    let run = f.run_pk;
    vec![
        (
            Method::PATCH,
            "/api/v1/dags/web_params".to_owned(),
            json!({"is_paused": true}),
        ),
        (
            Method::POST,
            "/api/v1/dags/web_params/runs".to_owned(),
            json!({"conf": {"days": 9}}),
        ),
        (
            Method::POST,
            "/api/v1/dags/web_daily/backfills".to_owned(),
            json!({"from": "2026-11-01", "to": "2026-11-02"}),
        ),
        (
            Method::POST,
            format!("/api/v1/backfills/{}/cancel", f.backfill_id),
            json!({}),
        ),
        (
            Method::POST,
            format!("/api/v1/runs/{run}/mark"),
            json!({"state": "success"}),
        ),
        (Method::POST, format!("/api/v1/runs/{run}/clear"), json!({})),
        (
            Method::POST,
            format!("/api/v1/runs/{run}/tasks/load/clear"),
            json!({"downstream": true}),
        ),
        (
            Method::POST,
            format!("/api/v1/runs/{run}/tasks/load/mark"),
            json!({"state": "success"}),
        ),
    ]
}

/// API calls any signed-in user may make that change their own things.
pub fn api_own_writes(f: &Fixture) -> Vec<(Method, String, Value)> {
    vec![
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            serde_json::json!({"name": "ci"}),
        ),
        (
            Method::DELETE,
            format!("/api/v1/tokens/{}", f.token_id),
            Value::Null,
        ),
    ]
}
