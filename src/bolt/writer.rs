//! A writer of fresh bbolt files: it takes top-level buckets and their key/value pairs in key order
//! and lays them out, page by page, as a compacted bbolt 1.3.x database that etcd 3.4 and 3.5 open
//! and then keep writing to.
//!
//! What it owns: the layout of a new file (two metas, an empty freelist page, then every bucket's
//! B+tree bottom-up), the checks bbolt itself would make on a put (key and value sizes, order), and
//! the order in which bytes reach the disk (data, fsync, metas, fsync).
//!
//! What it must never do:
//! - touch an existing database: [`BoltWriter::create`] truncates the file it is given, which must
//!   be a new file (opened for writing, not in append mode); restoring in place is the caller's
//!   rename;
//! - leave a file that looks valid but is not: the metas are written last, after the data pages are
//!   on disk, so a crash or an error at any earlier point leaves a file that no bbolt opens;
//! - hold a bucket in memory: it keeps one partly filled page per tree level (the leaf being filled,
//!   at most 16 pages, one branch page per level above it), and a value bigger than that is written
//!   straight from the caller's slice;
//! - write nested buckets: etcd has none, and the caller refuses them in its source.
//!
//! Layout (see docs/FORMAT.md, "Writing a fresh file"):
//!
//! | page        | content                                                                      |
//! |-------------|------------------------------------------------------------------------------|
//! | 0, 1        | metas, txid 0 and 1, otherwise identical (bbolt's own `init` does the same)  |
//! | 2           | freelist page with no ids                                                    |
//! | 3 …         | each bucket's leaves with its branch pages, in write order; after the last   |
//! |             | bucket, the rest of the root bucket's tree                                   |
//!
//! A bucket whose entries fit in one leaf of at most a quarter of a page is written inline, inside
//! its entry in the root bucket, as bbolt itself stores such buckets (an empty bucket is 32 bytes);
//! the leaf being filled is buffered anyway, so this costs no memory. Any other bucket gets a tree
//! of its own.
//!
//! An empty freelist page is stored rather than "no freelist" (0xFFFF_FFFF_FFFF_FFFF): it is what
//! bbolt's own `init` writes, and it tells bbolt, truthfully, that no page is free, so opening the
//! file (etcd's NoFreelistSync included) reads one page instead of walking every tree to rebuild the
//! freelist. etcd frees page 2 on its first commit and stops storing a freelist from then on.
//!
//! Pages are filled to [`WriterOptions::fill`] of a page (default: all of it). An entry bigger than a
//! page starts a leaf with overflow pages, and the next entries join it while that takes fewer pages
//! than apart (two 6 KiB objects: 3 pages, not 4), so the file is never bigger than its source's
//! live data laid out by bbolt. A fresh file is as compact as bbolt can read; bbolt splits any page it later modifies to its own fill percent, and
//! etcd's biggest bucket, `key`, only grows at its right edge and shrinks at compaction.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::mem;
use std::os::unix::fs::FileExt;

use thiserror::Error;

use super::element::{
    BRANCH_ELEMENT_SIZE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, LEAF_ELEMENT_SIZE,
};
use super::meta::{encode_meta_page, Meta, META_PAGE_USED};
use super::page::{
    BRANCH_PAGE_FLAG, FREELIST_PAGE_FLAG, LEAF_PAGE_FLAG, MAX_PAGE_SIZE, MIN_PAGE_SIZE,
    PAGE_HEADER_SIZE,
};
use crate::fsx::{EarlySync, EARLY_SYNC_BYTES};

/// bbolt's `MaxKeySize`: the longest key (and, here, bucket name) bbolt accepts.
pub const MAX_KEY_SIZE: usize = 32768;
/// bbolt's `MaxValueSize`: the longest value bbolt accepts.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;
/// The page size etcd's bbolt uses on amd64 and most arm64 kernels.
pub const DEFAULT_PAGE_SIZE: u32 = 4096;
/// bbolt's bounds on a bucket's `FillPercent`, used for [`WriterOptions::fill`].
pub const MIN_FILL: f64 = 0.1;
pub const MAX_FILL: f64 = 1.0;

mod append;
pub use append::{AppendTo, Spine};

