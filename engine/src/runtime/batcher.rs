//! Group commit: writes that many tasks hand in at once (the checkpoints of
//! every run an executor drives, the signals of every caller) are collected
//! and written together, one statement and one commit per batch. While
//! batches are being written the next one fills up, so the batch size
//! follows the load by itself. Writes nobody waits for any more are
//! dropped before they are written.

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

/// Writes a batch. A write whose caller stopped waiting for it (an attempt
/// that gave up on its lease while the store was away) is left out: nobody
/// would act on its answer, and the run it belongs to may have been taken
/// over since.
async fn write_batch<W: BatchWrite>(writer: &W, batch: Vec<(W::Item, Reply<W::Ack>)>) {
    let (items, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .filter(|(_, reply)| !reply.is_closed())
        .unzip();
    if items.is_empty() {
        return;
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use std::sync::Mutex;

    use tokio::sync::Notify;

    use super::*;

    /// Records every batch; the first one waits until `gate` is opened.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<Vec<u32>>>,
        entered: Notify,
        gate: Notify,
    }

    #[async_trait]
    impl BatchWrite for Arc<Recorder> {
        type Item = u32;
        type Ack = u32;
        const WHAT: &'static str = "test";
        async fn write_many(&self, items: &[u32]) -> Result<Vec<u32>, StoreError> {
            let first = {
                let mut b = self.batches.lock().unwrap();
                b.push(items.to_vec());
                b.len() == 1
            };
            if first {
                self.entered.notify_one();
                self.gate.notified().await;
            }
            Ok(items.to_vec())
        }
        async fn write_one(&self, item: &u32) -> Result<u32, StoreError> {
            Ok(*item)
        }
    }

    #[tokio::test]
    async fn a_write_nobody_waits_for_is_not_written() {
        let rec = Arc::new(Recorder::default());
        let batcher = Arc::new(Batcher::spawn(rec.clone(), 8, 1));
        let b = batcher.clone();
        let first = tokio::spawn(async move { b.write(1).await });
        rec.entered.notified().await;
        // Handed in while the only writer is busy, then given up on.
        let mut abandoned = Box::pin(batcher.write(2));
        tokio::select! {
            biased;
            _ = &mut abandoned => panic!("written while the writer was busy"),
            _ = std::future::ready(()) => {}
        }
        drop(abandoned);
        let b = batcher.clone();
        let kept = tokio::spawn(async move { b.write(3).await });
        rec.gate.notify_one();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(kept.await.unwrap().unwrap(), 3);
        assert_eq!(*rec.batches.lock().unwrap(), vec![vec![1], vec![3]]);
    }
}
