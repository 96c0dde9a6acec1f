//! Retention, plan-then-apply: [`plan`] decides from a catalog what to keep and what to delete (pure,
//! unit-tested, printable with `--dry-run`); [`apply`] carries the plan out. Scoped to one cluster;
//! the newest complete snapshot is never deleted; incomplete leftovers and abandoned uploads go once
//! they are older than `stale_after` (younger ones may still be in progress). Revision log segments
//! go when no kept snapshot can use them: a restore to any revision starts from the newest kept
//! snapshot at or below it, so only events after the oldest kept snapshot's revision are needed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::catalog::Catalog;
use super::SnapshotError;
use crate::revlog::ListedSegment;
use crate::store::{ObjectStore, PendingUpload};

/// Which snapshots to keep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub keep_last: usize,
    pub keep_hourly: usize,
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    pub stale_after: Duration,
}

impl RetentionPolicy {
    /// Whether any keep rule is set; pruning without one would delete all but the newest.
    pub fn has_rules(&self) -> bool {
        self.keep_last + self.keep_hourly + self.keep_daily + self.keep_weekly + self.keep_monthly
            > 0
    }
}

/// A snapshot that stays, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub id: String,
    pub reasons: Vec<String>,
}

/// Objects that go, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    pub id: String,
    /// Deleted in this order: the manifest first, so a half-done prune never leaves a manifest that
    /// points at nothing.
    pub keys: Vec<String>,
    pub why: String,
}

/// What a prune will do.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub cluster_id: String,
    pub keep: Vec<Kept>,
    pub delete: Vec<Removal>,
    pub abort: Vec<PendingUpload>,
    /// Revision log segments that stay (a kept snapshot's point-in-time window uses them).
    pub kept_segments: usize,
}

/// Decides what to keep for `cluster_id`.
pub fn plan(
    catalog: &Catalog,
    segments: &[ListedSegment],
    cluster_id: &str,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<PrunePlan, SnapshotError> {
    if !policy.has_rules() {
        return Err(SnapshotError::Usage(
            "no retention rule given: pass --keep-last and/or --keep-hourly/--keep-daily/--keep-weekly/--keep-monthly"
                .into(),
        ));
    }
    let complete: Vec<_> = catalog
        .complete()
        .filter(|e| e.cluster_id == cluster_id)
        .collect();
    let mut reasons: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    if let Some(newest) = complete.first() {
        reasons.entry(&newest.id).or_default().push("newest".into());
    }
    for e in complete.iter().take(policy.keep_last) {
        reasons
            .entry(&e.id)
            .or_default()
            .push(format!("last {}", policy.keep_last));
    }
    let buckets: [(usize, &str, &str); 4] = [
        (policy.keep_hourly, "hourly", "%Y-%m-%d %H:00"),
        (policy.keep_daily, "daily", "%Y-%m-%d"),
        (policy.keep_weekly, "weekly", "%G-W%V"),
        (policy.keep_monthly, "monthly", "%Y-%m"),
    ];
    for (n, name, fmt) in buckets {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for e in &complete {
            if seen.len() >= n {
                break;
            }
            let Some(t) = e.created else { continue };
            let bucket = t.format(fmt).to_string();
            if seen.insert(bucket.clone()) {
                reasons
                    .entry(&e.id)
                    .or_default()
                    .push(format!("{name} {bucket}"));
            }
        }
    }
    let mut keep = Vec::new();
    let mut delete = Vec::new();
    for e in &complete {
        match reasons.get(e.id.as_str()) {
            Some(r) => keep.push(Kept {
                id: e.id.clone(),
                reasons: r.clone(),
            }),
            None => delete.push(Removal {
                id: e.id.clone(),
                keys: e
                    .manifest_key
                    .iter()
                    .chain(e.object_key.iter())
                    .cloned()
                    .collect(),
                why: "not kept by any rule".into(),
            }),
        }
    }
    let stale = chrono::Duration::from_std(policy.stale_after).unwrap_or(chrono::Duration::MAX);
    let is_stale = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now - t >= stale);
    for e in catalog
        .entries
        .iter()
        .filter(|e| !e.complete && e.cluster_id == cluster_id)
    {
        if is_stale(e.created) {
            delete.push(Removal {
                id: e.id.clone(),
                keys: e
                    .manifest_key
                    .iter()
                    .chain(e.object_key.iter())
                    .cloned()
                    .collect(),
                why: format!("incomplete: {}", e.problem.clone().unwrap_or_default()),
            });
        } else {
            keep.push(Kept {
                id: e.id.clone(),
                reasons: vec!["incomplete but recent: may still be in progress".into()],
            });
        }
    }
    let floor = complete
        .iter()
        .filter(|e| reasons.contains_key(e.id.as_str()))
        .filter_map(|e| e.revision)
        .min();
    let kept_segments = plan_segments(segments, floor, &mut delete);
    let prefix = format!("{cluster_id}/");
    let abort = catalog
        .pending
        .iter()
        .filter(|p| p.key.starts_with(&prefix) && is_stale(p.initiated))
        .cloned()
        .collect();
    Ok(PrunePlan {
        cluster_id: cluster_id.to_string(),
        keep,
        delete,
        abort,
        kept_segments,
    })
}