/// Where the empty freelist goes: right after the metas, as in a file bbolt creates itself.
const FREELIST_PGID: u64 = 2;
/// Sequential writes are gathered into blocks this big before they reach the file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;
/// The most elements a page can say it holds (its header's count is a u16).
const MAX_ELEMENTS: usize = u16::MAX as usize;
/// bbolt inlines a bucket whose leaf takes at most this fraction of a page (`maxInlineBucketSize`).
const INLINE_DIVISOR: usize = 4;
/// Pages a leaf may span: an entry bigger than that gets a leaf of its own, written without a copy,
/// and smaller entries that overflow a page share leaves only up to it.
const HUGE_LEAF_PAGES: usize = 16;
/// Children a branch page gets before it may be closed (bbolt's `minKeysPerPage`).
const MIN_BRANCH_CHILDREN: usize = 2;
/// Branch and leaf elements are the same size; the layout arithmetic below relies on it.
const ELEMENT_SIZE: usize = LEAF_ELEMENT_SIZE;
const _: () = assert!(LEAF_ELEMENT_SIZE == BRANCH_ELEMENT_SIZE);

static ZEROS: [u8; 4096] = [0; 4096];

/// How pages are laid out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterOptions {
    /// Bytes per page: a power of two from 512 bytes to 1 MiB. Use the page size the etcd that
    /// will open the file runs with (the OS page size; [`DEFAULT_PAGE_SIZE`] on amd64).
    pub page_size: u32,
    /// Fraction of a page, from [`MIN_FILL`] to [`MAX_FILL`], that a leaf or branch page is filled
    /// to before a new one is started. Entries bigger than that get pages with overflow, shared by
    /// the next entries while sharing saves pages.
    pub fill: f64,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            page_size: DEFAULT_PAGE_SIZE,
            fill: MAX_FILL,
        }
    }
}

/// What [`BoltWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Pages in the file: its high-water mark.
    pub pages: u64,
    /// Bytes in the file: pages × page size (etcdutl's `totalSize`).
    pub bytes: u64,
    /// Top-level buckets written.
    pub buckets: u64,
    /// Key/value pairs written, all buckets together.
    pub keys: u64,
}

/// Why a fresh bbolt file could not be written.
#[derive(Debug, Error)]
pub enum WriteError {
    #[error(
        "page size {0} is not supported: use a power of two from {MIN_PAGE_SIZE} to \
         {MAX_PAGE_SIZE} bytes"
    )]
    PageSize(u32),
    #[error(
        "page fill {0} is not supported: use a fraction of a page from {MIN_FILL} to {MAX_FILL}"
    )]
    Fill(f64),
    #[error("cannot {action}: no bucket is open")]
    NoBucket { action: &'static str },
    #[error("cannot begin bucket {}: bucket {} is still open", shown(.requested), shown(.open))]
    BucketStillOpen { open: Vec<u8>, requested: Vec<u8> },
    #[error("cannot finish the file: bucket {} is still open", shown(.0))]
    UnfinishedBucket(Vec<u8>),
    #[error("a bucket name cannot be empty")]
    EmptyBucketName,
    #[error("a bucket name of {len} bytes is too long: bbolt allows at most {MAX_KEY_SIZE}")]
    BucketNameTooLong { len: usize },
    #[error(
        "bucket {} comes after bucket {}: buckets must be written in strictly ascending byte \
         order, each once",
        shown(.name),
        shown(.previous)
    )]
    BucketOrder { name: Vec<u8>, previous: Vec<u8> },
    #[error("bucket {}: a key cannot be empty", shown(.bucket))]
    EmptyKey { bucket: Vec<u8> },
    #[error(
        "bucket {}: a key of {len} bytes is too long: bbolt allows at most {MAX_KEY_SIZE}",
        shown(.bucket)
    )]
    KeyTooLong { bucket: Vec<u8>, len: usize },
    #[error(
        "bucket {}: the value of key {} is {len} bytes: bbolt allows at most {MAX_VALUE_SIZE}",
        shown(.bucket),
        shown(.key)
    )]
    ValueTooLong {
        bucket: Vec<u8>,
        key: Vec<u8>,
        len: usize,
    },
    #[error(
        "bucket {}: key {} comes after key {}: keys must be written in strictly ascending byte \
         order, each once",
        shown(.bucket),
        shown(.key),
        shown(.previous)
    )]
    KeyOrder {
        bucket: Vec<u8>,
        key: Vec<u8>,
        previous: Vec<u8>,
    },
    #[error(
        "a page of {bytes} bytes needs more overflow pages than a bbolt page header can count"
    )]
    PageTooLarge { bytes: u64 },
    #[error("the database needs more pages than bbolt can number")]
    TooManyPages,
    #[error("cannot append to a database whose high-water mark is {0}: it has not even its metas")]
    NotADatabase(u64),
    #[error("cannot write the new bbolt file ({what}): {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the bbolt writer stopped at an earlier error: the file is incomplete (no bbolt opens it) \
         and must be removed"
    )]
    Broken,
}

