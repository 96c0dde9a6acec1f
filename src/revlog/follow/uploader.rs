//! The uploader of closed segments: one task that stores them in revision order (each manifest
//! names the previous segment's stored sha256, known only once that one is stored), retrying with
//! backoff while the store is down. The queue in front of it is bounded by bytes (`--log-buffer`):
//! when it is full the watcher waits, stops reading, and etcd keeps the history meanwhile.
//! Never prints; tells what it did through tracing and the returned [`Uploaded`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::backoff::Backoff;
use crate::revlog::stored::{put_encoded_segment, EncodedSegment};
use crate::revlog::{Previous, SegmentSummary};
use crate::snapshot::Encoding;
use crate::store::ObjectStore;

/// Where a closed segment links in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// The first segment after this full snapshot id.
    Starts(String),
    /// The segment after the one queued before it.
    Continues,
}

/// A closed segment waiting to be stored.
pub struct Closed {
    pub encoded: EncodedSegment,
    pub summary: SegmentSummary,
    pub link: Link,
}

/// What the uploader stored.
#[derive(Debug, Clone, Default)]
pub struct Uploaded {
    pub segments: u64,
    pub events: u64,
    pub first_revision: Option<i64>,
    pub last_revision: Option<i64>,
    /// Failed attempts that were retried.
    pub retries: u64,
}

/// The sending side: [`push`](Self::push) waits while the queued stored bytes would exceed the bound.
pub struct UploadQueue {
    tx: mpsc::UnboundedSender<(Closed, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    capacity: u32,
}

impl UploadQueue {
    /// Queues one segment, waiting for room first. A segment larger than the whole bound waits
    /// for an empty queue and then goes alone.
    pub async fn push(&self, closed: Closed) {
        let want = u32::try_from(closed.encoded.stored.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity);
        let Ok(permit) = self.room.clone().acquire_many_owned(want).await else {
            return; // never closed while a queue exists
        };
        if self.tx.send((closed, permit)).is_err() {
            tracing::error!("the segment uploader stopped; a closed segment was not queued");
        }
    }
}

/// Starts the uploader. Dropping the queue ends it once everything queued is stored; its handle
/// then returns what was stored.
pub fn spawn(
    store: Arc<dyn ObjectStore>,
    cluster_id: String,
    encoding: Encoding,
    buffer_bytes: u64,
) -> (UploadQueue, JoinHandle<Uploaded>) {
    let capacity = u32::try_from(buffer_bytes).unwrap_or(u32::MAX).max(1);
    let room = Arc::new(Semaphore::new(capacity as usize));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Closed, OwnedSemaphorePermit)>();
    let task = tokio::spawn(async move {
        let mut done = Uploaded::default();
        let mut previous: Option<String> = None;
        while let Some((closed, permit)) = rx.recv().await {
            let link = match &closed.link {
                Link::Starts(id) => Previous::Snapshot(id.clone()),
                Link::Continues => match &previous {
                    Some(sha) => Previous::Segment(sha.clone()),
                    // Cannot happen: every chain's first segment is queued as Starts.
                    None => {
                        tracing::error!(
                            first = closed.summary.first_revision,
                            "segment without a chain to link to: dropped"
                        );
                        continue;
                    }
                },
            };
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
            let manifest = loop {
                match put_encoded_segment(
                    store.as_ref(),
                    &cluster_id,
                    closed.encoded.clone(),
                    &closed.summary,
                    link.clone(),
                    &encoding,
                )
                .await
                {
                    Ok(m) => break m,
                    Err(e) => {
                        done.retries += 1;
                        let wait = backoff.next_delay();
                        tracing::warn!(
                            first = closed.summary.first_revision,
                            last = closed.summary.last_revision,
                            retry_in = ?wait,
                            "storing a log segment failed, retrying: {e}"
                        );
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            tracing::info!(
                key = %manifest.object_key,
                events = manifest.event_count,
                "log segment stored"
            );
            previous = Some(manifest.stored_sha256.clone());
            done.segments += 1;
            done.events += manifest.event_count;
            done.first_revision = done.first_revision.or(Some(manifest.first_revision));
            done.last_revision = Some(manifest.last_revision);
            drop(permit);
        }
        done
    });
    (UploadQueue { tx, room, capacity }, task)
}
