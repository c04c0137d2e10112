//! The object store by URL: a local folder, and S3 on a real S3 server
//! (moto's server mode) with path-style addressing over plain HTTP.

#[path = "../../tests/support/s3.rs"]
mod s3;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use rtmas_jobs::storage::{Storage, StorageError, open_with};
use s3::S3Server;

/// Writes, lists, reads back and deletes one object under `storage`.
async fn round_trip(storage: &Storage) -> String {
    let path = storage.path("logs/date=2026-01-02/hour=03/part-0.parquet");
    let body = b"rows and rows".to_vec();
    storage
        .store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .expect("put");
    let listed: Vec<_> = storage
        .store
        .list(Some(&storage.path("logs")))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed, [path.to_string()]);
    let got = storage
        .store
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("read");
    assert_eq!(got.as_ref(), body.as_slice());
    storage.store.delete(&path).await.expect("delete");
    path.to_string()
}

#[tokio::test]
async fn a_file_url_opens_a_local_folder_creating_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("data").join("store");
    let url = format!("file://{}", folder.display());
    let storage = open_with(&url, &[]).expect("open");
    let path = round_trip(&storage).await;
    assert!(folder.is_dir());
    assert_eq!(path, "logs/date=2026-01-02/hour=03/part-0.parquet");
}

#[tokio::test]
async fn an_s3_url_opens_a_bucket_on_an_s3_compatible_server() {
    let server = S3Server::start("rtmas-test");
    let storage = open_with("s3://rtmas-test/pipeline", &server.options()).expect("open");
    let path = round_trip(&storage).await;
    assert_eq!(path, "pipeline/logs/date=2026-01-02/hour=03/part-0.parquet");
}

#[test]
fn other_urls_are_refused_with_the_reason() {
    for url in ["ftp://host/x", "s3://", "no url at all"] {
        let err = open_with(url, &[]).expect_err("refused");
        assert!(matches!(err, StorageError::Url { .. }), "{url}: {err}");
        assert!(err.to_string().contains(url), "{err}");
    }
}
