//! Small summaries of pages seen once, in file order, by the streaming scanner.
//!
//! Which pages are live is known only at the end (from the chosen meta's root), so every page below
//! the high-water mark is summarised as it passes and the summaries are resolved at the end. A
//! summary keeps only what resolving etcd's facts can need:
//! - every page: one [`Slot`] (8 bytes): its kind, and for a leaf whose last key is a revision,
//!   that revision's main part; for an undecodable page, why and where;
//! - a branch page: the child a search for each looked-up name descends into, and its last two
//!   children ([`BranchSummary`]);
//! - a leaf page: the entries named like a looked-up name ([`Capture`]), which in etcd occur only in
//!   the root bucket's and the `meta` bucket's leaves.
//!
//! A page with overflow pages spans several pages of the stream. Its [`Collector`] keeps its element
//! table and then only the byte ranges the summary needs (key prefixes, the last key, captured
//! entries), so a leaf holding a multi-megabyte value costs a few bytes, not its size.

use super::element::{
    branch_route, check_element_table, compare_key_prefix, element_offset, element_table_end,
    BranchElement, LeafElement,
};
use super::error::{Defect, Fault};
use super::page::{PageHeader, PageKind};
use super::schema::{
    Revision, CONSISTENT_INDEX_KEY, KEY_BUCKET, META_BUCKET, REVISION_KEY_LEN, TERM_KEY,
    TOMBSTONE_KEY_LEN,
};

/// A name searched for in some tree: the top-level buckets in the root bucket's tree, the integers
/// in the `meta` bucket's tree. Its position in [`LOOKUPS`] identifies it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lookup {
    pub name: &'static [u8],
}

pub(crate) const LOOKUP_KEY_BUCKET: usize = 0;
pub(crate) const LOOKUP_META_BUCKET: usize = 1;
pub(crate) const LOOKUP_CONSISTENT_INDEX: usize = 2;
pub(crate) const LOOKUP_TERM: usize = 3;
pub(crate) const LOOKUPS: [Lookup; 4] = [
    Lookup { name: KEY_BUCKET },
    Lookup { name: META_BUCKET },
    Lookup {
        name: CONSISTENT_INDEX_KEY,
    },
    Lookup { name: TERM_KEY },
];
/// Bytes of a key prefix that decide how the key compares with every looked-up name.
const MAX_LOOKUP_LEN: usize = 16;

/// Memory one page's collector may hold (element table and captured ranges).
pub(crate) const MAX_PAGE_HELD: usize = 16 << 20;

/// What is known about one page, packed into 8 bytes.
///
/// | bit 63 | bits 56..63 | bits 0..56                                         |
/// |--------|-------------|----------------------------------------------------|
/// | 0      | revision main (bits 0..63): a leaf whose last key is a revision   |
/// | 1      | tag         | payload (see the `TAG_*` constants)                |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot(u64);

const TAGGED: u64 = 1 << 63;
const TAG_SHIFT: u32 = 56;
const PAYLOAD_MASK: u64 = (1 << TAG_SHIFT) - 1;
/// Payload: nothing. A page whose summary is still being collected (or never was).
const TAG_PENDING: u64 = 0;
/// Payload: nothing. A leaf without elements.
const TAG_LEAF_EMPTY: u64 = 1;
/// Payload: offset of the last element. A leaf whose last key is not a revision.
const TAG_LEAF_OTHER: u64 = 2;
/// Payload: nothing; the details are in the branch map.
const TAG_BRANCH: u64 = 3;
/// Payload: the page flags. A meta or freelist page.
const TAG_OTHER: u64 = 4;
/// Payload: defect code (bits 48..56) and offset (bits 0..48, saturated).
const TAG_INVALID: u64 = 5;
const DEFECT_SHIFT: u32 = 48;
const OFFSET_MASK: u64 = (1 << DEFECT_SHIFT) - 1;

/// A [`Slot`], unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotKind {
    Pending,
    LeafEmpty,
    LeafRevision(i64),
    LeafOther { last_element: u64 },
    Branch,
    Other { flags: u16 },
    Invalid(Fault),
}

impl Slot {
    pub const PENDING: Slot = Slot(TAGGED | (TAG_PENDING << TAG_SHIFT));

    fn tagged(tag: u64, payload: u64) -> Slot {
        Slot(TAGGED | (tag << TAG_SHIFT) | (payload & PAYLOAD_MASK))
    }

