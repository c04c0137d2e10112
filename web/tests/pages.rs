//! The pages: what each shows, that text from DAG files, logs and users is
//! escaped, and that the trigger, backfill and operation forms do what
//! they say and explain what is wrong with bad input.

mod support;

use axum::http::StatusCode;
use rtmas_scheduler::state::TaskState;
use rtmas_scheduler::store::{NewAlert, Role};
use support::{PAYLOAD, TestApp, page_paths};

const ESCAPED: &str = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;";

/// `text` as a page shows it: HTML-escaped.
fn esc(text: &str) -> String {
    handlebars::html_escape(text)
}

#[tokio::test]
async fn every_page_renders_with_the_layout_and_security_headers() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let operator = app.session(Role::Operator).await;
    for path in page_paths(&f).into_iter().chain(support::operator_pages()) {
        let reply = app.get(&path, Some(&operator)).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
        assert!(reply.body.contains("<nav>"), "{path} has the layout");
        assert!(reply.body.contains("operator"), "{path} names the user");
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert!(
            !reply.body.contains("<script>alert"),
            "{path} escapes its text"
        );
    }
}

#[tokio::test]
async fn dag_text_task_logs_and_errors_render_as_text() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let viewer = app.session(Role::Viewer).await;

    let dags = app.get("/dags", Some(&viewer)).await.body;
    assert!(dags.contains(ESCAPED), "description escaped in the list");
    assert!(dags.contains(&esc("<b>tag</b>")), "tags escaped");
    assert!(
        dags.contains("&lt;script&gt;broken"),
        "import errors escaped"
    );
    let dag = app.get("/dags/web_params", Some(&viewer)).await.body;
    assert!(dag.contains(ESCAPED));
    let source = app.get("/dags/web_params/source", Some(&viewer)).await.body;
    assert!(source.contains(ESCAPED), "the YAML source is escaped");

    let log = app
        .get(&format!("/runs/{}/tasks/extract", f.run_pk), Some(&viewer))
        .await
        .body;
    assert!(
        log.contains(&format!("line 0 of extract {ESCAPED}")),
        "{log}"
    );
    let run = app
        .get(&format!("/runs/{}", f.run_pk), Some(&viewer))
        .await
        .body;
    assert!(
        run.contains(&format!("exit 1 {ESCAPED}")),
        "task errors escaped"
    );
    for body in [&dags, &dag, &source, &log, &run] {
        assert!(!body.contains(PAYLOAD));
        assert!(!body.contains("onerror=alert"));
    }

    // What people type comes back escaped too.
    let operator = app.session(Role::Operator).await;
    let reply = app
        .post_form(
            "/dags/web_params/trigger",
            &[("param.days", "<script>x</script>")],
            Some(&operator),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        reply
            .body
            .contains(&format!("value=\"{}\"", esc("<script>x</script>")))
    );
    assert!(!reply.body.contains("<script>x"));
}

#[tokio::test]
async fn the_dag_page_shows_grid_graph_and_filtered_runs() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let viewer = app.session(Role::Viewer).await;
    let page = app.get("/dags/web_params", Some(&viewer)).await.body;
    // Grid: one row per task, the run's cells coloured by state.
    for task in ["extract", "load", "report"] {
        assert!(
            page.contains(&format!("href=\"/runs/{}/tasks/{task}\"", f.run_pk)),
            "{task}"
        );
    }
    assert!(page.contains("cell state-success"));
    assert!(page.contains("cell state-failed"));
    assert!(
        page.contains("data-refresh"),
        "a running run keeps the grid live"
    );
    // Graph: three nodes, two edges.
    assert_eq!(page.matches("<g class=\"node").count(), 3);
    assert_eq!(page.matches("class=\"edge\"").count(), 2);
    // Runs list and its filters.
    assert!(page.contains("<td>manual</td>"));
    let none = app
        .get("/dags/web_params?state=success", Some(&viewer))
        .await
        .body;
    assert!(none.contains("No runs match."));
    let bad = app
        .get("/dags/web_params?state=sleeping", Some(&viewer))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains(&esc("unknown state `sleeping`")),
        "{}",
        bad.body
    );
    let missing = app.get("/dags/nope", Some(&viewer)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains(&esc("DAG `nope` not found")));
}

