//! Learning a snapshot's facts while its bytes stream past once, in order, with bounded memory.
//!
//! bbolt's `Tx.WriteTo` (behind etcd's Snapshot RPC) writes the two meta pages, then every page in
//! page-id order, live or free. The scanner reads the metas from the first bytes, then summarises
//! each page below the high-water mark as it passes ([`super::summary`]): children may come before
//! or after their parents, and free pages hold stale trees that look live, so nothing is concluded
//! until [`SnapshotScanner::finish`], which walks from the chosen meta's root through the summaries
//! alone, touching only pages reachable from it.
//!
//! Memory: one page buffer, 8 bytes per page seen, about 100 bytes per branch page (≈1 % of the
//! pages of a big `key` bucket), the few captured entries, and the collectors of pages whose
//! overflow pages are still arriving (element tables and key prefixes, capped).

use std::collections::HashMap;

use serde::Serialize;

use super::element::{element_offset, BucketValue, LeafPage, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG};
use super::error::{BoltError, Defect, Fault};
use super::meta::{read_metas, MetaChoice, MetaRead, ROOT_FIELD_IN_PAGE};
use super::page::{META_PAGE_FLAG, META_PAGE_IDS};
use super::schema::{decode_be_u64, Revision};
use super::summary::{
    BranchSummary, Capture, Collector, Progress, Route, Slot, SlotKind, Summary, LOOKUPS,
    LOOKUP_CONSISTENT_INDEX, LOOKUP_KEY_BUCKET, LOOKUP_META_BUCKET, LOOKUP_TERM,
};

/// Deepest tree descent before concluding there is a cycle. A bbolt branch page has at least two
/// children, so 64 levels would need 2⁶⁴ pages.
pub const MAX_DEPTH: usize = 64;

/// Memory all collectors of pages with overflow pages may hold together.
const MAX_OPEN_HELD: usize = 64 << 20;

/// What a snapshot's bbolt file says, as `etcdutl snapshot status` would read it, plus the
/// bbolt-level facts the manifest records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotFacts {
    /// Bytes per page (from the meta).
    pub page_size: u32,
    /// The meta's high-water mark: pages `0..high_water_mark` are the database.
    pub high_water_mark: u64,
    /// Transaction id of the meta used.
    pub txid: u64,
    /// Which meta page was used (0 or 1).
    pub meta_page: u64,
    /// Set when a meta page was invalid: which one, why, and what was used instead.
    pub meta_note: Option<String>,
    /// Freelist page id; `None` when the freelist is not stored (etcd's NoFreelistSync).
    pub freelist: Option<u64>,
    /// Bytes of the bbolt file that were fed.
    pub db_size: u64,
    /// high_water_mark × page_size: what etcdutl reports as "totalSize" (equals `db_size` for a
    /// snapshot; a copy of a live `member/snap/db` may be longer).
    pub data_size: u64,
    /// Main revision of the last key of the `key` bucket; `None` when the bucket is empty.
    pub revision: Option<i64>,
    /// `meta` bucket `consistent_index`.
    pub consistent_index: Option<u64>,
    /// `meta` bucket `term` (absent in files written by etcd 3.4).
    pub term: Option<u64>,
}

/// Learns [`SnapshotFacts`] from the bytes of a bbolt file fed in order, in chunks of any size.
/// Feed the database bytes only: strip the snapshot stream's 32-byte sha256 trailer first.
#[derive(Debug)]
pub struct SnapshotScanner {
    fed: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Buffering the first bytes until both metas can be read.
    Metas {
        prelude: Vec<u8>,
        need: usize,
    },
    Pages(Box<Pages>),
    Failed(BoltError),
}

/// The scanner once the meta is chosen.
#[derive(Debug)]
struct Pages {
    choice: MetaChoice,
    page_size: usize,
    high_water: u64,
    /// Bytes of the meta pages still to skip.
    skip: u64,
    page: Vec<u8>,
    /// One per page received, indexed by page id.
    slots: Vec<Slot>,
    branches: HashMap<u64, BranchSummary>,
    captures: HashMap<u64, Vec<Capture>>,
    /// Collectors of pages whose overflow pages are still arriving.
    open: Vec<Collector>,
}

