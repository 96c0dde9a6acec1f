//! A copy-on-write commit appended to an existing bbolt file, as bbolt's own commit makes one: new
//! pages go past the old high-water mark (every page below it stays as it was), and a single meta
//! with the next txid points at the new root bucket. The root bucket is rewritten whole; each
//! top-level bucket in it is kept as it was (its entry copied), rewritten from pairs, or extended
//! past its last key by copying its rightmost path.
//!
//! It never writes below the old high-water mark except the one meta page that bbolt's next commit
//! would overwrite (the one with the older txid), and it writes that last, after the new pages
//! are synced. No freelist is stored (bbolt and etcd rebuild it on open, as for etcd's own files);
//! the pages the commit replaced become free that way.

use std::fs::File;

use super::{
    check_page_size, check_pair, seal, BoltWriter, Mode, Pending, WriteError, WriteSummary,
};
use crate::bolt::meta::{encode_meta_page, Meta, META_PAGE_USED, NO_FREELIST};
use crate::bolt::page::{BRANCH_PAGE_FLAG, LEAF_PAGE_FLAG};

/// The existing database, from the meta it is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendTo {
    pub page_size: u32,
    /// Its high-water mark: the new pages start here.
    pub high_water: u64,
    /// Its txid: the commit is `txid + 1`, in meta page `(txid + 1) % 2`.
    pub txid: u64,
    /// The root bucket's sequence, kept.
    pub root_sequence: u64,
    /// Its meta flags, kept.
    pub flags: u32,
}

/// A bucket's rightmost path as read from the file: the last leaf's elements (flags, key, value),
/// then each branch page above it up to the bucket's root, each as (first key, child page) pairs.
/// `branches` is empty when the root is that leaf.
#[derive(Debug, Clone, Default)]
pub struct Spine {
    pub leaf: Vec<(u32, Vec<u8>, Vec<u8>)>,
    pub branches: Vec<Vec<(Vec<u8>, u64)>>,
}

impl BoltWriter {
    /// Starts a commit on `file`, a database in the state `at` says (read from its meta by the
    /// caller): pages are appended from `at.high_water`, and [`BoltWriter::finish`] writes the
    /// meta. Every top-level bucket must then be given, in name order, by
    /// [`BoltWriter::keep_bucket`], [`BoltWriter::append_to_bucket`] or `begin_bucket`/`put`/
    /// `end_bucket`: the root bucket is written anew from them.
    pub fn append(file: File, at: AppendTo) -> Result<BoltWriter, WriteError> {
        check_page_size(at.page_size)?;
        if at.high_water < 2 {
            return Err(WriteError::NotADatabase(at.high_water));
        }
        // Appended pages are filled as bbolt fills them: to the page.
        Self::start(
            file,
            at.page_size,
            at.page_size as usize,
            at.high_water,
            Mode::Append(at),
        )
    }

    /// Records top-level bucket `name` as it is: `value` is its entry in the old root bucket
    /// (bucket header, and the inline page of an inline bucket), copied.
    pub fn keep_bucket(&mut self, name: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.usable()?;
        self.check_bucket_name(name)?;
        let r = self.record_raw(name, value);
        self.noting(r)
    }

    /// Records top-level bucket `name` (sequence `sequence`) with `pairs` added after its last key:
    /// the rightmost leaf is copied with the pairs appended (it may grow overflow pages; bbolt
    /// splits it when it next writes it), and each branch page of `spine` is copied pointing at the
    /// new page below it. The other pages of the tree are shared with the old root.
    pub fn append_to_bucket(
        &mut self,
        name: &[u8],
        sequence: u64,
        spine: &Spine,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), WriteError> {
        self.usable()?;
        self.check_bucket_name(name)?;
        let mut last = spine.leaf.last().map(|(_, k, _)| k.as_slice());
        for (key, value) in pairs {
            check_pair(name, key, value, last)?;
            last = Some(key);
        }
        let r = self.copy_spine(name, sequence, spine, pairs);
        self.noting(r)
    }

    fn copy_spine(
        &mut self,
        name: &[u8],
        sequence: u64,
        spine: &Spine,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), WriteError> {
        let mut leaf = Pending::default();
        for (flags, key, value) in &spine.leaf {
            leaf.push(*flags, key, value, 0);
        }
        for (key, value) in pairs {
            leaf.push(0, key, value, 0);
        }
        let mut id = leaf.write(&mut self.pages, LEAF_PAGE_FLAG)?;
        for branch in &spine.branches {
            let mut page = Pending::default();
            let last = branch.len().saturating_sub(1);
            for (i, (key, child)) in branch.iter().enumerate() {
                page.push(0, key, &[], if i == last { id } else { *child });
            }
            id = page.write(&mut self.pages, BRANCH_PAGE_FLAG)?;
        }
        let mut value = Vec::with_capacity(16);
        value.extend_from_slice(&id.to_le_bytes());
        value.extend_from_slice(&sequence.to_le_bytes());
        self.record_raw(name, &value)?;
        self.keys += pairs.len() as u64;
        Ok(())
    }

