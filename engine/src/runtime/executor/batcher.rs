//! Group commit of checkpoints: every run an executor drives hands its
//! checkpoint to one [`Batcher`], which writes them together.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tracing::warn;

use crate::store::{Checkpoint, CheckpointAck};

type Reply = tokio::sync::oneshot::Sender<Result<CheckpointAck, crate::store::StoreError>>;

/// Group commit: checkpoints from every run this executor drives are
/// collected and written together, one statement and one commit per batch.
/// While batches are being written the next one fills up, so the batch
/// size follows the load by itself.
pub(super) struct Batcher {
    tx: tokio::sync::mpsc::UnboundedSender<(Checkpoint, Reply)>,
}

impl Batcher {
    pub(super) fn spawn(
        store: Arc<dyn crate::store::Store>,
        max_batch: usize,
        writers: usize,
    ) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Checkpoint, Reply)>();
        let writers = Arc::new(Semaphore::new(writers.max(1)));
        let max_batch = max_batch.max(1);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(max_batch);
            loop {
                let Ok(permit) = writers.clone().acquire_owned().await else {
                    return;
                };
                if rx.recv_many(&mut buf, max_batch).await == 0 {
                    return; // every sender is gone
                }
                let batch = std::mem::take(&mut buf);
                let store = store.clone();
                tokio::spawn(async move {
                    let (cps, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    match store.checkpoint_many(&cps).await {
                        Ok(acks) => {
                            for (reply, ack) in replies.into_iter().zip(acks) {
                                let _ = reply.send(Ok(ack));
                            }
                        }
                        Err(e) if e.is_unavailable() => {
                            let text = e.to_string();
                            for reply in replies {
                                let _ = reply
                                    .send(Err(crate::store::StoreError::Unavailable(text.clone())));
                            }
                        }
                        Err(e) => {
                            // One bad checkpoint must not hold the others
                            // back: write them one by one.
                            warn!(error = %e, "checkpoint batch failed; writing its checkpoints one by one");
                            for (cp, reply) in cps.iter().zip(replies) {
                                let _ = reply.send(store.checkpoint(cp).await);
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    pub(super) async fn write(
        &self,
        cp: Checkpoint,
    ) -> Result<CheckpointAck, crate::store::StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx.send((cp, reply)).map_err(|_| {
            crate::store::StoreError::Corrupt("the checkpoint writer stopped".into())
        })?;
        rx.await.map_err(|_| {
            crate::store::StoreError::Corrupt("the checkpoint writer dropped a checkpoint".into())
        })?
    }
}
