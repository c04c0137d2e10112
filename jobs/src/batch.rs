//! Claims and endings of tries, gathered into batches: the tries a worker
//! starts (or ends) at about the same time share one statement and one
//! commit, which is most of what a short task costs the database. A try
//! alone goes out at once, so batching adds no wait when the worker is
//! quiet.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rtmas_scheduler::queue::TaskJob;
use rtmas_scheduler::state::TaskState;
use rtmas_scheduler::store::{Claim, Store, StoreError, TryOutcome};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

/// Most tries in one batch.
const MAX_BATCH: usize = 64;

/// A store error shared by every try of the batch it failed.
pub type SharedError = Arc<StoreError>;

struct ClaimRequest {
    job: TaskJob,
    reply: oneshot::Sender<Result<Option<Claim>, SharedError>>,
}

struct EndRequest {
    claim: Claim,
    outcome: TryOutcome,
    at: DateTime<Utc>,
    reply: oneshot::Sender<Result<Option<TaskState>, SharedError>>,
}

/// Hands claims and endings to two background tasks that batch them.
#[derive(Clone)]
pub struct Batcher {
    claims: mpsc::UnboundedSender<ClaimRequest>,
    endings: mpsc::UnboundedSender<EndRequest>,
}

impl Batcher {
    /// Starts the batching tasks for a worker named `worker` on `hostname`.
    /// They stop when the last clone of the batcher is dropped.
    pub fn start(store: Store, hostname: String, worker: String) -> Batcher {
        let (claims, mut claim_rx) = mpsc::unbounded_channel::<ClaimRequest>();
        let (endings, mut end_rx) = mpsc::unbounded_channel::<EndRequest>();

        let claim_store = store.clone();
        tokio::spawn(async move {
            while let Some(batch) = next_batch(&mut claim_rx).await {
                let jobs: Vec<TaskJob> = batch.iter().map(|r| r.job).collect();
                debug!(tries = jobs.len(), "claiming tries");
                let claimed = claim_store
                    .claim_many(&jobs, &hostname, &worker, Utc::now())
                    .await;
                answer(batch.into_iter().map(|r| r.reply), claimed);
            }
        });

        tokio::spawn(async move {
            while let Some(batch) = next_batch(&mut end_rx).await {
                let endings: Vec<(&Claim, &TryOutcome, DateTime<Utc>)> =
                    batch.iter().map(|r| (&r.claim, &r.outcome, r.at)).collect();
                debug!(tries = endings.len(), "recording ended tries");
                let recorded = store.finish_many(&endings).await;
                drop(endings);
                answer(batch.into_iter().map(|r| r.reply), recorded);
            }
        });

        Batcher { claims, endings }
    }

    /// Claims a queued try, as [`Store::claim`] does.
    pub async fn claim(&self, job: TaskJob) -> Result<Option<Claim>, SharedError> {
        let (reply, answer) = oneshot::channel();
        self.claims
            .send(ClaimRequest { job, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Records how a claimed try ended, as [`Store::finish_try`] does.
    pub async fn finish(
        &self,
        claim: Claim,
        outcome: TryOutcome,
        at: DateTime<Utc>,
    ) -> Result<Option<TaskState>, SharedError> {
        let (reply, answer) = oneshot::channel();
        self.endings
            .send(EndRequest {
                claim,
                outcome,
                at,
                reply,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Sends each waiting try its part of a batch's outcome, or the batch's
/// error.
fn answer<T>(
    replies: impl Iterator<Item = oneshot::Sender<Result<T, SharedError>>>,
    outcome: Result<Vec<T>, StoreError>,
) {
    match outcome {
        Ok(values) => {
            for (reply, value) in replies.zip(values) {
                let _ = reply.send(Ok(value));
            }
        }
        Err(err) => {
            let err = Arc::new(err);
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

/// Waits for one request, then takes whatever else is already waiting.
async fn next_batch<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}

fn stopped() -> SharedError {
    Arc::new(StoreError::Queue(
        "the worker's batching task has stopped".to_owned(),
    ))
}
