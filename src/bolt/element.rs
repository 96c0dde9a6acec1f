//! Elements of branch and leaf pages, bucket values, and whole-page read views.
//!
//! Element decoders need only the element table (the page header and `count` × 16 bytes), not the
//! keys and values themselves: they return where the key and value lie, checked against the page's
//! span. That lets the streaming scanner decide which few bytes of a many-page leaf to keep before
//! those bytes arrive. [`LeafPage`] and [`BranchPage`] are views over a page held whole in memory.

use std::cmp::Ordering;
use std::ops::Range;

use super::error::{Defect, Fault};
use super::page::{read_u32, read_u64, PageHeader, PageKind, PAGE_HEADER_SIZE};

// Leaf element, 16 bytes; element i sits at PAGE_HEADER_SIZE + i × 16:
//
// | offset | size | field | meaning                                                       |
// |--------|------|-------|---------------------------------------------------------------|
// | 0      | 4    | flags | 0x01: the value is a bucket (see BucketValue)                  |
// | 4      | 4    | pos   | distance from this element's first byte to its key            |
// | 8      | 4    | ksize | key length                                                    |
// | 12     | 4    | vsize | value length; the value follows the key immediately           |
const LEAF_FLAGS_OFFSET: usize = 0;
const LEAF_POS_OFFSET: usize = LEAF_FLAGS_OFFSET + size_of::<u32>();
const LEAF_KSIZE_OFFSET: usize = LEAF_POS_OFFSET + size_of::<u32>();
const LEAF_VSIZE_OFFSET: usize = LEAF_KSIZE_OFFSET + size_of::<u32>();
pub const LEAF_ELEMENT_SIZE: usize = LEAF_VSIZE_OFFSET + size_of::<u32>();

// Branch element, 16 bytes; element i sits at PAGE_HEADER_SIZE + i × 16:
//
// | offset | size | field | meaning                                                       |
// |--------|------|-------|---------------------------------------------------------------|
// | 0      | 4    | pos   | distance from this element's first byte to its key            |
// | 4      | 4    | ksize | key length (the first key of the child)                       |
// | 8      | 8    | pgid  | child page id                                                 |
const BRANCH_POS_OFFSET: usize = 0;
const BRANCH_KSIZE_OFFSET: usize = BRANCH_POS_OFFSET + size_of::<u32>();
const BRANCH_PGID_OFFSET: usize = BRANCH_KSIZE_OFFSET + size_of::<u32>();
pub const BRANCH_ELEMENT_SIZE: usize = BRANCH_PGID_OFFSET + size_of::<u64>();

/// Leaf element flag: the value is a nested bucket.
pub const BUCKET_LEAF_FLAG: u32 = 0x01;

// Bucket value (a leaf value whose element has BUCKET_LEAF_FLAG):
//
// | offset | size | field    | meaning                                                    |
// |--------|------|----------|------------------------------------------------------------|
// | 0      | 8    | root     | root page id of the bucket's tree; 0 = inline bucket       |
// | 8      | 8    | sequence | the bucket's sequence (NextSequence)                       |
// | 16     | …    | page     | inline buckets only: a leaf page (header + elements + data) |
const BUCKET_ROOT_OFFSET: usize = 0;
const BUCKET_SEQUENCE_OFFSET: usize = BUCKET_ROOT_OFFSET + size_of::<u64>();
pub const BUCKET_HEADER_SIZE: usize = BUCKET_SEQUENCE_OFFSET + size_of::<u64>();

/// Offset of element `index` in its page.
pub fn element_offset(index: usize) -> usize {
    // Both element kinds are 16 bytes.
    PAGE_HEADER_SIZE + index * LEAF_ELEMENT_SIZE
}

/// End of the element table of a page with `count` elements.
pub fn element_table_end(count: u16) -> usize {
    element_offset(usize::from(count))
}

/// Checks that `count` elements fit in a page spanning `span` bytes.
pub fn check_element_table(count: u16, span: u64) -> Result<(), Fault> {
    if element_table_end(count) as u64 > span {
        return Err(Fault::new(
            Defect::ElementTableOutOfBounds,
            PAGE_HEADER_SIZE as u64,
        ));
    }
    Ok(())
}

/// A leaf element: its flags and where its key and value lie, as offsets from the page's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafElement {
    pub flags: u32,
    pub key_offset: u64,
    pub key_len: u32,
    pub value_len: u32,
}