    pub fn pack(kind: SlotKind) -> Slot {
        match kind {
            SlotKind::Pending => Slot::PENDING,
            SlotKind::LeafEmpty => Slot::tagged(TAG_LEAF_EMPTY, 0),
            // A revision main is a non-negative i64: bit 63 is clear.
            SlotKind::LeafRevision(main) => match u64::try_from(main) {
                Ok(m) => Slot(m),
                Err(_) => Slot::tagged(TAG_LEAF_OTHER, 0),
            },
            SlotKind::LeafOther { last_element } => Slot::tagged(TAG_LEAF_OTHER, last_element),
            SlotKind::Branch => Slot::tagged(TAG_BRANCH, 0),
            SlotKind::Other { flags } => Slot::tagged(TAG_OTHER, u64::from(flags)),
            SlotKind::Invalid(f) => Slot::tagged(
                TAG_INVALID,
                (u64::from(f.defect.code()) << DEFECT_SHIFT) | f.offset.min(OFFSET_MASK),
            ),
        }
    }

    pub fn unpack(self) -> SlotKind {
        if self.0 & TAGGED == 0 {
            // Bit 63 clear: fits an i64.
            return SlotKind::LeafRevision(self.0 as i64);
        }
        let payload = self.0 & PAYLOAD_MASK;
        match (self.0 & !TAGGED) >> TAG_SHIFT {
            TAG_LEAF_EMPTY => SlotKind::LeafEmpty,
            TAG_LEAF_OTHER => SlotKind::LeafOther {
                last_element: payload,
            },
            TAG_BRANCH => SlotKind::Branch,
            TAG_OTHER => SlotKind::Other {
                flags: payload as u16,
            },
            TAG_INVALID => SlotKind::Invalid(Fault::new(
                Defect::from_code((payload >> DEFECT_SHIFT) as u8),
                payload & OFFSET_MASK,
            )),
            _ => SlotKind::Pending,
        }
    }
}

/// A child pointer of a branch page and the element it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub index: u16,
    pub child: u64,
}

impl Route {
    /// Offset of the element in its page (for error messages).
    pub fn offset(&self) -> u64 {
        element_offset(usize::from(self.index)) as u64
    }
}

/// What is kept of a branch page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BranchSummary {
    /// For each of [`LOOKUPS`], the child a search for that name descends into.
    pub routes: [Route; LOOKUPS.len()],
    pub last: Route,
    /// The child before the last one, if any: where `Cursor.Last` goes when the last leaf is empty.
    pub before_last: Option<Route>,
}

/// A leaf entry whose key is one of [`LOOKUPS`]. Values are kept up to a cap (`value.len()` may be
/// less than `value_len`); etcd's are 8 bytes or a bucket value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capture {
    pub lookup: usize,
    pub index: u16,
    pub flags: u32,
    pub value_offset: u64,
    pub value_len: u32,
    pub value: Box<[u8]>,
}

/// The summary of a fully received page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Summary {
    Leaf {
        last: SlotKind,
        captures: Vec<Capture>,
    },
    Branch(BranchSummary),
}

/// A byte range of the page to keep, filled as its bytes arrive, stored in the collector's arena.
#[derive(Debug, Clone, Copy)]
struct Want {
    start: u64,
    len: usize,
    filled: usize,
    at: usize,
}

/// What a leaf's wants are for.
#[derive(Debug)]
enum LeafItem {
    /// The last element's key (only when it has a revision key's length).
    LastKey { want: usize },
    /// An element whose key has a looked-up name's length: key + value (capped).
    Entry {
        want: usize,
        index: u16,
        element: LeafElement,
    },
}

#[derive(Debug)]
enum Plan {
    Leaf {
        /// Offset of the last element, or `None` for an empty leaf.
        last_element: Option<u64>,
        items: Vec<LeafItem>,
    },
    Branch {
        /// Per element: child page id and key length; want `i` is element `i`'s key prefix.
        children: Vec<(u64, u32)>,
    },
}

/// Collects the bytes of one page (and its overflow pages) that its summary needs.
#[derive(Debug)]
pub(crate) struct Collector {
    pub pgid: u64,
    header: PageHeader,
    span: u64,
    received: u64,
    value_cap: usize,
    /// The page's first bytes, kept only while the element table is incomplete.
    table: Vec<u8>,
    plan: Option<Plan>,
    wants: Vec<Want>,
    arena: Vec<u8>,
}

/// How a page's collection goes after it received some bytes.
#[derive(Debug)]
pub(crate) enum Progress {
    Open(Collector),
    Done(Summary),
    Invalid(Fault),
    /// Not a tree page: a meta or freelist page.
    Other(u16),
}