#[tokio::test]
async fn the_run_page_shows_tries_timeline_conf_and_each_tries_log() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let viewer = app.session(Role::Viewer).await;
    let run = app
        .get(&format!("/runs/{}", f.run_pk), Some(&viewer))
        .await
        .body;
    assert!(run.contains("&quot;days&quot;: 5"), "conf is shown");
    assert_eq!(
        run.matches("<g class=\"bar").count(),
        2,
        "two tasks started"
    );
    assert!(run.contains("worker-1"));
    assert!(run.contains("1 / 1"), "try 1 of 1");

    let task = app
        .get(
            &format!("/runs/{}/tasks/load?try=1", f.run_pk),
            Some(&viewer),
        )
        .await;
    assert_eq!(task.status, StatusCode::OK);
    assert_eq!(task.body.matches("class=\"line stream-stdout\"").count(), 3);
    assert!(
        !task.body.contains("data-live"),
        "a finished try is not tailed"
    );
    let no_try = app
        .get(
            &format!("/runs/{}/tasks/load?try=7", f.run_pk),
            Some(&viewer),
        )
        .await;
    assert_eq!(no_try.status, StatusCode::NOT_FOUND);
    let bad_key = app.get("/runs/abc", Some(&viewer)).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_trigger_form_has_a_field_per_param_and_creates_the_run() {
    let app = TestApp::new().await;
    let operator = app.session(Role::Operator).await;
    let form = app
        .get("/dags/web_params/trigger", Some(&operator))
        .await
        .body;
    assert!(form.contains("name=\"param.days\" value=\"3\""), "{form}");
    assert!(form.contains("name=\"param.name\" value=\"logs\""));
    assert!(form.contains("type=\"checkbox\" name=\"param.dry\""));

    let bad = app
        .post_form(
            "/dags/web_params/trigger",
            &[("param.days", "three"), ("conf", "{nope")],
            Some(&operator),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains(&esc("`three` is not a whole number")));
    assert!(bad.body.contains("conf is not valid JSON"));
    assert!(
        app.store
            .list_runs("web_params", 5)
            .await
            .unwrap()
            .is_empty()
    );

    let ok = app
        .post_form(
            "/dags/web_params/trigger",
            &[
                ("param.days", "7"),
                ("param.name", "audit"),
                ("param.dry", "true"),
                ("run_id", "by_hand"),
                ("conf", "{\"extra\": [1, 2]}"),
            ],
            Some(&operator),
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let runs = app.store.list_runs("web_params", 5).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(ok.location(), format!("/runs/{}", runs[0].id));
    assert_eq!(runs[0].run_id, "by_hand");
    assert_eq!(
        runs[0].conf,
        serde_json::json!({"days": 7, "name": "audit", "dry": true, "extra": [1, 2]})
    );

    let again = app
        .post_form(
            "/dags/web_params/trigger",
            &[("param.days", "1"), ("run_id", "by_hand")],
            Some(&operator),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body.contains("exists already"));
    assert!(again.body.contains("value=\"1\""), "the input is kept");
}

#[tokio::test]
async fn a_backfill_preview_changes_nothing_and_creating_it_makes_the_runs() {
    let app = TestApp::new().await;
    let operator = app.session(Role::Operator).await;
    let fields = [
        ("from", "2026-11-10"),
        ("to", "2026-11-12"),
        ("max_active_runs", "2"),
    ];
    let mut preview: Vec<(&str, &str)> = fields.to_vec();
    preview.push(("action", "preview"));
    let reply = app
        .post_form("/dags/web_daily/backfill", &preview, Some(&operator))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.contains("Preview: 3 run(s)"), "{}", reply.body);
    assert_eq!(reply.body.matches("new run").count(), 3);
    assert!(
        app.store
            .list_runs("web_daily", 10)
            .await
            .unwrap()
            .is_empty()
    );

    let bad = app
        .post_form(
            "/dags/web_daily/backfill",
            &[
                ("from", "2026-11-12"),
                ("to", "2026-11-10"),
                ("action", "preview"),
            ],
            Some(&operator),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("ends"), "{}", bad.body);
    let manual = app
        .post_form(
            "/dags/web_params/backfill",
            &[
                ("from", "2026-11-10"),
                ("to", "2026-11-12"),
                ("action", "preview"),
            ],
            Some(&operator),
        )
        .await;
    assert!(manual.body.contains("has no schedule"), "{}", manual.body);

    let mut create: Vec<(&str, &str)> = fields.to_vec();
    create.push(("action", "create"));
    let created = app
        .post_form("/dags/web_daily/backfill", &create, Some(&operator))
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let runs = app.store.list_runs("web_daily", 10).await.unwrap();
    assert_eq!(runs.len(), 3);
    let page = app.get(created.location(), Some(&operator)).await.body;
    assert!(page.contains("0 of 3 run(s) finished"), "{page}");
    for run in &runs {
        assert!(page.contains(&run.run_id));
    }
    let id = runs[0].backfill_id.expect("a backfill run");
    let cancel = app
        .post_form(&format!("/backfills/{id}/cancel"), &[], Some(&operator))
        .await;
    assert_eq!(cancel.status, StatusCode::SEE_OTHER);
    assert_eq!(app.store.backfill(id).await.unwrap().state, "cancelled");
}

