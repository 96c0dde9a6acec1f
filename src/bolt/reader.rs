//! A random-access, read-only bbolt reader over any [`PageSource`]: the metas, top-level and nested
//! buckets (inline or with their own tree), ordered iteration and point lookups.
//!
//! Pages are read on demand with positioned reads and kept in a small LRU cache ([`OpenOptions`]),
//! so a multi-gigabyte file is walked in bounded memory: a cursor holds the pages on its path from
//! the root (at most [`MAX_DEPTH`]) and a bitmap of the pages it has visited (one bit per page, to
//! stop on a page reached twice, which no valid tree has).
//!
//! Nothing read is trusted: every page's id, kind and span, every element and every pointer is
//! checked before use, and a defect becomes [`BoltError::Corrupted`] naming the page (and the offset
//! inside it) where it was found. The layout is described in docs/FORMAT.md.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use super::cache::PageCache;
use super::element::{
    BranchPage, BucketValue, LeafElement, LeafEntry, LeafPage, BUCKET_HEADER_SIZE,
};
use super::error::{BoltError, Defect, Fault};
use super::meta::{read_metas, Meta, MetaChoice, MetaRead, ROOT_FIELD_IN_PAGE};
use super::page::{PageHeader, PageKind, META_PAGE_IDS};
use super::source::PageSource;
use super::stream::MAX_DEPTH;

/// Default memory for cached pages.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;
/// Default cap on one page with its overflow pages (a leaf holding a big value spans many pages).
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 256 << 20;

/// How a [`Db`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Bytes of pages kept between reads.
    pub cache_bytes: usize,
    /// Largest page (with its overflow pages) read into memory; a bigger one is reported as
    /// corrupted ([`Defect::PageTooLarge`]) rather than allocated.
    pub max_page_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_page_bytes: DEFAULT_MAX_PAGE_BYTES,
        }
    }
}

/// The bbolt-level facts of an opened file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbInfo {
    pub page_size: u32,
    /// Pages `0..high_water_mark` are the database.
    pub high_water_mark: u64,
    pub txid: u64,
    /// Root page of the root bucket (the bucket of the top-level buckets).
    pub root: u64,
    /// Freelist page; `None` when not stored (etcd's NoFreelistSync).
    pub freelist: Option<u64>,
    /// Which meta page is used (0 or 1).
    pub meta_page: u64,
    /// Set when a meta page was invalid: which, why, and which one is used instead.
    pub meta_note: Option<String>,
    /// Bytes of the source (may exceed `data_size`: a sha256 trailer, a preallocated live file).
    pub file_len: u64,
    /// high_water_mark × page_size.
    pub data_size: u64,
}

/// An opened bbolt file.
#[derive(Debug)]
pub struct Db<S> {
    source: S,
    file_len: u64,
    choice: MetaChoice,
    data_size: u64,
    options: OpenOptions,
    cache: Mutex<PageCache>,
}

/// Where something lies: a page and a byte offset inside it (across its overflow pages). Errors
/// about a pointer name the pointer's site; errors inside an inline bucket name its parent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Site {
    pub page: u64,
    pub offset: u64,
}

impl Site {
    pub fn new(page: u64, offset: u64) -> Site {
        Site { page, offset }
    }

    /// The error for `fault`, found at an offset relative to this site.
    pub fn fault(self, f: Fault) -> BoltError {
        BoltError::Corrupted {
            page: self.page,
            offset: self.offset.saturating_add(f.offset),
            reason: f.defect,
        }
    }

    pub fn defect(self, defect: Defect) -> BoltError {
        self.fault(Fault::new(defect, 0))
    }
}

impl<S: PageSource> Db<S> {
    /// Opens `source` with the default options: reads and chooses a meta (bbolt's rule: the valid
    /// one with the higher txid), and checks that the source holds every page below the
    /// high-water mark. Bytes beyond it (etcd's sha256 trailer, a live file's preallocation) are
    /// ignored.
    pub fn open(source: S) -> Result<Db<S>, BoltError> {
        Self::open_with(source, OpenOptions::default())
    }

