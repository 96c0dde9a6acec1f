//! Rewrites a snapshot's bbolt db into a fresh file for a restored member: every top-level bucket
//! copied in key order through the bolt writer (so the result is compact, like a defragmented
//! db), with the membership replaced, `meta` updated, and on request the revision bumped and
//! alarms dropped — what `etcdutl snapshot restore` changes, and nothing else.
//!
//! Reads its source only; never writes anywhere but the file it is given.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;

use serde::Serialize;

use super::error::RestoreError;
use super::membership::DbUpdates;
use super::replay::{Replay, ReplayReport, Replayer};
use crate::bolt::etcd::{Alarm, LEASE_BUCKET};
use crate::bolt::schema::{KEY_BUCKET, META_BUCKET};
use crate::bolt::writer::{BoltWriter, WriterOptions};
use crate::bolt::{Bucket, Db, PageSource};

/// The `meta` key etcd reads at boot to finish a compaction it had scheduled.
pub const SCHEDULED_COMPACT_KEY: &[u8] = b"scheduledCompactRev";
/// The alarm bucket (NOSPACE, CORRUPT raised before the snapshot was taken).
pub const ALARM_BUCKET: &[u8] = b"alarm";

/// A revision bump (`--bump-revision N [--mark-compacted]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bump {
    /// Added to the snapshot's latest revision.
    pub by: u64,
    /// Also schedule a compaction at the bumped revision, so every watcher and informer whose
    /// resource version predates the restore gets "compacted" and relists.
    pub mark_compacted: bool,
}

/// What to change while copying.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    pub updates: DbUpdates,
    pub bump: Option<Bump>,
    pub clear_alarms: bool,
}

/// Pairs per bucket, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketCount {
    pub name: String,
    pub keys: u64,
}

/// What the rewrite found and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct RewriteReport {
    /// The snapshot's latest revision (main part of the last key in `key`).
    pub snapshot_revision: i64,
    /// The revision the restored member starts at (bumped, if asked).
    pub revision: i64,
    /// The compaction scheduled at boot, if `--mark-compacted`.
    pub compacted_at: Option<i64>,
    /// Alarms the snapshot carried (e.g. NOSPACE), and whether they were dropped.
    pub alarms: Vec<String>,
    pub alarms_cleared: bool,
    pub buckets: Vec<BucketCount>,
    pub keys: u64,
    pub db_size: u64,
    pub written: DbWrite,
    /// The revision log replayed on top of the snapshot (point-in-time restore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayReport>,
}

/// How the restored db was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DbWrite {
    /// A fresh, compact file with every pair copied (a local snapshot file).
    Rewritten,
    /// The downloaded snapshot with one commit appended (a snapshot from a store).
    EditedInPlace,
}

impl DbWrite {
    pub fn describe(self) -> &'static str {
        match self {
            DbWrite::Rewritten => "rewritten",
            DbWrite::EditedInPlace => "edited in place",
        }
    }
}

/// Copies `src` into `out` (a new, empty file) with `options` applied.
pub fn rewrite<S: PageSource>(
    src: &Db<S>,
    out: File,
    options: &RewriteOptions,
) -> Result<RewriteReport, RestoreError> {
    rewrite_with_replay(src, out, options, None)
}

/// [`rewrite`], with a revision log replayed after the snapshot's last `key` pair up to
/// `replay.target`: the restored member starts at the target (a bump counts from it), and the
/// `lease` bucket gets the leases live keys reference that the snapshot lacks.
pub fn rewrite_with_replay<S: PageSource>(
    src: &Db<S>,
    out: File,
    options: &RewriteOptions,
    mut replay: Option<&mut Replay>,
) -> Result<RewriteReport, RestoreError> {
    let bolt = |e: crate::bolt::BoltError| RestoreError::Snapshot(format!("{e}"));
    let mut writer = BoltWriter::create(
        out,
        WriterOptions {
            page_size: src.page_size(),
            ..WriterOptions::default()
        },
    )
    .map_err(RestoreError::Write)?;

    let mut changes = changes(src, options)?;
    let mut in_snapshot = BTreeSet::new();
    if replay.is_some() {
        // The replay writes `key`, adds leases, and counts from the db's own revision (a
        // compaction above the last key included).
        changes.names.extend(
            [KEY_BUCKET, LEASE_BUCKET, META_BUCKET]
                .iter()
                .map(|b| b.to_vec()),
        );
        changes.compaction_floor = compaction_of(src);
        in_snapshot = crate::bolt::etcd::leases(src)
            .map_err(|e| RestoreError::Snapshot(format!("{e}")))?
            .into_iter()
            .map(|l| l.id)
            .collect();
    }
    let mut copied = Copied::default();
    let mut buckets = Vec::new();
    for name in &changes.names.clone() {
        let source = src.bucket(name).map_err(bolt)?;
        let mut written = changes.write_bucket(
            &mut writer,
            name,
            source.as_ref(),
            options,
            &mut copied,
            replay.as_deref_mut().map(|r| (r, &in_snapshot)),
        )?;
        if copied.replay.is_some() && name == KEY_BUCKET {
            written += copied.replay.as_ref().map_or(0, |r| r.events);
        }
        buckets.push(BucketCount {
            name: String::from_utf8_lossy(name).into_owned(),
            keys: written,
        });
    }
    let summary = writer.finish().map_err(RestoreError::Write)?;
    let Copied {
        latest,
        bumped,
        alarms,
        replay,
    } = copied;
    let reached = replay.as_ref().map_or(latest, |r| r.to_revision);
    Ok(RewriteReport {
        snapshot_revision: latest,
        revision: bumped.unwrap_or(reached),
        compacted_at: options.bump.filter(|b| b.mark_compacted).and(bumped),
        alarms,
        alarms_cleared: options.clear_alarms,
        buckets,
        keys: summary.keys,
        db_size: summary.bytes,
        written: DbWrite::Rewritten,
        replay,
    })
}