#[tokio::test]
async fn operators_pause_clear_and_mark_from_the_pages() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let operator = app.session(Role::Operator).await;
    let run = f.run_pk;

    let paused = app
        .post_form(
            "/dags/web_params/pause",
            &[("paused", "true")],
            Some(&operator),
        )
        .await;
    assert_eq!(paused.location(), "/dags/web_params");
    assert!(app.store.dag("web_params").await.unwrap().is_paused);
    let bad = app
        .post_form(
            "/dags/web_params/pause",
            &[("paused", "maybe")],
            Some(&operator),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let state_of = |task: &'static str| {
        let store = app.store.clone();
        async move {
            store
                .task_instances(run)
                .await
                .unwrap()
                .into_iter()
                .find(|t| t.task_id == task)
                .unwrap()
                .state
        }
    };
    let marked = app
        .post_form(
            &format!("/runs/{run}/tasks/load/mark"),
            &[("state", "success")],
            Some(&operator),
        )
        .await;
    assert_eq!(marked.location(), format!("/runs/{run}"));
    assert_eq!(state_of("load").await, TaskState::Success);
    let cleared = app
        .post_form(
            &format!("/runs/{run}/tasks/extract/clear"),
            &[("downstream", "true")],
            Some(&operator),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    assert_eq!(state_of("extract").await, TaskState::None);
    assert_eq!(state_of("load").await, TaskState::None);
    let wrong = app
        .post_form(
            &format!("/runs/{run}/tasks/load/mark"),
            &[("state", "running")],
            Some(&operator),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);

    let marked_run = app
        .post_form(
            &format!("/runs/{run}/mark"),
            &[("state", "failed")],
            Some(&operator),
        )
        .await;
    assert_eq!(marked_run.status, StatusCode::SEE_OTHER);
    assert_eq!(app.store.run(run).await.unwrap().state.as_str(), "failed");
    let cleared_run = app
        .post_form(&format!("/runs/{run}/clear"), &[], Some(&operator))
        .await;
    assert_eq!(cleared_run.status, StatusCode::SEE_OTHER);
    assert_eq!(app.store.run(run).await.unwrap().state.as_str(), "queued");
    let again = app
        .post_form(&format!("/runs/{run}/clear"), &[], Some(&operator))
        .await;
    assert_eq!(
        again.status,
        StatusCode::CONFLICT,
        "a queued run cannot be cleared"
    );
}

