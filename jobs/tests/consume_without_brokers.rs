//! A `kafka_consume` try whose brokers cannot be reached fails with why,
//! rather than succeeding with nothing read.

use rtmas_jobs::logs::PipelineSettings;
use rtmas_jobs::logs::consume::consume_once;
use rtmas_scheduler::testing::sqlite_store;

#[tokio::test]
async fn a_try_without_reachable_brokers_fails_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path()).await;
    // Nothing listens on port 1.
    let settings = PipelineSettings {
        kafka_brokers: "127.0.0.1:1".to_owned(),
        store_url: format!("file://{}/store/", dir.path().display()),
    };
    let params = serde_json::json!({"topic": "logs", "join_timeout": "2s", "max_wait": "1s"});
    let err = consume_once(&store, &settings, params, &|_| {})
        .await
        .expect_err("no broker, no success");
    let text = err.to_string();
    assert!(text.starts_with("cannot read from `logs`: "), "{text}");
    assert!(text.contains("Broker transport failure"), "{text}");
    assert!(
        store
            .consume_offsets("logs")
            .await
            .expect("offsets")
            .is_empty(),
        "nothing recorded"
    );
}
