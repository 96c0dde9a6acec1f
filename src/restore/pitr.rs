//! Point-in-time restore's choice: for a target revision or time, the newest complete snapshot at
//! or below it whose revision log reaches it, and the segments to replay (checked as a chain:
//! `follows_snapshot`, then each `previous_sha256`); or one line saying why no restore can reach
//! the target and what the last reachable revision is. Also the feed that fetches the chosen
//! segments one at a time for the replay ([`super::replay`]).
//!
//! Reads manifests and, for `--to-time` inside a segment, that one segment; never writes to the
//! store and never prints.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::RestoreError;
use super::replay::{FedSegment, SegmentFeed};
use crate::revlog::{check_chain, fetch_segment, list_segments, ListedSegment, SegmentManifest};
use crate::snapshot::{Catalog, Manifest};
use crate::store::ObjectStore;

/// What to restore to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Revision(i64),
    /// The last revision received at or before this time (the records' `received_at`).
    Time(DateTime<Utc>),
}

/// One segment the restore reads.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSegment {
    pub object_key: String,
    pub first_revision: i64,
    pub last_revision: i64,
    pub event_count: u64,
    /// Read past the target for its lease table only.
    pub leases_only: bool,
}

/// The chosen snapshot and log.
#[derive(Debug, Clone, Serialize)]
pub struct PitrPlan {
    pub snapshot_id: String,
    pub snapshot_revision: i64,
    /// The revision the restore reaches.
    pub target_revision: i64,
    /// When cpkeep received the target revision (the snapshot's finish time when the target is
    /// the snapshot's own revision).
    pub target_time: Option<DateTime<Utc>>,
    pub segments: Vec<PlannedSegment>,
    #[serde(skip)]
    pub snapshot: Box<Manifest>,
    #[serde(skip)]
    pub manifests: Vec<SegmentManifest>,
}

type Identities<'a> = Option<&'a [Box<dyn age::Identity + Send + Sync>]>;

/// Why a snapshot's log stops where it does.
#[derive(Debug, Clone)]
struct Break {
    segment: String,
    reason: String,
}

/// A snapshot's usable log: consecutive, chained, undamaged segments from it on, and where the
/// chain breaks (`None`: it simply ends).
struct Chain {
    segments: Vec<SegmentManifest>,
    broken: Option<Break>,
}

impl Chain {
    fn reachable(&self, snapshot: &Manifest) -> (i64, Option<DateTime<Utc>>) {
        match self.segments.last() {
            Some(m) if m.last_revision > snapshot.revision => {
                (m.last_revision, Some(m.last_event_time))
            }
            _ => (snapshot.revision, Some(snapshot.finished_at)),
        }
    }
}

