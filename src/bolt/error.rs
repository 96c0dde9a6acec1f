//! Errors of the bbolt layer. Corruption is data, never a panic: every decoder returns a [`Fault`]
//! (what is wrong and where inside the page), and the caller, who knows the page id, turns it into
//! [`BoltError::Corrupted`].

use std::fmt;

/// What is wrong with a page or a value found in it. Fieldless and `Copy` so that the streaming
/// scanner can remember, for every page it could not decode, why (one byte) without allocating:
/// most such pages are free pages full of stale bytes and are never looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Fewer bytes than a page header (or an inline page header) needs.
    ShortHeader,
    /// The header's page id is not the page's position in the file.
    IdMismatch,
    /// The header's flags are none of branch, leaf, meta, freelist (or not the kind expected here).
    UnexpectedFlags,
    /// `id + overflow` reaches the high-water mark or beyond.
    OverflowBeyondHighWater,
    /// `count` elements of 16 bytes do not fit in the page (with its overflow pages).
    ElementTableOutOfBounds,
    /// An element's key or value lies (partly) outside the page.
    ElementOutOfBounds,
    /// A branch page with no elements.
    EmptyBranch,
    /// The page would need more memory than the streaming scanner allows itself to summarise it.
    TooLargeToSummarise,
    /// A pointer to a page at or beyond the high-water mark.
    PointerBeyondHighWater,
    /// A tree pointer to page 0 or 1, which are meta pages.
    PointerToMeta,
    /// A tree pointer to a page that is neither a branch nor a leaf page.
    NotATreePage,
    /// Tree descent went deeper than any real bbolt tree can be: a cycle.
    TooDeep,
    /// A bucket value shorter than its 16-byte header.
    ShortBucketValue,
    /// An entry with the bucket's name exists but is not flagged as a bucket.
    NotABucket,
    /// The value is larger than the scanner captured (only small values are kept).
    ValueTooLarge,
    /// The last key of etcd's `key` bucket is not a revision (8-byte main, `_`, 8-byte sub [, `t`]).
    NotARevision,
    /// A `meta` bucket value that should be an 8-byte big-endian integer is not 8 bytes.
    NotAnInteger,
    /// The page was needed but never received (the input ended before it).
    Missing,
    /// The page, with its overflow pages, spans more bytes than the reader holds in memory at once.
    PageTooLarge,
    /// One traversal reached the same page twice: a cycle, or a page shared by two parents.
    PageReachedTwice,
}

impl Defect {
    /// Every defect, in code order (the code is the index): used to store a defect in a few bits.
    pub(crate) const ALL: [Defect; 20] = [
        Defect::ShortHeader,
        Defect::IdMismatch,
        Defect::UnexpectedFlags,
        Defect::OverflowBeyondHighWater,
        Defect::ElementTableOutOfBounds,
        Defect::ElementOutOfBounds,
        Defect::EmptyBranch,
        Defect::TooLargeToSummarise,
        Defect::PointerBeyondHighWater,
        Defect::PointerToMeta,
        Defect::NotATreePage,
        Defect::TooDeep,
        Defect::ShortBucketValue,
        Defect::NotABucket,
        Defect::ValueTooLarge,
        Defect::NotARevision,
        Defect::NotAnInteger,
        Defect::Missing,
        Defect::PageTooLarge,
        Defect::PageReachedTwice,
    ];

    pub(crate) fn code(self) -> u8 {
        // The position in ALL; ALL has fewer than 256 entries.
        Self::ALL
            .iter()
            .position(|d| *d == self)
            .map_or(u8::MAX, |i| i as u8)
    }