    pub fn open_with(source: S, options: OpenOptions) -> Result<Db<S>, BoltError> {
        let file_len = source.len();
        let mut want = 0usize;
        let choice = loop {
            let n = u64::try_from(want).map_or(file_len, |w| w.min(file_len));
            let mut prefix = vec![0u8; usize::try_from(n).unwrap_or(0)];
            source
                .read_at(0, &mut prefix)
                .map_err(|e| io_error(0, n, e))?;
            let at_end = n == file_len;
            match read_metas(&prefix, at_end)? {
                MetaRead::Decided(choice) => break choice,
                MetaRead::NeedMore(more) if !at_end && more > want => want = more,
                // Told the input ended, read_metas decides; this is only a safety net.
                MetaRead::NeedMore(more) => {
                    return Err(BoltError::Truncated {
                        expected: more as u64,
                        actual: file_len,
                    })
                }
            }
        };
        let meta = choice.meta;
        let data_size = meta.data_size().ok_or(BoltError::Truncated {
            expected: u64::MAX,
            actual: file_len,
        })?;
        if file_len < data_size {
            return Err(BoltError::Truncated {
                expected: data_size,
                actual: file_len,
            });
        }
        Ok(Db {
            source,
            file_len,
            choice,
            data_size,
            cache: Mutex::new(PageCache::new(options.cache_bytes)),
            options,
        })
    }

    /// The meta in use.
    pub fn meta(&self) -> &Meta {
        &self.choice.meta
    }

    /// Which meta page is used (0 or 1).
    pub fn meta_page(&self) -> u64 {
        self.choice.page
    }

    /// Set when one meta page was invalid: which, why, and which one is used instead.
    pub fn meta_note(&self) -> Option<&str> {
        self.choice.note.as_deref()
    }

    pub fn page_size(&self) -> u32 {
        self.choice.meta.page_size
    }

    pub fn high_water_mark(&self) -> u64 {
        self.choice.meta.high_water
    }

    /// high_water_mark × page_size: the database's bytes (etcdutl's `totalSize`).
    pub fn data_size(&self) -> u64 {
        self.data_size
    }

    /// Bytes of the source, as it was when opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn info(&self) -> DbInfo {
        let m = &self.choice.meta;
        DbInfo {
            page_size: m.page_size,
            high_water_mark: m.high_water,
            txid: m.txid,
            root: m.root,
            freelist: m.freelist(),
            meta_page: self.choice.page,
            meta_note: self.choice.note.clone(),
            file_len: self.file_len,
            data_size: self.data_size,
        }
    }

    /// The root bucket: its entries are the top-level buckets.
    pub fn root(&self) -> Bucket<'_, S> {
        Bucket {
            db: self,
            root: Root::Tree {
                pgid: self.choice.meta.root,
                from: Site::new(self.choice.page, ROOT_FIELD_IN_PAGE as u64),
            },
            sequence: self.choice.meta.sequence,
        }
    }

    /// Names of the top-level buckets, in key order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, BoltError> {
        self.root().buckets()
    }

    /// The top-level bucket `name`, or `None` if there is none (or the entry is not a bucket).
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'_, S>>, BoltError> {
        self.root().bucket(name)
    }

    /// The value of `key` in top-level bucket `bucket`; `None` if either is missing or the key
    /// names a nested bucket (as bbolt's `Get`).
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Result<Option<Vec<u8>>, BoltError> {
        match self.bucket(bucket)? {
            Some(b) => b.get(key),
            None => Ok(None),
        }
    }

    /// Bytes of pages held in the cache now.
    pub fn cached_bytes(&self) -> usize {
        self.cache().held()
    }

    fn cache(&self) -> MutexGuard<'_, PageCache> {
        // A panic while holding the lock leaves a consistent cache (every update is complete).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Page `pgid` (below the high-water mark) with its overflow pages, its header checked: the
    /// id is its position, and its span ends below the high-water mark and within the memory cap.
    /// The kind is left to the caller.
    pub(crate) fn read_page(&self, pgid: u64) -> Result<PageBytes, BoltError> {
        if let Some(p) = self.cache().get(pgid) {
            return Ok(p);
        }
        let page = self.read_page_uncached(pgid)?;
        self.cache().insert(pgid, Arc::clone(&page));
        Ok(page)
    }

    /// [`Db::read_page`] without the cache: for a walk that reads every page once (the check),
    /// where caching would only add bookkeeping and evict the pages lookups reuse.
    pub(crate) fn read_page_uncached(&self, pgid: u64) -> Result<PageBytes, BoltError> {
        let page_size = u64::from(self.page_size());
        let offset = pgid
            .checked_mul(page_size)
            .ok_or(Fault::new(Defect::PointerBeyondHighWater, 0).on_page(pgid))?;
        let mut bytes = vec![0u8; self.page_size() as usize];
        self.source
            .read_at(offset, &mut bytes)
            .map_err(|e| io_error(offset, page_size, e))?;
        let header = PageHeader::decode(&bytes).map_err(|f| f.on_page(pgid))?;
        if header.id != pgid {
            return Err(Fault::new(Defect::IdMismatch, 0).on_page(pgid));
        }
        header
            .check_span(self.high_water_mark())
            .map_err(|f| f.on_page(pgid))?;
        let span = header.span(self.page_size());
        if span > self.options.max_page_bytes || usize::try_from(span).is_err() {
            return Err(Fault::new(Defect::PageTooLarge, 12).on_page(pgid));
        }
        if header.overflow > 0 {
            // In bounds: the span ends below the high-water mark, which the source covers.
            bytes.resize(span as usize, 0);
            let rest = bytes
                .get_mut(self.page_size() as usize..)
                .unwrap_or_default();
            self.source
                .read_at(offset + page_size, rest)
                .map_err(|e| io_error(offset + page_size, span - page_size, e))?;
        }
        Ok(Arc::new(bytes))
    }

    /// The tree page `pgid`, reached through a pointer at `from`.
    pub(crate) fn tree_node(&self, pgid: u64, from: Site) -> Result<Node, BoltError> {
        if META_PAGE_IDS.contains(&pgid) {
            return Err(from.defect(Defect::PointerToMeta));
        }
        if pgid >= self.high_water_mark() {
            return Err(from.defect(Defect::PointerBeyondHighWater));
        }
        Node::new(self.read_page(pgid)?, Site::new(pgid, 0))
    }
}

