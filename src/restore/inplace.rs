//! A restore's db edited in place: a snapshot downloaded from a store lands as the new member's
//! `member/snap/db`, and the changes a restore makes (membership, `meta`, alarms, a bump) are
//! committed to it as one bbolt copy-on-write transaction, as `etcdutl snapshot restore` edits its
//! copy. The db is written once, instead of landing whole and then being rewritten.
//!
//! Only ever given a file it created itself (inside the `.part` data dir); the pages of the
//! snapshot stay as they are, the buckets that change are written past them, and a new meta
//! points at them. The result is proved as the rewrite's is: opened, checked, its revision read.

use std::fs::File;
use std::path::Path;

use super::error::RestoreError;
use super::rewrite::{
    changes, revision_main, BucketCount, Copied, DbWrite, RewriteOptions, RewriteReport,
    ALARM_BUCKET,
};
use crate::bolt::schema::KEY_BUCKET;
use crate::bolt::{self, AppendTo, BoltWriter, Db};

/// Commits `options`' changes to the db in `file` (at `path`, for messages), then verifies it.
pub fn edit_in_place(
    file: File,
    path: &Path,
    options: &RewriteOptions,
) -> Result<RewriteReport, RestoreError> {
    let corrupt = |reason: String| RestoreError::Snapshot(format!("{}: {reason}", path.display()));
    let bolt = |e: bolt::BoltError| corrupt(e.to_string());
    let reader = file
        .try_clone()
        .map_err(|e| RestoreError::io("open", path, e))?;
    let db = Db::open(reader).map_err(bolt)?;
    let mut changes = changes(&db, options)?;
    let meta = db.meta();
    let mut writer = BoltWriter::append(
        file,
        AppendTo {
            page_size: db.page_size(),
            high_water: db.high_water_mark(),
            txid: meta.txid,
            root_sequence: meta.sequence,
            flags: meta.flags,
        },
    )
    .map_err(RestoreError::Write)?;

    // The root bucket's entries as they are, for the buckets kept.
    let mut entries = std::collections::BTreeMap::new();
    let root = db.root();
    let mut cursor = root.cursor();
    while let Some(e) = cursor.next_entry() {
        let e = e.map_err(bolt)?;
        if !e.is_bucket() {
            return Err(corrupt(format!(
                "top-level key {:?} is not a bucket: not an etcd snapshot",
                String::from_utf8_lossy(e.key)
            )));
        }
        entries.insert(e.key.to_vec(), e.value.to_vec());
    }

    // The snapshot's last revision: the last key of `key`, read from its rightmost leaf.
    let key_bucket = db.bucket(KEY_BUCKET).map_err(bolt)?;
    let key_spine = match &key_bucket {
        Some(b) => b.spine().map_err(bolt)?,
        None => None,
    };
    let latest = match (&key_spine, &key_bucket) {
        (Some(spine), _) => spine.leaf.last().and_then(|(_, k, _)| revision_main(k)),
        // Inline: a handful of pairs.
        (None, Some(b)) => {
            let mut last = None;
            for e in b.iter() {
                last = Some(e.map_err(bolt)?.key);
            }
            last.and_then(|k| revision_main(&k))
        }
        (None, None) => None,
    }
    .unwrap_or(0);
    let mut copied = Copied {
        latest,
        ..Copied::default()
    };
    let mut rewritten = Vec::new();
    for name in &changes.names.clone() {
        let source = db.bucket(name).map_err(bolt)?;
        let spine = key_spine.as_ref().filter(|_| name.as_slice() == KEY_BUCKET);
        if let (Some(spine), Some(bump)) = (spine, options.bump) {
            // `key` is big: only its rightmost path is copied, with the bump's key appended.
            let (rev, key) = changes.bump_key(latest, bump);
            let sequence = source.as_ref().map_or(0, |b| b.sequence());
            writer
                .append_to_bucket(name, sequence, spine, &[(key, Vec::new())])
                .map_err(RestoreError::Write)?;
            copied.bumped = Some(rev);
            continue;
        }
        let has_alarms = name.as_slice() == ALARM_BUCKET
            && source.as_ref().is_some_and(|b| b.iter().next().is_some());
        let changed = changes.puts.contains_key(name)
            || changes.cleared.contains(name)
            || has_alarms
            || (name.as_slice() == KEY_BUCKET && options.bump.is_some());
        match entries.get(name).filter(|_| !changed) {
            Some(value) => writer
                .keep_bucket(name, value)
                .map_err(RestoreError::Write)?,
            // A small bucket (or a `key` small enough to be inline): rewritten whole.
            None => {
                let written = changes.write_bucket(
                    &mut writer,
                    name,
                    source.as_ref(),
                    options,
                    &mut copied,
                    None,
                )?;
                rewritten.push((name.clone(), written));
            }
        }
    }
    let summary = writer.finish().map_err(RestoreError::Write)?;

    // The proof, as for a rewritten db: it opens, passes the structural check, and ends at the
    // revision the restore meant.
    let written = File::open(path).map_err(|e| RestoreError::io("open", path, e))?;
    let written = Db::open(written)
        .map_err(|e| corrupt(format!("the restored db does not read back: {e}")))?;
    let status = bolt::status(&written)
        .map_err(|e| corrupt(format!("the restored db fails its check: {e}")))?;
    let Copied {
        latest,
        bumped,
        alarms,
        replay: _,
    } = copied;
    let revision = bumped.unwrap_or(latest);
    if status.revision != revision {
        return Err(corrupt(format!(
            "the restored db reads back at revision {}, {revision} was meant",
            status.revision
        )));
    }
    for (name, n) in &rewritten {
        let shown = String::from_utf8_lossy(name);
        let found = status.bucket_keys.iter().find(|(b, _)| *b == shown);
        if found.map(|(_, k)| *k) != Some(*n) {
            return Err(corrupt(format!(
                "the restored db's bucket {shown:?} reads back with {} pairs, {n} were written",
                found.map_or(0, |(_, k)| *k)
            )));
        }
    }
    Ok(RewriteReport {
        snapshot_revision: latest,
        revision,
        compacted_at: options.bump.filter(|b| b.mark_compacted).and(bumped),
        alarms,
        alarms_cleared: options.clear_alarms,
        buckets: status
            .bucket_keys
            .iter()
            .map(|(name, keys)| BucketCount {
                name: name.clone(),
                keys: *keys,
            })
            .collect(),
        keys: status.total_key,
        db_size: summary.bytes,
        written: DbWrite::EditedInPlace,
        replay: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::restore::rewrite::{rewrite, Bump};
    use crate::restore::run::{plan, RestoreOptions};
    use crate::restore::tests::contents;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
    }

    fn options(bump: Option<Bump>) -> RewriteOptions {
        let cluster =
            "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";
        let o = RestoreOptions {
            name: "m2".into(),
            initial_cluster: Some(cluster.into()),
            initial_advertise_peer_urls: vec!["https://10.0.0.12:2380".into()],
            data_dir: Some("/nonexistent/cpkeep-test".into()),
            ..RestoreOptions::default()
        };
        let plan = plan(&o, chrono::Utc::now()).unwrap();
        RewriteOptions {
            updates: plan.membership.db_updates(),
            bump,
            clear_alarms: true,
        }
    }

    fn edit(src: &Path, dir: &Path, o: &RewriteOptions) -> (PathBuf, RewriteReport) {
        let path = dir.join("edited");
        std::fs::copy(src, &path).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let report = edit_in_place(file, &path, o).unwrap();
        (path, report)
    }

    #[test]
    fn an_edit_in_place_holds_what_a_rewrite_holds() {
        let bumps = [
            None,
            Some(Bump {
                by: 1_000_000_000,
                mark_compacted: true,
            }),
            Some(Bump {
                by: 7,
                mark_compacted: false,
            }),
        ];
        let mut deepest = 0;
        for fixture in [
            "etcdutl-3.5.30-restore/snapshot.db",
            "etcd-3.5.30-tree/snapshot.db",
            "etcd-3.5.30-leases/snapshot.db",
            "etcd-3.4.23-auth/snapshot.db",
            "etcd-3.4.23-tree/snapshot.db",
            "etcd-3.5.30-defrag/snapshot.db",
        ] {
            let src = fixtures().join(fixture);
            let db = Db::open(File::open(&src).unwrap()).unwrap();
            let key = db.bucket(KEY_BUCKET).unwrap().unwrap();
            deepest = deepest.max(key.spine().unwrap().map_or(0, |s| s.branches.len()));
            for bump in bumps {
                let tmp = tempfile::tempdir().unwrap();
                let o = options(bump);
                let (edited, report) = edit(&src, tmp.path(), &o);
                let fresh = tmp.path().join("fresh");
                let db = Db::open(File::open(&src).unwrap()).unwrap();
                let (want, _) = {
                    let r = rewrite(&db, File::create(&fresh).unwrap(), &o).unwrap();
                    (r, ())
                };
                let what = format!("{fixture} with {bump:?}");
                assert_eq!(contents(&edited), contents(&fresh), "{what}");
                assert_eq!(
                    (
                        report.snapshot_revision,
                        report.revision,
                        report.compacted_at
                    ),
                    (want.snapshot_revision, want.revision, want.compacted_at),
                    "{what}"
                );
                assert_eq!(report.keys, want.keys, "{what}");
                assert_eq!(report.buckets, want.buckets, "{what}");
                // The snapshot's pages are untouched: only the older meta page changed below
                // its old high-water mark.
                let (before, after) = (
                    std::fs::read(&src).unwrap(),
                    std::fs::read(&edited).unwrap(),
                );
                let ps = db.page_size() as usize;
                let old_end = db.data_size() as usize;
                let changed: Vec<usize> = (0..old_end / ps)
                    .filter(|p| before[p * ps..(p + 1) * ps] != after[p * ps..(p + 1) * ps])
                    .collect();
                let slot = ((db.meta().txid + 1) % 2) as usize;
                assert_eq!(changed, vec![slot], "{what}");
                assert_eq!(
                    after.len() as u64,
                    report.db_size,
                    "{what}: trailer dropped"
                );
                let check = crate::bolt::check(&Db::open(File::open(&edited).unwrap()).unwrap());
                assert!(check.is_ok(), "{what}: {:?}", check.problems);
            }
        }
        assert!(
            deepest >= 1,
            "no fixture has branch pages above `key`'s last leaf"
        );
    }

    #[test]
    fn an_edit_in_place_matches_what_etcdutl_restored() {
        // etcdutl 3.5.30's own restores of this snapshot, as a single default member.
        let src = fixtures().join("etcdutl-3.5.30-restore/snapshot.db");
        // As in restore::tests: the three members, and a single default member bumped.
        let cluster =
            "m1=https://10.0.0.11:2380,m2=https://10.0.0.12:2380,m3=https://10.0.0.13:2380";
        let bumped = Bump {
            by: 1_000_000_000,
            mark_compacted: true,
        };
        for (name, bump, theirs) in [
            ("m1", None, "restored-m1"),
            ("m3", None, "restored-m3"),
            ("default", Some(bumped), "restored-default-bumped"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let o = if name == "default" {
                RestoreOptions {
                    data_dir: Some(tmp.path().join("d")),
                    ..RestoreOptions::default()
                }
            } else {
                RestoreOptions {
                    name: name.to_string(),
                    initial_cluster: Some(cluster.to_string()),
                    initial_advertise_peer_urls: vec![format!(
                        "https://10.0.0.1{}:2380",
                        &name[1..]
                    )],
                    data_dir: Some(tmp.path().join("d")),
                    ..RestoreOptions::default()
                }
            };
            let plan = plan(&o, chrono::Utc::now()).unwrap();
            let o = RewriteOptions {
                updates: plan.membership.db_updates(),
                bump,
                clear_alarms: false,
            };
            let (edited, _) = edit(&src, tmp.path(), &o);
            let theirs = fixtures()
                .join("etcdutl-3.5.30-restore")
                .join(theirs)
                .join("member/snap/db");
            assert_eq!(contents(&edited), contents(&theirs), "{bump:?}");
        }
    }
}
