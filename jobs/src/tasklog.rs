//! Buffered writing of a try's log lines to the store, so a chatty program
//! costs one insert per batch rather than one per line.

use chrono::Utc;
use rtmas_scheduler::store::{LogLine, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

/// Lines are flushed when this many are waiting, or every [`FLUSH_EVERY`].
const BATCH: usize = 500;
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// A handle for writing one try's log; cheap to clone.
#[derive(Clone, Debug)]
pub struct TaskLog {
    tx: mpsc::UnboundedSender<LogLine>,
}

/// The writer behind a [`TaskLog`]; [`TaskLogWriter::finish`] flushes it.
#[derive(Debug)]
pub struct TaskLogWriter {
    handle: JoinHandle<()>,
}

impl TaskLog {
    /// Starts a writer for the log of `ti_id`'s try `try_number`.
    pub fn start(store: Store, ti_id: i64, try_number: i32) -> (TaskLog, TaskLogWriter) {
        let (tx, mut rx) = mpsc::unbounded_channel::<LogLine>();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let closed = tokio::select! {
                    line = rx.recv() => match line {
                        Some(line) => { batch.push(line); false }
                        None => true,
                    },
                    _ = tokio::time::sleep(FLUSH_EVERY), if !batch.is_empty() => false,
                };
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    if let Err(err) = store.append_log(ti_id, try_number, &batch).await {
                        warn!(ti_id, try_number, error = %err, "cannot write task log lines");
                    }
                    batch.clear();
                }
                if closed {
                    break;
                }
            }
        });
        (TaskLog { tx }, TaskLogWriter { handle })
    }

    /// A writer of RTMAS's own lines (stream `rtmas`) about the try, for
    /// job kinds that report as they go.
    pub fn notes(&self) -> impl Fn(String) + Send + Sync + use<> {
        let log = self.clone();
        move |line| log.line("rtmas", line)
    }

    /// Writes a line of `stream` (`stdout`, `stderr`, `rtmas`).
    pub fn line(&self, stream: &str, line: impl Into<String>) {
        // The writer only stops after every TaskLog is dropped.
        let _ = self.tx.send(LogLine {
            ts: Utc::now(),
            stream: stream.to_owned(),
            line: line.into(),
        });
    }
}

impl TaskLogWriter {
    /// Waits until every line written so far is stored. Call after dropping
    /// every [`TaskLog`] handle.
    pub async fn finish(self) {
        if let Err(err) = self.handle.await {
            warn!(error = %err, "task log writer stopped abnormally");
        }
    }
}
