//! What a cluster's store can restore to: its snapshots plus its revision log, as restorable
//! windows (revision and time ranges any revision of which a point-in-time restore reaches) and
//! the gaps between them with their cause. Pure: computed from listings, never reads a store,
//! never prints.
//!
//! A segment joins the run before it when it starts at the revision after that run's last and its
//! `previous_sha256` names the run's last segment (or it starts a new chain after a full snapshot,
//! whose own revisions carry on the count). A segment with a problem (missing object, resized,
//! unreadable manifest, no manifest) belongs to no run: the revisions it held are a gap.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::manifest::SegmentManifest;
use super::stored::ListedSegment;

/// A full snapshot, as far as windows are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPoint {
    pub id: String,
    pub revision: i64,
    pub time: Option<DateTime<Utc>>,
}

/// Consecutive, hash-linked segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    pub segments: Vec<&'a SegmentManifest>,
}

impl Run<'_> {
    pub fn first_revision(&self) -> i64 {
        self.segments.first().map_or(0, |m| m.first_revision)
    }

    pub fn last_revision(&self) -> i64 {
        self.segments.last().map_or(0, |m| m.last_revision)
    }

    pub fn last_time(&self) -> Option<DateTime<Utc>> {
        self.segments.last().map(|m| m.last_event_time)
    }
}

/// Revisions from..=to, every one of them restorable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from_revision: i64,
    pub from_time: Option<DateTime<Utc>>,
    pub to_revision: i64,
    /// When cpkeep received `to_revision` (a snapshot's time when the log adds nothing).
    pub to_time: Option<DateTime<Utc>>,
    /// The snapshots the window starts from.
    pub snapshots: usize,
    /// Revisions the log adds to the snapshots' own.
    pub logged_revisions: i64,
}

/// Revisions between two windows that no restore reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The first and last unreachable revision.
    pub from_revision: i64,
    pub to_revision: i64,
    pub reason: String,
}

/// A cluster's restorable windows, oldest first, and the gaps between them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub windows: Vec<Window>,
    pub gaps: Vec<Gap>,
}

/// Groups the sound segments of `listed` (sorted by first revision, as `list_segments` returns
/// them) into runs.
pub fn runs(listed: &[ListedSegment]) -> Vec<Run<'_>> {
    let mut runs: Vec<Run<'_>> = Vec::new();
    let mut open = false;
    for l in listed {
        let Some(m) = l.manifest.as_ref().filter(|_| l.problem.is_none()) else {
            open = false;
            continue;
        };
        let joins = open
            && runs
                .last()
                .and_then(|r| r.segments.last())
                .is_some_and(|prev| {
                    m.first_revision == prev.last_revision + 1
                        && (m.previous_sha256.as_deref() == Some(prev.stored_sha256.as_str())
                            || (m.previous_sha256.is_none() && m.follows_snapshot.is_some()))
                });
        match runs.last_mut() {
            Some(r) if joins => r.segments.push(m),
            _ => runs.push(Run { segments: vec![m] }),
        }
        open = true;
    }
    runs
}

/// The run that carries a restore from revision `from` onwards: the one holding `from + 1`.
pub fn run_after<'r, 'a>(runs: &'r [Run<'a>], from: i64) -> Option<&'r Run<'a>> {
    runs.iter()
        .find(|r| r.first_revision() <= from + 1 && from < r.last_revision())
}

/// How far a point-in-time restore from one snapshot reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reach {
    pub to_revision: i64,
    pub to_time: Option<DateTime<Utc>>,
    /// Why the log stops there, when it holds later revisions it cannot reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
}

/// The furthest revision a restore from snapshot `point` reaches with log `listed`.
pub fn reach(point: &SnapshotPoint, listed: &[ListedSegment]) -> Reach {
    let runs = runs(listed);
    let (to_revision, to_time) = match run_after(&runs, super::boot_revision(point.revision)) {
        Some(r) => (r.last_revision(), r.last_time()),
        None => (point.revision, point.time),
    };
    let later = listed
        .iter()
        .filter_map(ListedSegment::revisions)
        .map(|(_, last)| last)
        .max()
        .filter(|&last| last > to_revision);
    Reach {
        to_revision,
        to_time,
        stopped_by: later.map(|last| gap_reason(listed, to_revision + 1, last)),
    }
}

/// The windows and gaps of snapshots `snapshots` (any order) with log `listed`.
pub fn coverage(snapshots: &[SnapshotPoint], listed: &[ListedSegment]) -> Coverage {
    let mut points: Vec<&SnapshotPoint> = snapshots.iter().collect();
    points.sort_by_key(|p| p.revision);
    let mut windows: Vec<Window> = Vec::new();
    for p in points {
        let Reach {
            to_revision: to,
            to_time,
            ..
        } = reach(p, listed);
        match windows.last_mut() {
            // Reaches the previous window, or starts inside it: one window.
            Some(w) if p.revision <= w.to_revision + 1 => {
                w.snapshots += 1;
                if to > w.to_revision {
                    w.logged_revisions += to - w.to_revision.max(p.revision);
                    w.to_revision = to;
                    w.to_time = to_time;
                }
            }
            _ => windows.push(Window {
                from_revision: p.revision,
                from_time: p.time,
                to_revision: to,
                to_time,
                snapshots: 1,
                logged_revisions: to - p.revision,
            }),
        }
    }
    let gaps = windows
        .windows(2)
        .map(|pair| {
            let (from, to) = (pair[0].to_revision + 1, pair[1].from_revision - 1);
            Gap {
                from_revision: from,
                to_revision: to,
                reason: gap_reason(listed, from, to),
            }
        })
        .collect();
    Coverage { windows, gaps }
}

/// Why revisions `from..=to` cannot be reached: the first damaged segment there, a break in the
/// chain, or no log at all.
fn gap_reason(listed: &[ListedSegment], from: i64, to: i64) -> String {
    let overlapping = |l: &&ListedSegment| {
        l.revisions()
            .is_some_and(|(first, last)| first <= to + 1 && last >= from)
    };
    if let Some(l) = listed
        .iter()
        .filter(overlapping)
        .find(|l| l.problem.is_some())
    {
        return format!(
            "{}: {}",
            l.manifest_key,
            l.problem.as_deref().unwrap_or_default()
        );
    }
    let next = listed
        .iter()
        .filter(|l| l.revisions().is_some_and(|(_, last)| last >= from))
        .find_map(|l| l.manifest.as_ref());
    match next {
        Some(m) if m.first_revision > from => format!(
            "revisions {from}…{} are not in the log (the next segment, {}, starts at {})",
            m.first_revision - 1,
            m.object_key,
            m.first_revision
        ),
        Some(m) if m.first_revision <= to => format!(
            "the chain breaks at {}: its previous segment is not the one before it",
            m.object_key
        ),
        _ => "no revision log covers them".to_string(),
    }
}
