//! Point-in-time replay: the events of a revision log written into a restore's `key` bucket at
//! their own revisions, after the snapshot's last pair, while the restore's rewrite streams it
//! (docs/FORMAT.md, "Replaying an event into the `key` bucket"); and the leases that keys live at
//! the target still reference, for the `lease` bucket the rewrite writes next.
//!
//! Segments arrive one at a time from a [`SegmentFeed`] (the caller fetches and checks them), so
//! memory holds one segment plus the keys that carry a lease, never the whole log. Whatever the
//! log does not prove — a missing revision, events that contradict each other — refuses the
//! restore naming the segment; nothing is guessed. This module never prints and never touches a
//! store.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::error::RestoreError;
use crate::bolt::etcd::Lease;
use crate::bolt::writer::BoltWriter;
use crate::revlog::{EventKind, RevisionRecord, Segment};

/// One segment as the feed delivers it: its object key (named in errors) and its content, or why
/// it could not be fetched.
pub type FedSegment = (String, Result<Segment, RestoreError>);

/// The segments to replay, in chain order, fetched as they are asked for.
pub type SegmentFeed = Box<dyn Iterator<Item = FedSegment> + Send>;

/// What to replay: every logged event above the snapshot's revision up to and including `target`.
pub struct Replay {
    pub target: i64,
    /// The chain's segments from the snapshot on: those holding the revisions up to `target`,
    /// then at most one more, read for its lease table only.
    pub feed: SegmentFeed,
}

/// What the replay wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// The snapshot's revision (the db's: last key or compaction, whichever is higher).
    pub from_revision: i64,
    /// The revision reached (the target).
    pub to_revision: i64,
    pub revisions: u64,
    pub events: u64,
    /// Segments read (events or lease tables).
    pub segments: usize,
    /// Leases added to the `lease` bucket for keys live at the target (hex IDs).
    pub leases_added: Vec<String>,
    /// What the log could not tell (a referenced lease it never recorded).
    pub warnings: Vec<String>,
}

/// A refusal naming the segment at fault.
fn refused(segment: &str, reason: String) -> RestoreError {
    RestoreError::PointInTime(format!("revision log segment {segment}: {reason}"))
}

/// The replay in progress.
pub(super) struct Replayer {
    target: i64,
    from: i64,
    /// The next revision the log must hold.
    next: i64,
    /// Keys put with a lease by the replay, and that lease (a delete or a put without one drops
    /// the key): the leases live keys reference at the end.
    key_leases: HashMap<Vec<u8>, i64>,
    /// Granted TTL per lease ID, from every lease table read (a later table wins).
    granted: BTreeMap<i64, i64>,
    report: ReplayReport,
}

impl Replayer {
    /// Starts after the snapshot's revision `from` (the db's own).
    pub(super) fn new(from: i64, target: i64) -> Result<Self, RestoreError> {
        if target < from {
            return Err(RestoreError::PointInTime(format!(
                "target revision {target} is older than the snapshot's revision {from}"
            )));
        }
        Ok(Replayer {
            target,
            from,
            next: from + 1,
            key_leases: HashMap::new(),
            granted: BTreeMap::new(),
            report: ReplayReport {
                from_revision: from,
                to_revision: target,
                ..ReplayReport::default()
            },
        })
    }

    fn reached(&self) -> bool {
        self.next > self.target
    }

    /// Writes every event of `feed` with revision in (from, target] into the writer's open `key`
    /// bucket, in order, then reads lease tables until the leases live keys reference are known
    /// (at most the segment after the target's). Errors name the segment.
    pub(super) fn run(
        &mut self,
        writer: &mut BoltWriter,
        feed: &mut SegmentFeed,
    ) -> Result<(), RestoreError> {
        let mut last_segment = None;
        for (key, segment) in feed.by_ref() {
            if self.reached() && self.leases_known() {
                break;
            }
            let segment = match segment {
                Ok(s) => s,
                // Past the target a segment is read for its leases only: its damage costs a
                // warning (the leases it would have given are reported missing below).
                Err(e) if self.reached() => {
                    self.report
                        .warnings
                        .push(format!("segment {key} not read for its lease table: {e}"));
                    break;
                }
                Err(e) => return Err(self.damaged(&key, e)),
            };
            self.report.segments += 1;
            if !self.reached() {
                for record in &segment.revisions {
                    if record.revision <= self.from {
                        continue;
                    }
                    if record.revision > self.target {
                        break;
                    }
                    self.revision(writer, &key, record)?;
                }
            }
            if let Some(table) = &segment.leases {
                for l in table.leases.iter().filter(|l| l.granted_ttl > 0) {
                    self.granted.insert(l.id, l.granted_ttl);
                }
            }
            last_segment = Some(key);
        }
        if !self.reached() {
            return Err(RestoreError::PointInTime(format!(
                "the revision log ends at revision {}{} before the target {}",
                self.next - 1,
                last_segment
                    .map(|s| format!(" (segment {s})"))
                    .unwrap_or_default(),
                self.target
            )));
        }
        Ok(())
    }

