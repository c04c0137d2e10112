//! The `rtmas` command line on its own: DAG validation reports every error
//! with its place and sets the exit code.

mod support;

use support::{OutputText, rtmas};

#[tokio::test]
async fn validate_accepts_the_example_dags() {
    let dags = concat!(env!("CARGO_MANIFEST_DIR"), "/dags");
    let out = rtmas()
        .args(["dags", "validate", dags])
        .output()
        .await
        .expect("run rtmas");
    assert!(out.status.success(), "{}", out.stdout_text());
    assert!(out.stdout_text().contains("0 error(s)"));
}

#[tokio::test]
async fn validate_lists_every_error_with_its_place_and_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, yaml: &str| std::fs::write(dir.path().join(name), yaml).unwrap();
    write(
        "cycle.yaml",
        "dag_id: cyclic\ntasks:\n  - id: a\n    kind: noop\n    depends_on: [b]\n\
         \x20 - id: b\n    kind: noop\n    depends_on: [a]\n",
    );
    write(
        "unknown.yaml",
        "dag_id: unknown_key\ntasks:\n  - id: a\n    kind: noop\n    retires: 3\n",
    );
    write(
        "cron.yaml",
        "dag_id: bad_cron\nschedule: \"61 * * * *\"\ntasks:\n  - {id: a, kind: noop}\n",
    );
    write(
        "fine.yaml",
        "dag_id: fine\ntasks:\n  - {id: a, kind: noop}\n",
    );

    let out = rtmas()
        .args(["dags", "validate"])
        .arg(dir.path())
        .output()
        .await
        .expect("run rtmas");
    assert_eq!(out.status.code(), Some(1));
    let text = out.stdout_text() + &out.stderr_text();
    let path = |name: &str| dir.path().join(name).display().to_string();
    for (place, what) in [
        (
            format!("{}:3:9:", path("cycle.yaml")),
            "dependency cycle: a -> b -> a",
        ),
        (
            format!("{}:5:5:", path("unknown.yaml")),
            "unknown key `retires`",
        ),
        (
            format!("{}:2:11:", path("cron.yaml")),
            "invalid cron expression",
        ),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&place))
            .unwrap_or_else(|| panic!("no error at {place} in:\n{text}"));
        assert!(line.contains(what), "{line}");
    }
    assert!(text.contains("did you mean `retries`?"), "{text}");
    assert!(
        text.contains("1 DAG(s) valid, 3 file(s) invalid, 3 error(s)"),
        "{text}"
    );
}
