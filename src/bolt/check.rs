//! A structural check of a bbolt file, in the spirit of bbolt's `Tx.Check` (which `etcdutl snapshot
//! status` runs first), stricter where bbolt would crash or read out of bounds:
//! - every tree page is reached once: no page (or overflow page) referenced twice, no pointer to a
//!   meta page or at/beyond the high-water mark, overflow included;
//! - every reached page is what the tree expects: a branch or leaf page whose id is its position,
//!   whose elements lie inside it, and whose leaves all sit at the same depth of their tree;
//! - keys are strictly increasing within a page and within the bounds set by the parent: branch key
//!   `i` ≤ every key of child `i` < branch key `i + 1`;
//! - free space adds up: with a stored freelist, every page below the high-water mark is reachable
//!   XOR free, no page is freed twice, no free id is out of range. Without one (etcd's
//!   NoFreelistSync, freelist id 0xFFFF_FFFF_FFFF_FFFF) the unreachable pages are free by definition.
//!
//! Every reachable page is read once (through the reader's cache); memory is two bits per page plus
//! the pending subtrees' bounds. Problems are collected, not raised: the report lists the first
//! [`MAX_PROBLEMS`] and counts them all.

use serde::Serialize;

use super::error::BoltError;
use super::freelist::FreelistPage;
use super::meta::ROOT_FIELD_IN_PAGE;
use super::page::{PageHeader, PageKind, META_PAGE_IDS};
use super::reader::{Db, Node, NodeKind, PageSet, Root, Site};
use super::source::PageSource;
use super::stream::MAX_DEPTH;

/// Problems listed in a report (all are counted).
pub const MAX_PROBLEMS: usize = 100;

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A meta page is invalid (the other one is used).
    Meta,
    /// A page that cannot be decoded: wrong id, bad header, elements outside the page, unreadable.
    Page,
    /// A pointer to a meta page or at/beyond the high-water mark.
    BadPointer,
    /// A page reached from two places (or twice from one: a cycle).
    MultipleReferences,
    /// A page in a tree that is neither a branch nor a leaf.
    UnexpectedPageType,
    /// Leaves of one tree at different depths.
    Unbalanced,
    /// Keys out of order within a page or outside the bounds its parent sets.
    KeyOrder,
    /// Tree descent deeper than any bbolt tree can be.
    TooDeep,
    /// A page that is both reachable and in the stored freelist.
    ReachableFreed,
    /// A page below the high-water mark neither reachable nor in the stored freelist.
    UnreachableUnfreed,
    /// The stored freelist page is invalid, or lists a page twice or out of range.
    Freelist,
}

/// One problem: the page it was found on (for a bad pointer, the page holding the pointer) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub page: u64,
    pub kind: ProblemKind,
    pub reason: String,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Pages below the high-water mark.
    pub pages_total: u64,
    /// Pages reachable: the metas, the freelist page (if stored), every tree page with its
    /// overflow pages.
    pub pages_reachable: u64,
    /// Free pages: those listed in the stored freelist, or, when none is stored, the unreachable.
    pub pages_free: u64,
    /// Whether the file stores a freelist page.
    pub freelist_stored: bool,
    /// The first [`MAX_PROBLEMS`] problems.
    pub problems: Vec<Problem>,
    /// Every problem found, listed or not.
    pub problem_count: u64,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problem_count == 0
    }
}

/// Checks the structure of `db` (see the module documentation). Never fails: what cannot be read
/// is a problem in the report.
pub fn check<S: PageSource>(db: &Db<S>) -> CheckReport {
    check_visiting(db, &mut ())
}

/// One leaf entry met by the check, in key order (see [`Visitor`]).
#[derive(Debug, Clone, Copy)]
pub struct Visit<'a> {
    /// How deep the entry's bucket is: 0 for the root bucket (whose entries name the top-level
    /// buckets), 1 for a top-level bucket, and so on.
    pub depth: usize,
    pub key: &'a [u8],
    /// The value; for a nested bucket, its bucket header (and inline page).
    pub value: &'a [u8],
    pub is_bucket: bool,
}

