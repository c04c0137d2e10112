//! The JSON API: what each endpoint returns and changes, its error shape
//! for bad input, that internal errors stay internal, and that the OpenAPI
//! document describes every route.

mod support;

use axum::http::{Method, StatusCode};
use chrono::{TimeDelta, Utc};
use rtmas_scheduler::store::{LogLine, MinuteMetrics, NewBatch, Role, new_sketch};
use serde_json::{Value, json};
use support::{Auth, TestApp, api_operator_writes, api_own_writes, api_reads};

#[tokio::test]
async fn reads_return_what_the_pages_show() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let token = app.token(Role::Viewer).await;
    let get = |path: String| {
        let app = &app;
        let token = token.clone();
        async move {
            let reply = app.api(Method::GET, &path, None, Auth::Token(&token)).await;
            assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
            reply.json()
        }
    };
    let dags = get("/api/v1/dags".into()).await;
    let ids: Vec<&str> = dags["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["web_daily", "web_params"]);
    assert!(
        dags["dags"][0]["next_run_at"].is_string(),
        "a scheduled DAG has a next run"
    );
    assert_eq!(dags["dags"][1]["recent_runs"][0]["id"], f.run_pk);
    assert_eq!(dags["import_errors"].as_array().unwrap().len(), 1);

    let dag = get("/api/v1/dags/web_params".into()).await;
    assert!(
        dag["source"]["source"]
            .as_str()
            .unwrap()
            .contains("dag_id: web_params")
    );
    assert_eq!(dag["definition"]["params"]["days"], 3);

    let grid = get("/api/v1/dags/web_params/grid?runs=5".into()).await;
    let rows = grid["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["cells"][0]["state"], "success");
    assert_eq!(rows[1]["cells"][0]["state"], "failed");
    assert_eq!(grid["live"], true);

    let run = get(format!("/api/v1/runs/{}", f.run_pk)).await;
    assert_eq!(run["run"]["conf"], json!({"days": 5}));
    assert_eq!(run["task_instances"].as_array().unwrap().len(), 3);
    let task = get(format!("/api/v1/runs/{}/tasks/load", f.run_pk)).await;
    assert_eq!(task["tries"][0]["state"], "failed");

    let history = get("/api/v1/task-instances?state=failed".into()).await;
    let tis = history["task_instances"].as_array().unwrap();
    assert_eq!(tis.len(), 1);
    assert_eq!(tis[0]["task_id"], "load");
    assert_eq!(tis[0]["run_id"], run["run"]["run_id"]);
}

#[tokio::test]
async fn a_log_is_tailed_from_the_last_line_seen() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let token = app.token(Role::Viewer).await;
    let path = format!("/api/v1/runs/{}/tasks/extract/tries/1/log", f.run_pk);
    let first = app
        .api(
            Method::GET,
            &format!("{path}?limit=2"),
            None,
            Auth::Token(&token),
        )
        .await
        .json();
    assert_eq!(first["lines"].as_array().unwrap().len(), 2);
    assert_eq!(first["running"], false);
    let last = first["last"].as_i64().unwrap();

    let ti = app
        .store
        .task_instances(f.run_pk)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == "extract")
        .unwrap();
    let line = LogLine {
        ts: Utc::now(),
        stream: "stderr".to_owned(),
        line: "late line".to_owned(),
    };
    app.store.append_log(ti.id, 1, &[line]).await.unwrap();
    let rest = app
        .api(
            Method::GET,
            &format!("{path}?after={last}"),
            None,
            Auth::Token(&token),
        )
        .await
        .json();
    let texts: Vec<&str> = rest["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].starts_with("line 2 of extract"));
    assert_eq!(texts[1], "late line");

    let none = app
        .api(
            Method::GET,
            &path.replace("tries/1", "tries/2"),
            None,
            Auth::Token(&token),
        )
        .await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn trigger_validates_conf_and_refuses_a_taken_run_id() {
    let app = TestApp::new().await;
    let token = app.token(Role::Operator).await;
    let trigger = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.api(
                Method::POST,
                "/api/v1/dags/web_params/runs",
                Some(body),
                Auth::Token(&token),
            )
            .await
        }
    };
    let bad = trigger(json!({"conf": {"days": "many"}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json()["error"]["message"],
        "param `days` must be a whole number"
    );
    let not_object = trigger(json!({"conf": [1]})).await;
    assert_eq!(not_object.status, StatusCode::BAD_REQUEST);
    let bad_id = trigger(json!({"run_id": "no spaces please"})).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    let unknown_field = trigger(json!({"confs": {}})).await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown_field.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("confs")
    );

    let ok = trigger(json!({"conf": {"days": 2}, "run_id": "api_run"})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    assert_eq!(ok.json()["conf"], json!({"days": 2}));
    let again = trigger(json!({"run_id": "api_run"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["error"]["code"], "conflict");
    assert_eq!(app.store.list_runs("web_params", 5).await.unwrap().len(), 1);
}

#[tokio::test]
async fn backfills_preview_with_dry_run_and_then_create() {
    let app = TestApp::new().await;
    let token = app.token(Role::Operator).await;
    let body = json!({"from": "2026-11-20", "to": "2026-11-22", "max_active_runs": 2});
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let preview = app
        .api(
            Method::POST,
            "/api/v1/dags/web_daily/backfills",
            Some(dry),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert_eq!(preview.json()["plan"].as_array().unwrap().len(), 3);
    assert!(preview.json()["backfill"].is_null());
    assert!(
        app.store
            .list_runs("web_daily", 10)
            .await
            .unwrap()
            .is_empty()
    );

    let created = app
        .api(
            Method::POST,
            "/api/v1/dags/web_daily/backfills",
            Some(body),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json()["backfill"]["id"].as_i64().unwrap();
    let detail = app
        .api(
            Method::GET,
            &format!("/api/v1/backfills/{id}"),
            None,
            Auth::Token(&token),
        )
        .await
        .json();
    assert_eq!(detail["runs"].as_array().unwrap().len(), 3);
    assert_eq!(detail["progress"]["queued"], 3);

    let upside_down = app
        .api(
            Method::POST,
            "/api/v1/dags/web_daily/backfills",
            Some(json!({"from": "2026-11-22", "to": "2026-11-20"})),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(upside_down.status, StatusCode::BAD_REQUEST);
    let manual = app
        .api(
            Method::POST,
            "/api/v1/dags/web_params/backfills",
            Some(json!({"from": "2026-11-20", "to": "2026-11-22"})),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(manual.status, StatusCode::BAD_REQUEST);
    assert!(
        manual.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no schedule")
    );
}

#[tokio::test]
async fn operators_change_things_through_the_api() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let token = app.token(Role::Operator).await;
    for (method, path, body) in api_operator_writes(&f) {
        let reply = app
            .api(method.clone(), &path, Some(body), Auth::Token(&token))
            .await;
        assert!(
            reply.status.is_success() || reply.status == StatusCode::CONFLICT,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }
    // The calls took effect: the run was marked success then cleared.
    assert!(app.store.dag("web_params").await.unwrap().is_paused);
    assert_eq!(
        app.store.run(f.run_pk).await.unwrap().state.as_str(),
        "queued"
    );
    assert_eq!(
        app.store.backfill(f.backfill_id).await.unwrap().state,
        "cancelled"
    );
    let bad = app
        .api(
            Method::POST,
            &format!("/api/v1/runs/{}/mark", f.run_pk),
            Some(json!({"state": "paused"})),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["error"]["message"], "unknown state `paused`");
}

#[tokio::test]
async fn bad_input_gets_a_json_error_that_names_it() {
    let app = TestApp::new().await;
    let token = app.token(Role::Operator).await;
    let cases: Vec<(Method, &str, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::GET,
            "/api/v1/runs/abc",
            None,
            StatusCode::BAD_REQUEST,
            "abc",
        ),
        (
            Method::GET,
            "/api/v1/task-instances?limit=lots",
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/task-instances?state=sleepy",
            None,
            StatusCode::BAD_REQUEST,
            "sleepy",
        ),
        (
            Method::GET,
            "/api/v1/alerts?state=angry",
            None,
            StatusCode::BAD_REQUEST,
            "angry",
        ),
        (
            Method::GET,
            "/api/v1/metrics/logs?from=2026-12-02&to=2026-12-01",
            None,
            StatusCode::BAD_REQUEST,
            "before",
        ),
        (
            Method::GET,
            "/api/v1/metrics/logs?from=2026-11-01&to=2026-12-01",
            None,
            StatusCode::BAD_REQUEST,
            "7 days",
        ),
        (
            Method::GET,
            "/api/v1/dags/nope",
            None,
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            Method::GET,
            "/api/v1/runs/999999",
            None,
            StatusCode::NOT_FOUND,
            "999999",
        ),
        (
            Method::GET,
            "/api/v1/nothing/here",
            None,
            StatusCode::NOT_FOUND,
            "no such API endpoint",
        ),
        (
            Method::PATCH,
            "/api/v1/dags/web_params",
            Some(json!({"is_paused": "yes"})),
            StatusCode::BAD_REQUEST,
            "is_paused",
        ),
    ];
    for (method, path, body, status, needle) in cases {
        let reply = app
            .api(method.clone(), path, body, Auth::Token(&token))
            .await;
        assert_eq!(reply.status, status, "{method} {path}: {}", reply.body);
        let error = &reply.json()["error"];
        assert_eq!(error["status"], status.as_u16());
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{method} {path}: {error}"
        );
    }
    let malformed = app
        .send(
            axum::http::Request::post("/api/v1/dags/web_params/runs")
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json()["error"]["code"], "invalid_request");
    let bad_header = app
        .send(
            axum::http::Request::get("/api/v1/dags")
                .header("authorization", "Basic YWRtaW46YWRtaW4=")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(bad_header.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn internal_errors_reach_the_client_only_as_internal_error() {
    let app = TestApp::new().await;
    let token = app.token(Role::Viewer).await;
    let viewer = app.session(Role::Viewer).await;
    if let rtmas_scheduler::store::Pool::Postgres(pool) = app.store.pool() {
        sqlx::query("DROP TABLE alert CASCADE")
            .execute(pool)
            .await
            .unwrap();
    }
    let reply = app
        .api(Method::GET, "/api/v1/alerts", None, Auth::Token(&token))
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.json()["error"]["message"], "internal error");
    assert!(
        !reply.body.contains("alert\""),
        "no SQL detail: {}",
        reply.body
    );
    let page = app.get("/alerts", Some(&viewer)).await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(page.body.contains("internal error"));
    assert!(!page.body.contains("relation"), "no SQL detail in the page");
}

#[tokio::test]
async fn metrics_come_per_service_and_minute() {
    let app = TestApp::new().await;
    let token = app.token(Role::Viewer).await;
    let minute = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::minutes(5);
    let mut metrics = MinuteMetrics::new(minute, "api".to_owned());
    metrics.levels[2] = 90;
    metrics.levels[4] = 10;
    let mut sketch = new_sketch();
    for ms in 1..=100 {
        sketch.add(f64::from(ms));
    }
    metrics.latency = sketch;
    let batch = NewBatch {
        topic: "logs".to_owned(),
        partition: 0,
        first_offset: 0,
        last_offset: 99,
        object: None,
        records: 100,
        quarantined: Vec::new(),
        bytes: 1000,
        hours: Vec::new(),
        metrics: vec![metrics],
        templates: Vec::new(),
    };
    app.store.record_batch(&batch, Utc::now()).await.unwrap();
    let reply = app
        .api(
            Method::GET,
            "/api/v1/metrics/logs?service=api",
            None,
            Auth::Token(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let rows = reply.json()["metrics"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["total"], 100);
    assert_eq!(rows[0]["error_count"], 10);
    let p50 = rows[0]["latency_p50"].as_f64().unwrap();
    let p99 = rows[0]["latency_p99"].as_f64().unwrap();
    assert!((48.0..=52.0).contains(&p50), "p50 {p50}");
    assert!((97.0..=101.0).contains(&p99), "p99 {p99}");
    let other = app
        .api(
            Method::GET,
            "/api/v1/metrics/logs?service=billing",
            None,
            Auth::Token(&token),
        )
        .await;
    assert!(other.json()["metrics"].as_array().unwrap().is_empty());
}

use chrono::DurationRound;

#[tokio::test]
async fn the_openapi_document_describes_every_api_route() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let reply = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();

    // Every route the tests call, with its keys turned back into the
    // document's placeholders, is documented with its method.
    let template = |path: &str| {
        path.split('?')
            .next()
            .unwrap()
            .replace(&format!("/runs/{}", f.run_pk), "/runs/{run_pk}")
            .replace(&format!("/backfills/{}", f.backfill_id), "/backfills/{id}")
            .replace(&format!("/tokens/{}", f.token_id), "/tokens/{id}")
            .replace("/dags/web_params", "/dags/{dag_id}")
            .replace("/dags/web_daily", "/dags/{dag_id}")
            .replace("/tasks/extract", "/tasks/{task_id}")
            .replace("/tasks/load", "/tasks/{task_id}")
            .replace("/tries/1/", "/tries/{try_number}/")
    };
    let mut calls: Vec<(Method, String)> = api_reads(&f)
        .into_iter()
        .map(|p| (Method::GET, p))
        .collect();
    calls.extend(
        api_operator_writes(&f)
            .into_iter()
            .chain(api_own_writes(&f))
            .map(|(m, p, _)| (m, p)),
    );
    for (method, path) in &calls {
        let documented = template(path);
        let item = paths
            .get(&documented)
            .unwrap_or_else(|| panic!("{documented} is not in the OpenAPI document"));
        let operation = &item[method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {documented} is not documented"
        );
        assert!(
            operation["responses"].is_object(),
            "{method} {documented} has responses"
        );
    }
    let operations: usize = paths
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert_eq!(
        operations,
        calls.len(),
        "every documented operation is tested above"
    );
}

#[tokio::test]
async fn history_pages_follow_their_cursor_with_and_without_a_window() {
    let app = TestApp::new().await;
    app.fixture().await;
    let token = app.token(Role::Viewer).await;
    for filter in ["kind=noop", "kind=noop&from=2020-01-01&to=2999-01-01"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/task-instances?{filter}&limit=1");
            if let Some(c) = &cursor {
                let query = serde_urlencoded::to_string([("before", c.as_str())]).unwrap();
                path = format!("{path}&{query}");
            }
            let page = app.api(Method::GET, &path, None, Auth::Token(&token)).await;
            assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.body);
            let page = page.json();
            for ti in page["task_instances"].as_array().unwrap() {
                seen.push(ti["task_id"].as_str().unwrap().to_owned());
            }
            match page["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(seen.len() <= 3, "{filter}: the pages end");
        }
        let expected: &[&str] = if filter.contains("from") {
            // A window holds the task instances that started, newest first.
            &["load", "extract"]
        } else {
            &["report", "load", "extract"]
        };
        assert_eq!(seen, expected, "{filter}");
    }
    let bad = app
        .api(
            Method::GET,
            "/api/v1/task-instances?before=soon",
            None,
            Auth::Token(&token),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("history cursor")
    );
}