/// The compaction the db finished or scheduled (0 if none or unreadable): etcd boots at the
/// higher of it and the last key's revision.
fn compaction_of<S: PageSource>(src: &Db<S>) -> i64 {
    crate::bolt::etcd::meta(src)
        .map(|m| {
            m.finished_compact_revision
                .unwrap_or(0)
                .max(m.scheduled_compact_revision.unwrap_or(0))
        })
        .unwrap_or(0)
}

/// Puts bucket `name`'s pairs into the writer's open bucket, in key order: those of `source`
/// (`None`: a new or cleared bucket) with `extra` merged in (an equal key takes `extra`'s value).
/// Alarms are noted in `alarms` (and dropped with `clear_alarms`), the last revision of `key` in
/// `latest`; a nested bucket is refused. Returns the pairs written.
fn copy_pairs<S: PageSource>(
    writer: &mut BoltWriter,
    name: &[u8],
    source: Option<&Bucket<'_, S>>,
    extra: BTreeMap<Vec<u8>, Vec<u8>>,
    clear_alarms: bool,
    alarms: &mut Vec<String>,
    latest: &mut i64,
) -> Result<u64, RestoreError> {
    let bolt = |e: crate::bolt::BoltError| RestoreError::Snapshot(format!("{e}"));
    let shown = String::from_utf8_lossy(name);
    let mut extra = extra.into_iter().peekable();
    let mut written = 0u64;
    let mut put = |w: &mut BoltWriter, k: &[u8], v: &[u8]| -> Result<(), RestoreError> {
        written += 1;
        w.put(k, v).map_err(RestoreError::Write)
    };
    if let Some(bucket) = source {
        let mut cursor = bucket.cursor();
        while let Some(entry) = cursor.next_entry() {
            let entry = entry.map_err(bolt)?;
            if entry.is_bucket() {
                return Err(RestoreError::Snapshot(format!(
                    "bucket {shown:?} holds a nested bucket {:?}: not an etcd snapshot",
                    String::from_utf8_lossy(entry.key)
                )));
            }
            if name == ALARM_BUCKET {
                alarms.push(match Alarm::decode(entry.key) {
                    Ok(a) => format!("{} on member {:x}", a.name(), a.member_id),
                    Err(_) => format!("undecodable alarm {}", hex::encode(entry.key)),
                });
                if clear_alarms {
                    continue;
                }
            }
            while let Some((k, v)) = extra.next_if(|(k, _)| k.as_slice() < entry.key) {
                put(writer, &k, &v)?;
            }
            if name == KEY_BUCKET {
                *latest = revision_main(entry.key).unwrap_or(*latest);
            }
            if let Some((k, v)) = extra.next_if(|(k, _)| k.as_slice() == entry.key) {
                put(writer, &k, &v)?;
            } else {
                put(writer, entry.key, entry.value)?;
            }
        }
    }
    for (k, v) in extra {
        put(writer, &k, &v)?;
    }
    Ok(written)
}

/// What a restore changes in a snapshot's db, whichever way it is written.
pub(super) struct Changes {
    /// Puts grouped per bucket, in key order.
    pub puts: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>,
    /// Buckets whose pairs are all dropped (then the puts land in them).
    pub cleared: BTreeSet<Vec<u8>>,
    /// Every top-level bucket of the result, in name order: the snapshot's and those to create.
    pub names: BTreeSet<Vec<u8>>,
    /// The revision etcd boots at besides the last key's: the finished or scheduled compaction
    /// (only read for a bump).
    pub compaction_floor: i64,
}

