//! The object store by URL: a local folder, and S3 on a real S3 server
//! (moto's server mode) with path-style addressing over plain HTTP.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use rtmas_jobs::storage::{Storage, StorageError, open_with};

/// A moto S3 server of the test's own, stopped when dropped.
struct S3Server {
    endpoint: String,
    child: Child,
}

impl S3Server {
    /// Starts moto on a free port, waits for it, and creates `bucket`.
    ///
    /// # Panics
    ///
    /// When moto is not installed (the test command installs it) or does
    /// not answer within 30 s.
    fn start(bucket: &str) -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is required for this test (scripts/test installs it)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let server = S3Server { endpoint, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = Command::new("python3")
            .args([
                "-c",
                "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], \
                 region_name='us-east-1', aws_access_key_id='test', \
                 aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])",
                &server.endpoint,
                bucket,
            ])
            .status()
            .expect("run boto3");
        assert!(created.success(), "creating the bucket failed");
        server
    }

    fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
