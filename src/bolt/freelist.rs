//! The freelist page, when one is stored (etcd normally runs with NoFreelistSync and stores none).

use super::error::{Defect, Fault};
use super::page::{read_u64, PageHeader, PageKind, PAGE_HEADER_SIZE};

// Freelist page: the page header (flags 0x10), then page ids, 8 bytes each (little-endian):
//
// | offset | size      | field  | meaning                                                        |
// |--------|-----------|--------|----------------------------------------------------------------|
// | 0      | 16        | header | count = number of ids, or 0xFFFF when they do not fit a u16    |
// | 16     | 8         | count  | only when header count = 0xFFFF: the real number of ids        |
// | 16/24  | 8 × count | ids    | free page ids (bbolt writes them sorted)                       |
/// The header count that means "the real count is in the first u64".
pub const COUNT_OVERFLOW: u16 = 0xFFFF;
const ID_SIZE: usize = size_of::<u64>();

/// A read view of a freelist page held whole in memory (with its overflow pages).
#[derive(Debug, Clone, Copy)]
pub struct FreelistPage<'a> {
    bytes: &'a [u8],
    /// Offset of the first id.
    start: usize,
    count: usize,
}

impl<'a> FreelistPage<'a> {
    /// Checks the flags and that every id lies inside `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<FreelistPage<'a>, Fault> {
        let header = PageHeader::decode(bytes)?;
        if header.kind() != PageKind::Freelist {
            return Err(Fault::new(Defect::UnexpectedFlags, 8));
        }
        let (start, count) = if header.count == COUNT_OVERFLOW {
            let n = read_u64(bytes, PAGE_HEADER_SIZE)
                .ok_or(Fault::new(Defect::ElementTableOutOfBounds, 16))?;
            (PAGE_HEADER_SIZE + ID_SIZE, n)
        } else {
            (PAGE_HEADER_SIZE, u64::from(header.count))
        };
        let room = (bytes.len().saturating_sub(start) / ID_SIZE) as u64;
        if count > room {
            return Err(Fault::new(Defect::ElementTableOutOfBounds, 10));
        }
        Ok(FreelistPage {
            bytes,
            start,
            // count ≤ room, which came from a usize.
            count: count as usize,
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The free page ids, with the offset of each in the page.
    pub fn ids(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let (bytes, start) = (self.bytes, self.start);
        (0..self.count).filter_map(move |i| {
            let at = start + i * ID_SIZE;
            read_u64(bytes, at).map(|id| (id, at as u64))
        })
    }
}

/// A freelist page's bytes: for tests and, later, the writer.
#[cfg(test)]
pub(crate) fn encode_freelist(id: u64, ids: &[u64], page_size: usize) -> Vec<u8> {
    use super::page::FREELIST_PAGE_FLAG;
    let mut p = vec![0u8; PAGE_HEADER_SIZE];
    p[..8].copy_from_slice(&id.to_le_bytes());
    p[8..10].copy_from_slice(&FREELIST_PAGE_FLAG.to_le_bytes());
    if ids.len() >= usize::from(COUNT_OVERFLOW) {
        p[10..12].copy_from_slice(&COUNT_OVERFLOW.to_le_bytes());
        p.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    } else {
        p[10..12].copy_from_slice(&(ids.len() as u16).to_le_bytes());
    }
    for i in ids {
        p.extend_from_slice(&i.to_le_bytes());
    }
    let pages = p.len().div_ceil(page_size).max(1);
    p[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    p.resize(pages * page_size, 0);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_counts() {
        let p = encode_freelist(2, &[5, 7, 9], 4096);
        let f = FreelistPage::new(&p).unwrap();
        assert_eq!(f.ids().map(|(id, _)| id).collect::<Vec<_>>(), [5, 7, 9]);
        assert_eq!(f.ids().next().map(|(_, at)| at), Some(16));
        let many: Vec<u64> = (10..10 + 70_000).collect();
        let p = encode_freelist(2, &many, 4096);
        let f = FreelistPage::new(&p).unwrap();
        assert_eq!(f.len(), 70_000);
        assert_eq!(f.ids().next(), Some((10, 24)));
        assert_eq!(f.ids().last().map(|(id, _)| id), Some(70_009));
        // A count the page cannot hold.
        let mut p = encode_freelist(2, &[1], 512);
        p[10..12].copy_from_slice(&500u16.to_le_bytes());
        assert_eq!(
            FreelistPage::new(&p).unwrap_err().defect,
            Defect::ElementTableOutOfBounds
        );
        let mut p = encode_freelist(2, &[1], 512);
        p[10..12].copy_from_slice(&COUNT_OVERFLOW.to_le_bytes());
        p[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(FreelistPage::new(&p).is_err());
    }
}