impl WriteError {
    /// Whether the writer is unusable after this error (an I/O failure mid-page); the others are
    /// refused before anything is written, and the writer goes on.
    fn breaks_writer(&self) -> bool {
        matches!(
            self,
            WriteError::Io { .. } | WriteError::PageTooLarge { .. } | WriteError::TooManyPages
        )
    }
}

/// A bucket name or key as a user reads it in a message: quoted text when printable, else hex; cut
/// when long (a key can be 32 KiB).
fn shown(bytes: &[u8]) -> String {
    const TEXT: usize = 64;
    const HEX: usize = 32;
    let printable = bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    if printable {
        let cut = bytes.len().min(TEXT);
        let text = String::from_utf8_lossy(&bytes[..cut]);
        if cut < bytes.len() {
            format!("\"{text}…\" ({} bytes)", bytes.len())
        } else {
            format!("\"{text}\"")
        }
    } else {
        let cut = bytes.len().min(HEX);
        let hex = hex::encode(&bytes[..cut]);
        if cut < bytes.len() {
            format!("0x{hex}… ({} bytes)", bytes.len())
        } else {
            format!("0x{hex}")
        }
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> WriteError {
    let what = what.into();
    move |source| WriteError::Io { what, source }
}

/// A length known (by validation or by the page budget) to fit a page's u32 fields; checked anyway,
/// so that a mistake is an error rather than a silently truncated field.
fn len32(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::PageTooLarge { bytes: n as u64 })
}

/// The sequential page stream: pages get consecutive ids in the order they are written.
struct Pages {
    out: BufWriter<File>,
    page_size: u64,
    /// Id of the next page written; at the end, the high-water mark.
    next: u64,
    /// Starts writeback while pages are still being produced (see [`EarlySync`]).
    early: Option<EarlySync>,
    /// Page id at the last early sync request.
    synced_to: u64,
}

impl Pages {
    /// The file with every page written and synced (the metas come after).
    fn into_synced(mut self) -> Result<File, WriteError> {
        let file = self
            .out
            .into_inner()
            .map_err(|e| io_error("flushing the last pages")(e.into_error()))?;
        if let Some(mut early) = self.early.take() {
            early.stop().map_err(io_error("syncing the data pages"))?;
        }
        file.sync_data()
            .map_err(io_error("syncing the data pages"))?;
        Ok(file)
    }

    /// Writes a page of kind `flags` holding `count` elements whose bytes after the header are
    /// `parts`, spanning as many pages as that takes, and returns its id.
    fn write(&mut self, flags: u16, count: usize, parts: &[&[u8]]) -> Result<u64, WriteError> {
        let content = parts
            .iter()
            .fold(PAGE_HEADER_SIZE as u64, |n, p| n + p.len() as u64);
        let span = content.div_ceil(self.page_size).max(1);
        let overflow =
            u32::try_from(span - 1).map_err(|_| WriteError::PageTooLarge { bytes: content })?;
        let count =
            u16::try_from(count).map_err(|_| WriteError::PageTooLarge { bytes: content })?;
        let id = self.next;
        let next = id.checked_add(span).ok_or(WriteError::TooManyPages)?;
        let mut header = [0u8; PAGE_HEADER_SIZE];
        header[0..8].copy_from_slice(&id.to_le_bytes());
        header[8..10].copy_from_slice(&flags.to_le_bytes());
        header[10..12].copy_from_slice(&count.to_le_bytes());
        header[12..16].copy_from_slice(&overflow.to_le_bytes());
        let failed = || io_error(format!("page {id}"));
        self.out.write_all(&header).map_err(failed())?;
        for part in parts {
            self.out.write_all(part).map_err(failed())?;
        }
        // The tail is written, not skipped, so that the file is exactly its pages and the
        // sequential stream never seeks (a seek would flush the buffer).
        let mut pad = span * self.page_size - content;
        while pad > 0 {
            let n = pad.min(ZEROS.len() as u64);
            self.out.write_all(&ZEROS[..n as usize]).map_err(failed())?;
            pad -= n;
        }
        self.next = next;
        if let Some(early) = &self.early {
            if (self.next - self.synced_to) * self.page_size >= EARLY_SYNC_BYTES {
                self.synced_to = self.next;
                early.request();
            }
        }
        Ok(id)
    }
}

/// One element of a page being filled.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Leaf element flags (0, or BUCKET_LEAF_FLAG for a bucket).
    flags: u32,
    /// Where the key starts in `Pending::data`.
    key_at: usize,
    key_len: usize,
    /// Leaf: value length (the value follows the key in `data`). Branch: 0.
    value_len: usize,
    /// Branch: the child's page id. Leaf: 0.
    child: u64,
}