fn io_error(offset: u64, len: u64, e: std::io::Error) -> BoltError {
    BoltError::Io {
        offset,
        len,
        source: Arc::new(e),
    }
}

/// A page's bytes, shared between the cache and its readers. A `Vec` behind the `Arc` (not an
/// `Arc<[u8]>`) so a page read from the source is shared without being copied again.
pub(crate) type PageBytes = Arc<Vec<u8>>;

/// Which kind of tree node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Branch,
    Leaf,
}

/// A tree node in memory: a page with its overflow pages, or an inline bucket's page. Its header
/// and element table are checked; elements are checked as they are read.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub bytes: PageBytes,
    /// Where `bytes[0]` lies: the page itself (offset 0), or an inline page's place in its parent.
    pub at: Site,
    pub kind: NodeKind,
    pub count: usize,
}

impl Node {
    pub fn new(bytes: PageBytes, at: Site) -> Result<Node, BoltError> {
        let header = PageHeader::decode(&bytes).map_err(|f| at.fault(f))?;
        let (kind, count) = match header.kind() {
            PageKind::Branch => (
                NodeKind::Branch,
                BranchPage::new(&bytes).map_err(|f| at.fault(f))?.len(),
            ),
            PageKind::Leaf => (
                NodeKind::Leaf,
                LeafPage::new(&bytes).map_err(|f| at.fault(f))?.len(),
            ),
            _ => return Err(at.fault(Fault::new(Defect::NotATreePage, 8))),
        };
        Ok(Node {
            bytes,
            at,
            kind,
            count,
        })
    }

    /// An inline bucket's page (a leaf), lying at `at` in its parent.
    pub fn inline(bytes: &[u8], at: Site) -> Result<Node, BoltError> {
        let node = Node::new(Arc::new(bytes.to_vec()), at)?;
        if node.kind != NodeKind::Leaf {
            return Err(at.fault(Fault::new(Defect::UnexpectedFlags, 8)));
        }
        Ok(node)
    }

    pub fn id(&self) -> u64 {
        self.at.page
    }