impl LeafElement {
    /// Decodes element `index` from `table` (the page's first bytes, through at least this
    /// element), checking that its key and value end within `span`, the bytes the page spans.
    pub fn decode(table: &[u8], index: usize, span: u64) -> Result<LeafElement, Fault> {
        let at = element_offset(index);
        let oob = Fault::new(Defect::ElementTableOutOfBounds, at as u64);
        let flags = read_u32(table, at + LEAF_FLAGS_OFFSET).ok_or(oob)?;
        let pos = read_u32(table, at + LEAF_POS_OFFSET).ok_or(oob)?;
        let key_len = read_u32(table, at + LEAF_KSIZE_OFFSET).ok_or(oob)?;
        let value_len = read_u32(table, at + LEAF_VSIZE_OFFSET).ok_or(oob)?;
        // Sums of a usize and three u32s: no u64 overflow.
        let key_offset = at as u64 + u64::from(pos);
        if key_offset + u64::from(key_len) + u64::from(value_len) > span {
            return Err(Fault::new(Defect::ElementOutOfBounds, at as u64));
        }
        Ok(LeafElement {
            flags,
            key_offset,
            key_len,
            value_len,
        })
    }

    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }

    pub fn key_range(&self) -> Range<u64> {
        self.key_offset..self.value_offset()
    }

    pub fn value_offset(&self) -> u64 {
        self.key_offset + u64::from(self.key_len)
    }

    pub fn value_range(&self) -> Range<u64> {
        self.value_offset()..self.value_offset() + u64::from(self.value_len)
    }
}

/// A branch element: where its key lies (offsets from the page's start) and the child it points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BranchElement {
    pub key_offset: u64,
    pub key_len: u32,
    pub child: u64,
}

impl BranchElement {
    /// Decodes element `index` from `table`, checking that its key ends within `span`.
    pub fn decode(table: &[u8], index: usize, span: u64) -> Result<BranchElement, Fault> {
        let at = element_offset(index);
        let oob = Fault::new(Defect::ElementTableOutOfBounds, at as u64);
        let pos = read_u32(table, at + BRANCH_POS_OFFSET).ok_or(oob)?;
        let key_len = read_u32(table, at + BRANCH_KSIZE_OFFSET).ok_or(oob)?;
        let child = read_u64(table, at + BRANCH_PGID_OFFSET).ok_or(oob)?;
        let key_offset = at as u64 + u64::from(pos);
        if key_offset + u64::from(key_len) > span {
            return Err(Fault::new(Defect::ElementOutOfBounds, at as u64));
        }
        Ok(BranchElement {
            key_offset,
            key_len,
            child,
        })
    }

    pub fn key_range(&self) -> Range<u64> {
        self.key_offset..self.key_offset + u64::from(self.key_len)
    }
}

/// Which child of a branch page with `count` elements a search for a key descends into, given how
/// each element's key compares with the searched key. bbolt's rule: binary search (in Go's
/// `sort.Search` order of probes) for the first element whose key is ≥ the searched key; on an exact
/// match that element, otherwise the one before it (the first, if none is before).
pub fn branch_route(count: usize, mut compare: impl FnMut(usize) -> Ordering) -> usize {
    let mut exact = false;
    let (mut lo, mut hi) = (0usize, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let ord = compare(mid);
        if ord == Ordering::Equal {
            exact = true;
        }
        if ord == Ordering::Less {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if !exact && lo > 0 {
        lo - 1
    } else {
        lo
    }
}

/// Compares a key, of which only `prefix` (its first bytes) and its full length `key_len` are known,
/// with `target`. Exact as long as `prefix` holds at least `min(key_len, target.len())` bytes.
pub fn compare_key_prefix(prefix: &[u8], key_len: u64, target: &[u8]) -> Ordering {
    let n = prefix.len().min(target.len());
    match prefix[..n].cmp(&target[..n]) {
        Ordering::Equal => key_len.cmp(&(target.len() as u64)),
        other => other,
    }
}

/// A decoded bucket value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketValue<'a> {
    pub root: u64,
    pub sequence: u64,
    /// The inline bucket's leaf page, when `root` is 0.
    pub inline_page: Option<&'a [u8]>,
}

impl<'a> BucketValue<'a> {
    pub fn decode(value: &'a [u8]) -> Result<BucketValue<'a>, Fault> {
        let short = Fault::new(Defect::ShortBucketValue, 0);
        let root = read_u64(value, BUCKET_ROOT_OFFSET).ok_or(short)?;
        let sequence = read_u64(value, BUCKET_SEQUENCE_OFFSET).ok_or(short)?;
        let inline_page = if root == 0 {
            Some(value.get(BUCKET_HEADER_SIZE..).ok_or(short)?)
        } else {
            None
        };
        Ok(BucketValue {
            root,
            sequence,
            inline_page,
        })
    }
}

/// A leaf entry with its key and value borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafEntry<'a> {
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl LeafEntry<'_> {
    pub fn is_bucket(&self) -> bool {
        self.flags & BUCKET_LEAF_FLAG != 0
    }
}

/// A read view of a leaf page held whole in memory (with its overflow pages, or an inline bucket's
/// page inside a value).
#[derive(Debug, Clone, Copy)]
pub struct LeafPage<'a> {
    bytes: &'a [u8],
    header: PageHeader,
}