/// A leaf or branch page being filled: its elements and the key (and value) bytes behind them. The
/// element table cannot be laid out before the count is final (each element's `pos` counts the
/// elements after it), so it is encoded when the page is written.
#[derive(Debug, Default)]
struct Pending {
    slots: Vec<Slot>,
    data: Vec<u8>,
    /// Encoding buffer for the element table, kept to reuse its allocation.
    table: Vec<u8>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of the page with one more element carrying `bytes` of key and value.
    fn size_with(&self, bytes: usize) -> usize {
        PAGE_HEADER_SIZE + (self.slots.len() + 1) * ELEMENT_SIZE + self.data.len() + bytes
    }

    /// Whether an element carrying `bytes` must go to a new page: this one already holds at least
    /// `min` elements and would outgrow `budget`, or its header's count is at its maximum.
    fn must_close_for(&self, bytes: usize, budget: usize, min: usize) -> bool {
        let n = self.slots.len();
        n >= MAX_ELEMENTS || (n >= min && self.size_with(bytes) > budget)
    }

    /// Whether a leaf element carrying `bytes` should join this leaf although it outgrows the
    /// budget: the leaf already spans overflow pages (or the entry needs them), and together they
    /// take fewer pages than apart (this fills an overflow page's slack whatever the fill). Entries bigger than a page (common in etcd: objects of a few
    /// KiB) would otherwise get a leaf each and waste most of its last page; bbolt itself puts at
    /// least two per page. A joined leaf stays within [`HUGE_LEAF_PAGES`].
    fn shares_overflow(&self, bytes: usize, page_size: usize) -> bool {
        let alone = PAGE_HEADER_SIZE + ELEMENT_SIZE + bytes;
        let together = self.size_with(bytes);
        let pages = |b: usize| b.div_ceil(page_size);
        !self.is_empty()
            && self.slots.len() < MAX_ELEMENTS
            && (self.size() > page_size || alone > page_size)
            && together <= HUGE_LEAF_PAGES * page_size
            && pages(together) < pages(self.size()) + pages(alone)
    }

    /// Bytes of the page as it stands.
    fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.slots.len() * ELEMENT_SIZE + self.data.len()
    }

    fn push(&mut self, flags: u32, key: &[u8], value: &[u8], child: u64) {
        self.slots.push(Slot {
            flags,
            key_at: self.data.len(),
            key_len: key.len(),
            value_len: value.len(),
            child,
        });
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
    }

    fn first_key(&self) -> &[u8] {
        self.slots
            .first()
            .and_then(|s| self.data.get(s.key_at..s.key_at + s.key_len))
            .unwrap_or_default()
    }

    /// Writes the page (kind `flags`: leaf or branch) and returns its id; the contents stay until
    /// [`Pending::clear`], for the caller to take the first key from.
    fn write(&mut self, pages: &mut Pages, flags: u16) -> Result<u64, WriteError> {
        self.encode_table(flags)?;
        pages.write(flags, self.slots.len(), &[&self.table, &self.data])
    }

    /// The page as an inline bucket's leaf: header (id 0, no overflow), elements, data, no padding.
    fn inline_leaf(&mut self) -> Result<Vec<u8>, WriteError> {
        self.encode_table(LEAF_PAGE_FLAG)?;
        let count = u16::try_from(self.slots.len()).map_err(|_| WriteError::PageTooLarge {
            bytes: self.size() as u64,
        })?;
        let mut page = Vec::with_capacity(self.size());
        page.extend_from_slice(&0u64.to_le_bytes()); // id
        page.extend_from_slice(&LEAF_PAGE_FLAG.to_le_bytes());
        page.extend_from_slice(&count.to_le_bytes());
        page.extend_from_slice(&0u32.to_le_bytes()); // overflow
        page.extend_from_slice(&self.table);
        page.extend_from_slice(&self.data);
        Ok(page)
    }

    fn encode_table(&mut self, flags: u16) -> Result<(), WriteError> {
        let n = self.slots.len();
        self.table.clear();
        for (i, s) in self.slots.iter().enumerate() {
            // From this element's first byte to its key: the rest of the table, then the data
            // before the key.
            let pos = len32((n - i) * ELEMENT_SIZE + s.key_at)?;
            if flags == BRANCH_PAGE_FLAG {
                self.table.extend_from_slice(&pos.to_le_bytes());
                self.table
                    .extend_from_slice(&len32(s.key_len)?.to_le_bytes());
                self.table.extend_from_slice(&s.child.to_le_bytes());
            } else {
                self.table.extend_from_slice(&s.flags.to_le_bytes());
                self.table.extend_from_slice(&pos.to_le_bytes());
                self.table
                    .extend_from_slice(&len32(s.key_len)?.to_le_bytes());
                self.table
                    .extend_from_slice(&len32(s.value_len)?.to_le_bytes());
            }
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.slots.clear();
        self.data.clear();
    }
}