pub(super) fn changes<S: PageSource>(
    src: &Db<S>,
    options: &RewriteOptions,
) -> Result<Changes, RestoreError> {
    let bolt = |e: crate::bolt::BoltError| RestoreError::Snapshot(format!("{e}"));
    let mut puts: BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
    for p in &options.updates.puts {
        puts.entry(p.bucket.to_vec())
            .or_default()
            .insert(p.key.clone(), p.value.clone());
    }
    let cleared: BTreeSet<Vec<u8>> = options
        .updates
        .cleared_buckets
        .iter()
        .map(|b| b.to_vec())
        .collect();
    let mut names: BTreeSet<Vec<u8>> = src.buckets().map_err(bolt)?.into_iter().collect();
    names.extend(puts.keys().cloned());
    names.extend(cleared.iter().cloned());
    if options.bump.is_some() {
        // The bumped revision goes into `key`, its compaction into `meta`, which sorts after it:
        // the latest revision is known by the time `meta` is written.
        names.insert(KEY_BUCKET.to_vec());
        names.insert(META_BUCKET.to_vec());
    }
    let compaction_floor = match options.bump {
        Some(_) => compaction_of(src),
        None => 0,
    };
    Ok(Changes {
        puts,
        cleared,
        names,
        compaction_floor,
    })
}

/// What copying buckets has found so far.
#[derive(Debug, Default)]
pub(super) struct Copied {
    /// The last revision of `key` (0 until it is copied, or when empty).
    pub latest: i64,
    /// The bump's revision, once `key` is written.
    pub bumped: Option<i64>,
    /// The alarms the snapshot carried.
    pub alarms: Vec<String>,
    /// What the replay wrote, once `key` is written (point-in-time restore).
    pub replay: Option<ReplayReport>,
}

impl Changes {
    /// Writes top-level bucket `name` whole: `source`'s pairs (none if it is cleared) with the
    /// puts merged in, and in `key` the replayed log (with the leases it needs queued for
    /// `lease`, which sorts after it, given the snapshot's own lease IDs) and the bump's key.
    /// Returns the pairs written, replayed ones not counted.
    pub(super) fn write_bucket<S: PageSource>(
        &mut self,
        writer: &mut BoltWriter,
        name: &[u8],
        source: Option<&Bucket<'_, S>>,
        options: &RewriteOptions,
        copied: &mut Copied,
        replay: Option<(&mut Replay, &BTreeSet<i64>)>,
    ) -> Result<u64, RestoreError> {
        writer
            .begin_bucket(name, source.map_or(0, |b| b.sequence()))
            .map_err(RestoreError::Write)?;
        let extra = self.puts.remove(name).unwrap_or_default();
        let from = source.filter(|_| !self.cleared.contains(name));
        let mut written = copy_pairs(
            writer,
            name,
            from,
            extra,
            options.clear_alarms,
            &mut copied.alarms,
            &mut copied.latest,
        )?;
        let mut head = copied.latest;
        if let (Some((replay, in_snapshot)), true) = (replay, name == KEY_BUCKET) {
            let mut replayer =
                Replayer::new(copied.latest.max(self.compaction_floor), replay.target)?;
            replayer.run(writer, &mut replay.feed)?;
            let (leases, report) = replayer.finish(in_snapshot);
            self.puts
                .entry(LEASE_BUCKET.to_vec())
                .or_default()
                .extend(leases);
            head = report.to_revision;
            copied.replay = Some(report);
        }
        if let (Some(bump), true) = (options.bump, name == KEY_BUCKET) {
            let (rev, key) = self.bump_key(head, bump);
            writer.put(&key, &[]).map_err(RestoreError::Write)?;
            written += 1;
            copied.bumped = Some(rev);
        }
        writer.end_bucket().map_err(RestoreError::Write)?;
        Ok(written)
    }

    /// The bump's revision and its key (an empty value: etcd only reads the key's revision), with
    /// `--mark-compacted` its compaction queued for `meta`, which sorts after `key` and so is
    /// written later.
    pub(super) fn bump_key(&mut self, latest: i64, bump: Bump) -> (i64, Vec<u8>) {
        let rev = bumped_revision(latest, self.compaction_floor, bump);
        if bump.mark_compacted {
            self.puts
                .entry(META_BUCKET.to_vec())
                .or_default()
                .insert(SCHEDULED_COMPACT_KEY.to_vec(), revision_key(rev));
        }
        (rev, revision_key(rev))
    }
}

/// The revision a bump starts the restored member at: above every revision in the snapshot, so
/// its key is the last one. etcd boots at the higher of the last key's revision and the
/// compaction's (a compacted delete at the head leaves no key at the head revision); bumping
/// from the last key alone (as etcdutl does) could land at or below where etcd already is.
fn bumped_revision(latest: i64, compaction_floor: i64, bump: Bump) -> i64 {
    latest
        .max(compaction_floor)
        .saturating_add(i64::try_from(bump.by).unwrap_or(i64::MAX))
}

/// The main part of a revision key (`None` if too short to be one).
pub(super) fn revision_main(key: &[u8]) -> Option<i64> {
    let main: [u8; 8] = key.get(..8)?.try_into().ok()?;
    Some(i64::from_be_bytes(main))
}

/// etcd's 17-byte revision key: main (8 bytes big-endian), `_`, sub 0.
pub(super) fn revision_key(main: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&0i64.to_be_bytes());
    k
}