    /// The error for a segment that could not be fetched or read, with the revision the log can
    /// still reach.
    fn damaged(&self, key: &str, e: RestoreError) -> RestoreError {
        let reason = match e {
            RestoreError::PointInTime(s) => s,
            other => other.to_string(),
        };
        refused(
            key,
            format!(
                "{reason}; the last revision that can be reached is {}",
                self.next - 1
            ),
        )
    }

    fn leases_known(&self) -> bool {
        self.key_leases
            .values()
            .all(|id| self.granted.contains_key(id))
    }

    /// One revision's events, checked, written at `(revision, i)`.
    fn revision(
        &mut self,
        writer: &mut BoltWriter,
        segment: &str,
        record: &RevisionRecord,
    ) -> Result<(), RestoreError> {
        let rev = record.revision;
        if rev != self.next {
            return Err(refused(
                segment,
                format!(
                    "revision {rev} follows revision {}: revisions {}…{} are missing; the last revision that can be reached is {}",
                    self.next - 1,
                    self.next,
                    rev - 1,
                    self.next - 1
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (sub, event) in record.events.iter().enumerate() {
            let kv = &event.kv;
            let bad = |reason: String| {
                refused(
                    segment,
                    format!("revision {rev}, event {sub}: {reason}; the last revision that can be reached is {}", rev - 1),
                )
            };
            if !seen.insert(kv.key.as_slice()) {
                return Err(bad(format!(
                    "key {:?} changes twice in one revision",
                    String::from_utf8_lossy(&kv.key)
                )));
            }
            if event.kind == EventKind::Put && (kv.version == 1) != (kv.create_revision == rev) {
                return Err(bad(format!(
                    "key {:?} has version {} and was created at revision {}: out of order",
                    String::from_utf8_lossy(&kv.key),
                    kv.version,
                    kv.create_revision
                )));
            }
            let sub = i64::try_from(sub).map_err(|_| bad("too many events".into()))?;
            let (k, v) = event.key_bucket_entry(sub);
            writer.put(&k, &v).map_err(RestoreError::Write)?;
            match (event.kind, kv.lease) {
                (EventKind::Put, lease) if lease != 0 => {
                    self.key_leases.insert(kv.key.clone(), lease);
                }
                _ => {
                    self.key_leases.remove(&kv.key);
                }
            }
            self.report.events += 1;
        }
        self.report.revisions += 1;
        self.next = rev + 1;
        Ok(())
    }

    /// The `lease` bucket entries to add: a lease for each ID a key live at the target references
    /// that the snapshot lacks (`in_snapshot`), with its granted TTL; a referenced lease the log
    /// never recorded is a warning, not invented.
    pub(super) fn finish(
        mut self,
        in_snapshot: &BTreeSet<i64>,
    ) -> (BTreeMap<Vec<u8>, Vec<u8>>, ReplayReport) {
        let referenced: BTreeSet<i64> = self.key_leases.values().copied().collect();
        let mut puts = BTreeMap::new();
        for id in referenced.difference(in_snapshot) {
            match self.granted.get(id) {
                Some(&ttl) => {
                    let lease = Lease {
                        id: *id,
                        ttl,
                        remaining_ttl: 0,
                    };
                    puts.insert(id.to_be_bytes().to_vec(), lease.encode());
                    self.report.leases_added.push(format!("{id:x}"));
                }
                None => {
                    let keys = self.key_leases.values().filter(|l| *l == id).count();
                    self.report.warnings.push(format!(
                        "lease {id:x} ({keys} keys live at revision {}) is in no lease table of the log: its keys are restored without it and will not expire",
                        self.target
                    ));
                }
            }
        }
        (puts, self.report)
    }
}