/// One bucket's B+tree, built bottom-up as its entries arrive in key order: a leaf is written when
/// the next entry no longer fits, and its first key and id go up to the branch page being filled
/// above it, which is written the same way when full. Branch key `i` is the first key of child `i`.
#[derive(Debug, Default)]
struct Tree {
    leaf: Pending,
    leaves_written: u64,
    /// `levels[0]` is the branch page being filled over the leaves, `levels[1]` the one over that…
    levels: Vec<Pending>,
}

impl Tree {
    fn put(
        &mut self,
        pages: &mut Pages,
        budget: usize,
        flags: u32,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), WriteError> {
        let bytes = key.len() + value.len();
        let page_size = usize::try_from(pages.page_size).unwrap_or(usize::MAX);
        let alone = PAGE_HEADER_SIZE + ELEMENT_SIZE + bytes;
        if alone > HUGE_LEAF_PAGES.saturating_mul(page_size) {
            // Its own leaf, written from the caller's slices so that a huge value is never copied.
            self.write_leaf(pages, budget)?;
            let element = leaf_element(flags, len32(ELEMENT_SIZE)?, key, value)?;
            let id = pages.write(LEAF_PAGE_FLAG, 1, &[&element, key, value])?;
            self.leaves_written += 1;
            return self.add_child(pages, budget, 0, key, id);
        }
        if self.leaf.must_close_for(bytes, budget, 1)
            && !self.leaf.shares_overflow(bytes, page_size)
        {
            self.write_leaf(pages, budget)?;
        }
        self.leaf.push(flags, key, value, 0);
        Ok(())
    }

    /// Writes the leaf being filled, if it holds anything.
    fn write_leaf(&mut self, pages: &mut Pages, budget: usize) -> Result<(), WriteError> {
        if self.leaf.is_empty() {
            return Ok(());
        }
        self.write_leaf_always(pages, budget)
    }

    fn write_leaf_always(&mut self, pages: &mut Pages, budget: usize) -> Result<(), WriteError> {
        let mut leaf = mem::take(&mut self.leaf);
        let id = leaf.write(pages, LEAF_PAGE_FLAG)?;
        self.leaves_written += 1;
        self.add_child(pages, budget, 0, leaf.first_key(), id)?;
        leaf.clear();
        self.leaf = leaf;
        Ok(())
    }

    /// Adds a child (its first key and page id) to the branch page being filled at `level`.
    fn add_child(
        &mut self,
        pages: &mut Pages,
        budget: usize,
        level: usize,
        key: &[u8],
        child: u64,
    ) -> Result<(), WriteError> {
        while self.levels.len() <= level {
            self.levels.push(Pending::default());
        }
        // Two children at least, as bbolt splits: were a branch page closed at one oversized key,
        // every level above would be as wide as the one below, and the tree would never get a root.
        if self.levels[level].must_close_for(key.len(), budget, MIN_BRANCH_CHILDREN) {
            self.write_branch(pages, budget, level)?;
        }
        self.levels[level].push(0, key, &[], child);
        Ok(())
    }

    fn write_branch(
        &mut self,
        pages: &mut Pages,
        budget: usize,
        level: usize,
    ) -> Result<(), WriteError> {
        let mut branch = mem::take(&mut self.levels[level]);
        let id = branch.write(pages, BRANCH_PAGE_FLAG)?;
        self.add_child(pages, budget, level + 1, branch.first_key(), id)?;
        branch.clear();
        self.levels[level] = branch;
        Ok(())
    }

    /// The tree's only leaf as an inline bucket page, when no page has been written and the leaf
    /// takes at most `limit` bytes; `None` otherwise (the tree is then written with [`Tree::finish`]).
    fn inline_leaf(&mut self, limit: usize) -> Result<Option<Vec<u8>>, WriteError> {
        if self.leaves_written > 0 || self.leaf.size() > limit {
            return Ok(None);
        }
        self.leaf.inline_leaf().map(Some)
    }

    /// Writes what is still being filled, level by level, and returns the root's page id: the only
    /// child left at the top level. A tree with no entries is one empty leaf.
    fn finish(mut self, pages: &mut Pages, budget: usize) -> Result<u64, WriteError> {
        if !self.leaf.is_empty() || self.leaves_written == 0 {
            self.write_leaf_always(pages, budget)?;
        }
        let mut level = 0;
        // Each pass either returns or writes a level into the one above, which ends with a
        // single child: the loop ends after at most one pass per level.
        while let Some(pending) = self.levels.get(level) {
            if level + 1 == self.levels.len() && pending.slots.len() == 1 {
                return Ok(pending.slots[0].child);
            }
            self.write_branch(pages, budget, level)?;
            level += 1;
        }
        // Unreachable: a leaf was written above, so level 0 exists, and every write adds a level.
        Err(WriteError::Broken)
    }
}