impl Collector {
    /// Starts on page `pgid` given its first page of bytes. `high_water` bounds its overflow; values
    /// of captured entries are kept up to `value_cap` bytes.
    pub fn start(pgid: u64, page: &[u8], high_water: u64, value_cap: usize) -> Progress {
        match Self::try_start(pgid, page, high_water, value_cap) {
            Ok(p) => p,
            Err(f) => Progress::Invalid(f),
        }
    }

    fn try_start(
        pgid: u64,
        page: &[u8],
        high_water: u64,
        value_cap: usize,
    ) -> Result<Progress, Fault> {
        let header = PageHeader::decode(page)?;
        if header.id != pgid {
            return Err(Fault::new(Defect::IdMismatch, 0));
        }
        match header.kind() {
            PageKind::Branch | PageKind::Leaf => {}
            PageKind::Meta | PageKind::Freelist => return Ok(Progress::Other(header.flags)),
            PageKind::Unknown(_) => return Err(Fault::new(Defect::UnexpectedFlags, 8)),
        }
        header.check_span(high_water)?;
        let page_size = page.len() as u64;
        let span = (u64::from(header.overflow) + 1) * page_size;
        check_element_table(header.count, span)?;
        if header.kind() == PageKind::Branch && header.count == 0 {
            return Err(Fault::new(Defect::EmptyBranch, 10));
        }
        if element_table_end(header.count) > MAX_PAGE_HELD {
            return Err(Fault::new(Defect::TooLargeToSummarise, 10));
        }
        let c = Collector {
            pgid,
            header,
            span,
            received: 0,
            value_cap,
            table: Vec::new(),
            plan: None,
            wants: Vec::new(),
            arena: Vec::new(),
        };
        Ok(c.absorb(page))
    }

    /// Bytes this collector holds.
    pub fn held(&self) -> usize {
        let plan = match &self.plan {
            Some(Plan::Branch { children }) => children.capacity() * size_of::<(u64, u32)>(),
            Some(Plan::Leaf { items, .. }) => items.capacity() * size_of::<LeafItem>(),
            None => 0,
        };
        self.table.capacity()
            + self.arena.capacity()
            + self.wants.capacity() * size_of::<Want>()
            + plan
    }

    /// Takes the next page of this page's span.
    pub fn absorb(mut self, page: &[u8]) -> Progress {
        match self.try_absorb(page) {
            Ok(true) => match self.summarise() {
                Ok(s) => Progress::Done(s),
                Err(f) => Progress::Invalid(f),
            },
            Ok(false) => Progress::Open(self),
            Err(f) => Progress::Invalid(f),
        }
    }

    /// Returns whether the whole span has been received.
    fn try_absorb(&mut self, page: &[u8]) -> Result<bool, Fault> {
        let base = self.received;
        self.received += page.len() as u64;
        if self.plan.is_some() {
            self.fill(base, page);
        } else {
            let table_end = element_table_end(self.header.count);
            if self.table.is_empty() && table_end <= page.len() {
                self.plan(page)?;
                self.fill(0, page);
            } else {
                self.table.extend_from_slice(page);
                if self.table.len() >= table_end {
                    let table = std::mem::take(&mut self.table);
                    self.plan(&table)?;
                    self.fill(0, &table);
                }
            }
        }
        Ok(self.received >= self.span)
    }

    /// Decodes the element table (all of it is in `table`) and decides which ranges to keep.
    fn plan(&mut self, table: &[u8]) -> Result<(), Fault> {
        let count = usize::from(self.header.count);
        let plan = match self.header.kind() {
            PageKind::Branch => {
                let mut children = Vec::with_capacity(count);
                for i in 0..count {
                    let e = BranchElement::decode(table, i, self.span)?;
                    let prefix = (e.key_len as usize).min(MAX_LOOKUP_LEN);
                    self.want(e.key_offset, prefix)?;
                    children.push((e.child, e.key_len));
                }
                Plan::Branch { children }
            }
            _ => {
                let mut items = Vec::new();
                let mut last_element = None;
                for i in 0..count {
                    let e = LeafElement::decode(table, i, self.span)?;
                    let key_len = e.key_len as usize;
                    if LOOKUPS.iter().any(|l| l.name.len() == key_len) {
                        let len = key_len + (e.value_len as usize).min(self.value_cap);
                        let want = self.want(e.key_offset, len)?;
                        let index = u16::try_from(i).unwrap_or(u16::MAX);
                        items.push(LeafItem::Entry {
                            want,
                            index,
                            element: e,
                        });
                    }
                    if i + 1 == count {
                        last_element = Some(element_offset(i) as u64);
                        if key_len == REVISION_KEY_LEN || key_len == TOMBSTONE_KEY_LEN {
                            let want = self.want(e.key_offset, key_len)?;
                            items.push(LeafItem::LastKey { want });
                        }
                    }
                }
                Plan::Leaf {
                    last_element,
                    items,
                }
            }
        };
        self.plan = Some(plan);
        let total = self.wants.last().map_or(0, |w| w.at + w.len);
        if total > MAX_PAGE_HELD {
            return Err(Fault::new(Defect::TooLargeToSummarise, 10));
        }
        self.arena = vec![0; total];
        Ok(())
    }

