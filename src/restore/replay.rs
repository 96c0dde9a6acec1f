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
            next: crate::revlog::boot_revision(from) + 1,
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

#[cfg(test)]
mod tests {
    //! The replay's own checks, on segments made by the segment writer and a real bolt writer:
    //! what the chain check cannot see (a feed that skips revisions, contradictory events) and
    //! what only the replay knows (which leases live keys reference).

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::bolt::etcd::OwnedKeyValue;
    use crate::bolt::writer::WriterOptions;
    use crate::bolt::Db;
    use crate::revlog::{read_segment, Event, LeaseEntry, LeaseTable, SegmentWriter};

    fn put(key: &str, rev: i64, created: i64, version: i64, lease: i64) -> Event {
        Event {
            kind: EventKind::Put,
            kv: OwnedKeyValue {
                key: key.as_bytes().to_vec(),
                create_revision: created,
                mod_revision: rev,
                version,
                value: b"v".to_vec(),
                lease,
            },
        }
    }

    fn delete(key: &str, rev: i64) -> Event {
        Event {
            kind: EventKind::Delete,
            kv: OwnedKeyValue {
                key: key.as_bytes().to_vec(),
                mod_revision: rev,
                ..OwnedKeyValue::default()
            },
        }
    }

    /// A segment of `records`, closed with a table of `leases` (id, granted TTL).
    fn segment(records: Vec<(i64, Vec<Event>)>, leases: &[(i64, i64)]) -> Segment {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let mut w = SegmentWriter::new(Vec::new()).unwrap();
        for (rev, events) in &records {
            w.append(*rev, at, events).unwrap();
        }
        let table = LeaseTable {
            taken_at: at,
            header_revision: records.last().map_or(0, |r| r.0),
            leases: leases
                .iter()
                .map(|&(id, granted_ttl)| LeaseEntry {
                    id,
                    granted_ttl,
                    remaining_ttl: granted_ttl,
                    keys: Vec::new(),
                })
                .collect(),
        };
        let (bytes, _) = w.finish(Some(&table)).unwrap();
        read_segment(bytes.as_slice()).unwrap()
    }

    /// The lease entries to add and the report.
    type Replayed = (BTreeMap<Vec<u8>, Vec<u8>>, ReplayReport);

    fn feed(segments: Vec<FedSegment>) -> SegmentFeed {
        Box::new(segments.into_iter())
    }

    /// Replays `segments` from revision `from` to `target` into a fresh `key` bucket; the
    /// outcome, and the keys written.
    fn replay(
        from: i64,
        target: i64,
        segments: Vec<FedSegment>,
    ) -> (Result<Replayed, RestoreError>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w = BoltWriter::create(
            std::fs::File::create(&path).unwrap(),
            WriterOptions::default(),
        )
        .unwrap();
        w.begin_bucket(b"key", 0).unwrap();
        let mut r = Replayer::new(from, target).unwrap();
        let mut f = feed(segments);
        let outcome = r.run(&mut w, &mut f);
        w.end_bucket().unwrap();
        w.finish().unwrap();
        let db = Db::open(std::fs::File::open(&path).unwrap()).unwrap();
        let bucket = db.bucket(b"key").unwrap().unwrap();
        let mut keys = Vec::new();
        let mut c = bucket.cursor();
        while let Some(e) = c.next_entry() {
            keys.push(e.unwrap().key.to_vec());
        }
        (outcome.map(|()| r.finish(&BTreeSet::new())), keys)
    }

