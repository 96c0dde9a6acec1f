//! The streaming pipeline: etcd's Snapshot gRPC stream → integrity check (sha256 trailer) and facts
//! scan → encoder thread (zstd, age) → store writer. Three stages overlap through bounded channels;
//! nothing is staged on disk and memory does not grow with the database. On any failure the store
//! writer is aborted, so nothing that looks like a snapshot is left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::encode::{self, Chunk, Encoded, Encoding};
use super::facts::{DbFacts, FactsScanner};
use super::trailer::{TrailerCheck, TRAILER_LEN};
use super::{Progress, SnapshotError};
use crate::etcd::{connect, describe_client_error, ConnectionOptions, Endpoint};
use crate::store::{ObjectWriter, PutReceipt};

/// Plaintext chunks buffered between the stream and the encoder (etcd sends 32 KiB messages).
const PLAIN_QUEUE: usize = 64;
/// Encoded chunks (of [`encode::OUT_CHUNK`]) buffered between the encoder and the upload.
const STORED_QUEUE: usize = 4;

const ABANDONED: &str = "was abandoned because the upload failed";

/// The caller's hold on a running stream: a way to stop it, and the bytes handed to the store so
/// far (failed uploads included, for the daemon's upload counter).
#[derive(Debug, Clone, Default)]
pub struct StreamControl {
    /// Cancelling stops the stream as a failure would: the writer is aborted and awaited before
    /// [`stream_snapshot`] returns. Once the stream has ended, the upload completes regardless.
    pub cancel: CancellationToken,
    /// Encoded bytes written to the store's writer.
    pub sent: Arc<AtomicU64>,
}

/// What one streamed snapshot turned out to be.
#[derive(Debug, Clone)]
pub struct Streamed {
    pub db_len: u64,
    pub db_sha256: [u8; 32],
    pub encoded: Encoded,
    pub receipt: PutReceipt,
    pub facts: DbFacts,
    pub elapsed: Duration,
}

/// Streams a snapshot from `endpoint` into `writer`, encoded with `encoding`. The plaintext written is
/// exactly what etcd sent: the db followed by its 32-byte sha256.
pub async fn stream_snapshot(
    endpoint: &Endpoint,
    conn: &ConnectionOptions,
    stall: Duration,
    encoding: Encoding,
    writer: Box<dyn ObjectWriter>,
    progress: &dyn Progress,
    control: &StreamControl,
) -> Result<Streamed, SnapshotError> {
    let started = Instant::now();
    let (plain_tx, plain_rx) = mpsc::channel::<Chunk>(PLAIN_QUEUE);
    let (stored_tx, stored_rx) = mpsc::channel::<Bytes>(STORED_QUEUE);
    let (decide_tx, decide_rx) = oneshot::channel::<bool>();
    let encoder = tokio::task::spawn_blocking(move || encode::run(plain_rx, stored_tx, encoding));
    let uploader = tokio::spawn(upload(
        stored_rx,
        writer,
        decide_rx,
        Arc::clone(&control.sent),
    ));

    let received = tokio::select! {
        r = receive(endpoint, conn, stall, &plain_tx, progress) => r,
        () = control.cancel.cancelled() => Err(SnapshotError::Cancelled { what: "the snapshot" }),
    };
    let ok = received.is_ok();
    if ok {
        // The encoder only finishes its frames when told the stream ended well.
        let _ = plain_tx.send(Chunk::End).await;
    }
    drop(plain_tx);
    let encoded = encoder
        .await
        .map_err(|e| SnapshotError::Encode(format!("encoder task failed: {e}")));
    let commit = ok && matches!(encoded, Ok(Ok(_)));
    let _ = decide_tx.send(commit);
    let uploaded = uploader
        .await
        .map_err(|e| SnapshotError::Encode(format!("upload task failed: {e}")))?;

    // Report the root cause: the stream's own failure first, unless it only stopped because the
    // upload had failed; then the upload's; the encoder fails as a consequence of either.
    let (db_len, db_sha256, facts) = match received {
        Err(SnapshotError::Stream { reason, .. }) if reason == ABANDONED => {
            uploaded?;
            return Err(SnapshotError::Encode("the encoder stopped".into()));
        }
        other => other?,
    };
    let receipt = uploaded?;
    let encoded = encoded?.map_err(|e| SnapshotError::Encode(format!("encoding failed: {e}")))?;
    let receipt =
        receipt.ok_or_else(|| SnapshotError::Encode("upload was not completed".into()))?;
    Ok(Streamed {
        db_len,
        db_sha256,
        encoded,
        receipt,
        facts,
        elapsed: started.elapsed(),
    })
}

