//! Who may do what: every page and API route refuses strangers, every
//! change refuses viewers and forms or session calls without the CSRF
//! token; signing in and out, sessions and API tokens.

mod support;

use axum::http::{Method, StatusCode};
use rtmas_scheduler::store::Role;
use serde_json::json;
use support::{Auth, PASSWORD, TestApp, api_operator_writes, api_own_writes, api_reads};
use support::{operator_pages, operator_posts, own_posts, page_paths};

#[tokio::test]
async fn pages_and_posts_send_strangers_to_sign_in() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    for path in page_paths(&f).into_iter().chain(operator_pages()) {
        let reply = app.get(&path, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "GET {path}");
        let expected = format!(
            "/login?{}",
            serde_urlencoded::to_string([("next", path.as_str())]).unwrap()
        );
        assert_eq!(reply.location(), expected, "GET {path}");
    }
    for (path, fields) in operator_posts(&f).into_iter().chain(own_posts(&f)) {
        let reply = app.post_form(&path, &fields, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "POST {path}");
        assert!(reply.location().starts_with("/login"), "POST {path}");
    }
    // Nothing changed: the DAG is not paused, the run kept its state.
    assert!(!app.store.dag("web_params").await.unwrap().is_paused);
}

#[tokio::test]
async fn the_api_answers_strangers_and_unknown_tokens_with_401() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let mut calls: Vec<(Method, String)> = api_reads(&f)
        .into_iter()
        .map(|path| (Method::GET, path))
        .collect();
    calls.extend(
        api_operator_writes(&f)
            .into_iter()
            .chain(api_own_writes(&f))
            .map(|(method, path, _)| (method, path)),
    );
    for (method, path) in calls {
        for auth in [Auth::Anonymous, Auth::Token("not-a-token")] {
            let reply = app.api(method.clone(), &path, None, auth).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                reply.json()["error"]["code"],
                "unauthorized",
                "{method} {path}"
            );
            assert_eq!(reply.headers["www-authenticate"], "Bearer");
        }
    }
    let reply = app
        .api(Method::GET, "/api/v1/dags", None, Auth::Token(""))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn viewers_read_everything_and_change_nothing() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let viewer = app.session(Role::Viewer).await;
    for path in page_paths(&f) {
        assert_eq!(
            app.get(&path, Some(&viewer)).await.status,
            StatusCode::OK,
            "GET {path}"
        );
    }
    for path in operator_pages() {
        let reply = app.get(&path, Some(&viewer)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "GET {path}");
        assert!(
            reply.body.contains("this needs the operator role"),
            "{path}"
        );
    }
    for (path, fields) in operator_posts(&f) {
        let reply = app.post_form(&path, &fields, Some(&viewer)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "POST {path}");
    }
    let token = app.token(Role::Viewer).await;
    for path in api_reads(&f) {
        let reply = app.api(Method::GET, &path, None, Auth::Token(&token)).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.body);
    }
    for (method, path, body) in api_operator_writes(&f) {
        let reply = app
            .api(method.clone(), &path, Some(body), Auth::Token(&token))
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(reply.json()["error"]["code"], "forbidden");
    }

    // Nothing changed.
    assert!(!app.store.dag("web_params").await.unwrap().is_paused);
    assert_eq!(
        app.store.list_runs("web_params", 10).await.unwrap().len(),
        1
    );
    let run = app.store.run(f.run_pk).await.unwrap();
    assert_eq!(run.state.as_str(), "running");
    let viewer_page = app.get("/dags/web_params", Some(&viewer)).await;
    assert!(!viewer_page.body.contains("id=\"trigger-link\""));
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let operator = app.session(Role::Operator).await;
    let other = app.session(Role::Operator).await;
    for (path, fields) in operator_posts(&f).into_iter().chain(own_posts(&f)) {
        for token in ["", "forged", other.csrf.as_str()] {
            let mut fields = fields.clone();
            fields.push(("csrf_token", token));
            let reply = app.post_form(&path, &fields, Some(&operator)).await;
            assert_eq!(
                reply.status,
                StatusCode::FORBIDDEN,
                "POST {path} with `{token}`"
            );
            assert!(reply.body.contains("reload the page"), "{path}");
        }
    }
    assert!(!app.store.dag("web_params").await.unwrap().is_paused);
    let admin = app.store.user_by_name("admin").await.unwrap().unwrap();
    assert_eq!(app.store.list_api_tokens(admin.id).await.unwrap().len(), 1);

    // With the token, the same post works.
    let reply = app
        .post_form(
            "/dags/web_params/pause",
            &[("paused", "true")],
            Some(&operator),
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(app.store.dag("web_params").await.unwrap().is_paused);
}