/// A page size bbolt accepts: a power of two from 512 bytes to 1 MiB.
fn check_page_size(page_size: u32) -> Result<(), WriteError> {
    if page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        Ok(())
    } else {
        Err(WriteError::PageSize(page_size))
    }
}

/// Writes the meta pages (`(id, used bytes)`) over a file whose data pages are synced, sets its
/// length to `bytes` and syncs it: the file is then a database.
fn seal(
    file: &File,
    metas: &[(u64, Vec<u8>)],
    page_size: u64,
    bytes: u64,
) -> Result<(), WriteError> {
    for (id, meta) in metas {
        file.write_all_at(meta, id * page_size)
            .map_err(io_error(format!("meta page {id}")))?;
    }
    file.set_len(bytes)
        .map_err(io_error("setting its length"))?;
    file.sync_all().map_err(io_error("syncing it"))
}

/// bbolt's checks on a put into `bucket`: a key of 1 to [`MAX_KEY_SIZE`] bytes, after `previous`
/// (keys arrive in order here), and a value of at most [`MAX_VALUE_SIZE`] bytes.
fn check_pair(
    bucket: &[u8],
    key: &[u8],
    value: &[u8],
    previous: Option<&[u8]>,
) -> Result<(), WriteError> {
    if key.is_empty() {
        return Err(WriteError::EmptyKey {
            bucket: bucket.to_vec(),
        });
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(WriteError::KeyTooLong {
            bucket: bucket.to_vec(),
            len: key.len(),
        });
    }
    if value.len() > MAX_VALUE_SIZE {
        return Err(WriteError::ValueTooLong {
            bucket: bucket.to_vec(),
            key: key.to_vec(),
            len: value.len(),
        });
    }
    if let Some(previous) = previous.filter(|p| key <= *p) {
        return Err(WriteError::KeyOrder {
            bucket: bucket.to_vec(),
            key: key.to_vec(),
            previous: previous.to_vec(),
        });
    }
    Ok(())
}

/// A leaf element whose key lies `pos` bytes after its first byte.
fn leaf_element(
    flags: u32,
    pos: u32,
    key: &[u8],
    value: &[u8],
) -> Result<[u8; ELEMENT_SIZE], WriteError> {
    let mut e = [0u8; ELEMENT_SIZE];
    e[0..4].copy_from_slice(&flags.to_le_bytes());
    e[4..8].copy_from_slice(&pos.to_le_bytes());
    e[8..12].copy_from_slice(&len32(key.len())?.to_le_bytes());
    e[12..16].copy_from_slice(&len32(value.len())?.to_le_bytes());
    Ok(e)
}

/// A meta page's used bytes (header + meta), fields in the order of the table in meta.rs.
fn meta_page(id: u64, page_size: u32, root: u64, high_water: u64, txid: u64) -> Vec<u8> {
    let mut p = vec![0u8; META_PAGE_USED];
    let meta = Meta {
        page_size,
        flags: 0,
        root,
        sequence: 0,
        freelist_pgid: FREELIST_PGID,
        high_water,
        txid,
        checksum: 0,
    };
    encode_meta_page(&mut p, id, &meta);
    p
}

/// The bucket being written.
#[derive(Debug)]
struct OpenBucket {
    name: Vec<u8>,
    sequence: u64,
    tree: Tree,
    /// The last key put (empty before the first: keys are never empty).
    last_key: Vec<u8>,
}

/// Writes a fresh bbolt file, streaming: top-level buckets in ascending name order, each one's
/// pairs in ascending key order, then [`BoltWriter::finish`].
#[derive(Debug)]
pub struct BoltWriter {
    pages: Pages,
    page_size: u32,
    /// Bytes a page is filled to before a new one is started.
    budget: usize,
    /// The root bucket's tree: one bucket entry per top-level bucket.
    root: Tree,
    bucket: Option<OpenBucket>,
    last_bucket: Option<Vec<u8>>,
    buckets: u64,
    keys: u64,
    broken: bool,
    /// A fresh file, or a commit appended to an existing one (see [`append`]).
    mode: Mode,
}