impl Default for SnapshotScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl SnapshotScanner {
    pub fn new() -> Self {
        SnapshotScanner {
            fed: 0,
            state: State::Metas {
                prelude: Vec::new(),
                need: 0,
            },
        }
    }

    /// Takes the next bytes of the file. An error here (both metas invalid) is final: later calls
    /// and `finish` return it again.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), BoltError> {
        self.fed += bytes.len() as u64;
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Pages(pages) => {
                pages.feed(bytes);
                Ok(())
            }
            State::Metas { prelude, need } => {
                // Buffer only what reading the metas needs; the rest goes on to the pages.
                let mut rest = bytes;
                loop {
                    if prelude.len() < *need {
                        let n = (*need - prelude.len()).min(rest.len());
                        let (head, tail) = rest.split_at(n);
                        prelude.extend_from_slice(head);
                        rest = tail;
                        if prelude.len() < *need {
                            return Ok(());
                        }
                    }
                    match read_metas(prelude, false) {
                        Ok(MetaRead::NeedMore(n)) => *need = n,
                        Ok(MetaRead::Decided(choice)) => {
                            let mut pages = Pages::new(choice);
                            pages.feed(prelude);
                            pages.feed(rest);
                            self.state = State::Pages(Box::new(pages));
                            return Ok(());
                        }
                        Err(e) => {
                            self.state = State::Failed(e.clone());
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Ends the input and resolves the facts from the chosen meta's root.
    pub fn finish(self) -> Result<SnapshotFacts, BoltError> {
        let pages = match self.state {
            State::Failed(e) => return Err(e),
            State::Pages(pages) => pages,
            State::Metas { prelude, .. } => match read_metas(&prelude, true)? {
                MetaRead::Decided(choice) => {
                    let mut pages = Pages::new(choice);
                    pages.feed(&prelude);
                    Box::new(pages)
                }
                // read_metas decides when told the input ended; a short prelude is a missing meta.
                MetaRead::NeedMore(n) => {
                    return Err(BoltError::Truncated {
                        expected: n as u64,
                        actual: self.fed,
                    })
                }
            },
        };
        pages.resolve(self.fed)
    }

    /// Approximate bytes of memory the scanner holds now (for tests and metrics).
    pub fn retained_bytes(&self) -> usize {
        match &self.state {
            State::Metas { prelude, .. } => prelude.capacity(),
            State::Pages(p) => p.retained_bytes(),
            State::Failed(_) => 0,
        }
    }
}

impl Pages {
    fn new(choice: MetaChoice) -> Self {
        let page_size = choice.meta.page_size as usize;
        Pages {
            page_size,
            high_water: choice.meta.high_water,
            skip: (META_PAGE_IDS.len() * page_size) as u64,
            choice,
            page: Vec::new(),
            slots: vec![
                Slot::pack(SlotKind::Other {
                    flags: META_PAGE_FLAG
                });
                META_PAGE_IDS.len()
            ],
            branches: HashMap::new(),
            captures: HashMap::new(),
            open: Vec::new(),
        }
    }

    /// Takes the next bytes of the file (`bytes` starts where the previous call ended; the first
    /// call starts at offset 0).
    fn feed(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).map_or(bytes.len(), |s| s.min(bytes.len()));
            bytes = bytes.get(n..).unwrap_or_default();
            self.skip -= n as u64;
        }
        while !bytes.is_empty() && (self.slots.len() as u64) < self.high_water {
            if self.page.is_empty() {
                if let Some((page, rest)) = bytes.split_at_checked(self.page_size) {
                    self.process(page);
                    bytes = rest;
                    continue;
                }
            }
            let n = (self.page_size - self.page.len()).min(bytes.len());
            let (head, rest) = bytes.split_at(n);
            self.page.extend_from_slice(head);
            bytes = rest;
            if self.page.len() == self.page_size {
                let page = std::mem::take(&mut self.page);
                self.process(&page);
                self.page = page;
                self.page.clear();
            }
        }
    }

    /// Handles the next whole page: continues the collectors of earlier pages that span it, then
    /// starts on it as a page of its own (it may be live even inside a stale page's span).
    fn process(&mut self, page: &[u8]) {
        let pgid = self.slots.len() as u64;
        for c in std::mem::take(&mut self.open) {
            let owner = c.pgid;
            let progress = c.absorb(page);
            self.settle(owner, progress);
        }
        self.slots.push(Slot::PENDING);
        let progress = Collector::start(pgid, page, self.high_water, self.page_size);
        self.settle(pgid, progress);
        let held: usize = self.open.iter().map(Collector::held).sum();
        if held > MAX_OPEN_HELD {
            // Give up on the newest: if it turns out to be live, resolving reports it.
            if let Some(c) = self.open.pop() {
                self.set(
                    c.pgid,
                    SlotKind::Invalid(Fault::new(Defect::TooLargeToSummarise, 0)),
                );
            }
        }
    }

    fn settle(&mut self, pgid: u64, progress: Progress) {
        match progress {
            Progress::Open(c) => self.open.push(c),
            Progress::Invalid(f) => self.set(pgid, SlotKind::Invalid(f)),
            Progress::Other(flags) => self.set(pgid, SlotKind::Other { flags }),
            Progress::Done(Summary::Branch(b)) => {
                self.branches.insert(pgid, b);
                self.set(pgid, SlotKind::Branch);
            }
            Progress::Done(Summary::Leaf { last, captures }) => {
                if !captures.is_empty() {
                    self.captures.insert(pgid, captures);
                }
                self.set(pgid, last);
            }
        }
    }

    fn set(&mut self, pgid: u64, kind: SlotKind) {
        if let Some(s) = usize::try_from(pgid)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            *s = Slot::pack(kind);
        }
    }

    fn retained_bytes(&self) -> usize {
        let branch = size_of::<(u64, BranchSummary)>() + 8;
        let captures: usize = self
            .captures
            .values()
            .flatten()
            .map(|c| size_of::<Capture>() + c.value.len())
            .sum();
        self.page.capacity()
            + self.slots.capacity() * size_of::<Slot>()
            + self.branches.capacity() * branch
            + self.captures.capacity() * (size_of::<(u64, Vec<Capture>)>() + 8)
            + captures
            + self.open.iter().map(Collector::held).sum::<usize>()
    }

    /// Walks from the chosen meta's root to etcd's facts.
    fn resolve(&self, fed: u64) -> Result<SnapshotFacts, BoltError> {
        let meta = self.choice.meta;
        let data_size = meta.data_size().unwrap_or(u64::MAX);
        if fed < data_size {
            return Err(BoltError::Truncated {
                expected: data_size,
                actual: fed,
            });
        }
        let root = Site {
            page: self.choice.page,
            offset: ROOT_FIELD_IN_PAGE as u64,
        };
        let key = self
            .find(meta.root, root, LOOKUP_KEY_BUCKET)?
            .ok_or(BoltError::MissingBucket { name: "key" })?;
        let key = self.bucket(key)?;
        let revision = match key {
            Bucket::Inline { page, at } => inline_last_revision(page, at)?,
            Bucket::Tree { root, from } => self.last_revision(root, from, 0)?,
        };
        let meta_bucket = self
            .find(meta.root, root, LOOKUP_META_BUCKET)?
            .ok_or(BoltError::MissingBucket { name: "meta" })?;
        let meta_bucket = self.bucket(meta_bucket)?;
        let (consistent_index, term) = match meta_bucket {
            Bucket::Inline { page, at } => (
                inline_integer(page, at, LOOKUP_CONSISTENT_INDEX)?,
                inline_integer(page, at, LOOKUP_TERM)?,
            ),
            Bucket::Tree { root, from } => (
                self.integer(root, from, LOOKUP_CONSISTENT_INDEX)?,
                self.integer(root, from, LOOKUP_TERM)?,
            ),
        };
        Ok(SnapshotFacts {
            page_size: meta.page_size,
            high_water_mark: meta.high_water,
            txid: meta.txid,
            meta_page: self.choice.page,
            meta_note: self.choice.note.clone(),
            freelist: meta.freelist(),
            db_size: fed,
            data_size,
            revision,
            consistent_index,
            term,
        })
    }

    /// The summary of page `pgid`, reached through a pointer at `from`.
    fn slot(&self, pgid: u64, from: Site) -> Result<SlotKind, BoltError> {
        let bad_pointer = |reason| BoltError::Corrupted {
            page: from.page,
            offset: from.offset,
            reason,
        };
        if META_PAGE_IDS.contains(&pgid) {
            return Err(bad_pointer(Defect::PointerToMeta));
        }
        if pgid >= self.high_water {
            return Err(bad_pointer(Defect::PointerBeyondHighWater));
        }
        let slot = usize::try_from(pgid)
            .ok()
            .and_then(|i| self.slots.get(i))
            .map_or(SlotKind::Pending, |s| s.unpack());
        match slot {
            SlotKind::Pending => Err(Fault::new(Defect::Missing, 0).on_page(pgid)),
            SlotKind::Invalid(f) => Err(f.on_page(pgid)),
            SlotKind::Other { .. } => Err(Fault::new(Defect::NotATreePage, 8).on_page(pgid)),
            kind => Ok(kind),
        }
    }

    fn branch(&self, pgid: u64) -> Result<&BranchSummary, BoltError> {
        self.branches
            .get(&pgid)
            .ok_or(Fault::new(Defect::Missing, 0).on_page(pgid))
    }

    /// The entry named `LOOKUPS[lookup]` in the tree rooted at `root`, found the way bbolt's seek
    /// finds it: down the branch routes to one leaf, then an exact match there.
    fn find(
        &self,
        root: u64,
        from: Site,
        lookup: usize,
    ) -> Result<Option<(u64, &Capture)>, BoltError> {
        let (mut pgid, mut from) = (root, from);
        for _ in 0..MAX_DEPTH {
            if self.slot(pgid, from)? == SlotKind::Branch {
                let route = self.branch(pgid)?.routes.get(lookup).copied();
                let Some(route) = route else {
                    return Ok(None);
                };
                (pgid, from) = (route.child, Site::element(pgid, route));
                continue;
            }
            let found = self
                .captures
                .get(&pgid)
                .and_then(|cs| cs.iter().find(|c| c.lookup == lookup));
            return Ok(found.map(|c| (pgid, c)));
        }
        Err(Fault::new(Defect::TooDeep, 0).on_page(pgid))
    }

    /// Opens a captured bucket entry.
    fn bucket<'a>(&self, (pgid, c): (u64, &'a Capture)) -> Result<Bucket<'a>, BoltError> {
        let at = |defect, offset| BoltError::Corrupted {
            page: pgid,
            offset,
            reason: defect,
        };
        if c.flags & BUCKET_LEAF_FLAG == 0 {
            return Err(at(Defect::NotABucket, Site::element_offset(c.index)));
        }
        if c.value.len() < c.value_len as usize {
            return Err(at(Defect::ValueTooLarge, c.value_offset));
        }
        let b =
            BucketValue::decode(&c.value).map_err(|f| at(f.defect, c.value_offset + f.offset))?;
        Ok(match b.inline_page {
            Some(page) => Bucket::Inline {
                page,
                at: Site {
                    page: pgid,
                    offset: c.value_offset + BUCKET_HEADER_SIZE as u64,
                },
            },
            None => Bucket::Tree {
                root: b.root,
                from: Site {
                    page: pgid,
                    offset: c.value_offset,
                },
            },
        })
    }

    /// Main revision of the last key in the tree rooted at `pgid`: down the last children; where
    /// a last leaf is empty, bbolt's `Cursor.Last` steps back, and so does this (one child).
    fn last_revision(&self, pgid: u64, from: Site, depth: usize) -> Result<Option<i64>, BoltError> {
        if depth >= MAX_DEPTH {
            return Err(Fault::new(Defect::TooDeep, 0).on_page(pgid));
        }
        match self.slot(pgid, from)? {
            SlotKind::LeafEmpty => Ok(None),
            SlotKind::LeafRevision(main) => Ok(Some(main)),
            SlotKind::LeafOther { last_element } => {
                Err(Fault::new(Defect::NotARevision, last_element).on_page(pgid))
            }
            _ => {
                let b = self.branch(pgid)?;
                let last =
                    self.last_revision(b.last.child, Site::element(pgid, b.last), depth + 1)?;
                match (last, b.before_last) {
                    (None, Some(r)) => {
                        self.last_revision(r.child, Site::element(pgid, r), depth + 1)
                    }
                    (last, _) => Ok(last),
                }
            }
        }
    }

    /// An 8-byte big-endian integer of the `meta` bucket whose tree is rooted at `root`.
    fn integer(&self, root: u64, from: Site, lookup: usize) -> Result<Option<u64>, BoltError> {
        let Some((pgid, c)) = self.find(root, from, lookup)? else {
            return Ok(None);
        };
        let bad = |offset| BoltError::Corrupted {
            page: pgid,
            offset,
            reason: Defect::NotAnInteger,
        };
        if c.flags & BUCKET_LEAF_FLAG != 0 {
            return Err(bad(Site::element_offset(c.index)));
        }
        decode_be_u64(&c.value)
            .filter(|_| c.value.len() == c.value_len as usize)
            .map(Some)
            .ok_or(bad(c.value_offset))
    }
}