    fn want(&mut self, start: u64, len: usize) -> Result<usize, Fault> {
        let at = self.wants.last().map_or(0, |w| w.at + w.len);
        if at.saturating_add(len) > MAX_PAGE_HELD {
            return Err(Fault::new(Defect::TooLargeToSummarise, 10));
        }
        self.wants.push(Want {
            start,
            len,
            filled: 0,
            at,
        });
        Ok(self.wants.len() - 1)
    }

    /// Copies the wanted parts of `bytes`, which are the page's bytes from offset `base` on.
    fn fill(&mut self, base: u64, bytes: &[u8]) {
        let end = base + bytes.len() as u64;
        for w in &mut self.wants {
            let next = w.start + w.filled as u64;
            if w.filled == w.len || next < base || next >= end {
                continue;
            }
            // next − base < bytes.len(), a usize.
            let from = (next - base) as usize;
            let n = (w.len - w.filled).min(bytes.len() - from);
            let (Some(src), Some(dst)) = (
                bytes.get(from..from + n),
                self.arena.get_mut(w.at + w.filled..w.at + w.filled + n),
            ) else {
                continue;
            };
            dst.copy_from_slice(src);
            w.filled += n;
        }
    }

    fn wanted(&self, want: usize) -> &[u8] {
        self.wants
            .get(want)
            .and_then(|w| self.arena.get(w.at..w.at + w.filled))
            .unwrap_or_default()
    }

    fn summarise(&self) -> Result<Summary, Fault> {
        match &self.plan {
            Some(Plan::Branch { children }) => {
                let route = |index: usize| -> Route {
                    Route {
                        index: u16::try_from(index).unwrap_or(u16::MAX),
                        child: children.get(index).map_or(0, |c| c.0),
                    }
                };
                let routes = std::array::from_fn(|l| {
                    let name = LOOKUPS[l].name;
                    route(branch_route(children.len(), |i| {
                        let key_len = children.get(i).map_or(0, |c| c.1);
                        compare_key_prefix(self.wanted(i), u64::from(key_len), name)
                    }))
                });
                let n = children.len();
                Ok(Summary::Branch(BranchSummary {
                    routes,
                    last: route(n.saturating_sub(1)),
                    before_last: (n >= 2).then(|| route(n - 2)),
                }))
            }
            Some(Plan::Leaf {
                last_element,
                items,
            }) => {
                let mut last = match last_element {
                    None => SlotKind::LeafEmpty,
                    Some(at) => SlotKind::LeafOther { last_element: *at },
                };
                let mut captures = Vec::new();
                for item in items {
                    match item {
                        LeafItem::LastKey { want } => {
                            if let Some(r) = Revision::from_key(self.wanted(*want)) {
                                last = SlotKind::LeafRevision(r.main);
                            }
                        }
                        LeafItem::Entry {
                            want,
                            index,
                            element,
                        } => {
                            let bytes = self.wanted(*want);
                            let key_len = element.key_len as usize;
                            let Some(lookup) = LOOKUPS
                                .iter()
                                .position(|l| bytes.get(..key_len) == Some(l.name))
                            else {
                                continue;
                            };
                            captures.push(Capture {
                                lookup,
                                index: *index,
                                flags: element.flags,
                                value_offset: element.value_offset(),
                                value_len: element.value_len,
                                value: bytes.get(key_len..).unwrap_or_default().into(),
                            });
                        }
                    }
                }
                Ok(Summary::Leaf { last, captures })
            }
            None => Err(Fault::new(Defect::ElementTableOutOfBounds, 16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        for kind in [
            SlotKind::Pending,
            SlotKind::LeafEmpty,
            SlotKind::LeafRevision(0),
            SlotKind::LeafRevision(i64::MAX),
            SlotKind::LeafOther {
                last_element: 4096 + 16,
            },
            SlotKind::Branch,
            SlotKind::Other { flags: 0x10 },
            SlotKind::Invalid(Fault::new(Defect::IdMismatch, 0)),
            SlotKind::Invalid(Fault::new(Defect::ElementOutOfBounds, 123_456_789)),
        ] {
            assert_eq!(Slot::pack(kind).unpack(), kind);
        }
        assert_eq!(size_of::<Slot>(), 8);
    }
}
