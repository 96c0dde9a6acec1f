//! The page header every bbolt page starts with, and little-endian field readers that never read out
//! of bounds.
//!
//! bbolt writes its structures in the machine's native byte order. The platforms cpkeep targets
//! (amd64, arm64) are little-endian, so this module decodes little-endian explicitly rather than
//! trusting the host; a file written on a big-endian machine (s390x) fails the meta's magic check.

use super::error::{Defect, Fault};

// Page header, 16 bytes, at the start of every page (and of an inline bucket's page):
//
// | offset | size | field    | meaning                                                   |
// |--------|------|----------|-----------------------------------------------------------|
// | 0      | 8    | id       | page id (pgid); equals the page's position in the file    |
// | 8      | 2    | flags    | 0x01 branch, 0x02 leaf, 0x04 meta, 0x10 freelist          |
// | 10     | 2    | count    | number of elements (branch/leaf) or freelist ids           |
// | 12     | 4    | overflow | number of further pages this page continues into           |
const ID_OFFSET: usize = 0;
const FLAGS_OFFSET: usize = ID_OFFSET + size_of::<u64>();
const COUNT_OFFSET: usize = FLAGS_OFFSET + size_of::<u16>();
const OVERFLOW_OFFSET: usize = COUNT_OFFSET + size_of::<u16>();
/// Size of the page header; elements (or the meta) start right after it.
pub const PAGE_HEADER_SIZE: usize = OVERFLOW_OFFSET + size_of::<u32>();

pub const BRANCH_PAGE_FLAG: u16 = 0x01;
pub const LEAF_PAGE_FLAG: u16 = 0x02;
pub const META_PAGE_FLAG: u16 = 0x04;
pub const FREELIST_PAGE_FLAG: u16 = 0x10;

/// Smallest page size accepted (bbolt has no hard minimum; anything smaller cannot hold a meta and
/// a useful number of elements).
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest page size accepted. Kernels with 64 KiB pages give bbolt 64 KiB pages; the headroom
/// above that is for explicitly configured sizes.
pub const MAX_PAGE_SIZE: u32 = 1 << 20;

/// Page ids of the two meta pages.
pub const META_PAGE_IDS: [u64; 2] = [0, 1];

/// What kind of page the header's flags say this is. bbolt writes exactly one flag per page;
/// anything else is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    Branch,
    Leaf,
    Meta,
    Freelist,
    Unknown(u16),
}

impl PageKind {
    pub fn from_flags(flags: u16) -> PageKind {
        match flags {
            BRANCH_PAGE_FLAG => PageKind::Branch,
            LEAF_PAGE_FLAG => PageKind::Leaf,
            META_PAGE_FLAG => PageKind::Meta,
            FREELIST_PAGE_FLAG => PageKind::Freelist,
            other => PageKind::Unknown(other),
        }
    }
}

/// A decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    pub id: u64,
    pub flags: u16,
    pub count: u16,
    pub overflow: u32,
}

impl PageHeader {
    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<PageHeader, Fault> {
        let short = Fault::new(Defect::ShortHeader, 0);
        Ok(PageHeader {
            id: read_u64(bytes, ID_OFFSET).ok_or(short)?,
            flags: read_u16(bytes, FLAGS_OFFSET).ok_or(short)?,
            count: read_u16(bytes, COUNT_OFFSET).ok_or(short)?,
            overflow: read_u32(bytes, OVERFLOW_OFFSET).ok_or(short)?,
        })
    }

    pub fn kind(&self) -> PageKind {
        PageKind::from_flags(self.flags)
    }

    /// Bytes this page spans in the file: the page and its overflow pages.
    pub fn span(&self, page_size: u32) -> u64 {
        // (u32::MAX + 1) × u32::MAX < u64::MAX: cannot overflow.
        (u64::from(self.overflow) + 1) * u64::from(page_size)
    }

    /// Checks that the page, with its overflow pages, ends below the high-water mark: `id + overflow
    /// < high_water`.
    pub fn check_span(&self, high_water: u64) -> Result<(), Fault> {
        match self.id.checked_add(u64::from(self.overflow)) {
            Some(last) if last < high_water => Ok(()),
            _ => Err(Fault::new(
                Defect::OverflowBeyondHighWater,
                OVERFLOW_OFFSET as u64,
            )),
        }
    }
}

/// Reads a little-endian u16 at `at`, or `None` if it does not fit in `bytes`.
pub fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(read_array(bytes, at)?))
}

/// Reads a little-endian u32 at `at`, or `None` if it does not fit in `bytes`.
pub fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(read_array(bytes, at)?))
}

/// Reads a little-endian u64 at `at`, or `None` if it does not fit in `bytes`.
pub fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(read_array(bytes, at)?))
}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    bytes.get(at..end)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_offsets_follow_the_table() {
        assert_eq!(
            (ID_OFFSET, FLAGS_OFFSET, COUNT_OFFSET, OVERFLOW_OFFSET),
            (0, 8, 10, 12)
        );
        assert_eq!(PAGE_HEADER_SIZE, 16);
    }

    #[test]
    fn decodes_little_endian_header() {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&7u64.to_le_bytes());
        b[8..10].copy_from_slice(&LEAF_PAGE_FLAG.to_le_bytes());
        b[10..12].copy_from_slice(&3u16.to_le_bytes());
        b[12..16].copy_from_slice(&2u32.to_le_bytes());
        let h = PageHeader::decode(&b).unwrap();
        assert_eq!(
            h,
            PageHeader {
                id: 7,
                flags: 2,
                count: 3,
                overflow: 2
            }
        );
        assert_eq!(h.kind(), PageKind::Leaf);
        assert_eq!(h.span(4096), 3 * 4096);
        assert!(h.check_span(10).is_ok());
        assert!(h.check_span(9).is_err());
        assert_eq!(
            PageHeader::decode(&b[..15]).unwrap_err().defect,
            Defect::ShortHeader
        );
    }

    #[test]
    fn span_check_does_not_overflow() {
        let h = PageHeader {
            id: u64::MAX,
            flags: 2,
            count: 0,
            overflow: u32::MAX,
        };
        assert!(h.check_span(u64::MAX).is_err());
        assert_eq!(read_u64(&[0; 4], usize::MAX - 2), None);
    }
}