/// What [`BoltWriter::finish`] completes.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Fresh,
    Append(AppendTo),
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("page_size", &self.page_size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl BoltWriter {
    /// Starts a new database in `file`, which is truncated: it must be a new file, open for writing
    /// (not in append mode). Nothing in it is a valid bbolt file until [`BoltWriter::finish`].
    pub fn create(file: File, options: WriterOptions) -> Result<Self, WriteError> {
        check_page_size(options.page_size)?;
        if !(MIN_FILL..=MAX_FILL).contains(&options.fill) {
            return Err(WriteError::Fill(options.fill));
        }
        // Any budget works, however small: an entry bigger than it gets a page of its own.
        let budget = (options.fill * f64::from(options.page_size)) as usize;
        // Old bytes could include valid metas; the metas are written last, so until then the file
        // must hold none.
        file.set_len(0).map_err(io_error("truncating it"))?;
        let mut w = Self::start(file, options.page_size, budget, FREELIST_PGID, Mode::Fresh)?;
        w.pages.write(FREELIST_PAGE_FLAG, 0, &[])?;
        Ok(w)
    }

    /// A writer whose first page is `first_page` of `file`.
    fn start(
        mut file: File,
        page_size: u32,
        budget: usize,
        first_page: u64,
        mode: Mode,
    ) -> Result<Self, WriteError> {
        let ps = u64::from(page_size);
        let offset = first_page.checked_mul(ps).ok_or(WriteError::TooManyPages)?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(format!("seeking to page {first_page}")))?;
        let early = EarlySync::start(&file);
        Ok(BoltWriter {
            pages: Pages {
                out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
                page_size: ps,
                next: first_page,
                early,
                synced_to: first_page,
            },
            page_size,
            budget,
            root: Tree::default(),
            bucket: None,
            last_bucket: None,
            buckets: 0,
            keys: 0,
            broken: false,
            mode,
        })
    }

    fn usable(&self) -> Result<(), WriteError> {
        if self.broken {
            Err(WriteError::Broken)
        } else {
            Ok(())
        }
    }

    fn noting<T>(&mut self, r: Result<T, WriteError>) -> Result<T, WriteError> {
        if let Err(e) = &r {
            self.broken |= e.breaks_writer();
        }
        r
    }

    /// Starts top-level bucket `name` with bbolt sequence `sequence`. Names must be strictly
    /// ascending (bytewise) across the file, and the previous bucket ended.
    pub fn begin_bucket(&mut self, name: &[u8], sequence: u64) -> Result<(), WriteError> {
        self.usable()?;
        self.check_bucket_name(name)?;
        self.bucket = Some(OpenBucket {
            name: name.to_vec(),
            sequence,
            tree: Tree::default(),
            last_key: Vec::new(),
        });
        Ok(())
    }

    /// A top-level bucket may be started as `name`: no bucket open, a valid name, after the last.
    fn check_bucket_name(&self, name: &[u8]) -> Result<(), WriteError> {
        if let Some(open) = &self.bucket {
            return Err(WriteError::BucketStillOpen {
                open: open.name.clone(),
                requested: name.to_vec(),
            });
        }
        if name.is_empty() {
            return Err(WriteError::EmptyBucketName);
        }
        if name.len() > MAX_KEY_SIZE {
            return Err(WriteError::BucketNameTooLong { len: name.len() });
        }
        if let Some(previous) = self.last_bucket.as_deref().filter(|p| name <= *p) {
            return Err(WriteError::BucketOrder {
                name: name.to_vec(),
                previous: previous.to_vec(),
            });
        }
        Ok(())
    }

    /// Adds a pair to the open bucket. Keys must be strictly ascending (bytewise) within it, 1 to
    /// [`MAX_KEY_SIZE`] bytes; values at most [`MAX_VALUE_SIZE`] bytes.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.usable()?;
        let Some(b) = self.bucket.as_mut() else {
            return Err(WriteError::NoBucket {
                action: "put a key",
            });
        };
        let previous = Some(b.last_key.as_slice()).filter(|k| !k.is_empty());
        check_pair(&b.name, key, value, previous)?;
        let r = b.tree.put(&mut self.pages, self.budget, 0, key, value);
        if r.is_ok() {
            b.last_key.clear();
            b.last_key.extend_from_slice(key);
            self.keys += 1;
        }
        self.noting(r)
    }

    /// Ends the open bucket: writes what is left of its tree and records it in the root bucket.
    pub fn end_bucket(&mut self) -> Result<(), WriteError> {
        self.usable()?;
        let Some(b) = self.bucket.take() else {
            return Err(WriteError::NoBucket {
                action: "end a bucket",
            });
        };
        let r = self.record_bucket(b);
        self.noting(r)
    }

    /// Adds top-level bucket `name` to the root bucket with `value` as its entry.
    fn record_raw(&mut self, name: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.root
            .put(&mut self.pages, self.budget, BUCKET_LEAF_FLAG, name, value)?;
        self.last_bucket = Some(name.to_vec());
        self.buckets += 1;
        Ok(())
    }

    fn record_bucket(&mut self, mut b: OpenBucket) -> Result<(), WriteError> {
        let limit = self.page_size as usize / INLINE_DIVISOR;
        // Bucket header (root page, 0 when inline; sequence), then the inline leaf, if any.
        let mut value = Vec::with_capacity(BUCKET_HEADER_SIZE + limit);
        match b.tree.inline_leaf(limit)? {
            Some(leaf) => {
                value.extend_from_slice(&0u64.to_le_bytes());
                value.extend_from_slice(&b.sequence.to_le_bytes());
                value.extend_from_slice(&leaf);
            }
            None => {
                let root = b.tree.finish(&mut self.pages, self.budget)?;
                value.extend_from_slice(&root.to_le_bytes());
                value.extend_from_slice(&b.sequence.to_le_bytes());
            }
        }
        self.record_raw(&b.name, &value)
    }

    /// Writes the root bucket's tree and the metas, and syncs the file; the caller syncs the
    /// directory it is in. The file is a valid bbolt database only once this returns `Ok`.
    pub fn finish(mut self) -> Result<WriteSummary, WriteError> {
        self.usable()?;
        if let Some(b) = self.bucket.take() {
            return Err(WriteError::UnfinishedBucket(b.name));
        }
        let root = mem::take(&mut self.root).finish(&mut self.pages, self.budget)?;
        if let Mode::Append(at) = self.mode {
            return self.commit_appended(at, root);
        }
        let high_water = self.pages.next;
        let ps = u64::from(self.page_size);
        let bytes = high_water.checked_mul(ps).ok_or(WriteError::TooManyPages)?;
        // Data first: metas pointing at pages not yet on disk would make a crash look like a valid
        // file with garbage in it.
        let file = self.pages.into_synced()?;
        // Meta 1 gets the higher txid, as in bbolt's own init; both point at the same root, so
        // whichever bbolt picks (the higher txid), the database is the same.
        let metas = [0u64, 1].map(|id| (id, meta_page(id, self.page_size, root, high_water, id)));
        seal(&file, &metas, ps, bytes)?;
        Ok(WriteSummary {
            pages: high_water,
            bytes,
            buckets: self.buckets,
            keys: self.keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::meta::Meta;

    #[test]
    fn meta_page_decodes() {
        let p = meta_page(1, 4096, 3, 4, 1);
        assert_eq!(p.len(), META_PAGE_USED);
        let m = Meta::decode(&p).unwrap();
        assert_eq!(
            (m.page_size, m.root, m.freelist(), m.high_water, m.txid),
            (4096, 3, Some(FREELIST_PGID), 4, 1)
        );
    }

    #[test]
    fn an_io_error_mid_page_stops_the_writer_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        std::fs::write(&path, b"").unwrap();
        // As `create` leaves it, but over a file that refuses writes.
        let mut w = BoltWriter {
            pages: Pages {
                out: BufWriter::with_capacity(WRITE_BUFFER_BYTES, File::open(&path).unwrap()),
                page_size: 4096,
                next: 3,
                early: None,
                synced_to: 3,
            },
            page_size: 4096,
            budget: 4096,
            root: Tree::default(),
            bucket: None,
            last_bucket: None,
            buckets: 0,
            keys: 0,
            broken: false,
            mode: Mode::Fresh,
        };
        w.begin_bucket(b"key", 0).unwrap();
        w.put(b"a", b"small: buffered").unwrap();
        // Bigger than the write buffer: straight to the file, which fails.
        let e = w.put(b"b", &vec![1u8; 2 * WRITE_BUFFER_BYTES]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot write the new bbolt file (page 4): "),
            "{e}"
        );
        assert!(matches!(w.put(b"c", b"v"), Err(WriteError::Broken)));
        assert!(matches!(w.end_bucket(), Err(WriteError::Broken)));
        let e = w.finish().unwrap_err();
        assert!(matches!(e, WriteError::Broken));
        assert!(e.to_string().contains("must be removed"));
    }

    #[test]
    fn names_are_shown_readably() {
        assert_eq!(shown(b"key"), "\"key\"");
        assert_eq!(shown(&[0, 1, 0xff]), "0x0001ff");
        let long = vec![b'a'; 100];
        assert!(shown(&long).ends_with("…\" (100 bytes)"));
        let long = vec![0u8; 100];
        assert!(shown(&long).ends_with("… (100 bytes)"));
    }
}
