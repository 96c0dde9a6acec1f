//! One chain of the log: the watch of the whole keyspace from a full snapshot on, cut into
//! segments, until a signal or a gap. It resumes on another member when the stream fails, and
//! drops what it already holds; it never lets a segment claim a revision it did not receive.
//! Never prints: tracing and the [`WatchStats`] it keeps are how it tells what happened.
//!
//! The rules it rests on (docs/research/issue16-revision-log.md §2): a response without fragments
//! holds whole revisions; revisions after a snapshot run one by one (a jump is lost events, a gap);
//! a watch cancelled with a compact revision cannot be resumed (a gap); only a progress
//! notification says the log is complete up to its header revision.

use std::time::Duration;

use chrono::{DateTime, Utc};
use etcd_client::{Client, EventType, WatchOptions, WatchResponse};
use serde::Serialize;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::error::FollowError;
use super::leases::LeaseBook;
use super::uploader::{Closed, Link, UploadQueue};
use crate::bolt::etcd::OwnedKeyValue;
use crate::etcd::{connect_require_leader, ConnectionOptions, Endpoint};
use crate::revlog::stored::SegmentEncoder;
use crate::revlog::{Event, EventKind, RevlogError, SegmentWriter};
use crate::snapshot::Encoding;

/// A catch-up response holds up to 1000 revisions: far above etcd-client's 4 MiB default.
const MAX_WATCH_MESSAGE: usize = 512 << 20;
/// How often the log asks etcd where it stands (progress notifications measure the lag).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// When a segment closes.
#[derive(Debug, Clone, Copy)]
pub struct SegmentLimits {
    pub interval: Duration,
    pub size: u64,
}

/// A break in the log: revisions that were never received. Healed by a new full snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// The last revision the log held before the break.
    pub after_revision: i64,
    /// The first revision etcd sent after it, or its compact revision.
    pub resumed_at: i64,
    pub reason: String,
    pub detected_at: DateTime<Utc>,
    /// The full snapshot taken to start a new chain (absent when stopped before one was taken).
    pub new_snapshot: Option<String>,
}

/// What the watcher saw, over every chain.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WatchStats {
    pub revisions: u64,
    pub events: u64,
    /// Events received again after a reconnect, and those at or below a snapshot's revision.
    pub duplicates_dropped: u64,
    pub reconnects: u64,
    /// The highest revision a progress notification declared complete.
    pub complete_through: i64,
    /// The longest wait for a progress notification after asking: how far behind the log ran.
    pub max_lag_ms: u64,
}

/// How a chain ended.
pub enum ChainEnd {
    /// Cancelled: everything received is queued.
    Stopped,
    /// A gap: everything received before it is queued; a new snapshot must start a new chain.
    Gap(Gap),
}

/// Why one watch attempt ended.
enum Interrupt {
    /// The stream failed or ended: resume elsewhere.
    Retry(String),
    Fatal(FollowError),
}

struct OpenSegment {
    /// Encoded (compressed, encrypted) as it is written: the open segment costs its stored size.
    writer: SegmentWriter<SegmentEncoder>,
    deadline: Instant,
}

/// One chain's position: the next revision it needs, its open segment.
struct Chain {
    next: i64,
    /// `Starts(snapshot)` until the chain's first segment is queued.
    link: Link,
    open: Option<OpenSegment>,
}

/// Follows etcd for one chain at a time.
pub struct Watcher<'a> {
    pub conn: &'a ConnectionOptions,
    pub limits: SegmentLimits,
    pub queue: &'a UploadQueue,
    pub cancel: CancellationToken,
    pub stats: WatchStats,
    pub leases: LeaseBook,
    /// How segments are stored (the backup's zstd level and age recipients).
    pub encoding: Encoding,
    endpoint: usize,
}

impl<'a> Watcher<'a> {
    pub fn new(
        conn: &'a ConnectionOptions,
        limits: SegmentLimits,
        queue: &'a UploadQueue,
        cancel: CancellationToken,
        encoding: Encoding,
    ) -> Self {
        Watcher {
            conn,
            limits,
            queue,
            cancel,
            stats: WatchStats::default(),
            leases: LeaseBook::default(),
            encoding,
            endpoint: 0,
        }
    }

