//! Hand-laid bbolt files for tests: pages placed at chosen ids (children before or after parents,
//! stale pages anywhere), any page size, overflow pages, inline buckets. Test-only; the real writer
//! will live beside the reader.

use crate::bolt::element::{element_offset, element_table_end, BUCKET_LEAF_FLAG};
use crate::bolt::meta::{encode_meta_page, Meta, NO_FREELIST};
use crate::bolt::page::{BRANCH_PAGE_FLAG, LEAF_PAGE_FLAG, PAGE_HEADER_SIZE};

/// (flags, key, value)
pub type Entry = (u32, Vec<u8>, Vec<u8>);

fn header(id: u64, flags: u16, count: usize) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_HEADER_SIZE];
    p[..8].copy_from_slice(&id.to_le_bytes());
    p[8..10].copy_from_slice(&flags.to_le_bytes());
    p[10..12].copy_from_slice(&(count as u16).to_le_bytes());
    p
}

/// A leaf page's bytes (unpadded, overflow 0).
pub fn leaf(id: u64, entries: &[Entry]) -> Vec<u8> {
    let mut p = header(id, LEAF_PAGE_FLAG, entries.len());
    p.resize(element_table_end(entries.len() as u16), 0);
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

/// A branch page's bytes: (first key of the child, child pgid).
pub fn branch(id: u64, children: &[(Vec<u8>, u64)]) -> Vec<u8> {
    let mut p = header(id, BRANCH_PAGE_FLAG, children.len());
    p.resize(element_table_end(children.len() as u16), 0);
    for (i, (k, child)) in children.iter().enumerate() {
        let at = element_offset(i);
        let pos = (p.len() - at) as u32;
        p[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        p[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
        p[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        p.extend_from_slice(k);
    }
    p
}

pub fn bucket_value(root: u64) -> Vec<u8> {
    let mut v = root.to_le_bytes().to_vec();
    v.extend_from_slice(&0u64.to_le_bytes());
    v
}

pub fn inline_bucket(entries: &[Entry]) -> Vec<u8> {
    let mut v = bucket_value(0);
    v.extend_from_slice(&leaf(0, entries));
    v
}

pub fn bucket_entry(name: &[u8], value: Vec<u8>) -> Entry {
    (BUCKET_LEAF_FLAG, name.to_vec(), value)
}

pub fn entry(key: &[u8], value: &[u8]) -> Entry {
    (0, key.to_vec(), value.to_vec())
}

pub fn revision_key(main: u64, sub: u64, tombstone: bool) -> Vec<u8> {
    let mut k = main.to_be_bytes().to_vec();
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// In which order tree pages get their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Leaves first, the root last: every child before its parent.
    ChildrenFirst,
    /// The root first: every parent before its children.
    ParentsFirst,
    /// A fixed pseudo-random permutation.
    Shuffled(u64),
}

enum Node {
    Leaf(Vec<Entry>),
    /// (first key, node index)
    Branch(Vec<(Vec<u8>, usize)>),
}

/// A file under construction: pages placed at ids, the rest filled with a pattern.
pub struct FileBuilder {
    pub page_size: usize,
    /// Placed pages by id: bytes padded to whole pages (with overflow set).
    pages: Vec<Option<Vec<u8>>>,
    /// Byte filling pages nobody placed (free pages).
    pub fill: u8,
    /// The metas' freelist page id (NO_FREELIST: none stored, as etcd writes).
    pub freelist: u64,
}

impl FileBuilder {
    pub fn new(page_size: usize) -> Self {
        FileBuilder {
            page_size,
            pages: vec![None, None],
            fill: 0,
            freelist: NO_FREELIST,
        }
    }

    /// The next unused page id (after everything placed so far).
    pub fn next_id(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Pages `bytes` spans.
    pub fn pages_for(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.page_size).max(1)
    }

    /// Places a page's bytes at `id` (its header id is set to `id`), with overflow as needed.
    pub fn place(&mut self, id: u64, mut bytes: Vec<u8>) {
        let n = self.pages_for(bytes.len());
        bytes[..8].copy_from_slice(&id.to_le_bytes());
        bytes[12..16].copy_from_slice(&((n - 1) as u32).to_le_bytes());
        bytes.resize(n * self.page_size, 0);
        let id = id as usize;
        if self.pages.len() < id + n {
            self.pages.resize(id + n, None);
        }
        self.pages[id] = Some(bytes);
    }

    /// Places raw bytes at `id` without touching them (garbage, stale data).
    pub fn place_raw(&mut self, id: u64, mut bytes: Vec<u8>) {
        let n = self.pages_for(bytes.len());
        bytes.resize(n * self.page_size, 0);
        let id = id as usize;
        if self.pages.len() < id + n {
            self.pages.resize(id + n, None);
        }
        self.pages[id] = Some(bytes);
    }

    /// Lays out a B+tree over `entries` (sorted): leaves of up to `per_leaf` entries, branches of up
    /// to `fanout` children, page ids from `next_id()` on in `order`. Returns the root's id.
    pub fn tree(&mut self, entries: &[Entry], per_leaf: usize, fanout: usize, order: Order) -> u64 {
        let mut nodes: Vec<Node> = Vec::new();
        let mut level: Vec<(Vec<u8>, usize)> = Vec::new();
        if entries.is_empty() {
            nodes.push(Node::Leaf(Vec::new()));
            level.push((Vec::new(), 0));
        }
        for chunk in entries.chunks(per_leaf.max(1)) {
            level.push((chunk[0].1.clone(), nodes.len()));
            nodes.push(Node::Leaf(chunk.to_vec()));
        }
        while level.len() > 1 {
            let mut up = Vec::new();
            for chunk in level.chunks(fanout.max(2)) {
                up.push((chunk[0].0.clone(), nodes.len()));
                nodes.push(Node::Branch(chunk.to_vec()));
            }
            level = up;
        }
        let root = level[0].1;
        // Sizes do not depend on child ids (8 bytes each), so size with zeros first.
        let size = |n: &Node| match n {
            Node::Leaf(e) => leaf(0, e).len(),
            Node::Branch(c) => branch(
                0,
                &c.iter().map(|(k, _)| (k.clone(), 0)).collect::<Vec<_>>(),
            )
            .len(),
        };
        let mut sequence: Vec<usize> = (0..nodes.len()).collect();
        match order {
            Order::ChildrenFirst => {}
            Order::ParentsFirst => sequence.reverse(),
            Order::Shuffled(seed) => {
                let mut rng = XorShift::new(seed);
                for i in (1..sequence.len()).rev() {
                    let j = (rng.next() % (i as u64 + 1)) as usize;
                    sequence.swap(i, j);
                }
            }
        }
        let mut ids = vec![0u64; nodes.len()];
        let mut next = self.next_id();
        for &n in &sequence {
            ids[n] = next;
            next += self.pages_for(size(&nodes[n])) as u64;
        }
        for (n, node) in nodes.iter().enumerate() {
            let bytes = match node {
                Node::Leaf(e) => leaf(ids[n], e),
                Node::Branch(c) => branch(
                    ids[n],
                    &c.iter()
                        .map(|(k, i)| (k.clone(), ids[*i]))
                        .collect::<Vec<_>>(),
                ),
            };
            self.place(ids[n], bytes);
        }
        ids[root]
    }

    /// The file: metas 0 (txid) and 1 (txid − 1) with `root`, then every page up to the high-water
    /// mark (the end of the last placed page).
    pub fn build(&self, root: u64, txid: u64) -> Vec<u8> {
        self.build_metas((root, txid), (root, txid - 1))
    }

    /// The file with meta 0 = (root, txid) and meta 1 = (root, txid).
    pub fn build_metas(&self, meta0: (u64, u64), meta1: (u64, u64)) -> Vec<u8> {
        let high_water = self.pages.len() as u64;
        let ps = self.page_size;
        let mut out = vec![self.fill; high_water as usize * ps];
        for (id, p) in self.pages.iter().enumerate() {
            if let Some(p) = p {
                out[id * ps..id * ps + p.len()].copy_from_slice(p);
            }
        }
        let meta = |(root, txid)| Meta {
            page_size: ps as u32,
            flags: 0,
            root,
            sequence: 0,
            freelist_pgid: self.freelist,
            high_water,
            txid,
            checksum: 0,
        };
        out[..ps].fill(0);
        out[ps..2 * ps].fill(0);
        encode_meta_page(&mut out[..ps], 0, &meta(meta0));
        encode_meta_page(&mut out[ps..2 * ps], 1, &meta(meta1));
        out
    }
}

/// Deterministic xorshift64* for tests.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// An etcd-like database to lay out.
pub struct EtcdDb {
    pub page_size: usize,
    /// `key` bucket entries: (main, sub, tombstone, value).
    pub revisions: Vec<(u64, u64, bool, Vec<u8>)>,
    pub consistent_index: Option<u64>,
    pub term: Option<u64>,
    /// Lay the `key` bucket out inline in the root leaf.
    pub key_inline: bool,
    /// Give `meta` its own tree (one leaf) instead of an inline bucket.
    pub meta_tree: bool,
    /// Extra top-level buckets (bucket-000 …) to make the root bucket's tree a branch tree.
    pub extra_buckets: usize,
    pub per_leaf: usize,
    pub fanout: usize,
    pub order: Order,
}

impl Default for EtcdDb {
    fn default() -> Self {
        EtcdDb {
            page_size: 4096,
            revisions: (2..=40).map(|m| (m, 0, false, vec![b'v'; 100])).collect(),
            consistent_index: Some(77),
            term: Some(3),
            key_inline: false,
            meta_tree: false,
            extra_buckets: 0,
            per_leaf: 4,
            fanout: 3,
            order: Order::ChildrenFirst,
        }
    }
}

impl EtcdDb {
    pub fn expected_revision(&self) -> Option<i64> {
        self.revisions.iter().map(|r| r.0 as i64).max()
    }

    fn key_entries(&self) -> Vec<Entry> {
        let mut e: Vec<Entry> = self
            .revisions
            .iter()
            .map(|(m, s, t, v)| (0, revision_key(*m, *s, *t), v.clone()))
            .collect();
        e.sort_by(|a, b| a.1.cmp(&b.1));
        e
    }

    fn meta_entries(&self) -> Vec<Entry> {
        let mut e = Vec::new();
        if let Some(ci) = self.consistent_index {
            e.push(entry(b"consistent_index", &ci.to_be_bytes()));
        }
        e.push(entry(b"scheduledCompactRev", &5u64.to_be_bytes()));
        if let Some(t) = self.term {
            e.push(entry(b"term", &t.to_be_bytes()));
        }
        e
    }

    /// Lays the database out in `b`; returns the root bucket's root page id.
    pub fn lay_out(&self, b: &mut FileBuilder) -> u64 {
        let key_value = if self.key_inline {
            inline_bucket(&self.key_entries())
        } else {
            bucket_value(b.tree(&self.key_entries(), self.per_leaf, self.fanout, self.order))
        };
        let meta_value = if self.meta_tree {
            bucket_value(b.tree(&self.meta_entries(), 16, 16, self.order))
        } else {
            inline_bucket(&self.meta_entries())
        };
        let mut top = vec![
            bucket_entry(b"alarm", inline_bucket(&[])),
            bucket_entry(b"key", key_value),
            bucket_entry(b"lease", inline_bucket(&[])),
            bucket_entry(b"meta", meta_value),
        ];
        for i in 0..self.extra_buckets {
            top.push(bucket_entry(
                format!("bucket-{i:03}").as_bytes(),
                inline_bucket(&[entry(b"k", b"v")]),
            ));
        }
        top.sort_by(|a, b| a.1.cmp(&b.1));
        // Like etcd: the root bucket is one leaf, unless there are many buckets.
        let per_leaf = if self.extra_buckets == 0 {
            usize::MAX
        } else {
            3
        };
        b.tree(&top, per_leaf, 3, self.order)
    }

    pub fn build(&self) -> Vec<u8> {
        let mut b = FileBuilder::new(self.page_size);
        let root = self.lay_out(&mut b);
        b.build(root, 10)
    }
}
