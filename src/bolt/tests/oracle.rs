//! An independent answer: the whole file in memory, walked from the chosen meta's root like bbolt's
//! cursor walks it (every key in order), computing what `etcdutl snapshot status` computes — hash
//! (CRC-32C over bucket names, keys and values), total keys, revision — plus consistent_index and
//! term. Shares only the page-layer views with the scanner, not its summaries or its routing.

use std::collections::BTreeSet;

use crate::bolt::element::{BranchPage, BucketValue, LeafPage};
use crate::bolt::meta::{read_metas, MetaRead};
use crate::bolt::page::{PageHeader, PageKind};
use crate::bolt::schema::{decode_be_u64, Revision};

#[derive(Debug, Default)]
pub struct Oracle {
    pub revision: Option<i64>,
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    pub total_key: u64,
    pub hash: u32,
    pub total_size: u64,
    /// Pages reachable from the root (with their overflow pages).
    pub live_pages: BTreeSet<u64>,
    /// Depth of the `key` bucket's tree (1 = a single leaf; 0 = inline).
    pub key_depth: usize,
    /// Leaf pages (of the root or the `key` bucket) with overflow pages.
    pub overflowed_leaves: usize,
}

struct File<'a> {
    db: &'a [u8],
    page_size: usize,
}

impl<'a> File<'a> {
    fn page(&self, pgid: u64) -> &'a [u8] {
        let start = pgid as usize * self.page_size;
        let h = PageHeader::decode(&self.db[start..]).unwrap();
        assert_eq!(h.id, pgid, "page {pgid}: header id");
        &self.db[start..start + (h.overflow as usize + 1) * self.page_size]
    }

    /// Calls `f` with every (flags, key, value) of the tree rooted at `pgid`, in key order.
    fn walk(
        &self,
        pgid: u64,
        depth: usize,
        live: &mut BTreeSet<u64>,
        stats: &mut (usize, usize),
        f: &mut dyn FnMut(u32, &'a [u8], &'a [u8]),
    ) {
        assert!(depth < 64, "cycle at page {pgid}");
        let bytes = self.page(pgid);
        let h = PageHeader::decode(bytes).unwrap();
        for p in pgid..=pgid + u64::from(h.overflow) {
            assert!(live.insert(p), "page {p} reached twice");
        }
        stats.0 = stats.0.max(depth + 1);
        match h.kind() {
            PageKind::Branch => {
                let b = BranchPage::new(bytes).unwrap();
                for i in 0..b.len() {
                    let (_, child) = b.element(i).unwrap();
                    self.walk(child, depth + 1, live, stats, f);
                }
            }
            PageKind::Leaf => {
                if h.overflow > 0 {
                    stats.1 += 1;
                }
                for e in LeafPage::new(bytes).unwrap().entries() {
                    let e = e.unwrap();
                    f(e.flags, e.key, e.value);
                }
            }
            k => panic!("page {pgid} is {k:?} inside a tree"),
        }
    }

    /// Every entry of a bucket (inline or not), in key order.
    fn bucket_entries(
        &self,
        value: &'a [u8],
        live: &mut BTreeSet<u64>,
        stats: &mut (usize, usize),
    ) -> Vec<(u32, &'a [u8], &'a [u8])> {
        let b = BucketValue::decode(value).unwrap();
        let mut out = Vec::new();
        match b.inline_page {
            Some(page) => {
                for e in LeafPage::new(page).unwrap().entries() {
                    let e = e.unwrap();
                    out.push((e.flags, e.key, e.value));
                }
            }
            None => self.walk(b.root, 0, live, stats, &mut |f, k, v| out.push((f, k, v))),
        }
        out
    }
}

/// Walks `db` (bbolt bytes only). Panics on anything malformed: an oracle for valid files.
pub fn oracle(db: &[u8]) -> Oracle {
    let MetaRead::Decided(choice) = read_metas(db, true).unwrap() else {
        unreachable!()
    };
    let meta = choice.meta;
    let file = File {
        db,
        page_size: meta.page_size as usize,
    };
    let mut o = Oracle {
        total_size: meta.high_water * u64::from(meta.page_size),
        ..Oracle::default()
    };
    let mut live = BTreeSet::new();
    let mut buckets = Vec::new();
    let mut root_stats = (0, 0);
    file.walk(meta.root, 0, &mut live, &mut root_stats, &mut |f, k, v| {
        buckets.push((f, k, v))
    });
    let mut crc = Crc32c::default();
    let mut overflowed = root_stats.1;
    for (flags, name, value) in buckets {
        assert_eq!(flags & 1, 1, "top-level entry {name:?} is not a bucket");
        crc.update(name);
        let mut stats = (0, 0);
        let entries = file.bucket_entries(value, &mut live, &mut stats);
        overflowed += stats.1;
        let mut prev: Option<&[u8]> = None;
        for (_, k, v) in &entries {
            assert!(prev < Some(*k), "bucket {name:?}: keys out of order");
            prev = Some(k);
            crc.update(k);
            crc.update(v);
            o.total_key += 1;
        }
        match name {
            b"key" => {
                o.key_depth = stats.0;
                o.revision = entries
                    .last()
                    .map(|(_, k, _)| Revision::from_key(k).unwrap().main);
            }
            b"meta" => {
                let get = |name: &[u8]| {
                    entries
                        .iter()
                        .find(|(_, k, _)| *k == name)
                        .map(|(_, _, v)| decode_be_u64(v).unwrap())
                };
                o.consistent_index = get(b"consistent_index");
                o.term = get(b"term");
            }
            _ => {}
        }
    }
    o.hash = crc.0 ^ u32::MAX;
    o.live_pages = live;
    o.overflowed_leaves = overflowed;
    o
}

/// The largest revision main found as the last key of ANY leaf-looking page in the file, live or
/// not: what a scanner that trusts stale pages could wrongly report.
pub fn max_revision_anywhere(db: &[u8], page_size: usize) -> Option<i64> {
    let mut max = None;
    for (i, p) in db.chunks(page_size).enumerate() {
        let Ok(h) = PageHeader::decode(p) else {
            continue;
        };
        if h.id != i as u64 || h.kind() != PageKind::Leaf || h.overflow > 0 {
            continue;
        }
        let Ok(leaf) = LeafPage::new(p) else { continue };
        for e in leaf.entries().flatten() {
            if let Some(r) = Revision::from_key(e.key) {
                max = max.max(Some(r.main));
            }
        }
    }
    max
}

/// CRC-32C (Castagnoli), as Go's crc32.MakeTable(crc32.Castagnoli); the state before the final xor.
struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(u32::MAX)
    }
}

/// The reflected CRC-32C table, one entry per byte value.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32c {
    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = CRC32C_TABLE[((self.0 ^ u32::from(*b)) & 0xFF) as usize] ^ (self.0 >> 8);
        }
    }
}

#[test]
fn crc32c_check_value() {
    let mut c = Crc32c::default();
    c.update(b"123456789");
    assert_eq!(c.0 ^ u32::MAX, 0xE306_9283);
}
