//! An SMTP server of a test's own (aiosmtpd) on a free loopback port, which
//! writes every message it gets to a Maildir; stopped when dropped.
//!
//! Tests that use it fail loudly when aiosmtpd is not installed: the test
//! command (`scripts/test`) installs it.

// Shared by test crates that each use part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An aiosmtpd server of the test's own, stopped when dropped.
pub struct SmtpServer {
    /// `smtp://127.0.0.1:PORT` (unencrypted, no authentication).
    pub url: String,
    /// The Maildir it writes messages to.
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// Starts aiosmtpd on a free port and waits until it listens.
    ///
    /// # Panics
    ///
    /// When aiosmtpd is not installed or does not listen within 30 s.
    pub fn start() -> SmtpServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let maildir = dir.path().join("maildir");
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with aiosmtpd is required for this test (scripts/test installs it)");
        let server = SmtpServer {
            url: format!("smtp://127.0.0.1:{port}"),
            maildir,
            _dir: dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The messages received so far, as raw text, oldest first by name.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.maildir.join("new"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read a message"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