    pub fn fault(&self, f: Fault) -> BoltError {
        self.at.fault(f)
    }

    pub fn branch(&self) -> Result<BranchPage<'_>, BoltError> {
        BranchPage::new(&self.bytes).map_err(|f| self.fault(f))
    }

    pub fn leaf(&self) -> Result<LeafPage<'_>, BoltError> {
        LeafPage::new(&self.bytes).map_err(|f| self.fault(f))
    }

    /// Branch element `i`: its key, child page id, and where the pointer lies.
    pub fn child(&self, i: usize) -> Result<(&[u8], u64, Site), BoltError> {
        let (key, child) = self.branch()?.element(i).map_err(|f| self.fault(f))?;
        let at = self
            .at
            .offset
            .saturating_add(super::element::element_offset(i) as u64 + 8);
        Ok((key, child, Site::new(self.at.page, at)))
    }

    /// Leaf element `i` with its key and value.
    pub fn entry(&self, i: usize) -> Result<LeafEntry<'_>, BoltError> {
        self.leaf()?.element(i).map_err(|f| self.fault(f))
    }

    /// Where leaf element `i`'s value lies.
    pub fn value_site(&self, i: usize) -> Result<Site, BoltError> {
        let span = <[u8]>::len(&self.bytes) as u64;
        let e = LeafElement::decode(&self.bytes, i, span).map_err(|f| self.fault(f))?;
        Ok(Site::new(
            self.at.page,
            self.at.offset.saturating_add(e.value_offset()),
        ))
    }

    /// Opens leaf element `i` as a bucket (its flag must say so).
    pub fn open_bucket(&self, i: usize) -> Result<(Root, u64), BoltError> {
        let e = self.entry(i)?;
        let site = self.value_site(i)?;
        if !e.is_bucket() {
            return Err(self.fault(Fault::new(
                Defect::NotABucket,
                super::element::element_offset(i) as u64,
            )));
        }
        let b = BucketValue::decode(e.value).map_err(|f| site.fault(f))?;
        let root = match b.inline_page {
            Some(page) => Root::Inline(Node::inline(
                page,
                Site::new(site.page, site.offset + BUCKET_HEADER_SIZE as u64),
            )?),
            None => Root::Tree {
                pgid: b.root,
                from: site,
            },
        };
        Ok((root, b.sequence))
    }
}

/// A bucket's root: a tree of pages, or an inline page inside its parent's value.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    Tree { pgid: u64, from: Site },
    Inline(Node),
}

/// A bucket: the root bucket, a top-level bucket, or a nested one.
#[derive(Debug)]
pub struct Bucket<'db, S> {
    db: &'db Db<S>,
    root: Root,
    sequence: u64,
}

impl<S> Clone for Bucket<'_, S> {
    fn clone(&self) -> Self {
        Bucket {
            db: self.db,
            root: self.root.clone(),
            sequence: self.sequence,
        }
    }
}

impl<'db, S: PageSource> Bucket<'db, S> {
    /// The bucket's sequence (bbolt's `NextSequence` counter).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Root page of the bucket's tree; `None` for an inline bucket.
    pub fn root_page(&self) -> Option<u64> {
        match self.root {
            Root::Tree { pgid, .. } => Some(pgid),
            Root::Inline(_) => None,
        }
    }

    pub fn is_inline(&self) -> bool {
        matches!(self.root, Root::Inline(_))
    }