/// Queues for deletion every segment that ends at or below `floor`, the oldest kept snapshot's
/// revision (none kept: every segment stays); returns how many stay. A restore to a revision T
/// starts from the newest kept snapshot at or below T, whose revision is at least `floor`, and
/// replays only later events. A segment that merely starts below `floor` is still needed.
fn plan_segments(
    segments: &[ListedSegment],
    floor: Option<i64>,
    delete: &mut Vec<Removal>,
) -> usize {
    let mut kept = 0;
    for s in segments {
        let last = s.revisions().map(|(_, last)| last);
        match (floor, last) {
            (Some(floor), Some(last)) if last <= floor => delete.push(Removal {
                id: format!("log {}", s.manifest_key),
                // The manifest first: a segment is listed as whole only while its manifest is.
                keys: std::iter::once(s.manifest_key.clone())
                    .chain(s.manifest.as_ref().map(|m| m.object_key.clone()))
                    .collect(),
                why: format!(
                    "log segment ending at {last}, at or before the oldest kept snapshot (revision {floor})"
                ),
            }),
            _ => kept += 1,
        }
    }
    kept
}

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub plan: PrunePlan,
    pub dry_run: bool,
    pub deleted_objects: usize,
    pub aborted_uploads: usize,
    pub errors: Vec<String>,
}