/// A pointer's location: page and offset, for errors about where it points.
#[derive(Debug, Clone, Copy)]
struct Site {
    page: u64,
    offset: u64,
}

impl Site {
    fn element(page: u64, route: Route) -> Site {
        Site {
            page,
            offset: route.offset(),
        }
    }

    fn element_offset(index: u16) -> u64 {
        element_offset(usize::from(index)) as u64
    }
}

/// An opened bucket.
enum Bucket<'a> {
    /// An inline bucket's page, and where it lies (for errors).
    Inline { page: &'a [u8], at: Site },
    /// A bucket with its own tree.
    Tree { root: u64, from: Site },
}

fn inline_page(page: &[u8], at: Site) -> Result<LeafPage<'_>, BoltError> {
    LeafPage::new(page).map_err(|f| inline_fault(f, at))
}

fn inline_fault(f: Fault, at: Site) -> BoltError {
    BoltError::Corrupted {
        page: at.page,
        offset: at.offset + f.offset,
        reason: f.defect,
    }
}

fn inline_last_revision(page: &[u8], at: Site) -> Result<Option<i64>, BoltError> {
    let leaf = inline_page(page, at)?;
    let Some(last) = leaf.len().checked_sub(1) else {
        return Ok(None);
    };
    let e = leaf.element(last).map_err(|f| inline_fault(f, at))?;
    Revision::from_key(e.key)
        .map(|r| Some(r.main))
        .ok_or(inline_fault(
            Fault::new(Defect::NotARevision, element_offset(last) as u64),
            at,
        ))
}

fn inline_integer(page: &[u8], at: Site, lookup: usize) -> Result<Option<u64>, BoltError> {
    let leaf = inline_page(page, at)?;
    let name = LOOKUPS.get(lookup).map_or(&b""[..], |l| l.name);
    let Some(e) = leaf.get(name).map_err(|f| inline_fault(f, at))? else {
        return Ok(None);
    };
    if e.is_bucket() {
        return Err(inline_fault(Fault::new(Defect::NotAnInteger, 0), at));
    }
    decode_be_u64(e.value)
        .map(Some)
        .ok_or(inline_fault(Fault::new(Defect::NotAnInteger, 0), at))
}