    /// Logs every revision after `snapshot_revision`, watching from `watch_from` (at most
    /// `snapshot_revision + 1`; events at or below the snapshot are dropped), until cancelled or a
    /// gap. The open segment is closed and queued in both cases.
    pub async fn run_chain(
        &mut self,
        snapshot_id: &str,
        snapshot_revision: i64,
        watch_from: i64,
    ) -> Result<ChainEnd, FollowError> {
        let mut chain = Chain {
            next: snapshot_revision + 1,
            link: Link::Starts(snapshot_id.to_string()),
            open: None,
        };
        let mut from = watch_from.clamp(1, chain.next);
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let endpoint = self.conn.endpoints[self.endpoint % self.conn.endpoints.len()].clone();
            let outcome = self
                .watch_once(&endpoint, from, &mut chain, &mut backoff)
                .await;
            match outcome {
                Ok(end) => return Ok(end),
                Err(Interrupt::Fatal(e)) => {
                    self.close(&mut chain, None).await;
                    return Err(e);
                }
                Err(Interrupt::Retry(why)) => {
                    self.stats.reconnects += 1;
                    self.endpoint += 1;
                    let wait = backoff.next_delay();
                    tracing::warn!(
                        %endpoint,
                        next = chain.next,
                        retry_in = ?wait,
                        "watch interrupted, resuming on the next endpoint: {why}"
                    );
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            self.close(&mut chain, None).await;
                            return Ok(ChainEnd::Stopped);
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    // Resume right after what the log holds; anything older is dropped as a
                    // duplicate, anything skipped would show as a gap.
                    from = chain.next;
                }
            }
        }
    }

    async fn watch_once(
        &mut self,
        endpoint: &Endpoint,
        from: i64,
        chain: &mut Chain,
        backoff: &mut Backoff,
    ) -> Result<ChainEnd, Interrupt> {
        let retry = |e: &dyn std::fmt::Display| Interrupt::Retry(e.to_string());
        let mut client = connect_require_leader(endpoint, self.conn)
            .await
            .map_err(|e| retry(&e))?;
        let mut wc = client
            .watch_client()
            .max_decoding_message_size(MAX_WATCH_MESSAGE);
        let opts = WatchOptions::new()
            .with_all_keys()
            .with_start_revision(from)
            .with_progress_notify();
        let mut stream =
            match tokio::time::timeout(self.conn.timeout, wc.watch("", Some(opts))).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(retry(&e)),
                Err(_) => return Err(Interrupt::Retry("no answer to the watch request".into())),
            };
        tracing::info!(%endpoint, from, next = chain.next, "watching the whole keyspace");
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut asked_since: Option<Instant> = None;
        loop {
            let deadline = chain.open.as_ref().map(|o| o.deadline);
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => {
                    self.close(chain, Some(&mut client)).await;
                    return Ok(ChainEnd::Stopped);
                }
                _ = sleep_until(deadline) => {
                    self.close(chain, Some(&mut client)).await;
                }
                _ = tick.tick() => {
                    stream.request_progress().await.map_err(|e| retry(&e))?;
                    asked_since.get_or_insert_with(Instant::now);
                }
                msg = stream.message() => {
                    let resp = match msg {
                        Ok(Some(r)) => r,
                        Ok(None) => return Err(Interrupt::Retry("the watch stream ended".into())),
                        Err(e) => return Err(retry(&e)),
                    };
                    if let Some(end) = self
                        .handle(endpoint, &resp, chain, &mut client, &mut asked_since, backoff)
                        .await?
                    {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// One watch response. `Some` ends the chain (a gap).
    async fn handle(
        &mut self,
        endpoint: &Endpoint,
        resp: &WatchResponse,
        chain: &mut Chain,
        client: &mut Client,
        asked_since: &mut Option<Instant>,
        backoff: &mut Backoff,
    ) -> Result<Option<ChainEnd>, Interrupt> {
        if resp.compact_revision() > 0 {
            // The history the log needs next is compacted away: nothing can resume it.
            let gap = Gap {
                after_revision: chain.next - 1,
                resumed_at: resp.compact_revision(),
                reason: format!(
                    "etcd compacted its history to revision {} while the log needed revision {}",
                    resp.compact_revision(),
                    chain.next
                ),
                detected_at: Utc::now(),
                new_snapshot: None,
            };
            self.close(chain, Some(client)).await;
            return Ok(Some(ChainEnd::Gap(gap)));
        }
        if resp.canceled() {
            let reason = resp.cancel_reason();
            if resp.created() && !reason.is_empty() {
                return Err(Interrupt::Fatal(FollowError::WatchRefused {
                    endpoint: endpoint.to_string(),
                    reason: reason.to_string(),
                }));
            }
            return Err(Interrupt::Retry(format!(
                "watch cancelled: {}",
                if reason.is_empty() {
                    "no reason given"
                } else {
                    reason
                }
            )));
        }
        if resp.created() {
            backoff.reset();
            return Ok(None);
        }
        let events = resp.events();
        if events.is_empty() {
            let revision = resp.header().map_or(0, |h| h.revision());
            if revision != 0 {
                self.stats.complete_through = self.stats.complete_through.max(revision);
                if let Some(since) = asked_since.take() {
                    let lag = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.stats.max_lag_ms = self.stats.max_lag_ms.max(lag);
                    tracing::debug!(complete_through = revision, lag_ms = lag, "progress");
                }
            }
            return Ok(None);
        }
        let received_at = Utc::now();
        let revision_of = |e: &etcd_client::Event| e.kv().map_or(0, |kv| kv.mod_revision());
        for (revision, group) in by_revision(events, revision_of) {
            if revision < chain.next {
                self.stats.duplicates_dropped += group.len() as u64;
                continue;
            }
            if revision > chain.next {
                let gap = Gap {
                    after_revision: chain.next - 1,
                    resumed_at: revision,
                    reason: format!(
                        "etcd sent revision {revision} after {}: revisions {}…{} were never received",
                        chain.next - 1,
                        chain.next,
                        revision - 1
                    ),
                    detected_at: received_at,
                    new_snapshot: None,
                };
                self.close(chain, Some(client)).await;
                return Ok(Some(ChainEnd::Gap(gap)));
            }
            let mut converted = Vec::with_capacity(group.len());
            for e in group {
                let Some(kv) = e.kv() else {
                    return Err(Interrupt::Retry(format!(
                        "an event of revision {revision} came without its key"
                    )));
                };
                let kind = match e.event_type() {
                    EventType::Put => EventKind::Put,
                    EventType::Delete => EventKind::Delete,
                };
                if kind == EventKind::Put && kv.lease() != 0 {
                    self.leases.note(kv.lease(), client, self.conn).await;
                }
                converted.push(Event {
                    kind,
                    kv: OwnedKeyValue {
                        key: kv.key().to_vec(),
                        create_revision: kv.create_revision(),
                        mod_revision: kv.mod_revision(),
                        version: kv.version(),
                        value: kv.value().to_vec(),
                        lease: kv.lease(),
                    },
                });
            }
            let open = match &mut chain.open {
                Some(o) => o,
                None => chain.open.insert(OpenSegment {
                    writer: SegmentEncoder::new(&self.encoding)
                        .map_err(|e| RevlogError::Io {
                            offset: 0,
                            source: e,
                        })
                        .and_then(SegmentWriter::new)
                        .map_err(|e| Interrupt::Fatal(FollowError::Usage(e.to_string())))?,
                    deadline: Instant::now() + self.limits.interval,
                }),
            };
            if let Err(e) = open.writer.append(revision, received_at, &converted) {
                // The writer checks what etcd sent against etcd's own rules; a response that
                // breaks them is not logged, it is asked for again.
                return Err(Interrupt::Retry(format!(
                    "revision {revision} from {endpoint} is not loggable: {e}"
                )));
            }
            chain.next = revision + 1;
            self.stats.revisions += 1;
            self.stats.events += converted.len() as u64;
            if open.writer.bytes_written() >= self.limits.size {
                self.close(chain, Some(client)).await;
            }
        }
        Ok(None)
    }

    /// Closes the open segment (with the lease table, when etcd gives one) and queues it; waits
    /// while the queue is full.
    async fn close(&mut self, chain: &mut Chain, client: Option<&mut Client>) {
        let Some(open) = chain.open.take() else {
            return;
        };
        let mut elsewhere = match client {
            Some(_) => None,
            None => any_client(self.conn).await,
        };
        let client = client.or(elsewhere.as_mut());
        let table = match client {
            Some(c) => self.leases.table(c, self.conn).await,
            None => None,
        };
        let finished = open
            .writer
            .finish(table.as_ref())
            .and_then(|(encoder, summary)| {
                let encoded = encoder.finish().map_err(|source| RevlogError::Io {
                    offset: summary.plaintext_size,
                    source,
                })?;
                Ok((encoded, summary))
            });
        let (encoded, summary) = match finished {
            Ok(done) => done,
            Err(e) => {
                // Cannot happen for a segment that took its revisions (finish checks the table,
                // which is built sorted); said loudly rather than hidden.
                tracing::error!("a log segment could not be closed, its revisions are lost: {e}");
                return;
            }
        };
        let link = std::mem::replace(&mut chain.link, Link::Continues);
        tracing::debug!(
            first = summary.first_revision,
            last = summary.last_revision,
            bytes = summary.plaintext_size,
            stored = encoded.stored.len(),
            "segment closed"
        );
        self.queue
            .push(Closed {
                encoded,
                summary,
                link,
            })
            .await;
    }
}

/// A client on the first endpoint that answers, for the lease table of a segment closed between
/// two watches.
async fn any_client(conn: &ConnectionOptions) -> Option<Client> {
    for ep in &conn.endpoints {
        if let Ok(c) = crate::etcd::connect(ep, conn).await {
            return Some(c);
        }
    }
    None
}

/// Consecutive runs of items with the same revision, in order: a response's events split into
/// its revisions (a transaction's events share one).
fn by_revision<T>(items: &[T], revision: impl Fn(&T) -> i64) -> Vec<(i64, &[T])> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let r = revision(&items[start]);
        let len = items[start..]
            .iter()
            .take_while(|item| revision(item) == r)
            .count();
        out.push((r, &items[start..start + len]));
        start += len;
    }
    out
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::by_revision;

    #[test]
    fn events_split_into_their_revisions_in_order() {
        let events = [(5, 'a'), (5, 'b'), (6, 'c'), (8, 'd'), (8, 'e'), (8, 'f')];
        let groups: Vec<(i64, Vec<char>)> = by_revision(&events, |e| e.0)
            .into_iter()
            .map(|(r, g)| (r, g.iter().map(|e| e.1).collect()))
            .collect();
        assert_eq!(
            groups,
            [
                (5, vec!['a', 'b']),
                (6, vec!['c']),
                (8, vec!['d', 'e', 'f'])
            ]
        );
        assert!(by_revision(&[] as &[(i64, char)], |e| e.0).is_empty());
    }
}
