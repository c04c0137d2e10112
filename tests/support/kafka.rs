//! A Tansu broker (a Kafka-protocol server) of a test's own, on a free
//! loopback port, with in-memory storage; stopped when dropped.
//!
//! Tests that use it fail loudly when `tansu` is not installed: the test
//! command (`scripts/test`) installs it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running broker.
pub struct Broker {
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub address: String,
    child: Child,
}

impl Broker {
    /// Starts a broker and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When `tansu` cannot be started or does not listen within 30 s.
    pub async fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tansu is required for this test (scripts/test installs it)");
        let address = format!("127.0.0.1:{port}");
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Broker { address, child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tansu did not listen on {address} within 30 s");
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new("tansu")
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &format!("tcp://{}", self.address),
            ])
            .output()
            .await
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
