//! `rtmas users …`: creating users with a role and a password, refusing a
//! taken name or a short password, listing without secrets, and API tokens
//! that the store then finds.

mod support;

use std::process::Stdio;

use rtmas_scheduler::store::{Role, Store};
use rtmas_web::auth::{secret_hash, verify_password};
use support::{OutputText, rtmas};
use tokio::io::AsyncWriteExt;

async fn users(db: &str, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = rtmas()
        .args(["--database-url", db, "users"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rtmas users");
    let mut input = child.stdin.take().expect("stdin is piped");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    child.wait_with_output().await.expect("rtmas users ends")
}

#[tokio::test]
async fn users_are_created_listed_and_given_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite:{}", dir.path().join("rtmas.db").display());

    let created = users(
        &db,
        &["create", "alice", "--role", "operator", "--password-stdin"],
        Some("long enough secret\n"),
    )
    .await;
    assert!(created.status.success(), "{}", created.stderr_text());
    assert!(created.stdout_text().contains("created operator alice"));
    assert!(
        !created.stdout_text().contains("password:"),
        "a given password is not echoed"
    );

    let generated = users(&db, &["create", "bob", "--role", "viewer"], None).await;
    assert!(generated.status.success(), "{}", generated.stderr_text());
    let password = generated
        .stdout_text()
        .lines()
        .find_map(|l| l.strip_prefix("password: ").map(str::to_owned))
        .expect("a generated password is printed");
    assert!(password.len() >= 16);

    let taken = users(&db, &["create", "alice", "--role", "admin"], None).await;
    assert!(!taken.status.success());
    assert!(
        taken.stderr_text().contains("exists"),
        "{}",
        taken.stderr_text()
    );
    let short = users(
        &db,
        &["create", "carol", "--role", "viewer", "--password-stdin"],
        Some("short\n"),
    )
    .await;
    assert!(!short.status.success());
    assert!(short.stderr_text().contains("at least 8 characters"));
    let bad_role = users(&db, &["create", "dave", "--role", "boss"], None).await;
    assert!(!bad_role.status.success());
    assert!(
        bad_role
            .stderr_text()
            .contains("expected viewer, operator or admin")
    );

    let listed = users(&db, &["list", "--json"], None).await;
    let list: serde_json::Value = serde_json::from_str(&listed.stdout_text()).expect("JSON");
    let names: Vec<(&str, &str)> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| (u["username"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("alice", "operator"), ("bob", "viewer")]);
    assert!(
        !listed.stdout_text().contains("argon2"),
        "no password hashes"
    );

    let promoted = users(&db, &["set-role", "bob", "admin"], None).await;
    assert!(promoted.status.success());
    let token = users(&db, &["token", "bob", "--name", "ci"], None).await;
    assert!(token.status.success(), "{}", token.stderr_text());
    let secret = token.stdout_text().trim().to_owned();

    let store = Store::connect(&db).await.expect("open the database");
    let bob = store
        .user_by_api_token(&secret_hash(&secret), chrono::Utc::now())
        .await
        .expect("lookup")
        .expect("the token finds its user");
    assert_eq!((bob.username.as_str(), bob.role), ("bob", Role::Admin));
    assert!(verify_password(&password, &bob.password_hash));
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    assert!(verify_password("long enough secret", &alice.password_hash));
    assert!(!verify_password("long enough secre", &alice.password_hash));
}
