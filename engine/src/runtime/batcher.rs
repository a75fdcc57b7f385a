//! Group commit: writes that many tasks hand in at once (the checkpoints of
//! every run an executor drives, the signals of every caller) are collected
//! and written together, one statement and one commit per batch. While
//! batches are being written the next one fills up, so the batch size
//! follows the load by itself.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::store::{Checkpoint, CheckpointAck, SignalAck, SignalWrite, Store, StoreError};

/// A kind of write that can be batched: how a batch is written, and how one
/// write is written alone when its batch failed.
#[async_trait]
pub(crate) trait BatchWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Ack: Send + 'static;
    /// What a write is called in logs and errors.
    const WHAT: &'static str;
    async fn write_many(&self, items: &[Self::Item]) -> Result<Vec<Self::Ack>, StoreError>;
    async fn write_one(&self, item: &Self::Item) -> Result<Self::Ack, StoreError>;
}

type Reply<A> = tokio::sync::oneshot::Sender<Result<A, StoreError>>;

/// Hands writes to a background task that writes them in batches.
pub(crate) struct Batcher<W: BatchWrite> {
    tx: tokio::sync::mpsc::UnboundedSender<(W::Item, Reply<W::Ack>)>,
}

impl<W: BatchWrite> Batcher<W> {
    /// At most `max_batch` writes per batch, `writers` batches at once.
    pub(crate) fn spawn(writer: W, max_batch: usize, writers: usize) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(W::Item, Reply<W::Ack>)>();
        let writer = Arc::new(writer);
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
                let writer = writer.clone();
                tokio::spawn(async move {
                    write_batch(&*writer, batch).await;
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    /// Writes `item` with the next batch; its own answer.
    pub(crate) async fn write(&self, item: W::Item) -> Result<W::Ack, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send((item, reply))
            .map_err(|_| StoreError::Corrupt(format!("the {} writer stopped", W::WHAT)))?;
        rx.await
            .map_err(|_| StoreError::Corrupt(format!("the {} writer dropped a write", W::WHAT)))?
    }
}

async fn write_batch<W: BatchWrite>(writer: &W, batch: Vec<(W::Item, Reply<W::Ack>)>) {
    let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    match writer.write_many(&items).await {
        Ok(acks) => {
            for (reply, ack) in replies.into_iter().zip(acks) {
                let _ = reply.send(Ok(ack));
            }
        }
        Err(e) if e.is_unavailable() => {
            let text = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(text.clone())));
            }
        }
        Err(e) => {
            // One bad write must not hold the others back: write them one
            // by one.
            warn!(error = %e, "{} batch failed; writing its items one by one", W::WHAT);
            for (item, reply) in items.iter().zip(replies) {
                let _ = reply.send(writer.write_one(item).await);
            }
        }
    }
}

/// Checkpoints, written by an executor's batcher.
pub(crate) struct Checkpoints(pub(crate) Arc<dyn Store>);

#[async_trait]
impl BatchWrite for Checkpoints {
    type Item = Checkpoint;
    type Ack = CheckpointAck;
    const WHAT: &'static str = "checkpoint";
    async fn write_many(&self, items: &[Checkpoint]) -> Result<Vec<CheckpointAck>, StoreError> {
        self.0.checkpoint_many(items).await
    }
    async fn write_one(&self, item: &Checkpoint) -> Result<CheckpointAck, StoreError> {
        self.0.checkpoint(item).await
    }
}

/// Signals, written by the engine's batcher for every caller at once.
pub(crate) struct Signals(pub(crate) Arc<dyn Store>);

#[async_trait]
impl BatchWrite for Signals {
    type Item = SignalWrite;
    type Ack = SignalAck;
    const WHAT: &'static str = "signal";
    async fn write_many(&self, items: &[SignalWrite]) -> Result<Vec<SignalAck>, StoreError> {
        self.0.signal_many(items).await
    }
    async fn write_one(&self, item: &SignalWrite) -> Result<SignalAck, StoreError> {
        self.0.signal(item).await
    }
}