impl<'a> LeafPage<'a> {
    /// Checks the header (a leaf) and that the element table fits; elements are checked as read.
    pub fn new(bytes: &'a [u8]) -> Result<LeafPage<'a>, Fault> {
        let header = PageHeader::decode(bytes)?;
        if header.kind() != PageKind::Leaf {
            return Err(Fault::new(Defect::UnexpectedFlags, 8));
        }
        check_element_table(header.count, bytes.len() as u64)?;
        Ok(LeafPage { bytes, header })
    }

    pub fn header(&self) -> PageHeader {
        self.header
    }

    pub fn len(&self) -> usize {
        usize::from(self.header.count)
    }

    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    pub fn element(&self, index: usize) -> Result<LeafEntry<'a>, Fault> {
        let e = LeafElement::decode(self.bytes, index, self.bytes.len() as u64)?;
        // In bounds: decode checked both ranges against bytes.len().
        let slice = |r: Range<u64>| {
            self.bytes
                .get(r.start as usize..r.end as usize)
                .ok_or(Fault::new(Defect::ElementOutOfBounds, r.start))
        };
        Ok(LeafEntry {
            flags: e.flags,
            key: slice(e.key_range())?,
            value: slice(e.value_range())?,
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = Result<LeafEntry<'a>, Fault>> + '_ {
        (0..self.len()).map(|i| self.element(i))
    }

    /// The entry whose key is `key`, found as bbolt's cursor seek finds it (binary search for the
    /// first key ≥ `key`, then an exact comparison).
    pub fn get(&self, key: &[u8]) -> Result<Option<LeafEntry<'a>>, Fault> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.element(mid)?.key < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == self.len() {
            return Ok(None);
        }
        let e = self.element(lo)?;
        Ok((e.key == key).then_some(e))
    }
}

/// A read view of a branch page held whole in memory.
#[derive(Debug, Clone, Copy)]
pub struct BranchPage<'a> {
    bytes: &'a [u8],
    header: PageHeader,
}