    pub(crate) fn from_code(code: u8) -> Defect {
        Self::ALL
            .get(usize::from(code))
            .copied()
            .unwrap_or(Defect::Missing)
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Defect::ShortHeader => "too short for a page header",
            Defect::IdMismatch => "page header id is not the page's position in the file",
            Defect::UnexpectedFlags => "unexpected page flags",
            Defect::OverflowBeyondHighWater => "overflow pages reach beyond the high-water mark",
            Defect::ElementTableOutOfBounds => "element table does not fit in the page",
            Defect::ElementOutOfBounds => "element key or value lies outside the page",
            Defect::EmptyBranch => "branch page without elements",
            Defect::TooLargeToSummarise => "page too large for the streaming scanner's memory cap",
            Defect::PointerBeyondHighWater => "points to a page beyond the high-water mark",
            Defect::PointerToMeta => "points to a meta page",
            Defect::NotATreePage => "points to a page that is neither a branch nor a leaf",
            Defect::TooDeep => "tree deeper than any bbolt tree can be (a cycle?)",
            Defect::ShortBucketValue => "bucket value shorter than its 16-byte header",
            Defect::NotABucket => "entry has a bucket's name but is not a bucket",
            Defect::ValueTooLarge => "value larger than the scanner keeps",
            Defect::NotARevision => "last key of the `key` bucket is not a revision",
            Defect::NotAnInteger => "value is not an 8-byte integer",
            Defect::Missing => "page not present in the input",
            Defect::PageTooLarge => "page spans more bytes than the reader's memory cap",
            Defect::PageReachedTwice => {
                "page reached twice in one traversal (a cycle or a shared page)"
            }
        })
    }
}

/// A defect and the byte offset, inside the page (counting from the page header, across overflow
/// pages), where it was found. Page-local: the caller adds the page id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub defect: Defect,
    pub offset: u64,
}

impl Fault {
    pub fn new(defect: Defect, offset: u64) -> Self {
        Fault { defect, offset }
    }

    /// The error for this fault found on page `page`.
    pub fn on_page(self, page: u64) -> BoltError {
        BoltError::Corrupted {
            page,
            offset: self.offset,
            reason: self.defect,
        }
    }
}

/// Why a meta page cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaDefect {
    /// The input ended before the meta page.
    Missing,
    BadMagic(u32),
    BadVersion(u32),
    BadChecksum {
        stored: u64,
        computed: u64,
    },
    /// The page size is outside what this reader accepts.
    PageSize(u32),
    /// Meta page 1 was looked for at offset `offset` but claims a different page size.
    PageSizeMismatch {
        claimed: u32,
        offset: u64,
    },
}

impl fmt::Display for MetaDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaDefect::Missing => write!(f, "not present in the input"),
            MetaDefect::BadMagic(m) => write!(f, "bad magic {m:#010x}, expected 0xed0cdaed"),
            MetaDefect::BadVersion(v) => write!(f, "unsupported version {v}, expected 2"),
            MetaDefect::BadChecksum { stored, computed } => write!(
                f,
                "checksum mismatch: stored {stored:#018x}, computed {computed:#018x}"
            ),
            MetaDefect::PageSize(s) => write!(f, "implausible page size {s}"),
            MetaDefect::PageSizeMismatch { claimed, offset } => write!(
                f,
                "claims page size {claimed} but was found at offset {offset}"
            ),
        }
    }
}

/// Errors of the bbolt layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BoltError {
    #[error("corrupted bbolt file: page {page}, offset {offset}: {reason}")]
    Corrupted {
        page: u64,
        offset: u64,
        reason: Defect,
    },

    #[error("no valid meta page in the bbolt file: page 0: {meta0}; page 1: {meta1}")]
    NoValidMeta {
        meta0: MetaDefect,
        meta1: MetaDefect,
    },

    #[error(
        "truncated bbolt file: got {actual} bytes, the meta page's high-water mark needs {expected}"
    )]
    Truncated { expected: u64, actual: u64 },

    #[error("bbolt file has no `{name}` bucket: not an etcd backend")]
    MissingBucket { name: &'static str },

    #[error("cannot read {len} bytes at offset {offset} of the bbolt file")]
    Io {
        offset: u64,
        len: u64,
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect_codes_round_trip() {
        for (i, d) in Defect::ALL.iter().enumerate() {
            assert_eq!(usize::from(d.code()), i);
            assert_eq!(Defect::from_code(d.code()), *d);
        }
    }
}
