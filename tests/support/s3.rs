//! A moto S3 server (moto's server mode) of a test's own, on a free
//! loopback port; stopped when dropped.
//!
//! Tests that use it fail loudly when moto is not installed: the test
//! command (`scripts/test`) installs it.

// Shared by test crates that each use part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A moto S3 server of the test's own, stopped when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

impl S3Server {
    /// Starts moto on a free port, waits for it, and creates `bucket`.
    ///
    /// # Panics
    ///
    /// When moto is not installed (the test command installs it) or does
    /// not answer within 30 s.
    pub fn start(bucket: &str) -> S3Server {
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

    /// The settings object_store needs to reach it.
    pub fn options(&self) -> Vec<(String, String)> {
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

    /// The same settings as the `AWS_*` variables RTMAS processes read.
    pub fn env(&self) -> Vec<(String, String)> {
        self.options()
            .into_iter()
            .map(|(name, value)| match name.as_str() {
                "aws_endpoint" => ("AWS_ENDPOINT_URL".to_owned(), value),
                _ => (name.to_ascii_uppercase(), value),
            })
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