impl<'a> BranchPage<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<BranchPage<'a>, Fault> {
        let header = PageHeader::decode(bytes)?;
        if header.kind() != PageKind::Branch {
            return Err(Fault::new(Defect::UnexpectedFlags, 8));
        }
        if header.count == 0 {
            return Err(Fault::new(Defect::EmptyBranch, 10));
        }
        check_element_table(header.count, bytes.len() as u64)?;
        Ok(BranchPage { bytes, header })
    }

    pub fn header(&self) -> PageHeader {
        self.header
    }

    pub fn len(&self) -> usize {
        usize::from(self.header.count)
    }

    pub fn is_empty(&self) -> bool {
        self.header.count == 0
    }

    /// Element `index`: its key and child page id.
    pub fn element(&self, index: usize) -> Result<(&'a [u8], u64), Fault> {
        let e = BranchElement::decode(self.bytes, index, self.bytes.len() as u64)?;
        let r = e.key_range();
        let key = self
            .bytes
            .get(r.start as usize..r.end as usize)
            .ok_or(Fault::new(Defect::ElementOutOfBounds, r.start))?;
        Ok((key, e.child))
    }

    /// The index of the child a search for `key` descends into.
    pub fn route(&self, key: &[u8]) -> Result<usize, Fault> {
        let mut fault = None;
        let i = branch_route(self.len(), |i| match self.element(i) {
            Ok((k, _)) => k.cmp(key),
            Err(f) => {
                fault.get_or_insert(f);
                Ordering::Equal
            }
        });
        fault.map_or(Ok(i), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leaf page with the given (flags, key, value) entries, laid out as bbolt lays it out.
    pub(crate) fn leaf(entries: &[(u32, &[u8], &[u8])]) -> Vec<u8> {
        let mut p = vec![0u8; PAGE_HEADER_SIZE];
        p[8..10].copy_from_slice(&2u16.to_le_bytes());
        p[10..12].copy_from_slice(&(entries.len() as u16).to_le_bytes());
        let table_end = element_table_end(entries.len() as u16);
        p.resize(table_end, 0);
        for (i, (flags, k, v)) in entries.iter().enumerate() {
            let at = element_offset(i);
            let pos = (p.len() - at) as u32;
            p[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            p[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            p[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            p[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            p.extend_from_slice(k);
            p.extend_from_slice(v);
        }
        p
    }

    #[test]
    fn element_offsets_follow_the_tables() {
        assert_eq!(
            [
                LEAF_FLAGS_OFFSET,
                LEAF_POS_OFFSET,
                LEAF_KSIZE_OFFSET,
                LEAF_VSIZE_OFFSET,
                LEAF_ELEMENT_SIZE
            ],
            [0, 4, 8, 12, 16]
        );
        assert_eq!(
            [
                BRANCH_POS_OFFSET,
                BRANCH_KSIZE_OFFSET,
                BRANCH_PGID_OFFSET,
                BRANCH_ELEMENT_SIZE
            ],
            [0, 4, 8, 16]
        );
        assert_eq!(BUCKET_HEADER_SIZE, 16);
    }

    #[test]
    fn leaf_view_reads_and_seeks() {
        let p = leaf(&[(0, b"a", b"1"), (1, b"bb", b"22"), (0, b"d", b"")]);
        let l = LeafPage::new(&p).unwrap();
        assert_eq!(l.len(), 3);
        let e = l.element(1).unwrap();
        assert_eq!(
            (e.key, e.value, e.is_bucket()),
            (&b"bb"[..], &b"22"[..], true)
        );
        assert_eq!(l.get(b"d").unwrap().unwrap().value, b"");
        assert!(l.get(b"c").unwrap().is_none());
        assert!(l.get(b"z").unwrap().is_none());
        // A value running past the page is a fault, not a panic.
        let short = &p[..p.len() - 1];
        let l = LeafPage::new(short).unwrap();
        assert!(l.element(1).is_ok());
        assert_eq!(
            l.element(2).unwrap_err(),
            Fault::new(Defect::ElementOutOfBounds, 48)
        );
    }

    #[test]
    fn route_follows_bbolt() {
        let keys: [&[u8]; 3] = [b"b", b"d", b"f"];
        let route = |t: &[u8]| branch_route(keys.len(), |i| keys[i].cmp(t));
        assert_eq!(route(b"a"), 0);
        assert_eq!(route(b"b"), 0);
        assert_eq!(route(b"c"), 0);
        assert_eq!(route(b"d"), 1);
        assert_eq!(route(b"e"), 1);
        assert_eq!(route(b"z"), 2);
    }

    #[test]
    fn prefix_comparison_is_exact() {
        for (key, target) in [
            (&b"abc"[..], &b"abd"[..]),
            (b"ab", b"abc"),
            (b"abcd", b"abc"),
            (b"abc", b"abc"),
            (b"", b"a"),
        ] {
            let n = key.len().min(target.len());
            assert_eq!(
                compare_key_prefix(&key[..n], key.len() as u64, target),
                key.cmp(target),
                "{key:?} vs {target:?}"
            );
        }
    }

    #[test]
    fn bucket_values() {
        let mut v = 7u64.to_le_bytes().to_vec();
        v.extend_from_slice(&1u64.to_le_bytes());
        let b = BucketValue::decode(&v).unwrap();
        assert_eq!((b.root, b.sequence, b.inline_page), (7, 1, None));
        v[..8].fill(0);
        v.extend_from_slice(b"page");
        assert_eq!(
            BucketValue::decode(&v).unwrap().inline_page,
            Some(&b"page"[..])
        );
        assert_eq!(
            BucketValue::decode(&v[..15]).unwrap_err().defect,
            Defect::ShortBucketValue
        );
    }
}