/// Reads the gRPC stream, checks it and feeds the encoder. Returns the db length, its sha256 and the
/// facts scanned from it.
async fn receive(
    endpoint: &Endpoint,
    conn: &ConnectionOptions,
    stall: Duration,
    plain_tx: &mpsc::Sender<Chunk>,
    progress: &dyn Progress,
) -> Result<(u64, [u8; 32], DbFacts), SnapshotError> {
    let ep = endpoint.to_string();
    let stream_err = |reason: String| SnapshotError::Stream {
        endpoint: ep.clone(),
        reason,
    };
    let client = connect(endpoint, conn).await?;
    let mut maintenance = client.maintenance_client();
    let mut stream = match tokio::time::timeout(stall, maintenance.snapshot()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(stream_err(format!(
                "could not start: {}",
                describe_client_error(&e)
            )))
        }
        Err(_) => {
            return Err(SnapshotError::Stalled {
                endpoint: ep.clone(),
                after: stall,
            })
        }
    };
    let mut check = TrailerCheck::new();
    let mut scanner = FactsScanner::new();
    let mut expected_db: Option<u64> = None;
    let mut total: u64 = 0;
    loop {
        let msg = match tokio::time::timeout(stall, stream.message()).await {
            Err(_) => {
                return Err(SnapshotError::Stalled {
                    endpoint: ep.clone(),
                    after: stall,
                })
            }
            Ok(Err(e)) => {
                return Err(stream_err(format!(
                    "broke after {total} bytes: {}",
                    describe_client_error(&e)
                )))
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(m))) => m,
        };
        let blob = msg.blob();
        if expected_db.is_none() {
            // etcd reports, with each chunk, how many db bytes remain after it.
            let size = msg.remaining_bytes() + blob.len() as u64;
            expected_db = Some(size);
            progress.stage("snapshot", Some(size + TRAILER_LEN as u64));
        }
        total += blob.len() as u64;
        check.update(blob, |db| scanner.feed(db));
        progress.advance(blob.len() as u64);
        if plain_tx
            .send(Chunk::Data(Bytes::copy_from_slice(blob)))
            .await
            .is_err()
        {
            // The encoder or the upload stopped; their error is the one to report.
            return Err(stream_err(ABANDONED.into()));
        }
    }
    let outcome = check.finish();
    let expected = expected_db.ok_or_else(|| stream_err("ended before any data".into()))?;
    if outcome.db_len != expected {
        return Err(SnapshotError::Integrity {
            endpoint: ep.clone(),
            reason: format!(
                "received {} db bytes, the member announced {expected}",
                outcome.db_len
            ),
        });
    }
    if !outcome.matches() {
        return Err(SnapshotError::Integrity {
            endpoint: ep.clone(),
            reason: match outcome.trailer {
                None => "the stream ended without its sha256 trailer".to_string(),
                Some(t) => format!(
                    "sha256 of the db is {}, the trailer says {}",
                    hex::encode(outcome.computed),
                    hex::encode(t)
                ),
            },
        });
    }
    let facts = scanner
        .finish()
        .map_err(|reason| SnapshotError::Integrity {
            endpoint: ep.clone(),
            reason: format!("the db is not a valid bbolt file: {reason}"),
        })?;
    progress.done("snapshot received and verified");
    Ok((outcome.db_len, outcome.computed, facts))
}

/// The upload stage: writes every encoded chunk, then completes or aborts the object as decided.
/// Returns `None` when it aborted on purpose.
async fn upload(
    mut rx: mpsc::Receiver<Bytes>,
    mut writer: Box<dyn ObjectWriter>,
    decide: oneshot::Receiver<bool>,
    sent: Arc<AtomicU64>,
) -> Result<Option<PutReceipt>, SnapshotError> {
    while let Some(chunk) = rx.recv().await {
        let len = chunk.len() as u64;
        let written = writer.write(chunk).await;
        sent.fetch_add(len, Ordering::Relaxed);
        if let Err(e) = written {
            drop(rx);
            let _ = writer.abort().await;
            return Err(e.into());
        }
    }
    if decide.await.unwrap_or(false) {
        Ok(Some(writer.finish().await?))
    } else {
        writer.abort().await?;
        Ok(None)
    }
}