    /// A cursor at the first entry.
    pub fn cursor(&self) -> Cursor<'db, S> {
        Cursor {
            db: self.db,
            root: Some(self.root.clone()),
            stack: Vec::new(),
            visited: None,
        }
    }

    /// Every entry in key order, copied out. Nested buckets appear as entries with
    /// `is_bucket` set (their value is the bucket header).
    pub fn iter(&self) -> Iter<'db, S> {
        Iter {
            cursor: self.cursor(),
        }
    }

    /// The value of `key`; `None` if it is absent or names a nested bucket (as bbolt's `Get`).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, BoltError> {
        let Some((node, i)) = self.seek_exact(key)? else {
            return Ok(None);
        };
        let e = node.entry(i)?;
        Ok((!e.is_bucket()).then(|| e.value.to_vec()))
    }

    /// The nested bucket `name`, or `None` if there is none or the entry is not a bucket.
    pub fn bucket(&self, name: &[u8]) -> Result<Option<Bucket<'db, S>>, BoltError> {
        let Some((node, i)) = self.seek_exact(name)? else {
            return Ok(None);
        };
        if !node.entry(i)?.is_bucket() {
            return Ok(None);
        }
        let (root, sequence) = node.open_bucket(i)?;
        Ok(Some(Bucket {
            db: self.db,
            root,
            sequence,
        }))
    }

    /// Names of the nested buckets, in key order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>, BoltError> {
        let mut names = Vec::new();
        let mut c = self.cursor();
        while let Some(e) = c.next_entry() {
            let e = e?;
            if e.is_bucket() {
                names.push(e.key.to_vec());
            }
        }
        Ok(names)
    }

    /// The leaf node and element index holding exactly `key`, found as bbolt's seek finds it: down
    /// the branch routes to one leaf, then a binary search there.
    pub(crate) fn seek_exact(&self, key: &[u8]) -> Result<Option<(Node, usize)>, BoltError> {
        let mut node = match &self.root {
            Root::Inline(node) => node.clone(),
            Root::Tree { pgid, from } => self.db.tree_node(*pgid, *from)?,
        };
        for _ in 0..MAX_DEPTH {
            match node.kind {
                NodeKind::Branch => {
                    let i = node.branch()?.route(key).map_err(|f| node.fault(f))?;
                    let (_, child, from) = node.child(i)?;
                    node = self.db.tree_node(child, from)?;
                }
                NodeKind::Leaf => {
                    let leaf = node.leaf()?;
                    let (mut lo, mut hi) = (0usize, leaf.len());
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if leaf.element(mid).map_err(|f| node.fault(f))?.key < key {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    if lo < leaf.len() && leaf.element(lo).map_err(|f| node.fault(f))?.key == key {
                        return Ok(Some((node, lo)));
                    }
                    return Ok(None);
                }
            }
        }
        Err(node.fault(Fault::new(Defect::TooDeep, 0)))
    }

    /// The rightmost path of a tree bucket, from its last leaf up to its root (for a commit that
    /// appends after its last key); `None` for an inline bucket.
    pub fn spine(&self) -> Result<Option<super::writer::Spine>, BoltError> {
        let Root::Tree { pgid, from } = &self.root else {
            return Ok(None);
        };
        let mut node = self.db.tree_node(*pgid, *from)?;
        let mut branches = Vec::new();
        for _ in 0..MAX_DEPTH {
            match node.kind {
                NodeKind::Branch => {
                    let mut children = Vec::with_capacity(node.count);
                    for i in 0..node.count {
                        let (key, child, _) = node.child(i)?;
                        children.push((key.to_vec(), child));
                    }
                    let Some(last) = node.count.checked_sub(1) else {
                        return Err(node.fault(Fault::new(Defect::EmptyBranch, 0)));
                    };
                    let (_, child, from) = node.child(last)?;
                    branches.push(children);
                    node = self.db.tree_node(child, from)?;
                }
                NodeKind::Leaf => {
                    let mut leaf = Vec::with_capacity(node.count);
                    for i in 0..node.count {
                        let e = node.entry(i)?;
                        leaf.push((e.flags, e.key.to_vec(), e.value.to_vec()));
                    }
                    branches.reverse();
                    return Ok(Some(super::writer::Spine { leaf, branches }));
                }
            }
        }
        Err(node.fault(Fault::new(Defect::TooDeep, 0)))
    }
}

/// One bit per page below the high-water mark.
#[derive(Debug)]
pub(crate) struct PageSet {
    bits: Vec<u64>,
}

impl PageSet {
    pub fn new(pages: u64) -> PageSet {
        PageSet {
            bits: vec![0; usize::try_from(pages.div_ceil(64)).unwrap_or(0)],
        }
    }