#[tokio::test]
async fn history_filters_and_pages_across_dags() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let viewer = app.session(Role::Viewer).await;
    let all = app.get("/history", Some(&viewer)).await.body;
    assert!(all.contains(&format!("href=\"/runs/{}/tasks/report\"", f.run_pk)));
    let failed = app.get("/history?state=failed", Some(&viewer)).await.body;
    assert!(failed.contains("tasks/load\""));
    assert!(!failed.contains("tasks/extract\""));
    let by_worker = app
        .get("/history?worker=worker-1&kind=noop", Some(&viewer))
        .await
        .body;
    assert!(by_worker.contains("tasks/extract\"") && by_worker.contains("tasks/load\""));
    assert!(!by_worker.contains("tasks/report\""), "report never ran");
    let later = app
        .get("/history?from=2099-01-01", Some(&viewer))
        .await
        .body;
    assert!(later.contains("No task instance matches."));
    let bad = app.get("/history?from=soon", Some(&viewer)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains(&esc("from: `soon` is not a date")),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn alerts_are_listed_and_filtered() {
    let app = TestApp::new().await;
    let viewer = app.session(Role::Viewer).await;
    let now = chrono::Utc::now();
    for (fingerprint, service, severity) in [("a", "api", "critical"), ("b", "checkout", "warning")]
    {
        app.store
            .raise_alert(
                &NewAlert {
                    fingerprint: fingerprint.to_owned(),
                    kind: "error_rate_spike".to_owned(),
                    service: service.to_owned(),
                    severity: severity.to_owned(),
                    summary: format!("errors up on {service} {PAYLOAD}"),
                    details: serde_json::json!({"window_rate": 0.48, "example": PAYLOAD}),
                },
                now,
            )
            .await
            .unwrap();
    }
    app.store.resolve_alert("b", now).await.unwrap();
    let all = app.get("/alerts", Some(&viewer)).await.body;
    assert!(all.contains("errors up on api") && all.contains("errors up on checkout"));
    assert!(all.contains(ESCAPED));
    // The figures it was judged on, as escaped JSON under its fingerprint.
    assert!(all.contains("&quot;window_rate&quot;: 0.48"), "{all}");
    assert!(all.contains("<summary>a</summary>"));
    assert!(!all.contains("<script>alert"));
    let firing = app.get("/alerts?state=firing", Some(&viewer)).await.body;
    assert!(firing.contains("errors up on api") && !firing.contains("errors up on checkout"));
    let by_service = app
        .get("/alerts?service=checkout", Some(&viewer))
        .await
        .body;
    assert!(!by_service.contains("errors up on api"));
    let bad = app.get("/alerts?severity=meh", Some(&viewer)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_account_page_makes_a_token_and_shows_it_once() {
    let app = TestApp::new().await;
    let viewer = app.session(Role::Viewer).await;
    let made = app
        .post_form("/account/tokens", &[("name", "laptop")], Some(&viewer))
        .await;
    assert_eq!(made.status, StatusCode::OK);
    let marker = "id=\"new-token\">";
    let start = made.body.find(marker).expect("the new token") + marker.len();
    let secret = made.body[start..].split('<').next().unwrap().to_owned();
    let me = app
        .api(
            axum::http::Method::GET,
            "/api/v1/me",
            None,
            support::Auth::Token(&secret),
        )
        .await;
    assert_eq!(me.json()["role"], "viewer");
    let page = app.get("/account", Some(&viewer)).await.body;
    assert!(page.contains("laptop"));
    assert!(!page.contains(&secret), "shown only once");
}

#[tokio::test]
async fn assets_are_served_from_the_binary() {
    let app = TestApp::new().await;
    for (path, kind) in [
        ("/assets/style.css", "text/css"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/vendor/chart.umd.min.js", "text/javascript"),
    ] {
        let reply = app.get(path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(
            reply.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert!(reply.body.len() > 100);
    }
    assert_eq!(
        app.get("/assets/nope.js", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/assets/../Cargo.toml", None).await.status,
        StatusCode::NOT_FOUND
    );
}