/// Chooses the snapshot and segments for `target` among `cluster`'s complete snapshots (only
/// snapshot `only`, when given: the restore drill of one snapshot).
pub async fn select(
    store: &dyn ObjectStore,
    catalog: &Catalog,
    cluster: Option<&str>,
    target: Target,
    identities: Identities<'_>,
    only: Option<&str>,
) -> Result<PitrPlan, RestoreError> {
    let clusters: BTreeSet<&str> = catalog
        .complete()
        .filter(|e| cluster.is_none_or(|c| e.cluster_id == c))
        .map(|e| e.cluster_id.as_str())
        .collect();
    let cluster = match (cluster, clusters.len()) {
        (_, 0) => {
            return Err(RestoreError::PointInTime(match cluster {
                Some(c) => format!("the store holds no complete snapshot of cluster {c}"),
                None => "the store holds no complete snapshot".into(),
            }))
        }
        (Some(c), _) => c.to_string(),
        (None, 1) => clusters
            .iter()
            .next()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        (None, _) => {
            return Err(RestoreError::Usage(format!(
                "the store holds snapshots of several clusters ({}): pass --cluster-id",
                clusters.into_iter().collect::<Vec<_>>().join(", ")
            )))
        }
    };
    let mut snapshots: Vec<&Manifest> = catalog
        .complete()
        .filter(|e| e.cluster_id == cluster && only.is_none_or(|id| e.id == id))
        .filter_map(|e| e.manifest.as_ref())
        .collect();
    snapshots.sort_by_key(|m| std::cmp::Reverse((m.revision, m.finished_at)));
    let listed = list_segments(store, &cluster)
        .await
        .map_err(|e| RestoreError::Snapshot(format!("cannot list the revision log: {e}")))?;

    let mut first_refusal = None;
    for snap in &snapshots {
        let fits = match target {
            Target::Revision(n) => snap.revision <= n,
            // The snapshot's state is from some moment while it was taken: only one finished by
            // then is surely older than the target.
            Target::Time(t) => snap.finished_at <= t,
        };
        if !fits {
            continue;
        }
        let chain = walk(snap, &listed);
        let resolved = match target {
            Target::Revision(n) => Ok((n, None)),
            Target::Time(t) => at_time(store, snap, &chain, t, identities).await,
        };
        let (revision, time) = match resolved {
            Ok(r) => r,
            Err(e) => {
                first_refusal.get_or_insert(e);
                continue;
            }
        };
        match plan_for(snap, &chain, revision, time) {
            Ok(p) => return Ok(p),
            Err(e) => {
                first_refusal.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_refusal {
        return Err(e);
    }
    let oldest = snapshots.last();
    Err(RestoreError::PointInTime(match (oldest, target) {
        (None, _) => format!("the store holds no complete snapshot of cluster {cluster}"),
        (Some(o), Target::Revision(n)) => format!(
            "revision {n} is older than every snapshot of cluster {cluster}: the oldest, {}, is at revision {}",
            o.id, o.revision
        ),
        (Some(o), Target::Time(t)) => format!(
            "{} is older than every snapshot of cluster {cluster}: the oldest, {}, finished at {}",
            t.to_rfc3339(),
            o.id,
            o.finished_at.to_rfc3339()
        ),
    }))
}

/// The plan to reach `revision` from `snap` along `chain`, or why it cannot.
fn plan_for(
    snap: &Manifest,
    chain: &Chain,
    revision: i64,
    time: Option<DateTime<Utc>>,
) -> Result<PitrPlan, RestoreError> {
    let (reachable, reachable_time) = chain.reachable(snap);
    let at = |t: Option<DateTime<Utc>>| {
        t.map(|t| format!(", received at {}", t.to_rfc3339()))
            .unwrap_or_default()
    };
    if revision > reachable {
        return Err(RestoreError::PointInTime(match &chain.broken {
            Some(b) => format!(
                "cannot reach revision {revision} from snapshot {}: revision log segment {}: {}; the last revision that can be reached is {reachable}{}",
                snap.id, b.segment, b.reason, at(reachable_time)
            ),
            None => format!(
                "revision {revision} is beyond the revision log's end: the last revision that can be reached (from snapshot {}) is {reachable}{}",
                snap.id, at(reachable_time)
            ),
        }));
    }
    let mut segments = Vec::new();
    let mut manifests = Vec::new();
    if revision > snap.revision {
        for m in &chain.segments {
            let past = m.first_revision > revision;
            segments.push(PlannedSegment {
                object_key: m.object_key.clone(),
                first_revision: m.first_revision,
                last_revision: m.last_revision,
                event_count: m.event_count,
                leases_only: past,
            });
            manifests.push(m.clone());
            if past || (m.last_revision >= revision && m.has_leases) {
                // The target's segment carries the lease table taken after it; the next one is
                // read only when it has none.
                break;
            }
        }
    }
    let target_time = time.or_else(|| {
        if revision == snap.revision {
            Some(snap.finished_at)
        } else {
            chain
                .segments
                .iter()
                .find(|m| m.last_revision == revision)
                .map(|m| m.last_event_time)
        }
    });
    Ok(PitrPlan {
        snapshot_id: snap.id.clone(),
        snapshot_revision: snap.revision,
        target_revision: revision,
        target_time,
        segments,
        snapshot: Box::new(snap.clone()),
        manifests,
    })
}

/// The revision `--to-time t` names on `snap`'s chain: the last one received at or before `t`
/// (reading the one segment that straddles `t`), with its time.
async fn at_time(
    store: &dyn ObjectStore,
    snap: &Manifest,
    chain: &Chain,
    t: DateTime<Utc>,
    identities: Identities<'_>,
) -> Result<(i64, Option<DateTime<Utc>>), RestoreError> {
    let Some(m) = chain.segments.iter().rfind(|m| m.first_event_time <= t) else {
        return Ok((snap.revision, Some(snap.finished_at)));
    };
    let is_last = chain.segments.last().map(|l| &l.object_key) == Some(&m.object_key);
    if m.last_event_time <= t {
        if is_last {
            // Nothing says whether events came after the last one recorded: refuse rather
            // than guess.
            let (reachable, when) = chain.reachable(snap);
            let why = match &chain.broken {
                Some(b) => format!("revision log segment {}: {}", b.segment, b.reason),
                None => "the revision log ends there".into(),
            };
            return Err(RestoreError::PointInTime(format!(
                "{} is beyond the revision log's end ({why}): the last revision that can be reached (from snapshot {}) is {reachable}{}",
                t.to_rfc3339(),
                snap.id,
                when.map(|w| format!(", received at {}", w.to_rfc3339())).unwrap_or_default()
            )));
        }
        return Ok((m.last_revision.max(snap.revision), Some(m.last_event_time)));
    }
    let segment = fetch_segment(store, m, identities)
        .await
        .map_err(|e| RestoreError::PointInTime(format!("revision log segment {e}")))?;
    let found = segment
        .revisions
        .iter()
        .take_while(|r| r.received_at <= t)
        .last()
        .map(|r| (r.revision, r.received_at));
    Ok(match found {
        Some((r, at)) if r > snap.revision => (r, Some(at)),
        _ => (snap.revision, Some(snap.finished_at)),
    })
}

/// Follows `snap`'s log: the segment that follows it, then each that starts one revision after
/// the previous one's last and names its stored sha256, until one is damaged or missing.
fn walk(snap: &Manifest, listed: &[ListedSegment]) -> Chain {
    let mut segments: Vec<SegmentManifest> = Vec::new();
    let mut broken = None;
    // Everything listed by the revision it starts at (from its manifest, or else its name).
    let mut by_first: BTreeMap<i64, Vec<&ListedSegment>> = BTreeMap::new();
    for l in listed {
        if let Some((first, _)) = l.revisions() {
            by_first.entry(first).or_default().push(l);
        }
    }
    let with_manifest = || {
        listed
            .iter()
            .filter_map(|l| l.manifest.as_ref().map(|m| (l, m)))
    };
    let log_from = crate::revlog::boot_revision(snap.revision) + 1;
    // The log that follows this snapshot; else the segment of another chain (one that follows
    // an older snapshot) holding the revision after it, as `snapshot list`'s windows count it:
    // events are events, whichever follower recorded them.
    let mut current = with_manifest()
        .filter(|(_, m)| m.follows_snapshot.as_deref() == Some(snap.id.as_str()))
        .min_by_key(|(_, m)| m.first_revision)
        .or_else(|| {
            with_manifest()
                .filter(|(_, m)| m.first_revision <= log_from && log_from <= m.last_revision)
                .min_by_key(|(l, m)| (l.problem.is_some(), m.first_revision))
        });
    if current.is_none() {
        // Nothing holds the revision after the snapshot: a later segment means a gap.
        broken = gap_from(&by_first, log_from);
    }
    if let Some((_, m)) = current {
        if m.first_revision > log_from {
            broken = Some(Break {
                segment: m.object_key.clone(),
                reason: format!(
                    "revisions {log_from}…{} are missing (it starts at {})",
                    m.first_revision - 1,
                    m.first_revision
                ),
            });
            current = None;
        }
    }
    while let Some((l, m)) = current.take() {
        if let Some(p) = &l.problem {
            broken = Some(Break {
                segment: m.object_key.clone(),
                reason: p.clone(),
            });
            break;
        }
        let invalid = match m.validate() {
            Err(reason) => Some(reason),
            Ok(()) if m.cluster_id != snap.cluster_id => Some(format!(
                "it belongs to cluster {}, the snapshot to {}",
                m.cluster_id, snap.cluster_id
            )),
            Ok(()) => None,
        };
        if let Some(reason) = invalid {
            broken = Some(Break {
                segment: m.object_key.clone(),
                reason,
            });
            break;
        }
        segments.push(m.clone());
        let next = m.last_revision + 1;
        let starting: &[&ListedSegment] = by_first.get(&next).map_or(&[], Vec::as_slice);
        // The next link of this chain; else a new chain, after a full snapshot taken right at
        // this revision, which carries on the count.
        let link = |pick: &dyn Fn(&SegmentManifest) -> bool| {
            starting
                .iter()
                .find_map(|l| l.manifest.as_ref().filter(|n| pick(n)).map(|n| (*l, n)))
        };
        let chained = link(&|n| n.previous_sha256.as_deref() == Some(m.stored_sha256.as_str()))
            .or_else(|| link(&|n| n.previous_sha256.is_none() && n.follows_snapshot.is_some()));
        match (chained, starting.first()) {
            (Some(c), _) => current = Some(c),
            (None, Some(l)) => {
                let key = l
                    .manifest
                    .as_ref()
                    .map_or(l.manifest_key.clone(), |n| n.object_key.clone());
                let reason = match (&l.manifest, &l.problem) {
                    (Some(n), _) => match &n.previous_sha256 {
                        Some(p) => format!(
                            "it names previous sha256 {p}, the previous segment's is {}",
                            m.stored_sha256
                        ),
                        None => "it names no previous segment".into(),
                    },
                    (None, Some(p)) => p.clone(),
                    (None, None) => "unreadable".into(),
                };
                broken = Some(Break {
                    segment: key,
                    reason,
                });
            }
            // A later segment means a gap; none means the log ends here.
            (None, None) => broken = gap_from(&by_first, next),
        }
    }
    // The walk follows the rules `check_chain` states; it has the last word on each chain the
    // result is made of (a first piece that starts inside another snapshot's chain was checked
    // link by link above).
    let starts: Vec<usize> = segments
        .iter()
        .enumerate()
        .filter(|(_, m)| m.follows_snapshot.is_some())
        .map(|(i, _)| i)
        .collect();
    for (k, &from) in starts.iter().enumerate() {
        let to = starts.get(k + 1).copied().unwrap_or(segments.len());
        let piece = &segments[from..to];
        let follows = piece[0].follows_snapshot.clone();
        if let Err(e) = check_chain(piece, follows.as_deref()) {
            let at = match &e {
                crate::revlog::RevlogError::ChainBroken { segment, .. } => piece
                    .iter()
                    .position(|m| m.object_key == *segment)
                    .map_or(from, |i| from + i),
                _ => from,
            };
            broken = Some(Break {
                segment: segments[at].object_key.clone(),
                reason: e.to_string(),
            });
            segments.truncate(at);
            break;
        }
    }
    Chain { segments, broken }
}

/// The gap when revision `next` is in no segment: named by the first segment after it, if any
/// (none: the log simply ends before `next`).
fn gap_from(by_first: &BTreeMap<i64, Vec<&ListedSegment>>, next: i64) -> Option<Break> {
    let (&first, ls) = by_first.range(next + 1..).next()?;
    let l = ls.first()?;
    Some(Break {
        segment: l
            .manifest
            .as_ref()
            .map_or(l.manifest_key.clone(), |n| n.object_key.clone()),
        reason: format!(
            "revisions {next}…{} are missing (it starts at {first})",
            first - 1
        ),
    })
}

/// Fetches `manifests` one at a time, in order, into `tx` (bounded: at most one segment waits
/// while the replay reads the previous one); stops when the replay hangs up.
pub async fn feed_segments(
    store: &dyn ObjectStore,
    manifests: Vec<SegmentManifest>,
    identities: Identities<'_>,
    tx: tokio::sync::mpsc::Sender<FedSegment>,
) {
    for m in manifests {
        let fetched = fetch_segment(store, &m, identities).await.map_err(|e| {
            let text = e.to_string();
            let prefix = format!("{}: ", m.object_key);
            RestoreError::PointInTime(text.strip_prefix(&prefix).unwrap_or(&text).to_string())
        });
        if tx.send((m.object_key.clone(), fetched)).await.is_err() {
            return;
        }
    }
}

/// The replay's end of a [`feed_segments`] channel.
pub fn segment_feed(mut rx: tokio::sync::mpsc::Receiver<FedSegment>) -> SegmentFeed {
    Box::new(std::iter::from_fn(move || rx.blocking_recv()))
}

#[cfg(test)]
mod tests {
    //! The walk along a snapshot's log, on listings made up here (the store and the replay are
    //! tested against real ones in tests/integration/pitr.rs).

    use chrono::TimeZone;

    use super::*;
    use crate::revlog::{Previous, SegmentSummary, StoredObject};
    use crate::snapshot::{CompressionInfo, CompressionKind};

    const CLUSTER: &str = "0123456789abcdef";

    fn at(rev: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap() + chrono::Duration::seconds(rev)
    }

    fn snap(id: &str, revision: i64) -> Manifest {
        Manifest {
            format_version: 1,
            id: id.into(),
            cluster_id: CLUSTER.into(),
            member_id: "1".into(),
            member_name: "m".into(),
            node_name: "n".into(),
            etcd_version: "3.5.30".into(),
            revision,
            raft_index: 1,
            raft_term: 1,
            consistent_index: None,
            db_size: 4096,
            db_sha256: "00".repeat(32),
            trailer_included: true,
            object_key: format!("{CLUSTER}/{id}.db.zst"),
            stored_size: 1,
            stored_sha256: "00".repeat(32),
            compression: CompressionInfo {
                algorithm: CompressionKind::Zstd,
                level: None,
            },
            encryption: None,
            tool_version: "0".into(),
            started_at: at(revision),
            finished_at: at(revision),
        }
    }

    /// A listed segment `first..=last`, its stored sha256 made from its range.
    fn seg(first: i64, last: i64, previous: Previous) -> ListedSegment {
        let summary = SegmentSummary {
            first_revision: first,
            last_revision: last,
            event_count: (last - first + 1) as u64,
            first_event_time: at(first),
            last_event_time: at(last),
            has_leases: true,
            plaintext_size: 100,
            plaintext_sha256: "22".repeat(32),
        };
        let stored = StoredObject {
            compression: CompressionInfo {
                algorithm: CompressionKind::Zstd,
                level: None,
            },
            encryption: None,
            stored_size: 50,
            stored_sha256: sha(first, last),
        };
        let m = SegmentManifest::new(CLUSTER, &summary, stored, previous);
        ListedSegment {
            manifest_key: m.key(),
            manifest: Some(m),
            problem: None,
        }
    }

    fn sha(first: i64, last: i64) -> String {
        format!("{first:032x}{last:032x}")
    }

    fn after(first: i64, last: i64) -> Previous {
        Previous::Segment(sha(first, last))
    }

    fn ranges(c: &Chain) -> Vec<(i64, i64)> {
        c.segments
            .iter()
            .map(|m| (m.first_revision, m.last_revision))
            .collect()
    }

    #[test]
    fn a_snapshots_own_log_then_a_new_chain_that_carries_on_the_count() {
        let listed = vec![
            seg(11, 20, Previous::Snapshot("a".into())),
            seg(21, 30, after(11, 20)),
            seg(31, 40, Previous::Snapshot("c".into())),
            seg(41, 50, after(31, 40)),
        ];
        let c = walk(&snap("a", 10), &listed);
        assert_eq!(ranges(&c), [(11, 20), (21, 30), (31, 40), (41, 50)]);
        assert!(c.broken.is_none());
    }

    #[test]
    fn a_snapshot_without_a_log_of_its_own_uses_the_one_running_through_it() {
        let listed = vec![
            seg(11, 20, Previous::Snapshot("a".into())),
            seg(21, 30, after(11, 20)),
            seg(31, 40, after(21, 30)),
        ];
        let c = walk(&snap("b", 25), &listed);
        assert_eq!(ranges(&c), [(21, 30), (31, 40)]);
        assert!(c.broken.is_none());
        let p = plan_for(&snap("b", 25), &c, 33, None).unwrap();
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.target_time, None);
    }

    #[test]
    fn a_lost_first_segment_is_a_gap_named_by_the_next() {
        let listed = vec![seg(21, 30, after(11, 20))];
        let c = walk(&snap("a", 10), &listed);
        assert!(c.segments.is_empty());
        let b = c.broken.clone().expect("a gap");
        assert!(
            b.segment.contains("0000000000000021-0000000000000030"),
            "{b:?}"
        );
        assert!(b.reason.contains("revisions 11…20 are missing"), "{b:?}");
        let e = plan_for(&snap("a", 10), &c, 25, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the last revision that can be reached is 10"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_previous_hash_or_another_cluster_stops_the_walk() {
        let listed = vec![
            seg(11, 20, Previous::Snapshot("a".into())),
            seg(21, 30, after(1, 2)),
        ];
        let c = walk(&snap("a", 10), &listed);
        assert_eq!(ranges(&c), [(11, 20)]);
        assert!(c.broken.unwrap().reason.contains("previous sha256"));
        let mut other = seg(21, 30, after(11, 20));
        if let Some(m) = other.manifest.as_mut() {
            m.cluster_id = "fedcba9876543210".into();
        }
        let listed = vec![seg(11, 20, Previous::Snapshot("a".into())), other];
        let c = walk(&snap("a", 10), &listed);
        assert_eq!(ranges(&c), [(11, 20)]);
        let b = c.broken.unwrap();
        assert!(b.reason.contains("fedcba9876543210"), "{b:?}");
    }
}