#[tokio::test]
async fn api_calls_by_session_need_the_csrf_header_and_token_calls_do_not() {
    let app = TestApp::new().await;
    let f = app.fixture().await;
    let operator = app.session(Role::Operator).await;
    for (method, path, body) in api_operator_writes(&f)
        .into_iter()
        .chain(api_own_writes(&f))
    {
        let reply = app
            .api(
                method.clone(),
                &path,
                Some(body),
                Auth::SessionWithoutCsrf(&operator),
            )
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(reply.json()["error"]["code"], "csrf");
    }
    // Reads need no CSRF header.
    let reply = app
        .api(
            Method::GET,
            "/api/v1/me",
            None,
            Auth::SessionWithoutCsrf(&operator),
        )
        .await;
    assert_eq!(reply.json()["csrf_token"], operator.csrf.as_str());

    let patch = json!({"is_paused": true});
    let reply = app
        .api(
            Method::PATCH,
            "/api/v1/dags/web_params",
            Some(patch.clone()),
            Auth::Session(&operator),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["is_paused"], true);
    let token = app.token(Role::Operator).await;
    let reply = app
        .api(
            Method::PATCH,
            "/api/v1/dags/web_params",
            Some(json!({"is_paused": false})),
            Auth::Token(&token),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!app.store.dag("web_params").await.unwrap().is_paused);
}

/// The sign-in form's CSRF value and cookie, as a browser would get them.
async fn login_form(app: &TestApp, next: &str) -> (String, String) {
    let reply = app.get(&format!("/login?next={next}"), None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let cookie = reply.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let marker = "name=\"csrf_token\" value=\"";
    let start = reply.body.find(marker).expect("CSRF field") + marker.len();
    let token = reply.body[start..].split('"').next().unwrap().to_owned();
    (cookie, token)
}

async fn post_login(app: &TestApp, cookie: &str, fields: &[(&str, &str)]) -> support::Reply {
    let body = serde_urlencoded::to_string(fields).unwrap();
    app.send(
        axum::http::Request::post("/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body(axum::body::Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn signing_in_starts_an_httponly_session_and_signing_out_ends_it() {
    let app = TestApp::new().await;
    let (cookie, csrf) = login_form(&app, "/history").await;

    let wrong = post_login(
        &app,
        &cookie,
        &[
            ("csrf_token", &csrf),
            ("username", "operator"),
            ("password", "nope"),
        ],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong username or password."));
    let unknown = post_login(
        &app,
        &cookie,
        &[
            ("csrf_token", &csrf),
            ("username", "nobody"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Wrong username or password."));
    let forged = post_login(
        &app,
        &cookie,
        &[
            ("csrf_token", "forged"),
            ("username", "operator"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let ok = post_login(
        &app,
        &cookie,
        &[
            ("csrf_token", &csrf),
            ("username", "operator"),
            ("password", PASSWORD),
            ("next", "/history"),
        ],
    )
    .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.location(), "/history");
    let set_cookie: Vec<&str> = ok
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("rtmas_session="))
        .expect("a session cookie");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Lax"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    let session_cookie = session.split(';').next().unwrap().to_owned();

    let page = app
        .send(
            axum::http::Request::get("/history")
                .header("cookie", &session_cookie)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.body.find(marker).expect("logout form") + marker.len();
    let csrf = page.body[start..].split('"').next().unwrap().to_owned();
    let session = support::Session {
        cookie: session_cookie,
        csrf,
    };
    let out = app.post_form("/logout", &[], Some(&session)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert_eq!(
        app.get("/history", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn sign_in_never_redirects_to_another_site() {
    let app = TestApp::new().await;
    for next in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let (cookie, csrf) = login_form(&app, "/dags").await;
        let reply = post_login(
            &app,
            &cookie,
            &[
                ("csrf_token", &csrf),
                ("username", "viewer"),
                ("password", PASSWORD),
                ("next", next),
            ],
        )
        .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER);
        assert_eq!(reply.location(), "/dags", "next = {next}");
    }
}

#[tokio::test]
async fn api_tokens_act_as_their_user_until_revoked() {
    let app = TestApp::new().await;
    let operator = app.session(Role::Operator).await;
    let created = app
        .api(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "ci"})),
            Auth::Session(&operator),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.json()["secret"].as_str().unwrap().to_owned();
    let id = created.json()["token"]["id"].as_i64().unwrap();

    let me = app
        .api(Method::GET, "/api/v1/me", None, Auth::Token(&secret))
        .await;
    assert_eq!(me.json()["username"], "operator");
    assert_eq!(me.json()["role"], "operator");
    assert_eq!(me.json()["csrf_token"], "");
    let listed = app
        .api(Method::GET, "/api/v1/tokens", None, Auth::Token(&secret))
        .await;
    assert!(
        listed.json()[0]["last_used_at"].is_string(),
        "{}",
        listed.body
    );
    assert!(!listed.body.contains(&secret), "the secret is never listed");

    let bad_name = app
        .api(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": " "})),
            Auth::Token(&secret),
        )
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);

    let revoked = app
        .api(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None,
            Auth::Token(&secret),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = app
        .api(Method::GET, "/api/v1/me", None, Auth::Token(&secret))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_disabled_user_loses_sessions_and_tokens() {
    let app = TestApp::new().await;
    let session = app.session(Role::Operator).await;
    let token = app.token(Role::Operator).await;
    app.store.set_disabled("operator", true).await.unwrap();
    assert_eq!(
        app.get("/dags", Some(&session)).await.status,
        StatusCode::SEE_OTHER
    );
    let reply = app
        .api(Method::GET, "/api/v1/me", None, Auth::Token(&token))
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}