    /// The end of an appended commit: new pages synced, then the meta, then synced again.
    pub(super) fn commit_appended(
        self,
        at: AppendTo,
        root: u64,
    ) -> Result<WriteSummary, WriteError> {
        let high_water = self.pages.next;
        let ps = u64::from(self.page_size);
        let bytes = high_water.checked_mul(ps).ok_or(WriteError::TooManyPages)?;
        let (buckets, keys) = (self.buckets, self.keys);
        let file = self.pages.into_synced()?;
        let txid = at.txid.checked_add(1).ok_or(WriteError::TooManyPages)?;
        let slot = txid % 2;
        let mut page = vec![0u8; META_PAGE_USED];
        let meta = Meta {
            page_size: at.page_size,
            flags: at.flags,
            root,
            sequence: at.root_sequence,
            freelist_pgid: NO_FREELIST,
            high_water,
            txid,
            checksum: 0,
        };
        encode_meta_page(&mut page, slot, &meta);
        // Anything past the new pages (etcd's sha256 trailer of a downloaded snapshot) goes.
        seal(&file, &[(slot, page)], ps, bytes)?;
        Ok(WriteSummary {
            pages: high_water,
            bytes,
            buckets,
            keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::writer::WriterOptions;
    use crate::bolt::Db;

    /// A fresh file with bucket `a` (one pair) and `b` (pairs k00..k99), and its state.
    fn base() -> (tempfile::TempDir, std::path::PathBuf, AppendTo) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut w =
            BoltWriter::create(File::create(&path).unwrap(), WriterOptions::default()).unwrap();
        w.begin_bucket(b"a", 7).unwrap();
        w.put(b"x", b"1").unwrap();
        w.end_bucket().unwrap();
        w.begin_bucket(b"b", 0).unwrap();
        for i in 0..100 {
            w.put(format!("k{i:02}").as_bytes(), &[b'v'; 100]).unwrap();
        }
        w.end_bucket().unwrap();
        w.finish().unwrap();
        let db = Db::open(File::open(&path).unwrap()).unwrap();
        let at = AppendTo {
            page_size: db.page_size(),
            high_water: db.high_water_mark(),
            txid: db.meta().txid,
            root_sequence: 0,
            flags: 0,
        };
        (dir, path, at)
    }

    fn rw(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_commit_keeps_a_bucket_and_extends_another() {
        let (_dir, path, at) = base();
        let db = Db::open(File::open(&path).unwrap()).unwrap();
        let a = db
            .root()
            .cursor()
            .next_entry()
            .unwrap()
            .unwrap()
            .value
            .to_vec();
        let spine = db.bucket(b"b").unwrap().unwrap().spine().unwrap().unwrap();
        assert!(
            !spine.branches.is_empty(),
            "100 pairs of 100 bytes span leaves"
        );
        let mut w = BoltWriter::append(rw(&path), at).unwrap();
        w.keep_bucket(b"a", &a).unwrap();
        w.append_to_bucket(b"b", 3, &spine, &[(b"k99z".to_vec(), b"new".to_vec())])
            .unwrap();
        w.finish().unwrap();
        let db = Db::open(File::open(&path).unwrap()).unwrap();
        assert_eq!(db.meta().txid, at.txid + 1);
        assert!(crate::bolt::check(&db).is_ok());
        let b = db.bucket(b"b").unwrap().unwrap();
        assert_eq!((b.iter().count(), b.sequence()), (101, 3));
        assert_eq!(b.get(b"k99z").unwrap().as_deref(), Some(&b"new"[..]));
        assert_eq!(b.get(b"k00").unwrap().as_deref(), Some(&[b'v'; 100][..]));
        let a = db.bucket(b"a").unwrap().unwrap();
        assert_eq!(
            (a.get(b"x").unwrap().as_deref(), a.sequence()),
            (Some(&b"1"[..]), 7)
        );
    }

    #[test]
    fn misuse_is_refused() {
        let (_dir, path, at) = base();
        let db = Db::open(File::open(&path).unwrap()).unwrap();
        let spine = db.bucket(b"b").unwrap().unwrap().spine().unwrap().unwrap();
        let mut w = BoltWriter::append(rw(&path), at).unwrap();
        // A key that is not after the last one.
        let e = w
            .append_to_bucket(b"b", 0, &spine, &[(b"k50".to_vec(), Vec::new())])
            .unwrap_err();
        assert!(matches!(e, WriteError::KeyOrder { .. }), "{e}");
        w.keep_bucket(b"b", &[0u8; 16]).unwrap();
        let e = w.keep_bucket(b"a", &[0u8; 16]).unwrap_err();
        assert!(matches!(e, WriteError::BucketOrder { .. }), "{e}");
        let e = BoltWriter::append(
            rw(&path),
            AppendTo {
                high_water: 1,
                ..at
            },
        )
        .unwrap_err();
        assert!(matches!(e, WriteError::NotADatabase(1)), "{e}");
    }
}