    fn rev_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&sub.to_be_bytes());
        if tombstone {
            k.push(b't');
        }
        k
    }

    #[test]
    fn events_land_at_their_revisions_from_the_snapshots_on() {
        let s1 = segment(
            vec![
                (9, vec![put("/a", 9, 9, 1, 0)]),
                (10, vec![put("/b", 10, 10, 1, 7), put("/c", 10, 10, 1, 0)]),
                (11, vec![delete("/a", 11)]),
            ],
            &[(7, 30)],
        );
        let s2 = segment(vec![(12, vec![put("/d", 12, 12, 1, 0)])], &[]);
        let (outcome, keys) = replay(9, 11, vec![("s1".into(), Ok(s1)), ("s2".into(), Ok(s2))]);
        let (leases, report) = outcome.unwrap();
        assert_eq!(
            keys,
            vec![
                rev_key(10, 0, false),
                rev_key(10, 1, false),
                rev_key(11, 0, true)
            ],
            "revision 9 is the snapshot's; 12 is past the target"
        );
        assert_eq!((report.revisions, report.events), (2, 3));
        assert_eq!(report.leases_added, vec!["7".to_string()]);
        let lease = Lease::decode(&leases[&7i64.to_be_bytes().to_vec()]).unwrap();
        assert_eq!((lease.id, lease.ttl, lease.remaining_ttl), (7, 30, 0));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn an_empty_dbs_log_starts_at_revision_2() {
        let s = segment(
            vec![
                (2, vec![put("/a", 2, 2, 1, 0)]),
                (3, vec![put("/a", 3, 2, 2, 0)]),
            ],
            &[],
        );
        let (outcome, keys) = replay(0, 3, vec![("s".into(), Ok(s))]);
        assert_eq!(outcome.unwrap().1.revisions, 2);
        assert_eq!(keys, vec![rev_key(2, 0, false), rev_key(3, 0, false)]);
    }

    #[test]
    fn a_revision_the_feed_skips_is_refused_naming_the_segment() {
        let s1 = segment(vec![(5, vec![put("/a", 5, 5, 1, 0)])], &[]);
        let s2 = segment(vec![(7, vec![put("/a", 7, 5, 2, 0)])], &[]);
        let (outcome, _) = replay(4, 7, vec![("s1".into(), Ok(s1)), ("s2".into(), Ok(s2))]);
        let e = outcome.unwrap_err().to_string();
        assert!(
            e.contains("segment s2") && e.contains("revisions 6…6 are missing"),
            "{e}"
        );
        assert!(e.contains("last revision that can be reached is 5"), "{e}");
        // A first segment that starts above the snapshot's next revision.
        let s = segment(vec![(7, vec![put("/a", 7, 7, 1, 0)])], &[]);
        let (outcome, _) = replay(4, 7, vec![("s".into(), Ok(s))]);
        let e = outcome.unwrap_err().to_string();
        assert!(e.contains("last revision that can be reached is 4"), "{e}");
    }

    #[test]
    fn contradictory_events_are_refused() {
        let twice = segment(
            vec![(5, vec![put("/a", 5, 5, 1, 0), put("/b", 5, 5, 1, 0)])],
            &[],
        );
        // The reader accepts a key twice in one revision only if it was written so: replace
        // the second key after reading.
        let mut twice = twice;
        twice.revisions[0].events[1].kv.key = b"/a".to_vec();
        let (outcome, _) = replay(4, 5, vec![("s".into(), Ok(twice))]);
        let e = outcome.unwrap_err().to_string();
        assert!(e.contains("changes twice in one revision"), "{e}");
        let created_late = segment(vec![(5, vec![put("/a", 5, 5, 1, 0)])], &[]);
        let mut created_late = created_late;
        created_late.revisions[0].events[0].kv.version = 2;
        let (outcome, _) = replay(4, 5, vec![("s".into(), Ok(created_late))]);
        let e = outcome.unwrap_err().to_string();
        assert!(e.contains("out of order"), "{e}");
    }

    #[test]
    fn the_log_ending_before_the_target_is_refused() {
        let s = segment(vec![(5, vec![put("/a", 5, 5, 1, 0)])], &[]);
        let (outcome, _) = replay(4, 6, vec![("s".into(), Ok(s))]);
        let e = outcome.unwrap_err().to_string();
        assert!(
            e.contains("ends at revision 5 (segment s) before the target 6"),
            "{e}"
        );
    }

    #[test]
    fn leases_come_from_the_next_segment_or_are_reported_missing() {
        // The lease of /a is in the next segment's table only; /b's lease in none; /c's key
        // lost its lease to a later put without one.
        let s1 = segment(
            vec![
                (5, vec![put("/a", 5, 5, 1, 8), put("/b", 5, 5, 1, 9)]),
                (6, vec![put("/c", 6, 6, 1, 10)]),
                (7, vec![put("/c", 7, 6, 2, 0)]),
            ],
            &[],
        );
        let s2 = segment(vec![(8, vec![delete("/a", 8)])], &[(8, 60), (10, 60)]);
        let (outcome, _) = replay(4, 7, vec![("s1".into(), Ok(s1)), ("s2".into(), Ok(s2))]);
        let (leases, report) = outcome.unwrap();
        assert_eq!(report.leases_added, vec!["8".to_string()]);
        assert_eq!(leases.len(), 1);
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(
            report.warnings[0].starts_with("lease 9 (1 keys"),
            "{:?}",
            report.warnings
        );
        // A damaged segment read for its leases only costs a warning.
        let s1 = segment(vec![(5, vec![put("/a", 5, 5, 1, 8)])], &[]);
        let damaged = Err(RestoreError::PointInTime("sha256 mismatch".into()));
        let (outcome, _) = replay(4, 5, vec![("s1".into(), Ok(s1)), ("s2".into(), damaged)]);
        let (_, report) = outcome.unwrap();
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
        assert!(
            report.warnings[0].contains("segment s2 not read"),
            "{:?}",
            report.warnings
        );
    }
}