/// Sees every leaf entry the check reads, in the order a cursor would return them: a bucket's
/// entry, then everything inside that bucket, then the entry after it. This lets one walk both
/// check the file and compute what needs every pair in order (etcdutl's hash), reading each page
/// once instead of twice. On a corrupt file entries may be missing; the report says so.
pub trait Visitor {
    fn visit(&mut self, entry: Visit<'_>);
}

impl Visitor for () {
    fn visit(&mut self, _: Visit<'_>) {}
}

/// [`check`], showing every leaf entry to `visitor` in key order.
pub fn check_visiting<S: PageSource, V: Visitor>(db: &Db<S>, visitor: &mut V) -> CheckReport {
    let mut c = Checker {
        db,
        high_water: db.high_water_mark(),
        reachable: PageSet::new(db.high_water_mark()),
        free: None,
        problems: Vec::new(),
        problem_count: 0,
        leaf_depths: Vec::new(),
        work: Vec::new(),
        visitor,
    };
    if let Some(note) = db.meta_note() {
        let invalid = 1 - db.meta_page().min(1);
        c.problem(invalid, ProblemKind::Meta, note.to_string());
    }
    for id in META_PAGE_IDS {
        c.reachable.insert(id);
    }
    c.freelist();
    let root = db.meta().root;
    let from = Site::new(db.meta_page(), ROOT_FIELD_IN_PAGE as u64);
    c.tree(root, from, 0);
    while let Some(work) = c.work.pop() {
        match work {
            Work::Page(task) => c.page(task),
            Work::Leaf(frame) => c.leaf(frame),
        }
    }
    c.finish()
}

/// A subtree still to check.
struct Task {
    pgid: u64,
    /// Where the pointer to it lies.
    from: Site,
    /// Its depth in its tree (the root is 0).
    depth: usize,
    /// Its keys must be ≥ `low` and < `high`.
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
    /// Which tree (index into `leaf_depths`).
    tree: usize,
    /// The depth of the bucket the tree belongs to (see [`Visit::depth`]).
    bucket_depth: usize,
}

/// A leaf (a page or an inline bucket's page) whose entries from `next` on are still to check.
/// A leaf is left at each nested bucket and resumed after that bucket's tree, so entries are met
/// in key order.
struct LeafFrame {
    node: Node,
    next: usize,
    low: Option<Vec<u8>>,
    high: Option<Vec<u8>>,
    /// How many inline buckets enclose this one (a bound against crafted nesting).
    inline_depth: usize,
    bucket_depth: usize,
}

/// What is still to do, kept on a stack (never recursion: depth is bounded by the file's
/// content, which may be crafted).
enum Work {
    Page(Task),
    Leaf(LeafFrame),
}

struct Checker<'a, S, V> {
    db: &'a Db<S>,
    high_water: u64,
    reachable: PageSet,
    /// The stored freelist's pages; `None` when none is stored (or it could not be read).
    free: Option<PageSet>,
    problems: Vec<Problem>,
    problem_count: u64,
    /// Per tree: the depth of its leaves, once one is seen.
    leaf_depths: Vec<Option<usize>>,
    work: Vec<Work>,
    visitor: &'a mut V,
}

impl<S: PageSource, V: Visitor> Checker<'_, S, V> {
    fn problem(&mut self, page: u64, kind: ProblemKind, reason: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem { page, kind, reason });
        }
    }

    /// A problem from an error met while working on page `pgid` (a corruption names its own page,
    /// which may be another one: the parent holding a bad pointer, an inline bucket's page).
    fn error(&mut self, pgid: u64, kind: ProblemKind, e: &BoltError) {
        let page = match e {
            BoltError::Corrupted { page, .. } => *page,
            _ => pgid,
        };
        self.problem(page, kind, e.to_string());
    }

    fn freed(&self, pgid: u64) -> bool {
        self.free.as_ref().is_some_and(|f| f.contains(pgid))
    }

    /// Reads the stored freelist, if any, into `free`.
    fn freelist(&mut self) {
        let Some(pgid) = self.db.meta().freelist() else {
            return;
        };
        let meta_page = self.db.meta_page();
        if META_PAGE_IDS.contains(&pgid) || pgid >= self.high_water {
            let reason = format!(
                "freelist page id {pgid} is not a data page below the high-water mark {}",
                self.high_water
            );
            self.problem(meta_page, ProblemKind::Freelist, reason);
            return;
        }
        let bytes = match self.db.read_page(pgid) {
            Ok(b) => b,
            Err(e) => return self.error(pgid, ProblemKind::Freelist, &e),
        };
        self.mark_span(pgid, &bytes);
        let page = match FreelistPage::new(&bytes) {
            Ok(p) => p,
            Err(f) => return self.error(pgid, ProblemKind::Freelist, &f.on_page(pgid)),
        };
        let mut free = PageSet::new(self.high_water);
        for (id, at) in page.ids() {
            let reason = if META_PAGE_IDS.contains(&id) {
                format!("offset {at}: lists meta page {id} as free")
            } else if id >= self.high_water {
                format!(
                    "offset {at}: lists page {id}, at or beyond the high-water mark {}",
                    self.high_water
                )
            } else if !free.insert(id) {
                format!("offset {at}: page {id} already freed")
            } else {
                continue;
            };
            self.problem(pgid, ProblemKind::Freelist, reason);
        }
        // The freelist's own pages are reachable; listing them as free is a problem.
        let span = PageHeader::decode(&bytes).map_or(0, |h| u64::from(h.overflow));
        for p in pgid..=pgid.saturating_add(span) {
            if free.contains(p) {
                let reason = "the freelist page lists itself as free".to_string();
                self.problem(p, ProblemKind::ReachableFreed, reason);
            }
        }
        self.free = Some(free);
    }

    /// Marks page `pgid` and its overflow pages reachable, reporting pages reached before or
    /// listed as free.
    fn mark_span(&mut self, pgid: u64, bytes: &[u8]) {
        let overflow = PageHeader::decode(bytes).map_or(0, |h| u64::from(h.overflow));
        for p in pgid..=pgid.saturating_add(overflow) {
            if !self.reachable.insert(p) {
                let reason = if p == pgid {
                    "referenced more than once".to_string()
                } else {
                    format!("overflow page of page {pgid} is also reachable otherwise")
                };
                self.problem(p, ProblemKind::MultipleReferences, reason);
            }
            if self.freed(p) {
                let reason = if p == pgid {
                    "reachable but listed in the freelist".to_string()
                } else {
                    format!("overflow page of page {pgid} is listed in the freelist")
                };
                self.problem(p, ProblemKind::ReachableFreed, reason);
            }
        }
    }

    /// Queues the tree of a new bucket, rooted at `pgid`.
    fn tree(&mut self, pgid: u64, from: Site, bucket_depth: usize) {
        self.leaf_depths.push(None);
        self.work.push(Work::Page(Task {
            pgid,
            from,
            depth: 0,
            low: None,
            high: None,
            tree: self.leaf_depths.len() - 1,
            bucket_depth,
        }));
    }

    fn page(&mut self, t: Task) {
        let Task { pgid, from, .. } = t;
        if META_PAGE_IDS.contains(&pgid) || pgid >= self.high_water {
            let reason = format!(
                "offset {}: points to page {pgid}, {}",
                from.offset,
                if pgid >= self.high_water {
                    format!("at or beyond the high-water mark {}", self.high_water)
                } else {
                    "a meta page".to_string()
                }
            );
            return self.problem(from.page, ProblemKind::BadPointer, reason);
        }
        if t.depth >= MAX_DEPTH {
            let reason = format!("tree deeper than {MAX_DEPTH} levels (a cycle?)");
            return self.problem(pgid, ProblemKind::TooDeep, reason);
        }
        if self.reachable.contains(pgid) {
            let reason = format!(
                "referenced more than once (again from page {}, offset {})",
                from.page, from.offset
            );
            return self.problem(pgid, ProblemKind::MultipleReferences, reason);
        }
        // Every page is read once here: the cache would only churn.
        let bytes = match self.db.read_page_uncached(pgid) {
            Ok(b) => b,
            Err(e) => {
                self.reachable.insert(pgid);
                return self.error(pgid, ProblemKind::Page, &e);
            }
        };
        self.mark_span(pgid, &bytes);
        let kind = PageHeader::decode(&bytes).map(|h| h.kind());
        if let Ok(k @ (PageKind::Meta | PageKind::Freelist | PageKind::Unknown(_))) = kind {
            let reason = format!("{k:?} page inside a tree, expected a branch or a leaf");
            return self.problem(pgid, ProblemKind::UnexpectedPageType, reason);
        }
        let node = match Node::new(bytes, Site::new(pgid, 0)) {
            Ok(n) => n,
            Err(e) => return self.error(pgid, ProblemKind::Page, &e),
        };
        match node.kind {
            NodeKind::Branch => self.branch(&node, t),
            NodeKind::Leaf => {
                if let Some(expected) = self.leaf_depths.get_mut(t.tree) {
                    match *expected {
                        None => *expected = Some(t.depth),
                        Some(d) if d != t.depth => {
                            let reason = format!(
                                "leaf at depth {} of its tree, other leaves at depth {d}",
                                t.depth
                            );
                            self.problem(pgid, ProblemKind::Unbalanced, reason);
                        }
                        Some(_) => {}
                    }
                }
                self.leaf(LeafFrame {
                    node,
                    next: 0,
                    low: t.low,
                    high: t.high,
                    inline_depth: 0,
                    bucket_depth: t.bucket_depth,
                });
            }
        }
    }

    fn branch(&mut self, node: &Node, t: Task) {
        let mut children = Vec::with_capacity(node.count);
        let mut prev: Option<&[u8]> = None;
        for i in 0..node.count {
            let (key, child, from) = match node.child(i) {
                Ok(c) => c,
                Err(e) => {
                    self.error(node.id(), ProblemKind::Page, &e);
                    continue;
                }
            };
            self.key_order(node, i, key, prev, t.low.as_deref(), t.high.as_deref());
            children.push((key, child, from));
            prev = Some(key);
        }
        // Child i holds keys in [key i, key i+1); the last child up to the parent's bound. Pushed
        // last child first, so the first is checked first.
        let mut high = t.high;
        for (key, child, from) in children.into_iter().rev() {
            let low = key.to_vec();
            self.work.push(Work::Page(Task {
                pgid: child,
                from,
                depth: t.depth + 1,
                low: Some(low.clone()),
                high: high.take(),
                tree: t.tree,
                bucket_depth: t.bucket_depth,
            }));
            high = Some(low);
        }
    }

    /// Checks a leaf's entries from `f.next` on; at a nested bucket, queues the rest of the leaf
    /// and then the bucket (so the bucket is checked first, in key order).
    fn leaf(&mut self, f: LeafFrame) {
        for i in f.next..f.node.count {
            let entry = match f.node.entry(i) {
                Ok(e) => e,
                Err(e) => {
                    self.error(f.node.id(), ProblemKind::Page, &e);
                    continue;
                }
            };
            let prev = i
                .checked_sub(1)
                .and_then(|p| f.node.entry(p).ok())
                .map(|p| p.key);
            self.key_order(
                &f.node,
                i,
                entry.key,
                prev,
                f.low.as_deref(),
                f.high.as_deref(),
            );
            let is_bucket = entry.is_bucket();
            self.visitor.visit(Visit {
                depth: f.bucket_depth,
                key: entry.key,
                value: entry.value,
                is_bucket,
            });
            if !is_bucket {
                continue;
            }
            let nested = match f.node.open_bucket(i) {
                Ok((Root::Tree { pgid, from }, _)) => Some(Ok((pgid, from))),
                Ok((Root::Inline(inline), _)) => {
                    if f.inline_depth >= MAX_DEPTH {
                        let reason = format!("inline buckets nested deeper than {MAX_DEPTH}");
                        self.problem(inline.id(), ProblemKind::TooDeep, reason);
                        None
                    } else {
                        Some(Err(inline))
                    }
                }
                Err(e) => {
                    self.error(f.node.id(), ProblemKind::Page, &e);
                    None
                }
            };
            let Some(nested) = nested else { continue };
            let (bucket_depth, inline_depth) = (f.bucket_depth, f.inline_depth);
            if i + 1 < f.node.count {
                self.work.push(Work::Leaf(LeafFrame { next: i + 1, ..f }));
            }
            match nested {
                Ok((pgid, from)) => self.tree(pgid, from, bucket_depth + 1),
                Err(inline) => self.work.push(Work::Leaf(LeafFrame {
                    node: inline,
                    next: 0,
                    low: None,
                    high: None,
                    inline_depth: inline_depth + 1,
                    bucket_depth: bucket_depth + 1,
                })),
            }
            return;
        }
    }

    /// Checks key `i` of `node` against the key before it and its parent's bounds. Messages are
    /// built only for a problem: this runs for every key of the file.
    fn key_order(
        &mut self,
        node: &Node,
        i: usize,
        key: &[u8],
        prev: Option<&[u8]>,
        low: Option<&[u8]>,
        high: Option<&[u8]>,
    ) {
        let what = || {
            if node.at.offset == 0 {
                format!("key {i} ({})", short_hex(key))
            } else {
                format!(
                    "inline bucket at offset {}: key {i} ({})",
                    node.at.offset,
                    short_hex(key)
                )
            }
        };
        if let Some(p) = prev {
            if key <= p {
                let reason = format!("{} is not greater than the key before it", what());
                self.problem(node.id(), ProblemKind::KeyOrder, reason);
            }
        } else if let Some(low) = low.filter(|low| key < *low) {
            let reason = format!(
                "{} is below its parent's key for this page ({})",
                what(),
                short_hex(low)
            );
            self.problem(node.id(), ProblemKind::KeyOrder, reason);
        }
        if let Some(high) = high.filter(|high| key >= *high) {
            let reason = format!(
                "{} is not below the parent's key for the next page ({})",
                what(),
                short_hex(high)
            );
            self.problem(node.id(), ProblemKind::KeyOrder, reason);
        }
    }

    fn finish(mut self) -> CheckReport {
        let pages_reachable = self.reachable.count();
        let pages_free = match self.free.take() {
            Some(free) => {
                for p in 0..self.high_water {
                    if !self.reachable.contains(p) && !free.contains(p) {
                        let reason = "neither reachable nor in the freelist".to_string();
                        self.problem(p, ProblemKind::UnreachableUnfreed, reason);
                    }
                }
                free.count()
            }
            None => self.high_water.saturating_sub(pages_reachable),
        };
        CheckReport {
            pages_total: self.high_water,
            pages_reachable,
            pages_free,
            freelist_stored: self.db.meta().freelist().is_some(),
            problems: self.problems,
            problem_count: self.problem_count,
        }
    }
}

/// Up to 32 bytes of a key in hex, for messages.
fn short_hex(key: &[u8]) -> String {
    const MAX: usize = 32;
    let shown = hex::encode(key.get(..MAX).unwrap_or(key));
    if key.len() > MAX {
        format!("{shown}… {} bytes", key.len())
    } else {
        shown
    }
}
