//! The job queue between scheduler and workers, through apalis.
//!
//! A job names one try of one task instance. The queue is only the delivery
//! mechanism: the task instance row decides whether a try may start (see
//! `Store::claim`), so a job delivered twice never runs a try twice.

use serde::{Deserialize, Serialize};

/// The apalis queue that carries task tries.
pub const QUEUE_NAME: &str = "rtmas_tasks";

/// One try of one task instance, as carried by the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskJob {
    /// Store key of the task instance.
    pub ti_id: i64,
    /// The try this job may start.
    pub try_number: i32,
}

impl TaskJob {
    /// The job as an apalis task: JSON bytes, a single delivery attempt
    /// (retries are the scheduler's business) and an idempotency key so the
    /// same try is never queued twice.
    pub(crate) fn to_apalis(self) -> apalis::prelude::Task<Vec<u8>> {
        let bytes = serde_json::to_vec(&self).expect("a TaskJob always serialises");
        apalis::prelude::TaskBuilder::new(bytes)
            .max_attempts(1)
            .idempotency_key(format!("ti{}-try{}", self.ti_id, self.try_number))
            .build()
    }
}