/// Carries out a plan. Keeps going past single failures and reports them all.
pub async fn apply(store: &dyn ObjectStore, plan: PrunePlan) -> PruneReport {
    let mut deleted_objects = 0;
    let mut aborted_uploads = 0;
    let mut errors = Vec::new();
    for r in &plan.delete {
        for key in &r.keys {
            match store.delete(key).await {
                Ok(()) => deleted_objects += 1,
                Err(e) => {
                    errors.push(e.to_string());
                    // Never delete the object while its manifest (deleted first) could still be there.
                    break;
                }
            }
        }
    }
    for p in &plan.abort {
        match store.abort_pending(p).await {
            Ok(()) => aborted_uploads += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    PruneReport {
        plan,
        dry_run: false,
        deleted_objects,
        aborted_uploads,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::catalog::SnapshotEntry;
    use chrono::TimeZone;

    fn entry(id: &str, t: DateTime<Utc>, complete: bool) -> SnapshotEntry {
        SnapshotEntry {
            id: id.into(),
            cluster_id: "c1".into(),
            revision: Some(revision_at(t)),
            created: Some(t),
            db_size: Some(1),
            stored_size: Some(1),
            compression: None,
            encrypted: false,
            member_name: None,
            etcd_version: None,
            object_key: Some(format!("c1/{id}.db.zst")),
            manifest_key: complete.then(|| format!("c1/{id}.json")),
            complete,
            problem: (!complete).then(|| "no manifest".to_string()),
            manifest: None,
        }
    }

    /// One snapshot every 6 hours over 10 days, newest first.
    fn catalog() -> (Catalog, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let entries = (0..40)
            .map(|i| {
                let t = now - chrono::Duration::hours(6 * i);
                entry(&format!("s{i:02}"), t, true)
            })
            .collect();
        (
            Catalog {
                entries,
                pending: vec![],
            },
            now,
        )
    }

    fn kept(p: &PrunePlan) -> Vec<String> {
        let mut k: Vec<String> = p.keep.iter().map(|k| k.id.clone()).collect();
        k.sort();
        k
    }

    #[test]
    fn no_rule_is_refused() {
        let (c, now) = catalog();
        assert!(plan(&c, &[], "c1", &RetentionPolicy::default(), now).is_err());
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let (c, now) = catalog();
        let p = plan(
            &c,
            &[],
            "c1",
            &RetentionPolicy {
                keep_last: 3,
                ..Default::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(kept(&p), vec!["s00", "s01", "s02"]);
        assert_eq!(p.delete.len(), 37);
        assert_eq!(p.delete[0].keys, vec!["c1/s03.json", "c1/s03.db.zst"]);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let (c, now) = catalog();
        let p = plan(
            &c,
            &[],
            "c1",
            &RetentionPolicy {
                keep_daily: 3,
                ..Default::default()
            },
            now,
        )
        .unwrap();
        // 12:00 and 06:00 and 00:00 on the 25th -> s00 is newest of the 25th; s03 (18:00 24th); s07.
        assert_eq!(kept(&p), vec!["s00", "s03", "s07"]);
    }

    #[test]
    fn rules_combine_and_newest_is_always_kept() {
        let (c, now) = catalog();
        let p = plan(
            &c,
            &[],
            "c1",
            &RetentionPolicy {
                keep_weekly: 2,
                keep_hourly: 1,
                ..Default::default()
            },
            now,
        )
        .unwrap();
        let k = kept(&p);
        assert!(k.contains(&"s00".to_string()));
        assert_eq!(k.len(), 2, "{k:?}");
    }

    #[test]
    fn leftovers_go_only_when_stale_and_other_clusters_are_untouched() {
        let (mut c, now) = catalog();
        c.entries
            .push(entry("old-left", now - chrono::Duration::hours(30), false));
        c.entries
            .push(entry("new-left", now - chrono::Duration::minutes(5), false));
        let mut other = entry("x", now - chrono::Duration::days(100), true);
        other.cluster_id = "c2".into();
        c.entries.push(other);
        c.pending.push(PendingUpload {
            key: "c1/y.db.zst".into(),
            id: "u1".into(),
            initiated: Some(now - chrono::Duration::hours(25)),
        });
        c.pending.push(PendingUpload {
            key: "c1/z.db.zst".into(),
            id: "u2".into(),
            initiated: Some(now - chrono::Duration::hours(1)),
        });
        let policy = RetentionPolicy {
            keep_last: 100,
            stale_after: Duration::from_secs(24 * 3600),
            ..Default::default()
        };
        let p = plan(&c, &[], "c1", &policy, now).unwrap();
        let gone: Vec<&str> = p.delete.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(gone, vec!["old-left"]);
        assert_eq!(p.abort.len(), 1);
        assert_eq!(p.abort[0].id, "u1");
        assert!(p.keep.iter().any(|k| k.id == "new-left"));
        assert!(!p.keep.iter().any(|k| k.id == "x"));
    }

    /// A revision that grows with time, one per second, as a cluster's would.
    fn revision_at(t: DateTime<Utc>) -> i64 {
        t.timestamp() - 1_700_000_000
    }

    fn segment(first: i64, last: i64, with_manifest: bool) -> ListedSegment {
        let object = format!("c1/log/{first:016}-{last:016}.evlog.zst");
        ListedSegment {
            manifest_key: if with_manifest {
                format!("c1/log/{first:016}-{last:016}.json")
            } else {
                object.clone()
            },
            manifest: with_manifest.then(|| {
                let mut m: crate::revlog::SegmentManifest = serde_json::from_value(serde_json::json!({
                    "format_version": 1, "cluster_id": "c1", "object_key": object,
                    "first_revision": first, "last_revision": last, "event_count": 1,
                    "first_event_time": "2026-11-25T00:00:00Z", "last_event_time": "2026-11-25T00:00:00Z",
                    "stored_size": 1, "stored_sha256": "00", "plaintext_size": 1, "plaintext_sha256": "00",
                    "has_leases": false, "compression": {"algorithm": "zstd"}, "encryption": null,
                    "tool_version": "t"
                }))
                .unwrap();
                m.previous_sha256 = Some("00".into());
                m
            }),
            problem: (!with_manifest).then(|| "no manifest".to_string()),
        }
    }

    #[test]
    fn segments_go_only_when_every_kept_snapshot_is_past_them() {
        let (c, now) = catalog();
        let policy = RetentionPolicy {
            keep_last: 3,
            ..RetentionPolicy::default()
        };
        // Kept: the three newest (6-hourly); the oldest kept is 12 hours old.
        let floor = revision_at(now - chrono::Duration::hours(12));
        let segments = [
            segment(floor - 100, floor - 1, true),
            segment(floor - 10, floor, false),
            segment(floor, floor + 5, true),
            segment(floor + 6, floor + 9, true),
        ];
        let p = plan(&c, &segments, "c1", &policy, now).unwrap();
        let gone: Vec<(&str, &[String])> = p
            .delete
            .iter()
            .filter(|d| d.id.starts_with("log "))
            .map(|d| (d.id.as_str(), d.keys.as_slice()))
            .collect();
        assert_eq!(gone.len(), 2, "{gone:?}");
        // The manifest goes before its object.
        assert_eq!(
            gone[0].1,
            [
                segments[0].manifest_key.clone(),
                segments[0].manifest.as_ref().unwrap().object_key.clone()
            ]
        );
        assert_eq!(gone[1].1, [segments[1].manifest_key.clone()]);
        // The segment that starts at the floor holds the events after it: it stays.
        assert_eq!(p.kept_segments, 2);
        // With no complete snapshot nothing bounds the log: every segment stays.
        let empty = Catalog {
            entries: vec![],
            pending: vec![],
        };
        let p = plan(&empty, &segments, "c1", &policy, now).unwrap();
        assert_eq!((p.delete.len(), p.kept_segments), (0, 4));
    }
}