    /// Adds `pgid`; false if it was already there (or is out of range).
    pub fn insert(&mut self, pgid: u64) -> bool {
        let (word, bit) = (pgid / 64, 1u64 << (pgid % 64));
        match usize::try_from(word)
            .ok()
            .and_then(|w| self.bits.get_mut(w))
        {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, pgid: u64) -> bool {
        let (word, bit) = (pgid / 64, 1u64 << (pgid % 64));
        usize::try_from(word)
            .ok()
            .and_then(|w| self.bits.get(w))
            .is_some_and(|w| w & bit != 0)
    }

    pub fn count(&self) -> u64 {
        self.bits.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

struct Frame {
    node: Node,
    /// Next element to visit.
    index: usize,
}

/// A forward cursor over a bucket's entries in key order. It holds the pages on its path from the
/// bucket's root and stops with an error at the first defect (then yields nothing more).
pub struct Cursor<'db, S> {
    db: &'db Db<S>,
    /// The root, until the first call.
    root: Option<Root>,
    stack: Vec<Frame>,
    /// Pages visited, allocated at the first branch.
    visited: Option<PageSet>,
}

impl<S: PageSource> Cursor<'_, S> {
    /// The next entry, borrowed from the cursor's current page: `None` at the end.
    pub fn next_entry(&mut self) -> Option<Result<LeafEntry<'_>, BoltError>> {
        match self.advance() {
            Ok(Some((top, i))) => {
                // Decoded twice (cheap: a header and one element) so that an error can end the
                // cursor before the entry's borrow of the stack is handed out.
                if let Err(e) = self.stack.get(top)?.node.entry(i) {
                    self.stack.clear();
                    return Some(Err(e));
                }
                self.stack.get(top).map(|f| f.node.entry(i))
            }
            Ok(None) => None,
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }

    /// Moves to the next leaf element: (stack index of its leaf, element index).
    fn advance(&mut self) -> Result<Option<(usize, usize)>, BoltError> {
        if let Some(root) = self.root.take() {
            let node = match root {
                Root::Inline(node) => node,
                Root::Tree { pgid, from } => {
                    let node = self.db.tree_node(pgid, from)?;
                    self.visit(pgid, from)?;
                    node
                }
            };
            self.stack.push(Frame { node, index: 0 });
        }
        loop {
            let Some(top) = self.stack.len().checked_sub(1) else {
                return Ok(None);
            };
            let frame = &mut self.stack[top];
            if frame.index >= frame.node.count {
                self.stack.pop();
                if let Some(parent) = self.stack.last_mut() {
                    parent.index += 1;
                }
                continue;
            }
            let i = frame.index;
            match frame.node.kind {
                NodeKind::Leaf => {
                    frame.index += 1;
                    return Ok(Some((top, i)));
                }
                NodeKind::Branch => {
                    let (_, child, from) = frame.node.child(i)?;
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(from.defect(Defect::TooDeep));
                    }
                    let node = self.db.tree_node(child, from)?;
                    self.visit(child, from)?;
                    self.stack.push(Frame { node, index: 0 });
                }
            }
        }
    }

    fn visit(&mut self, pgid: u64, from: Site) -> Result<(), BoltError> {
        let high_water = self.db.high_water_mark();
        let visited = self.visited.get_or_insert_with(|| PageSet::new(high_water));
        if visited.insert(pgid) {
            Ok(())
        } else {
            Err(from.defect(Defect::PageReachedTwice))
        }
    }
}

/// An entry copied out of its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    /// The value; for a nested bucket, its bucket header (and inline page).
    pub value: Vec<u8>,
    pub is_bucket: bool,
}

/// A bucket's entries in key order, copied out ([`Cursor`] borrows them instead).
pub struct Iter<'db, S> {
    cursor: Cursor<'db, S>,
}

impl<S: PageSource> Iterator for Iter<'_, S> {
    type Item = Result<Entry, BoltError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.cursor.next_entry().map(|r| {
            r.map(|e| Entry {
                key: e.key.to_vec(),
                value: e.value.to_vec(),
                is_bucket: e.is_bucket(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_set() {
        let mut s = PageSet::new(130);
        assert!(s.insert(0) && s.insert(129) && s.insert(64));
        assert!(!s.insert(64));
        assert!(!s.insert(200), "out of range");
        assert!(s.contains(129) && !s.contains(1));
        assert_eq!(s.count(), 3);
    }
}
